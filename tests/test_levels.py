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


def _max_logit_gap(model, vocab: int) -> float:
    """Largest |lean − transformers| logit over a prefill, one token, a block, a crop (a rejected
    block replaced), a reset and a longer block after it."""
    from hsd.levels.lean import LeanLevel

    settings = SamplingSettings()
    ref, lean = (cls(model, name="x", vocab_size=vocab, settings=settings) for cls in (LevelModel, LeanLevel))
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
