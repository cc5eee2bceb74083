"""The transformers level: a causal LM, its KV cache, and the shared sampling transform.

``LevelModel`` owns ALL mutable per-model state: the ``DynamicCache`` and the token ids that cache
covers.  Callers hand it whole token sequences; it works out which suffix is new, crops its cache
back to the longest prefix it still agrees with (``_sync`` is the only place that crops), feeds the
rest in ONE forward pass and returns processed probability rows.

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

import time

import torch
from transformers import DynamicCache

from hsd.levels.prefix import kept_prefix
from hsd.levels.sampling import SamplingSettings


class LevelModel:
    """A causal LM with its own cache.  Not thread-safe: one decode at a time per instance."""

    def __init__(self, model, *, name: str, vocab_size: int, settings: SamplingSettings):
        self.model = model
        self.name = name
        self.vocab_size = int(vocab_size)
        self.settings = settings
        self.device = next(model.parameters()).device
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.forward_passes = 0
        self.forward_ms = 0.0
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the cache (a new prompt)."""
        self.cache = DynamicCache(config=self.model.config)
        self.cached_ids: list[int] = []

    def _sync(self, sequence: list[int], keep_at_most: int) -> int:
        """Crop the cache to the longest common prefix with ``sequence`` (at most ``keep_at_most``
        tokens).  The ONLY place a cache is cropped.  Returns the number of tokens kept."""
        n = kept_prefix(self.cached_ids, sequence, keep_at_most)
        drop = len(self.cached_ids) - n
        if drop > 0:
            self.cache.crop(-drop)      # transformers 5.x: a negative count of tokens to drop
            del self.cached_ids[n:]
        return n

    # -- scoring -------------------------------------------------------------------------
    @torch.inference_mode()
    def logits_after(self, sequence: list[int], n_rows: int) -> torch.Tensor:
        """Raw logits (n_rows, vocab_size) for the last ``n_rows`` positions of ``sequence``
        (see the module docstring), in one forward pass over the uncached suffix."""
        if not 1 <= n_rows <= len(sequence):
            raise ValueError(f"n_rows must be in 1..{len(sequence)}, got {n_rows}")
        # keep at most len - n_rows cached so the forward covers every row we must return
        kept = self._sync(sequence, len(sequence) - n_rows)
        new = sequence[kept:]                                       # (m,), m ≥ n_rows
        ids = torch.tensor([new], dtype=torch.long, device=self.device)
        t0 = time.perf_counter()
        out = self.model(
            input_ids=ids,
            past_key_values=self.cache,
            use_cache=True,
            cache_position=torch.arange(kept, kept + len(new), device=self.device),
            logits_to_keep=n_rows,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)   # honest wall time for async devices
        self.forward_ms += (time.perf_counter() - t0) * 1000.0
        self.forward_passes += 1
        self.cached_ids.extend(new)
        return out.logits[0, -n_rows:, : self.vocab_size]          # (n_rows, V)

    def probs_after(self, sequence: list[int], n_rows: int = 1) -> torch.Tensor:
        """Processed sampling distributions (n_rows, V), float32, on the CPU."""
        return self.settings.probs(self.logits_after(sequence, n_rows)).cpu()
