"""The benchmark figure: a pure function of ``python -m hsd bench``'s JSON report (plain dict in,
Plotly figure out).  Tokens/s are wall clock; the dotted lines are the issue's targets."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


GROUP_COLORS = {"a": "#999999", "b": "#D55E00", "c": "#E69F00", "d": "#009E73", "e": "#56B4E9", "f": "#CC79A7"}


def figure_bench(report: dict):
    """Plotly figure of a bench report (plain dict in): per temperature, tokens/s (wall clock,
    median with min–max) per contender, and the per-prompt ratios (c)/(b) and (d)/(c)."""
    sections = report["sections"]
    titles = []
    for s in sections:
        name = "greedy" if s["greedy"] else f"T={s['temperature']:g}"
        titles += [f"{name}: tokens/s (wall clock), median and min–max",
                   f"{name}: paired ratios of tokens/s (wall clock)"]
    fig = make_subplots(rows=len(sections), cols=2, column_widths=[0.68, 0.32], subplot_titles=titles,
                        horizontal_spacing=0.2, vertical_spacing=0.12)
    for i, s in enumerate(sections, start=1):
        rows = s["rows"][::-1]
        y = [f"{r['label']}<br><sub>{r['hierarchy']}</sub>" for r in rows]
        med = [r["tokens_per_s"]["median"] for r in rows]
        fig.add_trace(go.Bar(
            x=med, y=y, orientation="h", showlegend=False,
            marker=dict(color=[GROUP_COLORS.get(r["group"], "#999999") for r in rows]),
            error_x=dict(type="data", symmetric=False,
                         array=[r["tokens_per_s"]["max"] - m for r, m in zip(rows, med)],
                         arrayminus=[m - r["tokens_per_s"]["min"] for r, m in zip(rows, med)]),
            text=[f"{m:.0f} tok/s · {r['speedup_vs_a']['median']:.2f}×(a)" for r, m in zip(rows, med)],
            textposition="outside", cliponaxis=False,
            hovertemplate="%{y}<br>%{x:.1f} tokens/s (wall clock, median)<extra></extra>"), row=i, col=1)
        for name, target in (("c/b", 1.5), ("d/c", 1.2)):
            pairs = _ratio_points(s, *name.split("/"))
            fig.add_trace(go.Box(y=pairs, name=f"({name[0]})/({name[2]})", boxpoints="all", jitter=0.4,
                                 pointpos=0, showlegend=False, marker=dict(color=GROUP_COLORS[name[0]]),
                                 hovertemplate=f"({name[0]})/({name[2]}) %{{y:.2f}}×<extra></extra>"),
                          row=i, col=2)
            fig.add_hline(y=target, line=dict(dash="dot", color=GROUP_COLORS[name[0]]), row=i, col=2)
        fig.add_hline(y=1.0, line=dict(color="#666666", width=1), row=i, col=2)
        top = max([r["tokens_per_s"]["max"] for r in rows if r["tokens_per_s"]["n"]] or [1.0])
        fig.update_xaxes(title_text="tokens/s (wall clock)", range=[0, 1.45 * top], row=i, col=1)
        fig.update_yaxes(title_text="ratio (wall clock); dotted: target", row=i, col=2)
    m = report["meta"]
    fig.update_layout(
        title=dict(text=f"hsd bench · {m['device_name']} · {m['date_utc']}<br><sub>{', '.join(m['models'])} · "
                        f"{m['n_prompts']} prompts × {m['repeats']} repeats × {m['max_new_tokens']} tokens</sub>"),
        height=150 + sum(80 + 42 * len(s["rows"]) for s in sections),
        template="plotly_white", margin=dict(l=300, r=30, t=110, b=50), font=dict(size=12))
    return fig


def _ratio_points(section: dict, num: str, den: str) -> list[float]:
    runs: dict[str, dict[tuple[int, int], float]] = {}
    for r in section["runs"]:
        runs.setdefault(r["contender"], {})[r["prompt"], r["repeat"]] = 1000.0 * r["n_tokens"] / r["wall_ms"]
    a, b = runs.get(num, {}), runs.get(den, {})
    return [a[k] / b[k] for k in sorted(a) if k in b]
