"""Branch mass balancing for ONE verification (Zhou et al. 2026, arXiv 2601.05724; block
verification, Sun et al. 2024, arXiv 2403.10444; token-wise, Leviathan et al. 2023).

Reads the plain ``diagnostics`` dict of a ``Verified`` event (hsd/verify.py) -- no tensors.
Notation: at node t (draft prefix x_≤t) A_t(v) = c_t·p_t(v) is the capped target child mass
(for the token rule, p_t itself), B_t(v) = q_t(v) the draft child mass; D_t = Σ(B−A)_+ the draft
excess, E_t = Σ(A−B)_+ the target deficit.  The rejected mass walks back from the leaf; at node t
a share E_t/D_t is resampled into the deficit children, the rest steps back to the parent.
"""
from __future__ import annotations

import math
from typing import Callable

import plotly.graph_objects as go

from visual import theme


def _get(event, name: str, default=None):
    return event.get(name, default) if isinstance(event, dict) else getattr(event, name, default)


def _status(t: int, n_accepted: int) -> str:
    return theme.ACCEPT_SYMBOL if t < n_accepted else (theme.REJECT_SYMBOL if t == n_accepted else "○")


def _vocab_text(vid: int, t: int, event, id_to_text) -> str:
    proposed, texts = _get(event, "proposed", ()), _get(event, "proposed_texts", ())
    if t < len(proposed) and vid == proposed[t] and t < len(texts):
        return texts[t]
    if id_to_text is not None:
        try:
            return id_to_text(vid)
        except Exception:  # a bad id must not break the picture
            pass
    return f"#{vid}"


def _capped(ratios: list[float]) -> list[float]:
    """c_0 = 1, c_t = min(1, c_{t-1} ρ_t) (Sun et al. 2024, Alg. 2)."""
    c = [1.0]
    for r in ratios:
        c.append(min(1.0, c[-1] * r) if c[-1] > 0 else 0.0)
    return c


def whole_block_acceptance(ratios: list[float]) -> dict[str, float]:
    """P(keep the whole block) under the three rules, from the per-position ratios ρ_t."""
    tokenwise = math.prod(min(1.0, r) for r in ratios)
    uncapped = 0.0 if any(r == 0 for r in ratios) else min(1.0, math.exp(sum(math.log(r) for r in ratios)))
    return {"token-wise Π min(1,ρ)": tokenwise, "capped c_γ": _capped(ratios)[-1],
            "uncapped min(1,Πρ) (lossy)": uncapped}


def _balance(d: dict, rule: str):
    """Per node (excess D_t, deficit E_t, capped c_t) from whichever keys the rule reported."""
    ratios = d.get("ratios", [])
    c = d.get("capped") or _capped(ratios)
    gamma = len(ratios)
    if "excess" in d:
        return d["excess"], d["deficit"], c[:gamma]
    if "residual_mass" in d:   # block: E_t = Z_t and Σ(B−A) = 1 − c_t, so D_t = E_t + 1 − c_t
        e = d["residual_mass"]
        return [et + 1 - ct for et, ct in zip(e, c)], e, c[:gamma]
    return None, None, c[:gamma]


def _flow(d: dict):
    """Per node (arriving, resampled, stepped back) of the backward scan; token rule: forward
    (reach t, reject at t, go on)."""
    if "arriving" in d:
        arr, res = d["arriving"], d["resampled"]
        back = d.get("stepped_back") or [a - r for a, r in zip(arr, res)]
        return arr, res, back, True
    reach, beta = d.get("reach_prob", []), d.get("accept_prob", [])
    res = [r * (1 - b) for r, b in zip(reach, beta)]
    return reach[: len(beta)], res, [r - s for r, s in zip(reach, res)], False


MAX_BARS = {False: 48, True: 30}     # vocabulary bars in the top row (fewer in the presenter view)


