"""The benchmark's report: text and Markdown tables, and the Plotly figure written as HTML
(``visual.bench.figure_bench``, imported only inside ``write_figure``: the one sanctioned
import of ``visual`` from ``hsd``, in tooling; ``tests/test_layers.py``)."""
from __future__ import annotations

import sys
from pathlib import Path


SMOKE_TEST = ("one repeat per prompt: a smoke test, not a measurement -- the (min–max) spreads below are "
              "across prompts only; quote numbers from --repeats 3 or more")


def _fmt_spread(s: dict, digits: int = 2, suffix: str = "") -> str:
    if not s or s.get("n", 0) == 0:
        return "n/a"
    return f"{s['median']:.{digits}f}{suffix} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _fmt(x, spec: str, none: str = "n/a") -> str:
    return none if x is None or x != x else format(x, spec)


def _pct(s: dict) -> str:
    x = s.get("median") if s else None
    return "n/a" if x is None or x != x else f"{100 * x:.0f}%"


def format_section(section: dict) -> str:
    t = section["temperature"]
    title = "greedy (T=0)" if section["greedy"] else f"sampled (T={t:g})"
    head = (f"{'contender':<42} {'hierarchy':<34} {'tok/s wall clock':>22} {'×(a) wall clock':>20} "
            f"{'tok/target call':>15} {'ms/tok model-pred.':>18} {'ms/tok wall clock':>17} "
            f"{'outside fwd (wall clock)':>24} {'= (a) greedy':>12}")
    lines = [f"== {title} ==", head]
    for r in section["rows"]:
        eq = "—" if r["greedy_equal_to_a"] is None else ("yes" if r["greedy_equal_to_a"] else "NO")
        lines.append(
            f"{r['label']:<42} {r['hierarchy']:<34} {_fmt_spread(r['tokens_per_s'], 1):>22} "
            f"{_fmt_spread(r['speedup_vs_a'], 2, '×'):>20} {_fmt(r['tokens_per_target_call'], '.2f'):>15} "
            f"{_fmt(r['predicted_ms_per_token'], '.2f'):>18} {_fmt(r['ms_per_token'], '.2f'):>17} "
            f"{_pct(r['outside_forward_share']):>24} {eq:>12}")
    q = section["ratios"]
    lines.append(f"ratios of tokens/s (wall clock), median (min–max) over {q['c/b']['n']} paired prompt×repeat runs: "
                 f"(c)/(b) = {_fmt_spread(q['c/b'], 2, '×')}   (d)/(c) = {_fmt_spread(q['d/c'], 2, '×')}   "
                 f"(b)/(a) = {_fmt_spread(q['b/a'], 2, '×')}" + _lookup_ratio(q))
    return "\n".join(lines)


def _lookup_ratio(q: dict) -> str:
    """The (c) ÷ transformers prompt lookup ratio, when the family has the n-gram level, and the
    ratios to llama.cpp's own contenders, when they ran."""
    names = {"c/b-lookup": "(c)/(b prompt lookup)", "g/a": "(g)/(a)", "d/g": "(d)/(g)", "h/g": "(h)/(g)",
             "d/h": "(d)/(h)", "d/h-lookup": "(d)/(h′)", "f-ar/g": "(f target alone)/(g)", "c/h": "(c)/(h)",
             "d/best-llamacpp": "(d)/(best of g, h, h′)"}
    return "".join(f"   {label} = {_fmt_spread(q[key], 2, '×')}" for key, label in names.items()
                   if q.get(key, {}).get("n"))


def _skipped(meta: dict) -> list[str]:
    return [f"(not run: {why})" for why in (meta.get("skipped") or {}).values()]


