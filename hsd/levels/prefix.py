"""What a cached level can keep of what it has seen: the longest common prefix with the sequence
it is asked about (a rejected block is simply not in the next sequence)."""
from __future__ import annotations

from typing import Sequence


def kept_prefix(cached_ids: Sequence[int], sequence: Sequence[int], keep_at_most: int) -> int:
    """How many leading tokens of ``cached_ids`` are still valid for ``sequence``, at most
    ``keep_at_most`` (the caller must recompute at least the rows it returns)."""
    n = min(len(cached_ids), keep_at_most)
    if cached_ids[:n] != sequence[:n]:           # rare: a rejected block to drop
        n = next(i for i in range(n) if cached_ids[i] != sequence[i])
    return n
