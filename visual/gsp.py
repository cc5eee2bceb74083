"""The hierarchy optimiser's graph (generalised shortest path, docs/design.md §4) with the chosen path.

Reads a ``Plan`` (hsd/optimize.py) duck-typed: ``plan.graph`` is a ``networkx.DiGraph`` with nodes
``("draft", model, buffer)`` / ``("target", model)`` (attrs ``model``, ``name``, ``buffer``,
``best_cost_ms``) and arcs lower → upper (attrs ``cost_ms``, ``gain``, ``on_optimal``);
``plan.path`` the optimal nodes bottom → target; ``chain``, ``names``, ``buffers``,
``expected_ms_per_token``, ``speedup_vs_ar``, ``runners_up``.  The latency model is ours
(docs/design.md §4), so every number here is model-predicted.

Layout is a manual grid: x = model index (smallest left, target right), y = buffer.  Thousands
of arcs would be unreadable, so only each node's best incoming arc is drawn (faint), plus
the optimal path (thick, arrows, labels) and the user's current hierarchy (outlined, dashed).
"""
from __future__ import annotations

import plotly.graph_objects as go

from visual import theme


def _attr(obj, name, default=None):
    if obj is None:
        return default
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _positions(graph) -> tuple[dict, float]:
    """node → (x, y); the target sits at mid height of the buffer range."""
    buffers = [graph.nodes[n].get("buffer") for n in graph.nodes if graph.nodes[n].get("buffer") is not None]
    lo, hi = (min(buffers), max(buffers)) if buffers else (0, 1)
    y_target = (lo + hi) / 2
    pos = {}
    for n, a in graph.nodes(data=True):
        model = a.get("model", n[1])
        buf = a.get("buffer")
        pos[n] = (model, y_target if buf is None else buf)
    return pos, y_target


def _arc_value(graph, u, v) -> float:
    """Cost of node v when fed by u (hsd/optimize.py): gain·(C_u + cost_ms)."""
    a = graph.edges[u, v]
    return a.get("gain", 1.0) * (graph.nodes[u].get("best_cost_ms", 0.0) + a.get("cost_ms", 0.0))


def _context_arcs(graph) -> list[tuple]:
    """A light subset: for each node, the incoming arc that realises its best cost (none when the
    node is best as the bottom level, i.e. its leaf cost wins)."""
    arcs = []
    for v in graph.nodes:
        preds = list(graph.predecessors(v))
        if not preds:
            continue
        u = min(preds, key=lambda p: _arc_value(graph, p, v))
        best = graph.nodes[v].get("best_cost_ms")
        leaf = graph.nodes[v].get("leaf_cost_ms")
        if leaf is not None and best is not None and leaf <= best * (1 + 1e-9):
            continue
        arcs.append((u, v))
    return arcs


def _segments(arcs, pos) -> tuple[list, list]:
    xs, ys = [], []
    for u, v in arcs:
        xs += [pos[u][0], pos[v][0], None]
        ys += [pos[u][1], pos[v][1], None]
    return xs, ys


def _current_nodes(current) -> list[tuple]:
    """Nodes of the user's hierarchy: ``current`` has ``chain`` (model indices, bottom → target)
    and ``buffers`` (one per drafter), as a dict, an object, or a ``(chain, buffers)`` tuple."""
    if current is None:
        return []
    if isinstance(current, (tuple, list)) and len(current) == 2 and not isinstance(current[0], (int, str)):
        chain, buffers = current
    else:
        chain, buffers = _attr(current, "chain", []), _attr(current, "buffers", [])
    chain, buffers = list(chain), list(buffers)
    return [("draft", m, b) for m, b in zip(chain[:-1], buffers)] + ([("target", chain[-1])] if chain else [])


def _node_trace(graph, pos, on_path: set, dark: bool) -> go.Scatter:
    nodes = list(graph.nodes)
    hover = []
    for n in nodes:
        a = graph.nodes[n]
        role = "target" if n[0] == "target" else f"drafter, buffer {a.get('buffer')}"
        hover.append(f"{a.get('name', n)} ({role})<br>best cost {a.get('best_cost_ms', float('nan')):.3f} ms"
                     + ("<br>on the optimal path" if n in on_path else ""))
    return go.Scatter(
        x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers", name="(model, buffer) node",
        marker=dict(size=[16 if n in on_path else 9 for n in nodes],
                    color=[theme.level_color(graph.nodes[n].get("model", n[1])) for n in nodes],
                    line=dict(width=[2 if n in on_path else 0.5 for n in nodes], color=theme.text_color(dark))),
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", showlegend=False)


def _path_annotations(graph, path, pos, dark) -> list[dict]:
    """The optimal path's arrows and labels, as layout annotations (plain data: one layout update)."""
    out = []
    for u, v in zip(path[:-1], path[1:]):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        out.append(dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                        showarrow=True, arrowhead=3, arrowsize=1.3, arrowwidth=2.5,
                        arrowcolor=theme.ACCEPT_COLOR, standoff=9, startstandoff=9))
        a = graph.edges[u, v] if graph.has_edge(u, v) else {}
        buf = graph.nodes[u].get("buffer")
        label = f"T={buf}"
        if a.get("gain"):   # into the target gain = 1/E[tokens per target call]; else calls per call
            label += f" · {1 / a['gain']:.2f} tok/call" if v[0] == "target" else f" · ×{a['gain']:.2f} calls"
        out.append(dict(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=label, showarrow=False, yshift=12,
                        font=dict(size=theme.fs(12), color=theme.text_color(dark)),
                        bgcolor=theme.rgba(theme.background(dark)[:7], 0.8)))
    return out


