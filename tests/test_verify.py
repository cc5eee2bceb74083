"""Claims about the verification rules (hsd/verify.py), checked by exact enumeration and by Monte
Carlo through the real rule functions, each with the lossy ``hsd-uncapped`` as negative control."""
from fractions import Fraction

import pytest
import torch

from hsd.errors import UnknownRuleError
from hsd.verify import LOSSLESS_RULES, RULES, get_rule, inverse_cdf, outcome_table
from tests.stats import Table, chi2_pvalue, round_rows, round_then_target, total_variation

CASES = [(v, g, s) for v in (2, 3, 4) for g in (1, 2, 3, 4) for s in (0, 1) if v ** g <= 64]


def _table_fn(name):
    return lambda tokens, dp, vp: outcome_table(name, tokens, dp, vp)


@pytest.mark.parametrize("rule", LOSSLESS_RULES)
@pytest.mark.parametrize("vocab,gamma,seed", CASES)
def test_lossless_rule_reproduces_target_joint_distribution_exactly(rule, vocab, gamma, seed):
    draft, target = Table(vocab, seed=10 + seed), Table(vocab, seed=99 + seed)
    got = round_then_target(_table_fn(rule), draft, target, gamma)
    assert total_variation(got, target.joint(gamma + 1)) < 1e-12


@pytest.mark.parametrize("vocab,gamma,seed", [(2, 2, 0), (3, 2, 1), (2, 3, 0), (3, 3, 2)])
def test_uncapped_joint_acceptance_is_detected_as_lossy(vocab, gamma, seed):
    draft, target = Table(vocab, seed=10 + seed), Table(vocab, seed=99 + seed)
    got = round_then_target(_table_fn("hsd-uncapped"), draft, target, gamma)
    assert total_variation(got, target.joint(gamma + 1)) > 1e-3
    assert not RULES["hsd-uncapped"].lossless


def test_hsd_and_block_give_the_same_outcome_for_every_draft():
    for vocab, gamma, seed in CASES:
        draft, target = Table(vocab, seed=20 + seed), Table(vocab, seed=40 + seed)
        for tokens in draft.joint(gamma):
            dp, vp = round_rows(draft, target, tokens)
            t = torch.tensor(tokens)
            assert torch.allclose(outcome_table("hsd", t, dp, vp), outcome_table("block", t, dp, vp),
                                  atol=1e-13, rtol=0)


TOY_P, TOY_Q = (1 / 3, 2 / 3), (2 / 3, 1 / 3)   # verifier p, drafter q at every position (docs/design.md §3)


def _expected_accepted(rule, gamma=2):
    draft, target = Table(2, 0, fixed=TOY_Q), Table(2, 0, fixed=TOY_P)
    total = 0.0
    for tokens, q in draft.joint(gamma).items():
        dp, vp = round_rows(draft, target, tokens)
        table = outcome_table(rule, torch.tensor(tokens), dp, vp)
        total += q * float(sum(k * table[k].sum() for k in range(gamma + 1)))
    return total


@pytest.mark.parametrize("rule,expected", [("token", Fraction(10, 9)), ("block", Fraction(11, 9)),
                                           ("hsd", Fraction(11, 9))])
def test_toy_expected_accepted_length_matches_closed_form(rule, expected):
    assert abs(_expected_accepted(rule) - float(expected)) < 1e-12


def test_toy_uncapped_rule_outputs_ba_with_probability_one_third_not_two_ninths():
    draft, target = Table(2, 0, fixed=TOY_Q), Table(2, 0, fixed=TOY_P)
    got = round_then_target(_table_fn("hsd-uncapped"), draft, target, 2)
    p_ba = sum(p for s, p in got.items() if s[:2] == (1, 0))
    assert abs(p_ba - 1 / 3) < 1e-12
    assert abs(sum(p for s, p in target.joint(3).items() if s[:2] == (1, 0)) - 2 / 9) < 1e-12


def test_block_verification_accepts_at_least_as_much_as_token_verification_on_random_instances():
    for seed in range(12):
        vocab, gamma = 3, 3
        draft, target = Table(vocab, 300 + seed), Table(vocab, 500 + seed)
        e = {}
        for rule in ("token", "block"):
            e[rule] = 0.0
            for tokens, q in draft.joint(gamma).items():
                dp, vp = round_rows(draft, target, tokens)
                table = outcome_table(rule, torch.tensor(tokens), dp, vp)
                e[rule] += q * float(sum(k * table[k].sum() for k in range(gamma + 1)))
        assert e["block"] >= e["token"] - 1e-12


def _monte_carlo(rule_name, draft, target, gamma, n, seed):
    """Sample drafts, run the REAL rule function, complete with the target; counts of γ+1 tokens."""
    g = torch.Generator().manual_seed(seed)
    rule = RULES[rule_name]
    counts = {}
    for _ in range(n):
        tokens = []
        for _t in range(gamma):
            tokens.append(int(torch.multinomial(draft.row(tokens), 1, generator=g)))
        dp, vp = round_rows(draft, target, tuple(tokens))
        verdict = rule(torch.tensor(tokens), dp, vp, g)
        out = tokens[: verdict.n_accepted] + [verdict.next_token]
        while len(out) < gamma + 1:
            out.append(int(torch.multinomial(target.row(out), 1, generator=g)))
        key = tuple(out[: gamma + 1])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _pvalue(counts, reference):
    keys = sorted(reference)
    return chi2_pvalue([counts.get(k, 0) for k in keys], [reference[k] for k in keys])