def _node_bars(fig, event, d, id_to_text, dark):
    """Row 1: for each node t the top vocabulary entries, stacked overlap / excess / deficit (as
    many per node as fit: the drafted token first, then by mass)."""
    nodes, n_acc = d["nodes"], _get(event, "n_accepted", 0)
    per_node = max(2, MAX_BARS[theme.presenter()] // max(len(nodes), 1))
    cats, toks, overlap, excess, deficit, hover = [], [], [], [], [], []
    proposed = _get(event, "proposed", ())
    for t, node in enumerate(nodes):
        label = f"node {t} {_status(t, n_acc)}"
        used = set()
        entries = list(zip(node["ids"], node["target"], node["draft"]))
        drafted = proposed[t] if t < len(proposed) else None
        keep = sorted(range(len(entries)), key=lambda i: (entries[i][0] != drafted, -max(entries[i][1:])))
        for vid, a, b in (entries[i] for i in sorted(keep[:per_node])):       # in the rule's own order
            txt = theme.escape_token(_vocab_text(vid, t, event, id_to_text), 6)
            if t < len(proposed) and vid == proposed[t]:
                txt = "▸" + txt
            if txt in used:
                txt += f" #{vid}"
            used.add(txt)
            cats.append(label), toks.append(txt)
            overlap.append(min(a, b)), excess.append(max(b - a, 0.0)), deficit.append(max(a - b, 0.0))
            hover.append(f"{label} · '{txt}'<br>A (target) = {a:.4f}<br>B (draft) = {b:.4f}")
    x = [cats, toks]
    parts = [("overlap min(A,B): kept", overlap, theme.ACCEPT_COLOR, ""),
             ("draft excess (B−A)₊: rejected", excess, theme.REJECT_COLOR, "/"),
             ("target deficit (A−B)₊: resampled into", deficit, theme.level_color(_get(event, "level", 1)), ".")]
    for name, y, color, shape in parts:
        pattern = dict(shape=shape, fgcolor=theme.text_color(dark), fgopacity=0.5)
        fig.add_trace(go.Bar(name=name, x=x, y=y, marker=dict(color=color, pattern=pattern), customdata=hover,
                             hovertemplate="%{customdata}<br>" + name + ": %{y:.4f}<extra></extra>"),
                      row=1, col=1)


def _balance_panel(fig, d, rule, level, dark):
    excess, deficit, c = _balance(d, rule)
    nodes = list(range(len(c)))
    if excess is not None:
        fig.add_trace(go.Bar(name="D_t excess", offsetgroup="D", x=nodes, y=excess, showlegend=False,
                             marker=dict(color=theme.REJECT_COLOR, pattern=dict(shape="/")),
                             hovertemplate="node %{x}: D = %{y:.4f}<extra></extra>"), row=2, col=1)
        fig.add_trace(go.Bar(name="E_t deficit", offsetgroup="E", x=nodes, y=deficit, showlegend=False,
                             marker=dict(color=theme.level_color(level), pattern=dict(shape=".")),
                             hovertemplate="node %{x}: E = %{y:.4f}<extra></extra>"), row=2, col=1)
    else:
        fig.add_trace(go.Bar(name="accept prob", x=nodes, y=d.get("accept_prob", []), showlegend=False,
                             marker_color=theme.ACCEPT_COLOR,
                             hovertemplate="node %{x}: min(1,ρ) = %{y:.4f}<extra></extra>"), row=2, col=1)
    if rule == "token":     # the token rule has no running ratio
        return
    fig.add_trace(go.Scatter(name="c_t", x=nodes, y=c, mode="lines+markers", showlegend=False,
                             line=dict(color=theme.text_color(dark), dash="dot"),
                             marker=dict(symbol="diamond", size=8),
                             hovertemplate="node %{x}: c = %{y:.4f}<extra></extra>"), row=2, col=1)


def _flow_panel(fig, d, level, dark):
    arriving, resampled, back, backward = _flow(d)
    nodes = list(range(len(arriving)))
    second = "stepped back" if backward else "passed on"
    fig.add_trace(go.Bar(name="resampled here", x=nodes, y=resampled, showlegend=False,
                         marker=dict(color=theme.level_color(level), pattern=dict(shape=".")),
                         hovertemplate="node %{x}: resampled %{y:.4f}<extra></extra>"), row=2, col=2)
    fig.add_trace(go.Bar(name=second, x=nodes, y=back, showlegend=False,
                         marker=dict(color=theme.muted_color(dark), pattern=dict(shape="x")),
                         hovertemplate="node %{x}: " + second + " %{y:.4f}<extra></extra>"), row=2, col=2)
    fig.add_trace(go.Scatter(name="arriving", x=nodes, y=arriving, mode="markers", showlegend=False,
                             marker=dict(symbol="line-ew-open", size=26, color=theme.text_color(dark),
                                         line=dict(width=3)),
                             hovertemplate="node %{x}: arriving %{y:.4f}<extra></extra>"), row=2, col=2)


def _accept_all_panel(fig, d, rule, dark):
    values = whole_block_acceptance(d.get("ratios", []))
    used = {"token": 0, "block": 1, "hsd": 1, "hsd-uncapped": 2}.get(rule, 1)
    labels = ["token", "capped", "uncapped"]          # short: the hover names them in full
    colors = [theme.level_color(1), theme.ACCEPT_COLOR, theme.REJECT_COLOR]
    text = [f"{v:.3f}" + (" ◀ used" if i == used else "") for i, v in enumerate(values.values())]
    fig.add_trace(go.Bar(x=labels, y=list(values.values()), text=text, textposition="outside", showlegend=False,
                         marker=dict(color=colors, opacity=[1.0 if i == used else 0.45 for i in range(3)],
                                     pattern=dict(shape=["", "", "/"])),
                         customdata=list(values.keys()), hovertemplate="%{customdata} = %{y:.4f}<extra></extra>"),
                  row=2, col=3)


def figure_mass_balance(event, id_to_text: Callable[[int], str] | None = None, dark: bool = False) -> go.Figure:
    """One verification, four panels: (top) per node t the top vocabulary entries, draft mass B vs
    capped target mass A stacked as overlap / draft excess / target deficit, the drafted token
    marked ▸ and the node's fate ✓/✗/○; (bottom) D_t vs E_t with c_t, the backward scan's flow
    (arriving / resampled / stepped back), and whole-block acceptance capped vs uncapped (the one
    this rule uses highlighted).  Greedy verifications get a message instead."""
    d = _get(event, "diagnostics") or {}
    rule, level = _get(event, "rule", "?"), _get(event, "level", 1)
    n_acc, gamma = _get(event, "n_accepted", 0), len(_get(event, "proposed", ()))
    head = f"round {_get(event, 'round', '?')} · L{level - 1} → L{level} · {rule} · kept {n_acc}/{gamma}"
    if d.get("greedy") or "nodes" not in d:
        marks = " ".join(_status(t, n_acc) for t in range(gamma))
        return theme.figure_empty(f"<b>{head}</b><br>{marks}<br>greedy: exact match check, no mass to balance<br>"
                                  "(a draft is kept while it equals the verifier's argmax).", dark=dark)
    backward = "arriving" in d
    titles = ("", "Too much vs too little<br>mass, per node" if rule != "token" else "Chance to keep<br>each token",
              "Where the rejected<br>mass goes" if backward else "Where a<br>rejection happens",
              "Chance to keep<br>the whole block")
    fig = theme.subplots(rows=2, cols=3, specs=[[{"colspan": 3}, None, None], [{}, {}, {}]],
                        row_heights=[0.52, 0.48], vertical_spacing=0.24, horizontal_spacing=0.09,
                        subplot_titles=titles)
    _node_bars(fig, event, d, id_to_text, dark)
    _balance_panel(fig, d, rule, level, dark)
    _flow_panel(fig, d, level, dark)
    _accept_all_panel(fig, d, rule, dark)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="mass", row=1, col=1)
    fig.update_yaxes(range=[0, 1.18], row=2, col=3)
    fig.update_xaxes(tickangle=0, row=2, col=3)
    fig.update_xaxes(title_text="node t", dtick=1, row=2, col=1)
    fig.update_xaxes(title_text="node t", dtick=1, row=2, col=2)
    fig.update_xaxes(tickfont=dict(size=theme.fs(12)), tickangle=0, row=1, col=1)
    nxt = theme.escape_token(_get(event, "next_text", ""), 12)
    sym = theme.BONUS_SYMBOL if _get(event, "next_kind") == "bonus" else theme.REPLACE_SYMBOL
    kind = {"token": "Token-wise rejection", "block": "Block verification"}.get(rule, "Branch mass balancing")
    title = f"{kind} · {head}, then {sym} {nxt}"
    fig.update_layout(legend_traceorder="normal")
    sub = ("A = capped target c_t·p_t" if rule != "token" else "A = target p_t") + \
        ", B = draft q_t · ▸ drafted token · node ✓ kept ✗ rejected ○ not reached"
    for ann in fig.layout.annotations:      # subplot titles
        ann.font = dict(size=theme.fs(15), color=theme.text_color(dark))
    caption = _wrapped(_caption(rule, backward), int(CAPTION_PX / (0.55 * theme.fs(12))))
    fig.add_annotation(text=caption, xref="paper", yref="paper", x=0, y=-0.1, xanchor="left",
                       yanchor="top", showarrow=False, align="left",
                       font=dict(size=theme.fs(12), color=theme.text_color(dark)))
    if d.get("lossy"):
        sub = "<b>LOSSY teaching variant</b> (uncapped joint ratio) · " + sub.replace(" (top entries per node)", "")
    theme.apply(fig, dark=dark, height=theme.height("mass_balance"), title=title, subtitle=sub)
    lines = caption.count("<br>") + 1            # room for the caption below the bottom row's axis titles
    height = theme.height("mass_balance")
    return theme.set_layout(fig, margin=dict(b=round(0.11 * height + 1.45 * theme.fs(12) * lines + 16)))