def figure_gsp(plan, current=None, dark: bool = False) -> go.Figure:
    """Optimiser graph: nodes (model, buffer) on a grid (x = model, y = buffer, colour = model's
    level colour), faint context arcs (each node's best incoming arc), up to three runners-up
    dotted, the optimal path thick green with arrows and labels (buffer T; calls per call, or
    tokens per target call on the arc into the target), the current hierarchy outlined with a dashed
    line.  Hover a node for its best cost (model-predicted ms)."""
    graph = _attr(plan, "graph")
    if graph is None or graph.number_of_nodes() == 0:
        return theme.figure_empty("No optimiser plan yet: profile the models first.", dark=dark)
    pos, y_target = _positions(graph)
    path = list(_attr(plan, "path", []) or [])
    on_path = set(path)
    fig = go.Figure()
    xs, ys = _segments(_context_arcs(graph), pos)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="best arc into each node", hoverinfo="skip",
                             line=dict(width=0.8, color=theme.rgba(theme.muted_color(dark), 0.7))))
    for i, runner in enumerate((_attr(plan, "runners_up", []) or [])[:3]):
        rpath = [n for n in (_attr(runner, "path", None) or _current_nodes(runner)) if n in pos]
        rx, ry = _segments(list(zip(rpath[:-1], rpath[1:])), pos)
        fig.add_trace(go.Scatter(x=rx, y=ry, mode="lines", name="runners-up", showlegend=i == 0,
                                 legendgroup="runners", hoverinfo="skip",
                                 line=dict(width=1.8, dash="dot", color=theme.level_color(3))))
    cur = _current_nodes(current)
    if cur:
        cpos = [pos.get(n, (n[1], n[2] if n[0] == "draft" else y_target)) for n in cur]
        fig.add_trace(go.Scatter(x=[p[0] for p in cpos], y=[p[1] for p in cpos], mode="lines+markers",
                                 name="your hierarchy", hoverinfo="skip",
                                 line=dict(width=2, dash="dash", color=theme.REJECT_COLOR),
                                 marker=dict(symbol="circle-open", size=24,
                                             line=dict(width=3, color=theme.REJECT_COLOR))))
    px_, py_ = _segments(list(zip(path[:-1], path[1:])), pos)
    fig.add_trace(go.Scatter(x=px_, y=py_, mode="lines", name="optimal path", hoverinfo="skip",
                             line=dict(width=5, color=theme.ACCEPT_COLOR)))
    fig.add_trace(_node_trace(graph, pos, on_path, dark))
    theme.set_layout(fig, annotations=_path_annotations(graph, path, pos, dark), **_axes(graph))
    title, subtitle = _title(plan)
    return theme.apply(fig, dark=dark, height=theme.height("gsp"), title=title, subtitle=subtitle or None)


def _axes(graph) -> dict:
    """The x (models) and y (buffers) axes, as layout properties.  Model names lose the prefix
    they all share (say 'hsd-family-'), so five of them fit under the axis; the axis title says so."""
    full = {a.get("model", n[1]): str(a.get("name", f"model {n[1]}")) for n, a in graph.nodes(data=True)}
    short, prefix = theme.compact_names([full[m] for m in sorted(full)])
    names = {}
    for n, a in graph.nodes(data=True):
        m = a.get("model", n[1])
        label = theme.short_name(short[sorted(full).index(m)], 16)
        names[m] = label + ("<br>(target)" if n[0] == "target" else "")
    models = sorted(names)
    # the last label sits at the plot's right edge: Plotly hides a tick label that would cross
    # the figure's edge, so the target's is broken onto two lines and the range padded
    bufs = sorted({a.get("buffer") for _, a in graph.nodes(data=True) if a.get("buffer") is not None})
    step = max(1, len(bufs) // 12)
    title = "model (smallest left, target right" + (f"; names without '{prefix}'" if prefix else "") + ")"
    return dict(xaxis=dict(tickmode="array", tickvals=models, ticktext=[f"{m}: {names[m]}" for m in models],
                           range=[min(models) - 0.5, max(models) + 0.7], showgrid=False, zeroline=False,
                           automargin=True, title=dict(text=title)),
                yaxis=dict(tickmode="array", tickvals=bufs[::step], zeroline=False,
                           title=dict(text="buffer T (tokens handed up per call)"),
                           range=[min(bufs, default=0) - 1, max(bufs, default=1) + 1]))


def _title(plan) -> tuple[str, str]:
    """(title, subtitle): the prediction in the title, the chosen hierarchy below it."""
    names = _attr(plan, "names", None) or []
    buffers = list(_attr(plan, "buffers", None) or [])
    ms = _attr(plan, "expected_ms_per_token")
    sp = _attr(plan, "speedup_vs_ar")
    title = "Optimiser (GSP)"
    if ms is not None:
        title += f" · {ms:.2f} ms/token model-predicted"
    if sp is not None:
        title += f" · {sp:.2f}× vs AR"
    short, _ = theme.compact_names(list(names))
    parts = [f"{theme.short_name(n, 14)}[{b}]" for n, b in zip(short, buffers)]
    chain = " → ".join(parts + [theme.short_name(short[-1], 14)]) if names else ""
    acceptance = (_attr(plan, "acceptance", "") or "").replace("acceptance measured ", "acceptance ")
    subtitle = ("optimal: " + chain + " (buffer in brackets)") if chain else ""
    return title, subtitle + (f" · {acceptance}" if subtitle and acceptance else "")
