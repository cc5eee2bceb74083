"""Claims about the hierarchy decoder (hsd/engine.py) on tiny REAL transformers models."""
from pathlib import Path

import pytest
import torch

from hsd.engine import Hierarchy
from hsd.errors import ConfigError, PromptError, UnknownRuleError
from hsd.levels import SamplingSettings
from hsd.levels.hf import LevelModel
from hsd.trace import Trace
from hsd.verify import LOSSLESS_RULES
from tests.stats import LLAMACPP, chi2_pvalue, exact_law
from hsd.family.tiny import bigram_tables, tiny_family

ROOT = Path(__file__).resolve().parent.parent
A, B = 1, 2   # token ids of 'a' and 'b' in the bigram tokenizer

# next-token laws after the current token (0 = <eos>/start, 1 = a, 2 = b): the drafts lean to 'a',
# the target to 'b' -- the regime where an uncapped joint ratio overshoots (docs/design.md §3's toy).
SMALL = {0: (0.7, 0.3), A: (2 / 3, 1 / 3), B: (0.6, 0.4)}
MIDDLE = {0: (0.5, 0.5), A: (0.5, 0.5), B: (0.45, 0.55)}
TARGET = {0: (1 / 3, 2 / 3), A: (1 / 3, 2 / 3), B: (0.25, 0.75)}


def _target_joint(length, start=A):
    """The target's exact law of ``length`` tokens after the prompt "a" (the suite's reference)."""
    return exact_law(lambda s: (0.0,) + TARGET[s[-1] if s else start], length)


def _engine_pvalue(levels, buffers, rule, n=500, length=3, wrap=lambda m: m, forward="auto"):
    """χ² p-value of n decodes of ``length`` tokens against the target's exact joint law;
    ``wrap`` turns each model into what stands in the hierarchy (tests/test_levels.py),
    ``forward`` picks the forward path (lean or transformers)."""
    models, tok = bigram_tables(levels)
    h = Hierarchy([wrap(m) for m in models], tokenizer=tok, vocab_size=len(tok), buffers=buffers, rules=rule,
                  names=[f"m{i}" for i in range(len(models))], forward=forward)
    counts = {}
    for seed in range(n):
        ids = h.generate("a", max_new_tokens=length, temperature=1.0, seed=seed, stop_at_eos=False).token_ids
        counts[tuple(ids)] = counts.get(tuple(ids), 0) + 1
    ref = _target_joint(length)
    keys = sorted(ref)
    return chi2_pvalue([counts.get(k, 0) for k in keys], [ref[k] for k in keys])


FORWARDS = pytest.mark.parametrize("forward", ["lean", "hf", LLAMACPP])   # every exactness claim on every path


@FORWARDS
@pytest.mark.parametrize("rule", LOSSLESS_RULES)
def test_two_level_hierarchy_samples_exactly_the_target_distribution(rule, forward):
    assert _engine_pvalue([SMALL, TARGET], (2,), rule, forward=forward) > 1e-3


@FORWARDS
@pytest.mark.parametrize("rule", LOSSLESS_RULES)
def test_three_level_hierarchy_samples_exactly_the_target_distribution(rule, forward):
    assert _engine_pvalue([SMALL, MIDDLE, TARGET], (2, 3), rule, forward=forward) > 1e-3


@FORWARDS
def test_mixed_rules_per_level_stay_exact(forward):
    assert _engine_pvalue([SMALL, MIDDLE, TARGET], (3, 2), ["token", "hsd"], forward=forward) > 1e-3


@FORWARDS
@pytest.mark.parametrize("levels,buffers", [([SMALL, TARGET], (2,)), ([SMALL, MIDDLE, TARGET], (2, 3))])
def test_the_same_check_catches_the_lossy_uncapped_rule(levels, buffers, forward):
    assert _engine_pvalue(levels, buffers, "hsd-uncapped", forward=forward) < 1e-6


# -- greedy ------------------------------------------------------------------------------------

PROMPTS = ["def f(x):", "if x == y:\n"]


@pytest.fixture(scope="module")
def family():
    torch.manual_seed(0)
    return tiny_family(3, scale=3.0)


