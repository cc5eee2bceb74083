"""The transformers level: a causal LM, its KV cache, and the shared sampling transform.

``LevelModel`` owns ALL mutable per-model state: the ``DynamicCache`` and the token ids that cache
covers.  Callers hand it whole token sequences; it works out which suffix is new, crops its cache
back to the longest prefix it still agrees with (``_crop`` is the only place that crops), feeds the
rest in ONE forward pass and returns processed probability rows (the skeleton is
``hsd.levels.cached.CachedLevel``, shared with the lean level).

Contract of ``probs_after(sequence, n_rows)``: row r of the (n_rows, V) result is this model's
sampling distribution for the token at position ``len(sequence) - n_rows + 1 + r``, i.e. after the
prefix ``sequence[:len(sequence) - n_rows + 1 + r]``.  So ``probs_after(ctx + block, len(block)+1)``
is exactly the ``verifier_probs`` a rule wants, and ``probs_after(ctx, 1)`` is the next-token row.

Rows are processed by the decode's ``SamplingSettings`` (``hsd.levels.sampling``), identically at
every level.  Logits are sliced to ``vocab_size`` (the family's common vocabulary) before anything
else.  ``LevelModel`` implements the ``hsd.levels.Level`` protocol.

This module knows nothing of verification rules, hierarchies or events.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from hsd.levels.cached import CachedLevel
from hsd.levels.sampling import SamplingSettings


class LevelModel(CachedLevel):
    """A causal LM with its own cache.  Not thread-safe: one decode at a time per instance."""

    def __init__(self, model, *, name: str, vocab_size: int, settings: SamplingSettings):
        self.model = model
        self.name = name
        self.vocab_size = int(vocab_size)
        self.settings = settings
        self.device = next(model.parameters()).device
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self._start_counters()
        self.cache = DynamicCache(config=self.model.config)

    def _crop(self, n: int) -> None:
        """The ONLY place the cache is cropped (to the first ``n`` tokens)."""
        if n == 0:
            self.cache = DynamicCache(config=self.model.config)
        elif n < len(self.cached_ids):
            self.cache.crop(n - len(self.cached_ids))   # transformers 5.x: a negative count of tokens to drop

    def _inputs(self, new: list[int], kept: int):
        return (torch.tensor([new], dtype=torch.long, device=self.device),
                torch.arange(kept, kept + len(new), device=self.device))

    def _forward(self, inputs, kept: int, n_rows: int) -> torch.Tensor:
        ids, positions = inputs
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, cache_position=positions,
                         logits_to_keep=n_rows)
        return out.logits[0, -n_rows:]                                  # (n_rows, V')
