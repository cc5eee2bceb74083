"""What the two model-backed levels share: a sequence of cached token ids, the common-prefix
rule that decides what is still valid, and the one skeleton of ``logits_after`` (check, crop,
forward over the new suffix, time it, count it).  A subclass supplies ``_crop(n)`` -- the ONLY
place its cache is cut --, ``_inputs(new, kept)`` (untimed: tensors, allocations) and the timed
``_forward(inputs, kept, n_rows)``; ``_grad_mode`` is what ``logits_after`` runs under
(``torch.inference_mode`` for a torch model, nothing for llama.cpp)."""
from __future__ import annotations

import abc
import time
from typing import Sequence

import torch

from hsd.levels.sampling import SamplingSettings


def kept_prefix(cached_ids: Sequence[int], sequence: Sequence[int], keep_at_most: int) -> int:
    """How many leading tokens of ``cached_ids`` are still valid for ``sequence``, at most
    ``keep_at_most`` (the caller must recompute at least the rows it returns)."""
    n = min(len(cached_ids), keep_at_most)
    if cached_ids[:n] != sequence[:n]:           # rare: a rejected block to drop
        n = next(i for i in range(n) if cached_ids[i] != sequence[i])
    return n


class CachedLevel(abc.ABC):
    """A level over a model with a KV cache (``hsd.levels.hf``, ``hsd.levels.lean``,
    ``hsd.levels.ggml``).  Subclasses
    set ``name``, ``vocab_size``, ``settings``, ``max_positions`` and ``device`` and call
    ``_start_counters()``; not thread-safe (one decode at a time per instance)."""

    name: str
    vocab_size: int
    settings: SamplingSettings
    max_positions: int
    device: torch.device
    _grad_mode = staticmethod(torch.inference_mode)     # the context every call runs in

    def _start_counters(self) -> None:
        self.forward_passes, self.forward_ms = 0, 0.0
        self.cached_ids: list[int] = []

    def reset(self) -> None:
        """Forget every sequence seen (a new prompt)."""
        self._keep(0)

    def _keep(self, n: int) -> None:
        """Keep the first ``n`` cached positions: the cache, then the ids it covers."""
        self._crop(n)
        del self.cached_ids[n:]

    @abc.abstractmethod
    def _crop(self, n: int) -> None:
        """Cut the model's cache to its first ``n`` positions."""

    @abc.abstractmethod
    def _inputs(self, new: list[int], kept: int):
        """What the forward over ``new`` (fed after ``kept`` cached tokens) needs, built untimed."""

    @abc.abstractmethod
    def _forward(self, inputs, kept: int, n_rows: int) -> torch.Tensor:
        """Logits (n_rows, ≥ vocab_size) of the last ``n_rows`` new positions (timed)."""

    def logits_after(self, sequence: list[int], n_rows: int) -> torch.Tensor:
        """Raw logits (n_rows, vocab_size) for the last ``n_rows`` positions of ``sequence`` (the
        contract of ``hsd.levels``), in one forward over the uncached suffix."""
        if not 1 <= n_rows <= len(sequence):
            raise ValueError(f"n_rows must be in 1..{len(sequence)}, got {n_rows}")
        # keep at most len - n_rows cached so the forward covers every row we must return
        kept = kept_prefix(self.cached_ids, sequence, len(sequence) - n_rows)
        new = sequence[kept:]                                               # (m,), m ≥ n_rows
        with self._grad_mode():
            if kept < len(self.cached_ids):
                self._keep(kept)
            inputs = self._inputs(new, kept)
            t0 = time.perf_counter()
            logits = self._forward(inputs, kept, n_rows)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)       # honest wall time for async devices
            self.forward_ms += (time.perf_counter() - t0) * 1000.0
        self.forward_passes += 1
        self.cached_ids.extend(new)
        return logits if logits.shape[1] == self.vocab_size else logits[:, : self.vocab_size]   # (n_rows, V)

    def probs_after(self, sequence: list[int], n_rows: int = 1) -> torch.Tensor:
        """Processed sampling distributions (n_rows, V), float32, on the CPU."""
        return self.settings.probs(self.logits_after(sequence, n_rows)).cpu()

    def argmax_after(self, sequence: list[int], n_rows: int = 1) -> list[int]:
        """Greedy decoding's shortcut: the argmax of each row ``probs_after`` would return (the
        first on a tie, as its one-hot rows have it), without building the rows."""
        return self.logits_after(sequence, n_rows).argmax(-1).tolist()
