"""How many torch CPU threads a decode uses: one policy for the app, the CLI and the Python API.

torch's intra-op threads wait for each other at every op.  On a machine where anything else runs
(the web server, a browser, another user's job on a shared Space), a decode that owns every core
spins while one of them is busy: measured on 2 shared cores, a 2-thread decode of the bundled
family ran 57 % slower inside the app than alone, and 10-100x slower next to another heavy
process, while a 1-thread decode lost 8 % (and the small models decode as fast on 1 thread as on
2).  So the default is ALL CORES BUT ONE (at least one); ``HSD_TORCH_THREADS`` overrides it for
every entry point, and so do ``--threads`` and ``Hierarchy(..., threads=N)``.

This module imports only the standard library; ``torch_threads`` imports torch when used.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

ENV = "HSD_TORCH_THREADS"


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(cpus: int | None = None, env=None) -> int:
    """``HSD_TORCH_THREADS`` when set to a whole number ≥ 1, else all cores but one (≥ 1)."""
    env = os.environ if env is None else env
    text = str(env.get(ENV, "")).strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    cpus = cpu_count() if cpus is None else cpus
    return max(1, cpus - 1)


def resolve(threads) -> int | None:
    """``"auto"`` -> the default policy; ``None`` -> None (leave torch's setting alone); a whole
    number ≥ 1 -> itself.  Anything else is a ConfigError."""
    if threads is None:
        return None
    if threads == "auto":
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from hsd.errors import ConfigError

        raise ConfigError(f"threads must be a whole number ≥ 1, 'auto' or None, got {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch uses ``n`` intra-op threads inside the block and its previous count after it
    (``None``: nothing is changed)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
