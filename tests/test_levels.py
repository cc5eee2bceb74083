"""Claims about the level seam (hsd/levels): the engine reaches a level only through the ``Level``
protocol, so any kind of level stands at any position -- and the exactness checks hold through it
(with the lossy rule still caught)."""
import pytest
import torch

from hsd.engine import Hierarchy
from hsd.family.tiny import tiny_family
from hsd.levels import Level, SamplingSettings, build_level
from hsd.levels.hf import LevelModel
from tests.test_engine import MIDDLE, SMALL, TARGET, _engine_pvalue


class ProtocolOnly:
    """A level the engine only knows through the protocol: it wraps a LevelModel and exposes
    nothing else (no cache, no ``logits_after``, no model), and counts what it was asked."""

    def __init__(self, inner: LevelModel, calls: list):
        self.inner, self.calls = inner, calls
        self.name, self.vocab_size, self.settings = inner.name, inner.vocab_size, inner.settings
        self.max_positions = inner.max_positions

    @property
    def forward_passes(self) -> int:
        return self.inner.forward_passes

    @property
    def forward_ms(self) -> float:
        return self.inner.forward_ms

    def reset(self) -> None:
        self.inner.reset()

    def probs_after(self, sequence, n_rows=1):
        self.calls.append((self.name, len(sequence), n_rows))
        return self.inner.probs_after(list(sequence), n_rows)


class WrappedModel:
    """What stands in a Hierarchy's model list: it builds a ``ProtocolOnly`` level per decode."""

    def __init__(self, model, calls: list):
        self.model, self.calls = model, calls

    def make_level(self, *, name, vocab_size, settings):
        return ProtocolOnly(LevelModel(self.model, name=name, vocab_size=vocab_size, settings=settings), self.calls)


def test_both_forward_paths_implement_the_protocol_and_build_level_uses_make_level():
    from hsd.levels.lean import LeanLevel

    models, tok = tiny_family(2)
    settings = SamplingSettings()
    level = build_level(models[0], name="a", vocab_size=len(tok), settings=settings, forward="hf")
    assert isinstance(level, LevelModel) and isinstance(level, Level)
    lean = build_level(models[0], name="a", vocab_size=len(tok), settings=settings)
    assert isinstance(lean, LeanLevel) and isinstance(lean, Level)
    calls = []
    custom = build_level(WrappedModel(models[0], calls), name="b", vocab_size=len(tok), settings=settings)
    assert isinstance(custom, ProtocolOnly) and isinstance(custom, Level)
    assert not hasattr(custom, "logits_after") and not hasattr(custom, "cache")


def test_levels_reached_only_through_the_protocol_decode_the_same_tokens():
    models, tok = tiny_family(3, scale=3.0)
    calls = []
    plain = Hierarchy(models, tokenizer=tok, names=["s", "m", "l"], buffers=(2, 3), rules="hsd")
    seam = Hierarchy([WrappedModel(m, calls) for m in models], tokenizer=tok, names=["s", "m", "l"],
                     vocab_size=len(tok), buffers=(2, 3), rules="hsd")
    for temperature in (0.0, 1.0):
        a = plain.generate("def f(x):", max_new_tokens=20, temperature=temperature, seed=4)
        b = seam.generate("def f(x):", max_new_tokens=20, temperature=temperature, seed=4)
        assert a.token_ids == b.token_ids and a.text == b.text
    assert {c[0] for c in calls} == {"s", "m", "l"}
    assert any(n_rows > 1 for _, _, n_rows in calls)           # verifications score whole blocks


def _seam_pvalue(levels, buffers, rule):
    return _engine_pvalue(levels, buffers, rule, wrap=lambda m: WrappedModel(m, []))


@pytest.mark.parametrize("rule", ["token", "block", "hsd"])
def test_through_the_seam_a_three_level_hierarchy_samples_exactly_the_target(rule):
    assert _seam_pvalue([SMALL, MIDDLE, TARGET], (2, 3), rule) > 1e-3