@pytest.mark.parametrize("chain,buffers", [([2], ()), ([0, 2], (3,)), ([1, 2], (1,)),
                                           ([0, 1, 2], (2, 3)), ([0, 1, 2], (4, 2))])
@pytest.mark.parametrize("rule", ["token", "block", "hsd", "hsd-uncapped"])
@FORWARDS
def test_greedy_decoding_equals_the_targets_own_generate(family, chain, buffers, rule, forward):
    models, tok = family
    h = Hierarchy([models[i] for i in chain], tokenizer=tok, buffers=buffers, rules=rule, forward=forward)
    for prompt in PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ref = models[2].generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24,
                                 pad_token_id=0)[0, len(ids):].tolist()
        got = h.generate(prompt, max_new_tokens=24, temperature=0).token_ids
        assert got == ref, prompt


def test_identical_draft_is_always_accepted_and_yields_buffer_plus_one_tokens_per_target_call(family):
    models, tok = family
    h = Hierarchy([models[2], models[2]], tokenizer=tok, buffers=(4,), rules="hsd", names=["t", "t"])
    s = h.generate("def f(x):", max_new_tokens=25, temperature=1.0, seed=3, stop_at_eos=False).trace.summary()
    assert s.edges[0].rate == 1.0
    assert s.tokens_per_target_call == 5.0


# -- caches and randomness ----------------------------------------------------------------------

def test_scoring_after_a_crop_equals_scoring_after_a_fresh_prefill(family):
    models, tok = family
    settings = SamplingSettings(1.0)
    lm = LevelModel(models[1], name="m", vocab_size=len(tok), settings=settings)
    base = tok("def f(x):", add_special_tokens=False)["input_ids"]
    lm.logits_after(base + [5, 6, 7, 8], 5)            # cache holds a block that is then rejected
    after_crop = lm.logits_after(base + [9, 10], 3)   # crop back to `base`, score a new block
    fresh = LevelModel(models[1], name="m", vocab_size=len(tok), settings=settings)
    assert torch.allclose(after_crop, fresh.logits_after(base + [9, 10], 3), atol=1e-5)
    assert lm.cached_ids == base + [9, 10]


def test_decoding_leaves_the_global_rng_untouched_and_is_reproducible_from_the_seed(family):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 3), rules="hsd")
    state = torch.get_rng_state()
    a = h.generate("def f(x):", max_new_tokens=20, temperature=1.0, seed=7).token_ids
    assert torch.equal(torch.get_rng_state(), state)
    assert h.generate("def f(x):", max_new_tokens=20, temperature=1.0, seed=7).token_ids == a


def test_no_level_drafts_past_the_remaining_budget(family):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(4, 6), rules="block")
    prompt = "def f(x):"
    end = len(tok(prompt, add_special_tokens=False)["input_ids"]) + 9
    trace = h.generate(prompt, max_new_tokens=9, temperature=1.0, seed=1, stop_at_eos=False).trace
    assert len(trace.token_ids) == 9
    for e in trace.of_kind("drafted"):
        assert e.context_len + len(e.tokens) <= end
    for e in trace.of_kind("verified"):
        assert e.context_len + len(e.proposed) <= end



@pytest.mark.parametrize("buffers,length", [((3,), 10), ((2, 5), 13), ((1, 2, 4), 9), ((3, 7), 64)])
def test_the_latency_model_of_a_decode_of_n_tokens_counts_the_engines_forwards_exactly(family, buffers, length):
    """Every level the same model, greedy: every draft is accepted (α = 1), so each level's
    forward count is fixed, budget cap included, and ``horizon_counts`` must give it exactly."""
    from hsd.plan.latency import horizon_counts
    from hsd.plan.profile import Profile

    models, tok = family
    depth = len(buffers) + 1
    h = Hierarchy([models[-1]] * depth, tokenizer=tok, buffers=buffers, rules="hsd")
    trace = h.generate("def f(x):", max_new_tokens=length, temperature=0.0, seed=0, stop_at_eos=False).trace
    assert len(trace.token_ids) == length
    counted = [sum(e.forward_passes for e in trace.of_kind("drafted"))] + [
        sum(1 for e in trace.of_kind("verified") if e.level == lv) for lv in range(1, depth)]
    names = [f"level{i}" for i in range(depth)]
    ones = [[1.0] * depth for _ in range(depth)]
    prof = Profile(names, {n: [1.0, 2.0] for n in names}, ones, {})
    predicted = horizon_counts(prof, list(range(depth)), list(buffers), length)["forwards_per_token"]
    assert [f * length for f in predicted] == pytest.approx(counted, abs=1e-9)