def format_report(report: dict) -> str:
    m = report["meta"]
    lines = [f"hsd bench · {m['date_utc']} · device {m['device']} ({m['device_name']}) · torch {m['torch']} · "
             f"transformers {m['transformers']}",
             f"family {m['family']}: {', '.join(m['models'])} · {m['n_prompts']} prompts × {m['repeats']} repeats · "
             f"{m['max_new_tokens']} new tokens · {m['eos']['note']}",
             "tok/s and ×(a): wall clock, median (min–max) over prompts × repeats, ×(a) paired per prompt; "
             "ms/tok model-predicted: hsd.latency on the profile (our derivation); outside fwd: share of wall "
             "clock outside model forward passes", ""]
    if m["repeats"] == 1:
        lines += [SMOKE_TEST, ""]
    for section in report["sections"]:
        lines += [format_section(section), ""]
    lines += _skipped(m)
    pt = m["profile_meta"].get("temperature")
    if pt is not None:
        lines.append(f"(profile acceptance measured at T={pt:g}; predictions use it at every temperature)")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The same tables as ``format_report`` in Markdown (for README / RESULTS files)."""
    m = report["meta"]
    lines = [f"Device: {m['device']} ({m['device_name']}), {m['date_utc']}; torch {m['torch']}, "
             f"transformers {m['transformers']}. Family: {', '.join(m['models'])}. "
             f"{m['n_prompts']} prompts × {m['repeats']} repeats × {m['max_new_tokens']} new tokens; "
             f"{m['eos']['note']}.", ""]
    if m["repeats"] == 1:
        lines += [f"*{SMOKE_TEST}.*", ""]
    if m.get("command"):
        lines += [f"Command: `{m['command']}`", ""]
    for s in report["sections"]:
        title = "Greedy (T=0)" if s["greedy"] else f"Sampled (T={s['temperature']:g})"
        lines += [f"**{title}**", "",
                  "| contender | hierarchy | tokens/s (wall clock), median (min–max) | speedup vs (a) (wall clock) "
                  "| tokens / target call | ms/token (model-predicted) | ms/token (wall clock) "
                  "| outside forwards (wall clock) | = (a) greedy |",
                  "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
        for r in s["rows"]:
            eq = "—" if r["greedy_equal_to_a"] is None else ("yes" if r["greedy_equal_to_a"] else "**no**")
            lines.append(f"| {r['label']} | {r['hierarchy']} | {_fmt_spread(r['tokens_per_s'], 1)} "
                         f"| {_fmt_spread(r['speedup_vs_a'], 2, '×')} | {_fmt(r['tokens_per_target_call'], '.2f')} "
                         f"| {_fmt(r['predicted_ms_per_token'], '.2f')} | {_fmt(r['ms_per_token'], '.2f')} "
                         f"| {_pct(r['outside_forward_share'])} | {eq} |")
        q = s["ratios"]
        lines += ["", f"Paired ratios of tokens/s (wall clock), median (min–max) over {q['c/b']['n']} prompt × repeat "
                      f"runs: **(c)/(b) = {_fmt_spread(q['c/b'], 2, '×')}**, **(d)/(c) = {_fmt_spread(q['d/c'], 2, '×')}**, "
                      f"(b)/(a) = {_fmt_spread(q['b/a'], 2, '×')}, (c)/(a) = {_fmt_spread(q['c/a'], 2, '×')}"
                      f"{_lookup_ratio(q).replace('   ', ', ')}.", ""]
    lines += _skipped(m)
    return "\n".join(lines)


def write_figure(report: dict, html_path, plotlyjs: str = "embed") -> list[str]:
    """Write the figure as HTML and, when kaleido is installed, as PNG next to it.  ``plotlyjs``:
    "embed" (self-contained, works offline, ~5 MB) or "cdn" (small; the browser fetches plotly.js)."""
    from visual.bench import figure_bench       # the one lazy hsd -> visual import (tests/test_layers.py)

    fig = figure_bench(report)
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(html_path), include_plotlyjs=True if plotlyjs == "embed" else "cdn", full_html=True)
    written = [str(html_path)]
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return written
    png = html_path.with_suffix(".png")
    try:
        fig.write_image(str(png), width=1400, scale=1)
        written.append(str(png))
    except Exception as e:  # kaleido present but no browser: HTML only, say so
        print(f"note: PNG not written ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
              file=sys.stderr)
    return written