def test_through_the_seam_the_lossy_uncapped_rule_is_caught():
    assert _seam_pvalue([SMALL, MIDDLE, TARGET], (2, 3), "hsd-uncapped") < 1e-6


def test_greedy_is_decided_by_the_sampling_settings_and_draws_no_random_number():
    row = torch.tensor([0.1, 0.6, 0.3])
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert SamplingSettings(temperature=0).sample(row, g) == 1
    assert torch.equal(g.get_state(), state)
    assert SamplingSettings(temperature=0).probs(torch.tensor([[0.0, 2.0, 1.0]])).tolist() == [[0.0, 1.0, 0.0]]
    drawn = {SamplingSettings().sample(row, g) for _ in range(200)}
    assert drawn == {0, 1, 2} and not torch.equal(g.get_state(), state)


# -- the lean forward ------------------------------------------------------------------------

def _qwen2(tied: bool, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tied)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(cfg).eval(), 50


def _llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=40, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=6,
                      num_key_value_heads=3, max_position_embeddings=128, tie_word_embeddings=tied)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return LlamaForCausalLM(cfg).eval(), 40


def _max_logit_gap(model, vocab: int, forward: str = "lean") -> float:
    """Largest |``forward`` − transformers| logit over a prefill, one token, a block, a crop (a
    rejected block replaced), a reset and a longer block after it."""
    settings = SamplingSettings()
    ref = LevelModel(model, name="x", vocab_size=vocab, settings=settings)
    lean = build_level(model, name="x", vocab_size=vocab, settings=settings, forward=forward)
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(vocab, (60,), generator=g).tolist()
    crop = seq[:9] + [(seq[9] + 1) % vocab] + seq[10:14]
    steps = [(seq[:12], 12), (seq[:13], 1), (seq[:18], 5), (crop, 3), "reset", (seq[:40], 4), (seq[:41], 2)]
    gap = 0.0
    for step in steps:
        if step == "reset":
            ref.reset(), lean.reset()
            continue
        sequence, n_rows = step
        gap = max(gap, float((ref.logits_after(sequence, n_rows) - lean.logits_after(sequence, n_rows)).abs().max()))
    return gap


@pytest.mark.parametrize("build", [lambda: _llama(True), lambda: _llama(False), lambda: _qwen2(True),
                                   lambda: _qwen2(False), lambda: (tiny_family(1)[0][0], 33)],
                         ids=["llama-gqa-tied", "llama-gqa-untied", "qwen2-bias-tied", "qwen2-bias-untied", "tiny-llama"])
def test_the_lean_forward_equals_the_transformers_forward(build):
    model, vocab = build()
    assert _max_logit_gap(model, vocab) < 1e-5


def test_the_lean_forward_equals_the_transformers_forward_on_the_bundled_family():
    from hsd.models import load_family
    from tests.test_engine import ROOT

    if not (ROOT / "assets" / "family" / "family.json").exists():
        pytest.skip("bundled family not built")
    family = load_family("bundled", device="cpu")
    for model in family.models:
        assert _max_logit_gap(model, family.vocab_size) < 1e-5


def test_the_lean_cache_grows_by_doubling_and_a_crop_copies_nothing():
    from hsd.levels.lean import LeanLevel

    model, vocab = _llama(False)
    lean = LeanLevel(model, name="x", vocab_size=vocab, settings=SamplingSettings())
    lean.logits_after(list(range(10)), 1)
    k0 = lean.kv[0][0]
    assert lean.capacity == min(256, 128)                     # the first allocation, capped by the context
    lean.logits_after(list(range(5)) + [7, 7], 2)             # crop to 5, then 2 new tokens
    assert lean.kv[0][0] is k0 and lean.cached_ids == list(range(5)) + [7, 7]


