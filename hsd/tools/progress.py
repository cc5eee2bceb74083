"""A one-line text progress bar for the commands (``ProgressFn``: (done, total, what) -> None)."""
from __future__ import annotations

import sys
from typing import Callable

ProgressFn = Callable[[int, int, str], None]     # (done, total, what) -> None


def progress_bar(stream=sys.stderr, width: int = 30) -> ProgressFn:
    def show(done: int, total: int, what: str) -> None:
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width)
        stream.write(f"\r[{bar:<{width}}] {100 * frac:5.1f}%  {what:<40}")
        if done >= total and total > 1:
            stream.write("\n")
        stream.flush()
    return show
