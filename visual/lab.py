"""Figures for the Learn tab's exactness lab and the what-if comparison.  Plain dicts in.

Exactness lab (``figure_exactness``): each rule's EXACT output distribution over short sequences
(computed by enumeration elsewhere) next to the target's, with the total-variation distance.
Measured side by side (``figure_compare``): predicted (our latency model) vs measured (wall clock)
ms/token, and tokens per target call, for several hierarchies.
"""
from __future__ import annotations

import textwrap

import plotly.graph_objects as go

from visual import theme

RULE_COLORS = {"token": theme.LEVEL_COLORS[1], "block": theme.LEVEL_COLORS[0],
               "hsd": theme.ACCEPT_COLOR, "hsd-uncapped": theme.REJECT_COLOR}


def _target_color(dark: bool) -> str:
    return "#d0d4db" if dark else "#4b5563"


def _most_probable(lab: dict, k: int) -> tuple[dict, int]:
    """Keep the k sequences with the most mass under the target or any rule (order kept)."""
    seqs = lab.get("sequences", [])
    if len(seqs) <= k:
        return lab, 0
    rows = [lab.get("target", [])] + [r.get("probs", []) for r in lab.get("rules", {}).values()]
    score = [max(row[i] for row in rows if i < len(row)) for i in range(len(seqs))]
    keep = sorted(sorted(range(len(seqs)), key=lambda i: -score[i])[:k])
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    rules = {n: dict(r, probs=pick(r.get("probs", []))) for n, r in lab.get("rules", {}).items()}
    return dict(lab, sequences=pick(seqs), target=pick(lab.get("target", [])), rules=rules), len(seqs) - k


def figure_exactness(lab: dict, dark: bool = False, max_sequences: int = 24) -> go.Figure:
    """Grouped bars: for every output sequence, the target's probability (grey) and each rule's
    exact output probability; legend entries say lossless ✓ / LOSSY ✗ (a lossy rule's bars are
    hatched), a box lists each rule's TV distance and E[accepted].  At most ``max_sequences``
    (the most probable) are drawn."""
    if not lab or not lab.get("sequences"):
        return theme.figure_empty("Pick a toy example to compute the exact output distributions.", dark=dark)
    lab, dropped = _most_probable(lab, max_sequences)
    seqs = [theme.escape_token(s, 14) for s in lab.get("sequences", [])]
    rules = lab.get("rules", {})
    fig = go.Figure()
    fig.add_trace(go.Bar(name="target (exact)", x=seqs, y=lab.get("target", []),
                         marker=dict(color=_target_color(dark)),
                         hovertemplate="%{x}: target %{y:.6f}<extra></extra>"))
    notes = []
    for i, (name, r) in enumerate(rules.items()):
        lossless = bool(r.get("lossless", r.get("tv", 0.0) < 1e-9))
        tv = float(r.get("tv", 0.0))
        mark = f"{theme.ACCEPT_SYMBOL} lossless" if lossless else f"{theme.REJECT_SYMBOL} LOSSY"
        fig.add_trace(go.Bar(
            name=f"{name} {mark}", x=seqs, y=r.get("probs", []),
            marker=dict(color=RULE_COLORS.get(name, theme.level_color(i + 2)),
                        pattern=dict(shape="" if lossless else "/", fgcolor=theme.text_color(dark))),
            hovertemplate=f"%{{x}}: {name} %{{y:.6f}}<extra></extra>"))
        ea = r.get("expected_accepted")
        notes.append(f"<b>{name}</b>: TV = {tv:.2g} ({'≈ 0, ' + mark if lossless else mark})"
                     + (f", E[accepted] = {ea:.4g}" if ea is not None else ""))
    fig.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=1, y=1, xanchor="right",
                       yanchor="top", showarrow=False, align="left", font=dict(size=theme.fs(12)),
                       bgcolor=theme.rgba(theme.background(dark), 0.85), bordercolor=theme.muted_color(dark),
                       borderwidth=1)
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(title_text="output sequence (exact enumeration)")
    fig.update_yaxes(title_text="probability", rangemode="tozero")
    top = max([max(lab.get("target", [0]) or [0])] + [max(r.get("probs", [0]) or [0]) for r in rules.values()])
    fig.update_yaxes(range=[0, top * 1.45 + 1e-12])
    sub = "exact enumeration; TV = total-variation distance to the target (over all sequences)"
    if dropped:
        sub += f" · showing the {max_sequences} most probable sequences, {dropped} more hidden"
    return theme.apply(fig, dark=dark, height=theme.height("exactness"),
                       title="Exactness lab · each rule's output distribution vs the target's", subtitle=sub)


