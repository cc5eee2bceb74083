"""Token colouring for ``gr.HighlightedText``: who produced every committed token.

Reads a ``hsd.trace.Trace`` only.  Categories (colours follow the level palette in theme.py):
- ``"L0 draft"``            drafted by level 0 and accepted by every level above;
- ``"L{i} replacement"``    sampled by level i from its residual after rejecting a draft;
- ``"L{i} bonus"``          sampled by level i after accepting a whole block;
- ``"L0 target"``           plain autoregressive decoding (a one-level "hierarchy").
``token_spans(trace, with_names=True)`` appends the model name, ``"L0 draft (tiny)"``; pair it
with ``token_color_map(names)`` (a legend with exactly this run's levels).  Without names the
static ``TOKEN_COLOR_MAP`` (levels 0..3) matches; ``token_color_map(n_levels=K+1)`` for deeper
stacks.  Gradio's HighlightedText legend lists every key of its color_map, so prefer the per-run
map, or ``show_legend=False`` plus ``legend_html(names)``.
"""
from __future__ import annotations

import html

from visual import theme

STATIC_LEVELS = 4   # TOKEN_COLOR_MAP covers L0..L3; deeper stacks: token_color_map(n_levels=...)


def _category(level: int, kind: str, names=None) -> str:
    cat = f"L{level} {kind}"
    return f"{cat} ({names[level]})" if names is not None and level < len(names) else cat


BONUS_TINT = 0.55   # a bonus token's colour: its level's colour this far towards white (tests check
                    # every pair of categories apart under three colour-vision deficiencies)


def _colors(level: int) -> dict[str, str]:
    c = theme.level_color(level)
    return {"draft": c, "target": c, "replacement": c, "bonus": theme.tint(c, BONUS_TINT)}


def category_color(category: str) -> str:
    """The colour of a ``token_spans`` category ('L1 bonus (m)' -> L1's bonus colour)."""
    head = category.split(" ", 2)
    level = int(head[0][1:]) if head and head[0][1:].isdigit() else 0
    kind = head[1] if len(head) > 1 else "draft"
    return _colors(level).get(kind, theme.level_color(level))


def token_color_map(names=None, n_levels: int | None = None) -> dict[str, str]:
    """category → colour for ``gr.HighlightedText(color_map=...)``; named when ``names`` given."""
    exact = names is not None or n_levels is not None          # this run's levels only
    n = len(names) if names is not None else (n_levels or STATIC_LEVELS)
    out = {}
    for lv in range(n):
        if lv > 0:
            kinds = ("replacement", "bonus")
        elif not exact:
            kinds = ("draft", "target")
        else:                                                   # one model: plain AR decoding
            kinds = ("target",) if n == 1 else ("draft",)
        for kind in kinds:
            out[_category(lv, kind, names)] = _colors(lv)[kind]
    return out


TOKEN_COLOR_MAP: dict[str, str] = token_color_map()


def _kind_at(verifications, level: int, position: int, token: int) -> str:
    """replacement/bonus of the token that ``level`` emitted at absolute ``position``: the latest
    verification by that level whose next token landed there (later ones supersede discarded ones)."""
    for e in reversed(verifications):
        if e.level == level and e.context_len + e.n_accepted == position and e.next_token == token:
            return e.next_kind
    return "replacement"


def token_spans(trace, with_names: bool = False) -> list[tuple[str, str]]:
    """One ``(token_text, category)`` per committed token, in output order (see module doc)."""
    start = trace.started
    names = list(start.models) if start is not None else None
    top = len(names) - 1 if names else max((e.level for e in trace.of_kind("verified")), default=0)
    label_names = names if with_names else None
    verified = trace.of_kind("verified")
    by_round: dict[int, list] = {}
    for e in verified:
        by_round.setdefault(e.round, []).append(e)
    spans = []
    for c in trace.of_kind("committed"):
        vs = by_round.get(c.round, [])
        target = next((e for e in reversed(vs) if e.level == top), None)
        for i, (text, origin) in enumerate(zip(c.texts, c.origins)):
            if top == 0:
                kind = "target"
            elif origin == 0:
                kind = "draft"
            elif target is not None:
                kind = _kind_at(vs, origin, target.context_len + i, c.tokens[i])
            else:
                kind = "replacement"
            spans.append((text, _category(origin, kind, label_names)))
    return spans


def legend_html(names) -> str:
    """Small HTML legend: per level a swatch with its model name (for a verifier level, one for
    its replacements and one, underlined, for its bonus tokens), plus the ✓ / ✗ key.  Text takes
    the page's colour (Gradio's --body-text-color), so it reads in light and dark themes."""
    fg = "var(--body-text-color, inherit)"

    def swatch(color: str, underline: str | None = None) -> str:
        line = f";box-shadow:inset 0 -3px 0 {underline}" if underline else ""
        return (f'<span style="display:inline-block;width:14px;height:14px;border-radius:3px;'
                f'margin:0 4px 0 6px;vertical-align:-2px;background:{color}{line}"></span>')

    chips = []
    for lv, name in enumerate(names):
        role = "target" if lv == len(names) - 1 and len(names) > 1 else ("drafter" if lv == 0 else "middle")
        if lv == 0:
            keys = swatch(theme.level_color(0)) + ("drafted" if len(names) > 1 else "sampled")
        else:
            colors = _colors(lv)
            keys = (swatch(colors["replacement"]) + "replacement" +
                    swatch(colors["bonus"], theme.level_color(lv)) + "bonus")
        chips.append(f'<span class="hsd-legend-level" style="display:inline-flex;align-items:center;'
                     f'margin-right:16px;color:{fg}"><b>L{lv} {html.escape(str(name))} ({role})</b>:'
                     f'{keys}</span>')
    chips.append(f'<span style="color:{theme.ACCEPT_COLOR};margin-right:10px">{theme.ACCEPT_SYMBOL} accepted</span>'
                 f'<span style="color:{theme.REJECT_COLOR}">{theme.REJECT_SYMBOL} rejected</span>')
    return '<div class="hsd-legend" style="font-size:14px;line-height:1.9">' + "".join(chips) + "</div>"


def code_html(spans) -> str:
    """The output as code: one ``<pre>`` (monospace, whitespace and indentation kept) with every
    token's background in its category's colour (``token_spans``), a bonus token also underlined
    in its level's colour (never colour alone), and the token's category on hover.  The text
    colour is picked for contrast on each background, so it reads in light and dark themes."""
    parts = []
    for text, category in spans:
        bg = category_color(category)
        head = category.split(" ", 2)
        kind = head[1] if len(head) > 1 else "draft"
        level = int(head[0][1:]) if head[0][1:].isdigit() else 0
        style = f"background:{bg};color:{theme.ink_on(bg)}"
        if kind == "bonus":
            style += f";box-shadow:inset 0 -3px 0 {theme.level_color(level)}"
        tip = html.escape(f"{category}: {text!r}", quote=True)
        parts.append(f'<span class="tok tok-{kind}" style="{style}" title="{tip}">{html.escape(text)}</span>')
    body = "".join(parts) or '<span class="tok-empty">(no tokens yet)</span>'
    return f'<pre class="hsd-code">{body}</pre>'