CAPTION_PX = 900        # the caption's width: the panel spans a 1024-1400 px page


def _wrapped(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (Plotly does not wrap)."""
    import textwrap

    return "<br>".join(line for part in text.split("<br>") for line in textwrap.wrap(part, max(width, 20)))


def _caption(rule: str, backward: bool) -> str:
    """The notation of the bottom row, in words (the titles stay plain)."""
    if rule == "token":
        return ("Left: min(1, ρ_t), ρ_t = p_t(x_t) / q_t(x_t), the chance each drafted token is kept. Middle: how much "
                "probability reaches node t and is rejected there (resampled from the target's leftover) or passed on. "
                "Right: the chance to keep the whole block under each rule; ◀ marks the one used.")
    flow = ("mass arriving at node t (—) is resampled there into the deficit children with probability E_t / D_t (·); "
            "the rest steps back to the parent (×)" if backward else "mass reaching node t (—) is rejected there (·) "
            "or passed on (×)")
    return ("Left: D_t = Σ(B − A)₊, draft mass where the target wants less (/), against E_t = Σ(A − B)₊, target mass "
            "the draft missed (·); ◆ c_t = min(1, c_(t−1) · ρ_t), the capped running ratio.<br>"
            f"Middle: {flow}. Right: the chance to keep the whole block; ◀ marks the rule used.")
