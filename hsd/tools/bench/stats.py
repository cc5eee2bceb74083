"""The benchmark's statistics: medians and spreads, paired ratios, greedy equality, one
temperature's summary (plain data)."""
from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Sequence

from hsd.tools.bench.contenders import BenchContender
from hsd.tools.bench.runners import Run


def rotated(items: Sequence, shift: int) -> list:
    """``items`` starting at position ``shift`` (wrapping): a different order per round."""
    shift %= max(len(items), 1)
    return list(items[shift:]) + list(items[:shift])


def spread(values: Sequence[float]) -> dict:
    """median, min and max (and how many) of finite values; NaN when there are none."""
    vals = [v for v in values if v == v]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def paired_ratios(runs: dict[str, dict[tuple[int, int], Run]], num: str, den: str) -> list[float]:
    """tokens/s of ``num`` over ``den`` for every (prompt, repeat) both ran (wall clock)."""
    a, b = runs.get(num, {}), runs.get(den, {})
    return [a[k].tokens_per_s / b[k].tokens_per_s for k in sorted(a) if k in b]


def paired_ratios_to_best(runs: dict[str, dict[tuple[int, int], Run]], num: str, dens: Sequence[str]) -> list[float]:
    """tokens/s of ``num`` over the fastest of ``dens`` on each (prompt, repeat) where ``num`` and
    at least one of them ran (wall clock)."""
    a = runs.get(num, {})
    out = []
    for k in sorted(a):
        rivals = [runs[d][k].tokens_per_s for d in dens if k in runs.get(d, {})]
        if rivals:
            out.append(a[k].tokens_per_s / max(rivals))
    return out


LLAMACPP_KEYS = ("g", "h", "h-lookup")      # llama.cpp's own contenders
TEXT_ONLY_RUNNERS = ("llamacpp-speculative", "llamacpp-lookup")


def first_mismatch(ids: Sequence[int], reference: Sequence[int]) -> int | None:
    """Index of the first token where ``ids`` differs from ``reference`` (None if identical)."""
    for i, (x, y) in enumerate(zip(ids, reference)):
        if x != y:
            return i
    return None if len(ids) == len(reference) else min(len(ids), len(reference))


def text_mismatch(text: str, reference: str) -> int | None:
    """Index of the first character where two texts differ within their common length (None if
    one is a prefix of the other: they were cut at different token counts)."""
    at = first_mismatch(text, reference)
    return None if at is None or at == min(len(text), len(reference)) else at


def summarise(contenders: Sequence[BenchContender], runs: dict[str, dict[tuple[int, int], Run]],
              temperature: float, family_names: Sequence[str], decode=None) -> dict:
    """Per-contender rows and the headline ratios for one temperature (plain data).  ``decode``
    (ids -> text) compares the greedy output of llama.cpp's own programs, which print text, by
    text: our tokenizer may split the same text into other ids than the ones they sampled."""
    greedy = temperature == 0
    reference = runs.get("a", {})
    rows = []
    for c in contenders:
        rs = runs.get(c.key, {})
        if not rs:
            continue
        runs_list = [rs[k] for k in sorted(rs)]
        n_tokens = sum(r.n_tokens for r in runs_list)
        target_calls = sum(r.target_calls for r in runs_list)
        tps = spread([r.tokens_per_s for r in runs_list])
        mismatches = []
        text_only = c.runner in TEXT_ONLY_RUNNERS and decode is not None
        if greedy and reference:
            for k in sorted(rs):
                if k in reference:
                    at = (text_mismatch(decode(rs[k].token_ids), decode(reference[k].token_ids)) if text_only
                          else first_mismatch(rs[k].token_ids, reference[k].token_ids))
                    if at is not None:
                        mismatches.append({"prompt": k[0], "repeat": k[1], "first_diff_at": at,
                                           "unit": "character" if text_only else "token"})
        per_model = [sum(r.forward_calls[m] for r in runs_list) / n_tokens if n_tokens else float("nan")
                     for m in range(len(family_names))]
        rows.append({
            **asdict(c), "hierarchy": c.hierarchy,
            "tokens_per_s": tps,                                           # wall clock
            "ms_per_token": 1000.0 / tps["median"] if tps["median"] == tps["median"] else float("nan"),
            "speedup_vs_a": spread(paired_ratios(runs, c.key, "a")),       # wall clock, paired
            "predicted_speedup_vs_a": (reference_pred(contenders) / c.predicted_ms_per_token
                                       if c.predicted_ms_per_token else None),
            "tokens_per_target_call": n_tokens / target_calls if target_calls else float("nan"),
            "outside_forward_share": spread([r.outside_forward_share for r in runs_list]),
            "forwards_per_token": dict(zip(family_names, per_model)),
            "greedy_equal_to_a": (not mismatches) if greedy and reference else None,
            "greedy_mismatches": mismatches,
            "n_runs": len(runs_list), "n_tokens": n_tokens,
        })
    ratios = {"c/b": spread(paired_ratios(runs, "c", "b")), "d/c": spread(paired_ratios(runs, "d", "c")),
              "b/a": spread(paired_ratios(runs, "b", "a")), "c/a": spread(paired_ratios(runs, "c", "a")),
              "d/a": spread(paired_ratios(runs, "d", "a")),
              "c/b-lookup": spread(paired_ratios(runs, "c", "b-lookup")),          # n = 0 without an n-gram level
              # llama.cpp's own contenders (n = 0 unless --forward llamacpp)
              "g/a": spread(paired_ratios(runs, "g", "a")), "d/g": spread(paired_ratios(runs, "d", "g")),
              "d/h": spread(paired_ratios(runs, "d", "h")), "h/g": spread(paired_ratios(runs, "h", "g")),
              "d/h-lookup": spread(paired_ratios(runs, "d", "h-lookup")),
              "f-ar/g": spread(paired_ratios(runs, "f-ar", "g")), "c/h": spread(paired_ratios(runs, "c", "h")),
              "d/best-llamacpp": spread(paired_ratios_to_best(runs, "d", LLAMACPP_KEYS))}
    return {"temperature": temperature, "greedy": greedy, "rows": rows, "ratios": ratios,
            "runs": [asdict(r) for rs in runs.values() for r in rs.values()]}


def reference_pred(contenders: Sequence[BenchContender]) -> float:
    return next(c.predicted_ms_per_token for c in contenders if c.key == "a")
