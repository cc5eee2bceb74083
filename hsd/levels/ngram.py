"""A model-free drafting level: prompt lookup with back-off over the sequence it is asked about,
falling back to a bigram table, so that it always proposes one token.

The proposal for the token at position p, given the prefix ``seq[:p]``: the token that followed
the latest earlier occurrence of the prefix's last ``k`` tokens, for k = ``max_n`` … 1 (the idea
of prompt lookup decoding, Saxena 2023, and of CS-Drafting's statistical bottom level, Chen et al.
2023); when no suffix recurs, ``bigram[last token]`` (the most frequent successor in a corpus);
without a table, the last token again.  Its rows are ONE-HOT on the proposal: that is exactly the
distribution the proposal is drawn from, so every lossless rule stays exact with it (a verifier
keeps the token with its own probability of it).  It drafts but cannot verify: a hierarchy puts
it at the bottom only (``drafter_only``).

The index of k-grams grows with the sequence and is rolled back on a crop (the common-prefix
rule of every level); one proposal costs a few dictionary lookups.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch

from hsd.levels.cached import kept_prefix
from hsd.levels.sampling import SamplingSettings

NGRAM_NAME = "ngram"
MAX_N = 3


class NGramDrafter:
    """What stands in a hierarchy's model list for the n-gram level (shared, read-only): the
    back-off order and the fallback table.  ``make_level`` builds one ``NGramLevel`` per decode."""

    drafter_only = True

    def __init__(self, vocab_size: int, *, max_n: int = MAX_N, bigram: Sequence[int] | None = None,
                 name: str = NGRAM_NAME):
        if max_n < 1:
            raise ValueError(f"max_n must be ≥ 1, got {max_n}")
        self.vocab_size, self.max_n, self.name = int(vocab_size), int(max_n), name
        self.bigram = list(bigram) if bigram is not None else None

    def make_level(self, *, name: str, vocab_size: int, settings: SamplingSettings) -> "NGramLevel":
        return NGramLevel(self, name=name, vocab_size=vocab_size, settings=settings)

    def __repr__(self) -> str:
        table = f"bigram table of {len(self.bigram)}" if self.bigram is not None else "no table"
        return f"NGramDrafter(max_n={self.max_n}, {table})"


class NGramLevel:
    """One decode's n-gram level: the k-gram index of the sequence seen so far."""

    def __init__(self, drafter: NGramDrafter, *, name: str, vocab_size: int, settings: SamplingSettings):
        self.drafter, self.name, self.settings = drafter, name, settings
        self.vocab_size = int(vocab_size)
        self.max_positions = 0
        self.forward_passes, self.forward_ms = 0, 0.0
        self.reset()

    def reset(self) -> None:
        self.cached_ids: list[int] = []
        self.index: dict[tuple[int, ...], list[int]] = {}     # k-gram -> positions q it preceded
        self.added: list[list[tuple[int, ...]]] = []          # per position q: the keys indexed at q

    def _sync(self, sequence: list[int]) -> None:
        """Keep the common prefix with ``sequence`` (rolling the index back), then index the rest."""
        n = kept_prefix(self.cached_ids, sequence, len(sequence))
        while len(self.cached_ids) > n:           # roll back, latest position first
            for key in self.added.pop():
                self.index[key].pop()
            self.cached_ids.pop()
        for q in range(n, len(sequence)):
            keys = [tuple(sequence[q - k:q]) for k in range(1, self.drafter.max_n + 1) if q - k >= 0]
            for key in keys:
                self.index.setdefault(key, []).append(q)
            self.added.append(keys)
            self.cached_ids.append(sequence[q])

    def propose(self, p: int) -> int:
        """The proposal for position ``p`` from ``cached_ids[:p]`` (see the module docstring)."""
        seq = self.cached_ids
        for k in range(min(self.drafter.max_n, p - 1), 0, -1):
            positions = self.index.get(tuple(seq[p - k:p]), ())
            for q in reversed(positions):              # the latest q < p whose k-gram recurs
                if q < p:
                    return seq[q]
        last = seq[p - 1]
        table = self.drafter.bigram
        token = table[last] if table is not None and 0 <= last < len(table) else last
        return token if 0 <= token < self.vocab_size else 0

    def _proposals(self, sequence: list[int], n_rows: int) -> list[int]:
        if not 1 <= n_rows <= len(sequence):
            raise ValueError(f"n_rows must be in 1..{len(sequence)}, got {n_rows}")
        self._sync(sequence)
        start = len(sequence) - n_rows + 1
        return [self.propose(start + r) for r in range(n_rows)]

    def argmax_after(self, sequence: list[int], n_rows: int = 1) -> list[int]:
        """The proposals for the last ``n_rows`` positions: where ``probs_after``'s one-hot rows
        put their mass (greedy decoding's shortcut; counted and timed the same)."""
        t0 = time.perf_counter()
        proposals = self._proposals(sequence, n_rows)
        self.forward_ms += (time.perf_counter() - t0) * 1000.0
        self.forward_passes += 1
        return proposals

    def probs_after(self, sequence: list[int], n_rows: int = 1) -> torch.Tensor:
        """(n_rows, vocab_size) one-hot rows on the proposals for the last ``n_rows`` positions."""
        t0 = time.perf_counter()
        rows = torch.zeros(n_rows, self.vocab_size)
        for r, token in enumerate(self._proposals(sequence, n_rows)):
            rows[r, token] = 1.0
        self.forward_ms += (time.perf_counter() - t0) * 1000.0
        self.forward_passes += 1
        return rows


def bigram_table(tokens: torch.Tensor, vocab_size: int) -> list[int]:
    """For each token u, its most frequent successor in the 1-D token stream ``tokens`` (u itself
    when u never occurs)."""
    tokens = tokens.to(torch.long).flatten()
    pairs = tokens[:-1] * vocab_size + tokens[1:]
    counts = torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)
    best = counts.argmax(dim=1)
    seen = counts.sum(dim=1) > 0
    return torch.where(seen, best, torch.arange(vocab_size)).tolist()


def load_bigram(path: Path) -> list[int] | None:
    """The shipped fallback table (``{"format": "hsd-ngram-bigram/1", "next": [...]}``), or None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    table = data.get("next") if isinstance(data, dict) else None
    return [int(x) for x in table] if isinstance(table, list) else None