def test_auto_picks_the_lean_forward_where_it_applies_and_lean_refuses_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel

    from hsd.errors import ConfigError
    from hsd.levels.lean import LeanLevel

    llama, vocab = _llama(True)
    settings = SamplingSettings()
    assert isinstance(build_level(llama, name="a", vocab_size=vocab, settings=settings), LeanLevel)
    assert isinstance(build_level(llama, name="a", vocab_size=vocab, settings=settings, forward="hf"), LevelModel)
    with torch.random.fork_rng():
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    assert isinstance(build_level(gpt2, name="g", vocab_size=40, settings=settings), LevelModel)
    with pytest.raises(ConfigError, match="llama, qwen2") as info:
        build_level(gpt2, name="g", vocab_size=40, settings=settings, forward="lean")
    assert str(info.value).count(". ") == 0 and "gpt2" in str(info.value)
    with pytest.raises(ConfigError, match="forward must be one of"):
        Hierarchy([llama], tokenizer=None, vocab_size=vocab, forward="fast")


# -- the model-free n-gram level -------------------------------------------------------------

def _ngram_rows(drafter, context):
    """RowFn of the n-gram level after ``context``: its one-hot proposal rows (float64)."""
    level = drafter.make_level(name="ngram", vocab_size=drafter.vocab_size, settings=SamplingSettings())
    return lambda prefix: level.probs_after(list(context) + list(prefix), 1)[0].double()


@pytest.mark.parametrize("rule", ["token", "block", "hsd", "hsd-uncapped"])
@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_a_one_hot_ngram_draft_reproduces_the_target_exactly_under_every_rule(rule, gamma):
    """Exact enumeration (V = 3): one round with an n-gram draft, then the target alone.  With a
    one-hot draft every ratio ρ_t = p_t(x_t) ≤ 1, so the capped and uncapped joint ratios
    coincide: even hsd-uncapped is exact HERE (it is caught one level up, below)."""
    from hsd.levels.ngram import NGramDrafter
    from hsd.plan.exactness import random_rows
    from hsd.verify import outcome_table
    from tests.stats import Rows, round_then_target, total_variation

    drafter = NGramDrafter(3, bigram=[1, 2, 0])
    context = (0, 1, 2, 0, 1)                          # prompt lookup finds "0 1" -> 2
    target = random_rows(3, seed=gamma, sharpness=1.5)
    shifted = Rows(3, lambda prefix: target(context + tuple(prefix)))
    got = round_then_target(lambda t, dp, vp: outcome_table(rule, t, dp, vp),
                            Rows(3, _ngram_rows(drafter, context)), shifted, gamma)
    assert total_variation(got, shifted.joint(gamma + 1)) < 1e-12


def test_prompt_lookup_backs_off_from_three_tokens_to_the_bigram_table_and_rolls_back_on_a_crop():
    from hsd.levels.ngram import NGramDrafter

    level = NGramDrafter(10, bigram=[5] * 10).make_level(name="ngram", vocab_size=10, settings=SamplingSettings())
    seq = [1, 2, 3, 4, 1, 2, 3]
    assert level.probs_after(seq, 1)[0].argmax() == 4          # "1 2 3" was followed by 4
    assert level.probs_after([1, 2, 3, 4, 9, 2, 3], 1)[0].argmax() == 4   # back-off to "2 3"
    assert level.probs_after([7, 8], 1)[0].argmax() == 5                  # nothing recurs: the table
    rows = level.probs_after(seq, 3)                           # rows for positions 5, 6, 7
    assert rows.argmax(1).tolist() == [2, 3, 4] and rows.sum(1).tolist() == [1.0, 1.0, 1.0]
    assert level.index[(1, 2, 3)] == [3]                       # the crop to [7, 8] was rolled back


def test_an_ngram_bottom_level_keeps_three_level_hierarchies_exact_and_the_lossy_rule_is_caught_above_it():
    from hsd.levels.ngram import NGramDrafter

    def with_ngram(levels, buffers, rule, n=500):
        seen = []                                        # the bottom (first) model becomes the n-gram level

        def wrapped(model):
            seen.append(model)
            return NGramDrafter(3, bigram=[1, 2, 1]) if len(seen) == 1 else model
        return _engine_pvalue(levels, buffers, rule, n=n, wrap=wrapped)

    assert with_ngram([SMALL, MIDDLE, TARGET], (2, 3), ["hsd", "block"]) > 1e-3
    assert with_ngram([SMALL, TARGET], (3,), "token") > 1e-3
    assert with_ngram([SMALL, MIDDLE, TARGET], (2, 3), ["hsd", "hsd-uncapped"], n=3000) < 1e-6


