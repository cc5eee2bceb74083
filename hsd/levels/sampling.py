"""How every level turns logits into a sampling distribution, and how a token is drawn from one.

``SamplingSettings`` applies temperature / top-k / top-p with transformers' own logits warpers,
identically for every level of a hierarchy; temperature 0 gives one-hot argmax rows.  ``greedy``
is the ONE place that decides greedy decoding: rows become one-hot and ``sample`` takes the
argmax, so no randomness is drawn.  The verification rules need no flag: a one-hot verifier row
already makes their outcome deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from hsd.errors import ConfigError
from hsd.verify import categorical


@dataclass(frozen=True)
class SamplingSettings:
    """How every level turns logits into a sampling distribution (identical at every level)."""

    temperature: float = 1.0
    top_k: int = 0          # 0 = off
    top_p: float = 1.0      # 1.0 = off

    def __post_init__(self):
        t = self.temperature
        if not isinstance(t, (int, float)) or t != t or t < 0 or t == float("inf"):
            raise ConfigError(f"temperature must be a number ≥ 0 (0 = greedy), got {t!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise ConfigError(f"top-k must be a whole number ≥ 0 (0 = off), got {self.top_k!r}")
        p = self.top_p
        if not isinstance(p, (int, float)) or p != p or not (0 < p <= 1):
            raise ConfigError(f"top-p must be in (0, 1], got {p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def processors(self):
        """transformers' warpers (a ``LogitsProcessorList``), in generate()'s order: temperature,
        top-k, top-p.  transformers is imported here, at the first row a warper shapes, so a level
        that never needs one (the n-gram drafter's module, at import) does not load it."""
        from transformers import LogitsProcessorList
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(float(self.temperature)))
        if self.top_k > 0:
            procs.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=float(self.top_p)))
        return procs

    @cached_property
    def _warpers(self):
        """``processors()``, built once per settings (it is called for every row of a decode)."""
        return self.processors()

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(n, V) raw logits -> (n, V) float32 sampling distributions."""
        logits = logits.float()
        if self.greedy:
            return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        procs = self._warpers
        if procs:                                    # no warper at T = 1 without top-k / top-p
            dummy_ids = torch.zeros((logits.shape[0], 1), dtype=torch.long, device=logits.device)
            logits = procs(dummy_ids, logits)
        return torch.softmax(logits, dim=-1)

    def sample(self, row: torch.Tensor, generator: torch.Generator) -> int:
        """One token from a processed (V,) row: its argmax when greedy (no random draw), else one
        categorical draw from ``generator``."""
        if self.greedy:
            return int(row.argmax())
        return categorical(row, generator)                 # float64 inside
