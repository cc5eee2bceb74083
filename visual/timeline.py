"""Per-level Gantt chart of one decode on a shared wall-clock axis (ms since the decode started).

Reads a ``hsd.trace.Trace`` only.  Assumes ``t_ms`` is the START of an event's span and
``dur_ms`` its wall-clock length (hsd/trace.py).  Does not use ``px.timeline`` (date axis).
"""
from __future__ import annotations

import plotly.graph_objects as go

from visual import theme

OUTPUT_LANE = "output"


def level_names(trace) -> list[str]:
    """Model names by level, smallest first; falls back to 'L0'.. when the trace has no Started."""
    start = trace.started
    if start is not None and start.models:
        return list(start.models)
    levels = [e.level for e in trace.events if hasattr(e, "level")]
    return [f"L{i}" for i in range(max(levels, default=0) + 1)]


def _lane(level: int, names: list[str]) -> str:
    return theme.level_label(level, names, len(names))


def _verify_hover(e) -> str:
    toks = " ".join(theme.escape_token(t, 12) for t in e.proposed_texts)
    sym = theme.REPLACE_SYMBOL if e.next_kind == "replacement" else theme.BONUS_SYMBOL
    return (f"round {e.round} · L{e.level} verifies L{e.level - 1} ({e.rule})<br>"
            f"accepted {e.n_accepted}/{len(e.proposed)} {theme.ACCEPT_SYMBOL}<br>"
            f"proposed: {toks}<br>next: {sym} {theme.escape_token(e.next_text, 12)} ({e.next_kind})<br>"
            f"{e.t_ms:.1f} → {e.t_ms + e.dur_ms:.1f} ms ({e.dur_ms:.2f} ms)")


def _draft_hover(e) -> str:
    toks = " ".join(theme.escape_token(t, 12) for t in e.texts)
    return (f"round {e.round} · L{e.level} drafts {len(e.tokens)} tokens "
            f"({e.forward_passes} one-token passes)<br>{toks}<br>"
            f"{e.t_ms:.1f} → {e.t_ms + e.dur_ms:.1f} ms ({e.dur_ms:.2f} ms)")


def _level_bars(trace, level: int, names: list[str]) -> go.Bar | None:
    """One Bar trace: every Drafted / Verified span of ``level``."""
    spans = [e for e in trace.events if e.kind in ("drafted", "verified") and e.level == level]
    if not spans:
        return None
    text = [f"{theme.ACCEPT_SYMBOL}{e.n_accepted}/{len(e.proposed)}" if e.kind == "verified"
            else f"{len(e.tokens)} tok" for e in spans]
    hover = [_verify_hover(e) if e.kind == "verified" else _draft_hover(e) for e in spans]
    return go.Bar(
        name=_lane(level, names), orientation="h", showlegend=False,     # the lane label names it
        y=[_lane(level, names)] * len(spans), base=[e.t_ms for e in spans],
        x=[max(e.dur_ms, 1e-3) for e in spans],
        marker=dict(color=theme.level_color(level), line=dict(width=0.5, color="rgba(0,0,0,0.35)")),
        text=text, textposition="inside", insidetextanchor="middle", textangle=0, textfont=dict(color="#111111"),
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
    )


def _prefill_bars(trace, names: list[str], dark: bool) -> go.Bar | None:
    pre = trace.of_kind("prefill")
    if not pre:
        return None
    return go.Bar(
        name="prompt prefill", orientation="h", y=[_lane(e.level, names) for e in pre],
        base=[e.t_ms for e in pre], x=[max(e.dur_ms, 1e-3) for e in pre],
        marker=dict(color=theme.muted_color(dark), pattern=dict(shape="/")),
        hovertext=[f"L{e.level} prefill: {e.n_tokens} prompt tokens, {e.dur_ms:.2f} ms" for e in pre],
        hovertemplate="%{hovertext}<extra></extra>",
    )


def _commit_markers(trace, dark: bool) -> go.Scatter | None:
    com = trace.of_kind("committed")
    if not com:
        return None
    hover = [f"round {e.round}: +{len(e.tokens)} tokens (total {e.total_tokens})<br>"
             f"{theme.escape_token(e.text, 60)}" for e in com]
    return go.Scatter(
        name="commit (target output)", x=[e.t_ms for e in com], y=[OUTPUT_LANE] * len(com),
        mode="markers+text" if len(com) <= 40 else "markers", text=[f"+{len(e.tokens)}" for e in com],
        textposition="top center",
        textfont=dict(size=theme.fs(11), color=theme.text_color(dark)),
        marker=dict(symbol="triangle-down", size=12, color=theme.text_color(dark)),
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", cliponaxis=False,
    )


def end_ms(trace) -> float:
    """When the last span of ``trace`` ended (ms since the decode started; wall clock)."""
    return max((getattr(e, "t_ms", 0.0) + (getattr(e, "dur_ms", 0.0) or 0.0) for e in trace.events), default=0.0)


def figure_timeline(trace, dark: bool = False, whole=None) -> go.Figure:
    """Gantt of one decode: one lane per level (target on top, level 0 at the bottom), a bar for
    every level-0 draft run and every verifier forward pass (text: accepted/proposed), prompt
    prefill hatched, and a top 'output' lane with a ▼ marker per commit (dotted guide lines).
    x = wall clock, ms since the decode started.  Hover gives tokens and accepted n/γ.  ``whole``:
    the complete trace that ``trace`` is the start of (the step-through): the axis then spans the
    whole decode, so it does not rescale from step to step."""
    names = level_names(whole if whole is not None else trace)
    if not any(e.kind in ("prefill", "drafted", "verified") for e in trace.events):
        return theme.figure_empty("Waiting for the first forward pass…", dark=dark)
    fig = go.Figure()
    for bar in [_prefill_bars(trace, names, dark)] + [_level_bars(trace, lv, names) for lv in range(len(names))]:
        if bar is not None:
            fig.add_trace(bar)
    commits = _commit_markers(trace, dark)
    if commits is not None:
        fig.add_trace(commits)
        # one dotted guide per commit, set in ONE layout update: add_vline per commit re-validates
        # every shape so far (quadratic; it was a third of the app's decode-thread time at 40 rounds)
        guide = dict(color=theme.muted_color(dark), width=1, dash="dot")
        theme.set_layout(fig, shapes=[dict(type="line", xref="x", yref="paper", x0=e.t_ms, x1=e.t_ms, y0=0, y1=1,
                                       line=guide, layer="below") for e in trace.of_kind("committed")])
    lanes = [_lane(lv, names) for lv in range(len(names))] + [OUTPUT_LANE]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=lanes, range=[-0.6, len(lanes) - 0.4])
    if whole is not None:
        fig.update_xaxes(range=[0, max(end_ms(whole), 1e-3) * 1.03])
    fig.update_xaxes(title_text="wall clock (ms since start)", rangemode="tozero")
    fig.update_layout(barmode="overlay", bargap=0.35)
    s = trace.summary()
    if trace.of_kind("finished"):
        title = f"Timeline · {s.n_tokens} tokens in {s.wall_ms:.0f} ms (wall clock)"
    else:                                    # a decode still running, or one step of the step-through
        title = f"Timeline · {s.n_tokens} tokens committed after {end_ms(trace):.1f} ms (wall clock)"
    subtitle = f"{s.tokens_per_target_call:.2f} tokens / target call" if s.target_calls else None
    return theme.apply(fig, dark=dark, height=theme.height("timeline"), title=title, subtitle=subtitle)
