"""Accept/reject map of one verifier level: rows = its verifications, columns = draft position.

Reads a ``hsd.trace.Trace`` only.  Cell colour AND symbol say what happened to the drafted token:
✓ accepted, ✗ rejected (the cell also shows ↻ the replacement the verifier sampled there),
+ bonus token (after a fully accepted block), and positions the verifier never reached (drafted
after a rejection) are grey cells with the discarded token in italics.  Cell text is cut to what
fits the column (``cell_chars``); the hover has every token whole.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from visual import theme
from visual.timeline import level_names

ACCEPTED, REJECTED, BONUS, NOT_REACHED = 0, 1, 2, 3
PANEL_PX = {False: 480, True: 1100}    # the heatmap's width on a 1024-1400 px page: half of it, or
                                       # all of it in the presenter view (its panels stack, one per row)


def _fills(level: int, dark: bool) -> list[str]:
    return [theme.tint(theme.ACCEPT_COLOR, 0.45, dark), theme.tint(theme.REJECT_COLOR, 0.3, dark),
            theme.tint(theme.level_color(level), 0.35, dark), theme.tint(theme.muted_color(dark), 0.55, dark)]


def _colorscale(level: int, dark: bool) -> list:
    fills = _fills(level, dark)
    scale = []
    for i, c in enumerate(fills):
        scale += [[i / len(fills), c], [(i + 1) / len(fills), c]]
    return scale


def replacement_chars(chars: int) -> int:
    """Characters of each token in a one-line rejected cell ('✗tok↻ new'), which holds two."""
    return max(0, (chars - 1) // 2)


def _shown(text: str, chars: int) -> str:
    """A token as its cell shows it: cut to ``chars`` (none at all when no character fits)."""
    return theme.escape_token(text, chars) if chars > 0 else ""


def cell_font(width: int) -> int:
    """The cells' font size in px: a little smaller when the map has many columns."""
    return theme.fs(12 if width <= 12 else 10.5)


def cell_chars(width: int) -> int:
    """How many characters of a token fit in one cell (the symbol and a space come on top) when
    the map has ``width`` columns; longer tokens are cut with '…' (the hover has them whole)."""
    cell_px = (PANEL_PX[theme.presenter()] - 90) / max(width, 1)
    return max(0, min(10, int(cell_px / (0.66 * cell_font(width))) - 2))     # 0: the symbol alone


def _row_labels(events) -> list[str]:
    """'round r', or 'round r · i' when the level verified several blocks in round r."""
    per_round: dict[int, int] = {}
    for e in events:
        per_round[e.round] = per_round.get(e.round, 0) + 1
    labels, seen = [], {}
    for e in events:
        seen[e.round] = seen.get(e.round, 0) + 1
        labels.append(f"round {e.round}" + (f" · {seen[e.round]}" if per_round[e.round] > 1 else ""))
    return labels


def _cell(e, pos: int, sep: str, chars: int) -> tuple[float, str, str]:
    """(code, cell text, hover) of draft position ``pos`` (0-based) of verification ``e``."""
    ratios = e.diagnostics.get("ratios", []) if isinstance(e.diagnostics, dict) else []
    rho = f"ρ = {ratios[pos]:.3g}" if pos < len(ratios) else ""
    tok = _shown(e.proposed_texts[pos], chars)
    nxt = _shown(e.next_text, chars)
    where = f"position {pos + 1}: '{theme.escape_token(e.proposed_texts[pos], 24)}' (from L{e.proposed_origins[pos]})"
    if pos < e.n_accepted:
        return ACCEPTED, f"{theme.ACCEPT_SYMBOL} {tok}", f"{where}<br>{theme.ACCEPT_SYMBOL} accepted · {rho}"
    if pos == e.n_accepted:
        if sep != "<br>":                    # one line: both tokens share the cell
            half = replacement_chars(chars)
            cell = (f"{theme.REJECT_SYMBOL}{_shown(e.proposed_texts[pos], half)}"
                    f"{theme.REPLACE_SYMBOL} {_shown(e.next_text, half)}")
        else:
            cell = f"{theme.REJECT_SYMBOL} {tok}{sep}{theme.REPLACE_SYMBOL} {nxt}"
        return (REJECTED, cell,
                f"{where}<br>{theme.REJECT_SYMBOL} rejected · {rho}<br>{theme.REPLACE_SYMBOL} replacement "
                f"'{theme.escape_token(e.next_text, 24)}' sampled by L{e.level}")
    return NOT_REACHED, f"<i>{tok}</i>", f"{where}<br>not reached: drafted after a rejection, discarded"


