"""hsd.exactness: the exactness lab's exact enumeration (what the Learn tab shows)."""
import itertools

import pytest

from hsd.errors import ConfigError
from hsd.plan.exactness import exactness_lab, lab_table, random_rows, toy_rows, TOY_DRAFT, TOY_TARGET
from hsd.verify import outcome_table
from tests.stats import Rows, round_then_target

LOSSLESS = ("token", "block", "hsd")


@pytest.mark.parametrize("vocab,gamma,seed", [(2, 1, 0), (3, 2, 1), (4, 2, 2), (2, 3, 3), (3, 3, 4)])
def test_lossless_rules_reproduce_the_target_joint_on_random_examples(vocab, gamma, seed):
    lab = exactness_lab("random", vocab=vocab, gamma=gamma, seed=seed)
    assert len(lab["sequences"]) == vocab ** (gamma + 1)
    assert abs(sum(lab["target"]) - 1) < 1e-12
    for name in LOSSLESS:
        r = lab["rules"][name]
        assert r["lossless"] and r["tv"] < 1e-12
        assert all(abs(a - b) < 1e-12 for a, b in zip(r["probs"], lab["target"]))


def test_uncapped_rule_is_measurably_lossy_on_the_design_toy():
    lab = exactness_lab("toy", gamma=2)
    r = lab["rules"]["hsd-uncapped"]
    assert not r["lossless"] and r["tv"] > 0.01
    # docs/design.md §3: it starts with "ba" with probability 1/3, the target 2/9
    start_ba = sum(p for s, p in zip(lab["sequences"], r["probs"]) if s.startswith("ba"))
    target_ba = sum(p for s, p in zip(lab["sequences"], lab["target"]) if s.startswith("ba"))
    assert start_ba == pytest.approx(1 / 3, abs=1e-12) and target_ba == pytest.approx(2 / 9, abs=1e-12)


def test_uncapped_rule_is_lossy_on_some_random_example():
    assert max(exactness_lab("random", vocab=3, gamma=2, seed=s)["rules"]["hsd-uncapped"]["tv"]
               for s in range(6)) > 1e-3


def test_toy_expected_accepted_lengths_match_the_closed_forms():
    lab = exactness_lab("toy", gamma=2)
    assert lab["rules"]["token"]["expected_accepted"] == pytest.approx(10 / 9, abs=1e-12)
    assert lab["rules"]["block"]["expected_accepted"] == pytest.approx(11 / 9, abs=1e-12)
    assert lab["rules"]["hsd"]["expected_accepted"] == pytest.approx(11 / 9, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_block_and_hsd_accept_at_least_as_much_as_token_wise(seed):
    rules = exactness_lab("random", vocab=3, gamma=3, seed=seed)["rules"]
    assert rules["block"]["expected_accepted"] >= rules["token"]["expected_accepted"] - 1e-12
    assert rules["hsd"]["expected_accepted"] == pytest.approx(rules["block"]["expected_accepted"], abs=1e-12)


@pytest.mark.parametrize("kwargs", [dict(vocab=5), dict(vocab=1), dict(gamma=0), dict(gamma=4),
                                    dict(example="other")])
def test_out_of_range_examples_raise_one_sentence_config_errors(kwargs):
    args = dict(example="random", vocab=3, gamma=2) | kwargs
    with pytest.raises(ConfigError):
        exactness_lab(**args)


def test_lab_table_lists_every_rule_with_tv_and_expected_length():
    rows = lab_table(exactness_lab("toy"))
    assert [r[0] for r in rows] == ["token", "block", "hsd", "hsd-uncapped"]
    assert rows[-1][1] == "LOSSY" and all(r[1] == "lossless" for r in rows[:-1])


def test_random_example_is_reproducible_from_its_seed():
    a, b = exactness_lab("random", vocab=3, gamma=2, seed=7), exactness_lab("random", vocab=3, gamma=2, seed=7)
    assert a["target"] == b["target"] and a["rules"]["token"]["probs"] == b["rules"]["token"]["probs"]
    assert list(itertools.islice(a["sequences"], 3)) == ["aaa", "aab", "aac"]


@pytest.mark.parametrize("example,vocab,gamma,seed", [("toy", 2, 2, 0), ("random", 3, 2, 1), ("random", 2, 3, 5)])
def test_the_labs_enumeration_agrees_with_the_suites_own_reference(example, vocab, gamma, seed):
    """The lab is not its own oracle: its target law and every rule's law (lossy included) equal
    tests/stats.py's independent enumeration over the same rows."""
    lab = exactness_lab(example, vocab=vocab, gamma=gamma, seed=seed)
    ex = lab["example"]
    if example == "toy":
        target, draft = Rows(2, toy_rows(TOY_TARGET)), Rows(2, toy_rows(TOY_DRAFT))
    else:
        target = Rows(vocab, random_rows(vocab, seed, ex["sharpness"]))
        draft = Rows(vocab, random_rows(vocab, seed, ex["sharpness"], noise=ex["noise"]))
    sequences = list(itertools.product(range(vocab), repeat=gamma + 1))
    reference = target.joint(gamma + 1)
    assert lab["target"] == pytest.approx([reference.get(q, 0.0) for q in sequences], abs=1e-14)
    for name, r in lab["rules"].items():
        law = round_then_target(lambda t, dp, vp: outcome_table(name, t, dp, vp), draft, target, gamma)
        assert r["probs"] == pytest.approx([law.get(q, 0.0) for q in sequences], abs=1e-14), name
