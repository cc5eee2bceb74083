"""The level seam: what the engine needs of ONE level of a hierarchy, and nothing more.

A level turns a token sequence into this level's sampling distributions for its last positions.
The engine (``hsd.engine``) talks to levels only through the ``Level`` protocol below, so a
transformers model (``hsd.levels.hf.LevelModel``, the reference), the lean forward over the same
weights (``hsd.levels.lean.LeanLevel``), the same weights run by llama.cpp
(``hsd.levels.ggml.GGMLLevel``, ``forward="llamacpp"``), or a model-free drafter can stand at any level and the
engine cannot tell them apart.

The contract of ``probs_after(sequence, n_rows)``:
- returns a float32 CPU tensor of shape ``(n_rows, vocab_size)``;
- row r is this level's processed sampling distribution (``settings`` applied: temperature,
  top-k, top-p; one-hot when greedy) for the token at position ``len(sequence) - n_rows + 1 + r``,
  i.e. after the prefix ``sequence[:len(sequence) - n_rows + 1 + r]``.  So
  ``probs_after(ctx + block, len(block) + 1)`` is exactly the ``verifier_probs`` a rule wants and
  ``probs_after(ctx, 1)`` is the next-token row;
- the caller may hand in ANY sequence: a level keeps whatever state it likes (a KV cache, an
  index) and must itself work out what it can reuse (the longest common prefix with what it has
  seen) -- a rejected block is simply not in the next sequence;
- ``forward_passes`` / ``forward_ms`` count calls and their wall time (ms) since construction;
  the trace's timings and the benchmark's forward share read them.

Optional: ``argmax_after(sequence, n_rows)`` -> the argmax of each of those rows (a list of ids,
the first on a tie), without building the rows.  The engine's greedy path calls it where a
level has it (its rows are one-hot there, so their argmaxes are all a rule reads) and reads the
argmaxes off ``probs_after`` elsewhere; it counts as a forward like ``probs_after``.

``reset()`` forgets everything seen (a new prompt).  A level is used by one decode at a time;
``Hierarchy`` builds fresh levels for every decode, so shared read-only weights are safe.

Adding a kind of level: implement the protocol, and give the object that stands in the hierarchy's
model list a ``make_level`` method (``build_level`` calls it once per decode).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from hsd.errors import ConfigError
from hsd.levels.lean import LEAN_ARCHITECTURES, LeanLevel, lean_support
from hsd.levels.sampling import SamplingSettings

# The transformers level (``hsd.levels.hf``) is imported when first asked for, so that importing a
# model-free level (``hsd.levels.ngram``) or this seam does not import transformers.


def __getattr__(name: str):
    if name == "LevelModel":
        from hsd.levels.hf import LevelModel

        return LevelModel
    raise AttributeError(f"module 'hsd.levels' has no attribute {name!r}")

FORWARDS = ("auto", "lean", "hf", "llamacpp")   # auto: lean where it applies, else the transformers level


@runtime_checkable
class Level(Protocol):
    """One level of a hierarchy, as the engine sees it (see the module docstring)."""

    name: str                       # display name (the trace and the pictures use it)
    vocab_size: int                 # width of every row: the family's common vocabulary
    settings: SamplingSettings      # the decode's sampling settings, the same at every level
    max_positions: int              # longest sequence it can read (0 = no limit)
    forward_passes: int             # calls of probs_after so far
    forward_ms: float               # their wall time, ms

    def reset(self) -> None:
        """Forget every sequence seen so far."""

    def probs_after(self, sequence: list[int], n_rows: int = 1):
        """(n_rows, vocab_size) float32 rows for the last ``n_rows`` positions of ``sequence``."""


def check_forward(forward: str, models=()) -> None:
    """Raise ``ConfigError`` (one sentence) for an unknown forward path, or for ``"lean"`` on a
    model it does not cover (it says which architectures it does)."""
    if forward not in FORWARDS:
        raise ConfigError(f"forward must be one of {', '.join(FORWARDS)}, got {forward!r}")
    if forward == "llamacpp":
        from hsd.levels.ggml import llamacpp_missing
        from hsd.levels.gguf_export import gguf_support

        problem = llamacpp_missing()
        for model in models:
            if problem is None and not callable(getattr(model, "make_level", None)):
                problem = gguf_support(model)
        if problem:
            raise ConfigError(f"--forward llamacpp: {problem}; use --forward auto, lean or hf")
    if forward == "lean":
        for model in models:
            if not callable(getattr(model, "make_level", None)):
                problem = lean_support(model)
                if problem:
                    raise ConfigError(f"--forward lean: {problem}; use --forward auto or hf")


def build_level(model, *, name: str, vocab_size: int, settings: SamplingSettings, forward: str = "auto") -> Level:
    """A fresh level for one decode over ``model`` (shared, read-only).  An object with a
    ``make_level(name=, vocab_size=, settings=)`` method builds its own kind of level (the n-gram
    drafter, a ``hsd.levels.ggml.GGUFModel``); a transformers causal LM gets the lean level
    (``forward="lean"``, or ``"auto"`` where it covers the model), its GGUF twin run by llama.cpp
    (``"llamacpp"``) or the transformers level (``"hf"``, and ``"auto"`` elsewhere)."""
    make = getattr(model, "make_level", None)
    if callable(make):
        return make(name=name, vocab_size=vocab_size, settings=settings)
    check_forward(forward, [model])
    if forward == "llamacpp":
        from hsd.levels.ggml import ggml_model_for
        return ggml_model_for(model).make_level(name=name, vocab_size=vocab_size, settings=settings)
    if forward == "lean" or (forward == "auto" and lean_support(model) is None):
        return LeanLevel(model, name=name, vocab_size=vocab_size, settings=settings)
    from hsd.levels.hf import LevelModel

    return LevelModel(model, name=name, vocab_size=vocab_size, settings=settings)


__all__ = ["FORWARDS", "LEAN_ARCHITECTURES", "Level", "LeanLevel", "LevelModel", "SamplingSettings",
           "build_level", "check_forward", "lean_support"]