def _grid(shown, rows, width: int, sep: str, chars: int):
    """Heatmap z / text / hover (rows × width)."""
    z, text, hover = [], [], []
    for row, e in zip(rows, shown):
        zr, tr, hr = [], [], []
        for pos in range(width):
            if pos < len(e.proposed):
                code, t, h = _cell(e, pos, sep, chars)
            elif pos == len(e.proposed) and e.next_kind == "bonus":
                code, t = BONUS, f"{theme.BONUS_SYMBOL} {_shown(e.next_text, chars)}"
                h = f"bonus token '{theme.escape_token(e.next_text, 24)}' sampled by L{e.level} after a full accept"
            else:
                code, t, h = math.nan, "", ""
            zr.append(code), tr.append(t), hr.append(h)
        z.append(zr), text.append(tr), hover.append(hr)
    return z, text, hover


def figure_accept_map(trace, level: int | None = None, dark: bool = False, max_rows: int = 14) -> go.Figure:
    """Heatmap of the verifications done by ``level`` (default: the target): one row per
    verification (latest ``max_rows``), one column per draft position plus the bonus slot.
    Cells carry the token text (whitespace made visible) with ✓ / ✗ / ↻ / + symbols."""
    names = level_names(trace)
    level = len(names) - 1 if level is None else level
    events = [e for e in trace.of_kind("verified") if e.level == level]
    if not events:
        return theme.figure_empty(f"No verifications by level {level} yet.", dark=dark)
    shown = events[-max_rows:]
    width = max(len(e.proposed) for e in shown) + 1
    rows = _row_labels(events)[-max_rows:]
    sep = "<br>" if len(shown) <= 8 else " "     # two-line cells only when rows are tall enough
    chars = cell_chars(width)                      # narrower cells, shorter tokens (hover has all)
    z, text, hover = _grid(shown, rows, width, sep, chars)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(1, width + 1)), y=rows, text=text, texttemplate="%{text}",
        textfont=dict(size=cell_font(width), color=theme.text_color(dark)), customdata=hover,
        hovertemplate="%{y}<br>%{customdata}<extra></extra>", hoverongaps=False,
        colorscale=_colorscale(level, dark), zmin=-0.5, zmax=3.5, showscale=False, xgap=2, ygap=2,
    ))
    _legend_keys(fig, level, dark)
    fig.update_xaxes(title_text="draft position (+ = bonus token after a fully accepted block)",
                     tickmode="linear", dtick=1,
                     showgrid=False, zeroline=False, range=[0.5, width + 0.5])
    fig.update_yaxes(autorange="reversed", showgrid=False, type="category")
    # short title (the panel is half the page wide); the model names go in the subtitle
    title = f"Accept map · L{level - 1} → L{level} · {events[-1].rule}"
    if len(events) > max_rows:
        title += f" · last {max_rows} of {len(events)}"
    subtitle = (f"{theme.short_name(names[level - 1], 16)} drafts, checked by "
                f"{theme.short_name(names[level], 16)}") if level >= 1 else None
    return theme.apply(fig, dark=dark, height=theme.height("accept_map"), title=title, subtitle=subtitle)


def _legend_keys(fig: go.Figure, level: int, dark: bool) -> None:
    """Legend entries for the heatmap's discrete colours (a heatmap has no legend of its own)."""
    keys = [(f"{theme.ACCEPT_SYMBOL} accepted", theme.tint(theme.ACCEPT_COLOR, 0.45, dark)),
            (f"{theme.REJECT_SYMBOL} rejected → {theme.REPLACE_SYMBOL} replacement",
             theme.tint(theme.REJECT_COLOR, 0.3, dark)),
            (f"{theme.BONUS_SYMBOL} bonus (L{level})", theme.tint(theme.level_color(level), 0.35, dark)),
            ("<i>not reached</i> (discarded)", _fills(level, dark)[NOT_REACHED])]
    for name, color in keys:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker=dict(symbol="square", size=14, color=color)))