def test_greedy_ngram_hierarchies_equal_the_targets_own_generate():
    from hsd.levels.ngram import NGramDrafter

    models, tok = tiny_family(3, scale=3.0)
    ngram = NGramDrafter(len(tok))
    for stack, buffers in (([ngram, models[2]], (4,)), ([ngram, models[0], models[2]], (2, 3))):
        h = Hierarchy(stack, tokenizer=tok, vocab_size=len(tok), names=[f"m{i}" for i in range(len(stack))],
                      buffers=buffers, rules="hsd")
        for prompt in ("def f(x):", "if x == y:\n"):
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            ref = models[2].generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24,
                                     pad_token_id=0)[0, len(ids):].tolist()
            assert h.generate(prompt, max_new_tokens=24, temperature=0).token_ids == ref


def test_an_ngram_level_anywhere_but_the_bottom_is_refused_with_one_sentence():
    from hsd.errors import ConfigError
    from hsd.levels.ngram import NGramDrafter

    models, tok = tiny_family(2)
    ngram = NGramDrafter(len(tok))
    for stack, where in (([models[0], ngram], "not the target"), ([models[0], ngram, models[1]], "not level 1")):
        with pytest.raises(ConfigError, match=where) as info:
            Hierarchy(stack, tokenizer=tok, vocab_size=len(tok), names=["a", "ngram", "b"][:len(stack)],
                      buffers=[2] * (len(stack) - 1))
        assert str(info.value).count(". ") == 0


def test_a_family_with_the_ngram_level_shares_its_models_with_the_family_without_it(tmp_path):
    from hsd.family.tiny import save_tiny_family
    from hsd.levels.ngram import NGramDrafter
    from hsd.models import clear_cache, load_family

    spec = save_tiny_family(tmp_path, scale=8.0)
    try:
        plain, with_ngram = load_family(spec, device="cpu"), load_family(f"ngram,{spec}", device="cpu")
        assert with_ngram.names[0] == "ngram" and isinstance(with_ngram.models[0], NGramDrafter)
        assert all(a is b for a, b in zip(plain.models, with_ngram.models[1:]))     # loaded once
        assert with_ngram.models[0].bigram is None                                 # no table outside bundled
    finally:
        clear_cache()


@pytest.mark.parametrize("forward", ["lean", "hf", "llamacpp", "ngram"])
def test_the_greedy_shortcut_names_the_argmax_of_every_one_hot_row_and_counts_as_a_forward(forward):
    """``argmax_after`` (what the engine's greedy path calls instead of building rows) gives the
    argmax of each row ``probs_after`` returns, on every kind of level, and is counted like it."""
    from hsd.levels.ggml import llamacpp_missing
    from hsd.levels.ngram import NGramDrafter

    if forward == "llamacpp" and llamacpp_missing():
        pytest.skip(llamacpp_missing())
    models, tok = tiny_family(2)
    greedy = SamplingSettings(temperature=0.0)
    model = NGramDrafter(len(tok)) if forward == "ngram" else models[0]
    kind = "auto" if forward == "ngram" else forward
    level = build_level(model, name="a", vocab_size=len(tok), settings=greedy, forward=kind)
    twin = build_level(model, name="b", vocab_size=len(tok), settings=greedy, forward=kind)
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, len(tok), (12,), generator=g).tolist()
    for n_rows, grow in ((1, 0), (4, 3), (1, 1), (6, 0), (2, 5)):
        seq = seq[:len(seq) - 2] + torch.randint(1, len(tok), (grow + 2,), generator=g).tolist()  # a crop, then more
        passes = level.forward_passes
        best = level.argmax_after(seq, n_rows)
        rows = twin.probs_after(seq, n_rows)
        assert best == rows.argmax(-1).tolist() and len(best) == n_rows
        assert bool((rows.amax(-1) == 1.0).all()) and level.forward_passes == passes + 1