def figure_compare(summaries: dict, dark: bool = False) -> go.Figure:
    """Hierarchies measured side by side (label → {"predicted_ms_per_token" or None,
    "measured_ms_per_token", "tokens_per_target_call", "tokens_per_s"}, and when they ran several
    times "runs" with the spread "measured_min_ms_per_token" / "measured_max_ms_per_token"):
    left, predicted vs measured ms/token (lower is better; the measured bar is the median, its
    whisker the spread between runs); right, tokens per target call (higher is better)."""
    if not summaries:
        return theme.figure_empty("Run two or more hierarchies to compare them.", dark=dark)
    keys = list(summaries)
    get = lambda k: [summaries[key].get(k) for key in keys]  # noqa: E731
    labels = ["<br>".join(textwrap.wrap(str(key), 16)) or str(key) for key in keys]
    fig = theme.subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.12)
    pred = get("predicted_ms_per_token")
    fig.add_trace(go.Bar(name="model-predicted (our latency model)", x=labels, y=pred,
                         marker=dict(color=theme.LEVEL_COLORS[1], pattern=dict(shape="/")),
                         text=[f"{v:.2f}" if v is not None else "n/a" for v in pred], textposition="outside",
                         hovertemplate="%{x}: predicted %{y:.3f} ms/token<extra></extra>"), row=1, col=1)
    meas = get("measured_ms_per_token")
    tps = get("tokens_per_s")
    lo, hi = get("measured_min_ms_per_token"), get("measured_max_ms_per_token")
    spread = None
    if any(v is not None for v in lo + hi):
        spread = dict(type="data", symmetric=False, color=theme.text_color(dark), thickness=1.5, width=6,
                      array=[(h - m) if h is not None and m is not None else 0 for h, m in zip(hi, meas)],
                      arrayminus=[(m - low) if low is not None and m is not None else 0 for low, m in zip(lo, meas)])
    runs = max([r for r in get("runs") if r] or [1])
    fig.add_trace(go.Bar(name="measured (wall clock)" + (f", median of {runs} runs, whisker = spread" if runs > 1 else ""),
                         x=labels, y=meas, marker=dict(color=theme.LEVEL_COLORS[0]), error_y=spread,
                         text=[f"{v:.2f}" if v is not None else "" for v in meas], textposition="outside",
                         customdata=[f"{t:.1f} tokens/s" if t is not None else "" for t in tps],
                         hovertemplate="%{x}: measured %{y:.3f} ms/token · %{customdata} (wall clock)<extra></extra>"),
                  row=1, col=1)
    tpc = get("tokens_per_target_call")
    fig.add_trace(go.Bar(name="tokens / target call", x=labels, y=tpc, marker=dict(color=theme.LEVEL_COLORS[3]),
                         text=[f"{v:.2f}" if v is not None else "" for v in tpc], textposition="outside",
                         showlegend=False, hovertemplate="%{x}: %{y:.3f} tokens per target call<extra></extra>"),
                  row=1, col=2)
    fig.update_layout(barmode="group", bargap=0.3)
    ms_top = max([v for v in pred + meas + hi if v is not None] or [1.0])
    fig.update_yaxes(title_text="ms / token ↓<br>model-predicted vs wall clock", range=[0, ms_top * 1.2],
                     row=1, col=1)
    fig.update_yaxes(title_text="tokens / target call ↑<br>measured (wall-clock run)",
                     range=[0, max([v for v in tpc if v is not None] or [1.0]) * 1.2], row=1, col=2)
    fig.update_xaxes(tickangle=0, tickfont=dict(size=theme.fs(12)))
    title = "Measured (wall clock) vs model-predicted ms/token" + (f" · {runs} interleaved runs each" if runs > 1 else "")
    return theme.apply(fig, dark=dark, height=theme.height("compare"), title=title)
