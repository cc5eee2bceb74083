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


def test_a_transformers_level_implements_the_protocol_and_build_level_uses_make_level():
    models, tok = tiny_family(2)
    settings = SamplingSettings()
    level = build_level(models[0], name="a", vocab_size=len(tok), settings=settings)
    assert isinstance(level, LevelModel) and isinstance(level, Level)
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
