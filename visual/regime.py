"""The regime map: where a stack of drafts beats the best single draft (``hsd.plan.regime``).

A heat map over two what-if axes; each cell is the optimum's model-predicted speedup over the
best hierarchy without a stack (1.00× = no stack pays), with the optimum's number of draft levels written in
it, a line where stacks start to pay, and a star where the measured profile sits.  Reads a
``RegimeMap`` (plain data) only.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from visual import theme

PAYS = 1.01          # the contour: a stack wins by at least 1 %


def _position(values, x: float, log: bool) -> float:
    """Fractional cell index of ``x`` on an axis whose cells are ``values`` (equal-width cells)."""
    f = (lambda v: math.log(v)) if log else (lambda v: v)
    if x <= values[0]:
        return 0.0
    for i in range(len(values) - 1):
        a, b = f(values[i]), f(values[i + 1])
        if f(x) <= b:
            return i + (f(x) - a) / (b - a)
    return float(len(values) - 1)


def _tick(axis: str, v: float) -> str:
    return f"×{v:g}" if axis.endswith("×") else f"{v:g}"


def figure_regime(rmap, dark: bool = False) -> go.Figure:
    """Heat map of ``rmap.gain`` (see the module docstring)."""
    nx_, ny = len(rmap.xs), len(rmap.ys)
    top = max(max(row) for row in rmap.gain)
    green = theme.ACCEPT_COLOR
    base = theme.tint(theme.muted_color(dark), 0.75, dark)
    text = [[f"{g:.2f}×<br>{d} draft{'s' if d != 1 else ''}" if d else f"{g:.2f}×<br>target alone"
             for g, d in zip(row, drow)] for row, drow in zip(rmap.gain, rmap.depth)]
    hover = [[f"{rmap.x_axis} {_tick(rmap.x_axis, x)}, {rmap.y_axis} {_tick(rmap.y_axis, y)}<br>"
              f"optimum: {lab}<br>{g:.3f}× the best without a stack (model-predicted)"
              for x, g, lab in zip(rmap.xs, row, lrow)] for y, row, lrow in zip(rmap.ys, rmap.gain, rmap.labels)]
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        z=rmap.gain, x=list(range(nx_)), y=list(range(ny)), zmin=1.0, zmax=max(top, 1.05),
        colorscale=[[0.0, base], [1.0, green]], text=text, texttemplate="%{text}",
        textfont=dict(size=theme.fs(11)), hovertext=hover, hoverinfo="text", xgap=1, ygap=1,
        colorbar=dict(title=dict(text="stack gain", side="top"), thickness=14, len=0.8),
        name="speedup over the best without a stack"))
    if top >= PAYS and min(min(row) for row in rmap.gain) < PAYS:
        fig.add_trace(go.Contour(
            z=rmap.gain, x=list(range(nx_)), y=list(range(ny)), showscale=False, hoverinfo="skip",
            contours=dict(start=PAYS, end=PAYS, size=1, coloring="none"),
            line=dict(color=theme.text_color(dark), width=3, dash="dash"),
            name=f"a stack pays (≥ {PAYS:.2f}×)", showlegend=True))
    hx = _position(rmap.xs, rmap.here[0], rmap.x_axis.endswith("×"))
    hy = _position(rmap.ys, rmap.here[1], rmap.y_axis.endswith("×"))
    fig.add_trace(go.Scatter(
        x=[hx], y=[hy], mode="markers", name="this profile (measured)",
        marker=dict(symbol="star", size=16, color=theme.rgba(theme.REJECT_COLOR, 0.85),
                    line=dict(color=theme.text_color(dark), width=1.2)),
        hovertext=[f"the measured profile: {rmap.x_axis} {rmap.here[0]:.3g}, {rmap.y_axis} {rmap.here[1]:.3g}"],
        hoverinfo="text"))
    fig.update_xaxes(title_text=rmap.x_axis, tickvals=list(range(nx_)),
                     ticktext=[_tick(rmap.x_axis, v) for v in rmap.xs], range=[-0.5, nx_ - 0.5], showgrid=False)
    fig.update_yaxes(title_text=rmap.y_axis, tickvals=list(range(ny)),
                     ticktext=[_tick(rmap.y_axis, v) for v in rmap.ys], range=[-0.5, ny - 0.5], showgrid=False)
    return theme.apply(fig, dark=dark, height=theme.height("regime"),
                       title="When does a stack pay? (model-predicted)",
                       subtitle="cell: the optimum's gain over the best single draft (or the target alone) "
                                "and its drafts · ★ measured")