def test_each_level_hands_up_exactly_its_buffer(family):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 5), rules="hsd")
    trace = h.generate("def f(x):", max_new_tokens=40, temperature=1.0, seed=2, stop_at_eos=False).trace
    target_blocks = [len(e.proposed) for e in trace.of_kind("verified") if e.level == 2]
    assert set(target_blocks[:-1]) == {5}
    assert {len(e.proposed) for e in trace.of_kind("verified") if e.level == 1} <= {1, 2}


# -- the trace ------------------------------------------------------------------------------------

def test_trace_round_trips_through_json_and_summarises(family):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 3), rules="hsd")
    result = h.generate("def f(x):", max_new_tokens=20, temperature=0.8, seed=5, stop_at_eos=False)
    again = Trace.from_json(result.trace.to_json())
    assert again.events == result.trace.events
    s = again.summary()
    assert s.n_tokens == len(result.token_ids) == 20
    assert again.text == result.text
    assert s.target_calls == len([e for e in again.of_kind("verified") if e.level == 2])
    assert 1.0 <= s.tokens_per_target_call <= 4.0
    assert [e.drafter for e in s.edges] == [0, 1]
    committed = [o for e in again.of_kind("committed") for o in e.origins]
    assert set(committed) <= {0, 1, 2} and len(committed) == 20


def test_the_trace_times_the_drafting_forwards_apart_from_the_sampling_around_them(family):
    """The summary's forward time is time inside the passes only, so "outside forwards" counts
    the sampling of every draft token (it once counted level 0's whole drafting step)."""
    models, tok = family
    result = Hierarchy(models, tokenizer=tok, buffers=(2, 3), rules="hsd").generate(
        "def f(x):", max_new_tokens=12, temperature=1.0, seed=3, stop_at_eos=False)
    drafted = result.trace.of_kind("drafted")
    assert drafted and all(0 < e.forward_ms <= e.dur_ms for e in drafted)
    prefill = [e.dur_ms for e in result.trace.of_kind("prefill") if e.level == 0]
    level0 = result.trace.summary().levels[0]
    assert level0.forward_ms == pytest.approx(sum(prefill) + sum(e.forward_ms for e in drafted))
    old = Trace.from_dict({**result.trace.to_dict(), "events": [
        {k: v for k, v in e.items() if k != "forward_ms"} for e in result.trace.to_dict()["events"]]})
    assert old.summary().levels[0].forward_ms == pytest.approx(sum(prefill) + sum(e.dur_ms for e in drafted))


def test_autoregressive_target_makes_one_token_per_target_call(family):
    models, tok = family
    h = Hierarchy(models[2:], tokenizer=tok, buffers=(), rules="hsd")
    s = h.generate("def f(x):", max_new_tokens=12, seed=0, stop_at_eos=False).trace.summary()
    assert s.tokens_per_target_call == 1.0 and s.target_calls == 12


# -- user mistakes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(buffers=(2,)), ConfigError, "need 2 buffer"),
    (dict(buffers=(0, 2)), ConfigError, "buffer must be a whole number"),
    (dict(buffers=(2, 2), rules="typical"), UnknownRuleError, "known rules: token, block, hsd"),
    (dict(buffers=(2, 2), rules=["hsd"] * 3), ConfigError, "verification rule"),
])
def test_bad_hierarchies_are_refused_with_a_clear_sentence(family, kwargs, error, match):
    models, tok = family
    with pytest.raises(error, match=match):
        Hierarchy(models, tokenizer=tok, **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(prompt="   "), PromptError, "prompt is empty"),
    (dict(prompt="a" * 200), PromptError, "reads at most 128"),
    (dict(prompt="def", max_new_tokens=126), ConfigError, "exceeds the 128-token context"),
    (dict(prompt="def", temperature=-1), ConfigError, "temperature"),
    (dict(prompt="def", temperature=float("nan")), ConfigError, "temperature"),
    (dict(prompt="def", top_p=0.0), ConfigError, "top-p"),
    (dict(prompt="def", top_p=1.5), ConfigError, "top-p"),
    (dict(prompt="def", max_new_tokens=0), ConfigError, "max new tokens"),
])
def test_bad_requests_raise_typed_errors_before_any_work(family, kwargs, error, match):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 2))
    prompt = kwargs.pop("prompt")
    with pytest.raises(error, match=match):
        h.stream(prompt, **kwargs)