@pytest.mark.parametrize("rule", LOSSLESS_RULES)
def test_rule_functions_sample_the_target_distribution_monte_carlo(rule):
    draft, target = Table(2, 0, fixed=TOY_Q), Table(2, 0, fixed=TOY_P)
    assert _pvalue(_monte_carlo(rule, draft, target, 2, 3000, seed=1), target.joint(3)) > 1e-3
    draft, target = Table(3, 7), Table(3, 8)
    assert _pvalue(_monte_carlo(rule, draft, target, 2, 3000, seed=2), target.joint(3)) > 1e-3


def test_monte_carlo_check_rejects_the_lossy_uncapped_rule():
    draft, target = Table(2, 0, fixed=TOY_Q), Table(2, 0, fixed=TOY_P)
    assert _pvalue(_monte_carlo("hsd-uncapped", draft, target, 2, 3000, seed=1), target.joint(3)) < 1e-6


@pytest.mark.parametrize("rule", list(RULES))
def test_degenerate_rows_give_no_nan(rule):
    g = torch.Generator().manual_seed(0)
    same = torch.tensor([[0.5, 0.5, 0.0]] * 3, dtype=torch.float64)
    v = RULES[rule](torch.tensor([0, 1]), same[:2], same, g)                # p == q
    assert 0 <= v.n_accepted <= 2 and v.next_token in (0, 1)
    tab = outcome_table(rule, torch.tensor([0, 1]), same[:2], same)
    assert not torch.isnan(tab).any() and abs(float(tab.sum()) - 1) < 1e-12
    # the drafter proposes a token it gave zero mass (e.g. after its own top-k)
    dp = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    vp = torch.tensor([[0.3, 0.3, 0.4]] * 3, dtype=torch.float64)
    tab = outcome_table(rule, torch.tensor([0, 2]), dp, vp)
    assert not torch.isnan(tab).any() and abs(float(tab.sum()) - 1) < 1e-12


@pytest.mark.parametrize("rule", list(RULES))
def test_greedy_rows_keep_the_draft_while_it_matches_the_argmax_without_randomness(rule):
    eye = torch.eye(4, dtype=torch.float64)
    draft_probs = eye[[1, 2, 3]]                 # the draft proposes 1, 2, 3
    verifier_probs = eye[[1, 2, 0, 3]]           # the verifier wants 1, 2, 0, then 3
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    v = RULES[rule](torch.tensor([1, 2, 3]), draft_probs, verifier_probs, g)
    assert (v.n_accepted, v.next_token, v.bonus) == (2, 0, False)
    assert torch.equal(g.get_state(), state)
    v = RULES[rule](torch.tensor([1, 2, 0]), eye[[1, 2, 0]], verifier_probs, g)
    assert (v.n_accepted, v.next_token, v.bonus) == (3, 3, True)


def test_unknown_rule_error_lists_the_known_rules():
    with pytest.raises(UnknownRuleError, match="token, block, hsd, hsd-uncapped"):
        get_rule("typical")


def test_hsd_diagnostics_expose_branch_masses_and_step_back_flow():
    draft, target = Table(3, 1), Table(3, 2)
    tokens = (0, 1, 2)
    dp, vp = round_rows(draft, target, tokens)
    v = RULES["hsd"](torch.tensor(tokens), dp, vp, torch.Generator().manual_seed(0))
    d = v.diagnostics
    for key in ("capped", "excess", "deficit", "arriving", "resampled", "stepped_back",
                "accept_all_capped", "accept_all_uncapped", "nodes"):
        assert key in d
    # D_t = E_t + 1 - c_t: the draft's excess balances the capped target's deficit plus the cap
    for t in range(3):
        assert abs(d["excess"][t] - (d["deficit"][t] + 1 - d["capped"][t])) < 1e-12
    # the mass that starts walking back equals what is resampled somewhere along the path
    assert abs(sum(d["resampled"]) - (1 - d["accept_all_prob"])) < 1e-12


@pytest.mark.parametrize("rule", list(RULES))
def test_the_factored_draw_is_the_inverse_cdf_over_the_whole_outcome_table(rule):
    """A verification builds only the row it draws: one uniform picks the row by its weight, then,
    rescaled, the token in it.  That is the same (k, v) as the inverse CDF over the flattened
    (γ+1, V) table that the enumeration tests prove exact, for every uniform."""
    g = torch.Generator().manual_seed(5)
    for trial in range(40):
        gamma, vocab = 1 + trial % 4, 3 + trial % 5
        dp = torch.softmax(2 * torch.randn(gamma, vocab, generator=g, dtype=torch.float64), -1)
        vp = torch.softmax(2 * torch.randn(gamma + 1, vocab, generator=g, dtype=torch.float64), -1)
        tokens = torch.multinomial(dp, 1, generator=g).reshape(-1)
        found = RULES[rule].factored(tokens, dp, vp)
        table = found.table()
        assert abs(sum(found.weights) - 1) < 1e-12 and abs(float(table.sum()) - 1) < 1e-12
        for u in torch.rand(50, generator=g, dtype=torch.float64).tolist() + [0.0, 1.0]:
            assert found.at(u) == divmod(inverse_cdf(table.reshape(-1), u), vocab)