# -- events, text, cancellation ---------------------------------------------------------------

def test_events_are_built_by_keyword_only():
    from hsd.trace import Finished, Started

    with pytest.raises(TypeError):
        Finished("eos", 3, 1.0)                          # positional: refused, nothing can swap
    assert Finished(reason="eos", n_tokens=3, t_ms=1.0).kind == "finished"
    with pytest.raises(TypeError):
        Started(("a",), (), (), 1.0, 0, 1.0, 0, 8, 1)


def _eos_loving_family():
    models, tok = tiny_family(2, scale=3.0)
    with torch.no_grad():
        for m in models:                                  # <eos> (id 0) likely, but not at once
            m.lm_head.weight[0] = m.lm_head.weight[1:].mean(0)
    return models, tok


def test_generated_text_never_contains_special_tokens_but_token_ids_keep_them():
    models, tok = _eos_loving_family()
    h = Hierarchy(models, tokenizer=tok, buffers=(3,), rules="hsd")
    ended = [h.generate("def f(x):", max_new_tokens=40, seed=s) for s in range(30)]
    with_eos = [r for r in ended if r.trace.summary().finish_reason == "eos"]
    assert with_eos, "no decode reached the end-of-text token"
    for r in with_eos:
        assert r.token_ids[-1] == tok.eos_token_id and "<eos>" not in r.text
        assert r.text == tok.decode(r.token_ids, skip_special_tokens=True)
        last = r.trace.of_kind("committed")[-1]
        assert last.texts[-1] == ""                               # the strip shows no special token text


def test_text_deltas_are_decoded_incrementally_and_add_up_to_the_whole_text(tmp_path):
    from hsd.engine import TextStream

    family_dir = ROOT / "assets" / "family"
    if not (family_dir / "family.json").exists():
        pytest.skip("bundled family not built")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(family_dir / "hsd-family-l")
    text = "def naïve(x):\n    return '→ ok ✓' + \"日本\"  # ünïcödé\n" * 4
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seen = []

    def decode(chunk):
        seen.append(len(chunk))
        return tok.decode(chunk, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    stream = TextStream(decode, tok.all_special_ids)
    deltas = [stream.push([i], final=j == len(ids) - 1) for j, i in enumerate(ids)]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)               # a split UTF-8 character is held back
    assert max(seen) <= 8 < len(ids)                            # short windows, never the whole output


def test_a_stop_callback_ends_the_decode_with_finished_cancelled(family):
    models, tok = family
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 2), rules="hsd")
    events = []
    rounds = lambda: sum(e.kind == "committed" for e in events)  # noqa: E731
    for e in h.stream("def f(x):", max_new_tokens=60, seed=1, stop_at_eos=False, stop=lambda: rounds() >= 3):
        events.append(e)
    trace = Trace(events=events)
    assert rounds() == 3
    assert events[-1].kind == "finished" and events[-1].reason == "cancelled"
    assert trace.summary().finish_reason == "cancelled" and 0 < trace.summary().n_tokens < 60


def test_throwing_decode_cancelled_ends_the_decode_at_once_with_finished_cancelled(family):
    from hsd.engine import DecodeCancelled

    models, tok = family
    events = Hierarchy(models, tokenizer=tok, buffers=(2, 2), rules="hsd").stream("def f(x):", max_new_tokens=60)
    seen = [next(events) for _ in range(6)]
    last = events.throw(DecodeCancelled())
    assert last.kind == "finished" and last.reason == "cancelled"
    assert last.n_tokens == sum(len(e.tokens) for e in seen if e.kind == "committed")
    with pytest.raises(StopIteration):
        next(events)
