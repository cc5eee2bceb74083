"""The one theme for every HSD Explorer figure: palette, symbols, shared layout.

Contract: figure builders in ``visual/`` never call ``update_layout`` for looks; they call
``apply(fig, dark=..., height=...)`` once and take colours from here.  Nothing here knows about
models, tensors or Gradio.

- One colour per hierarchy LEVEL (Okabe & Ito 2008 colour-blind-safe palette), level 0 = the
  smallest drafter, the last level = the target.  The same colours colour the token text.
- Accept / reject have a colour AND a symbol (✓ / ✗): never colour alone.
- ``apply`` sets the light/dark template, fixed height, margins, readable fonts for a ~1200 px
  column and a constant ``uirevision`` (zoom survives streaming updates in ``gr.Plot``).
"""
from __future__ import annotations

import contextvars
import json
from contextlib import contextmanager
from functools import lru_cache

import plotly.graph_objects as go
import plotly.io as pio
from plotly.utils import PlotlyJSONEncoder

# Okabe–Ito (https://jfly.uni-koeln.de/color/): orange, sky blue, reddish purple, blue, yellow, grey.
# Bluish green and vermillion are reserved for accept / reject.
LEVEL_COLORS: tuple[str, ...] = ("#E69F00", "#56B4E9", "#CC79A7", "#0072B2", "#F0E442", "#999999")
ACCEPT_COLOR = "#009E73"       # bluish green
REJECT_COLOR = "#D55E00"       # vermillion
ACCEPT_SYMBOL = "✓"
REJECT_SYMBOL = "✗"
REPLACE_SYMBOL = "↻"           # token resampled by the verifier (replacement)
BONUS_SYMBOL = "+"             # token sampled from the verifier's last row (bonus)

UIREVISION = "hsd-explorer"    # constant: gr.Plot keeps zoom/pan across Plotly.react updates
FONT_SIZE = 14
FONT_FAMILY = "Inter, 'Source Sans Pro', 'Segoe UI', 'DejaVu Sans', Arial, sans-serif"
MARGIN = dict(l=70, r=24, t=100, b=56)   # t is recomputed by apply() from the title block

HEIGHT = {  # px; fixed so the app layout does not jump while streaming
    "empty": 300, "timeline": 380, "accept_map": 440, "mass_balance": 760,
    "gsp": 580, "exactness": 440, "compare": 420, "regime": 600,
}

# The presenter view (a projector, a lecture hall): every font PRESENTER_SCALE times larger and
# every panel PRESENTER_HEIGHT times taller.  Set per request with ``presenting(True)`` (a context
# variable, like ``deferred_template``): the builders read it through ``fs`` and ``height``.
PRESENTER_SCALE = 1.45
PRESENTER_HEIGHT = 1.3
_PRESENTER: contextvars.ContextVar[bool] = contextvars.ContextVar("hsd_presenter", default=False)


@contextmanager
def presenting(on: bool = True):
    """Within this block (this thread/context only) figures are drawn for the presenter view."""
    token = _PRESENTER.set(bool(on))
    try:
        yield
    finally:
        _PRESENTER.reset(token)


def presenter() -> bool:
    """Whether figures are being drawn for the presenter view."""
    return _PRESENTER.get()


def fs(size: float) -> int:
    """A font size in px, enlarged in the presenter view."""
    return round(size * PRESENTER_SCALE) if _PRESENTER.get() else round(size)


def height(kind: str) -> int:
    """The fixed height of a ``HEIGHT`` kind of panel, taller in the presenter view."""
    return round(HEIGHT[kind] * PRESENTER_HEIGHT) if _PRESENTER.get() else HEIGHT[kind]


def level_color(level: int) -> str:
    """Colour of hierarchy level ``level`` (0 = smallest drafter); cycles past six levels."""
    return LEVEL_COLORS[level % len(LEVEL_COLORS)]


def text_color(dark: bool = False) -> str:
    return "#f2f5fa" if dark else "#2a3f5f"


def muted_color(dark: bool = False) -> str:
    """Grey for context marks (light arcs, gaps, gridlines)."""
    return "#6b7280" if dark else "#b8bec8"


def background(dark: bool = False) -> str:
    return "#111111" if dark else "#ffffff"


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def tint(hex_color: str, amount: float, dark: bool = False) -> str:
    """Blend ``hex_color`` towards the page background by ``amount`` (0 = colour, 1 = background):
    light fills that stay readable under the theme's text colour in both templates."""
    r, g, b = _rgb(hex_color)
    br, bg, bb = _rgb(background(dark))
    mix = lambda c, k: round(c + (k - c) * amount)  # noqa: E731
    return f"#{mix(r, br):02x}{mix(g, bg):02x}{mix(b, bb):02x}"


def luminance(hex_color: str) -> float:
    """WCAG relative luminance of a #rrggbb colour (0 black … 1 white)."""
    def lin(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = _rgb(hex_color)
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 … 21)."""
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def ink_on(background_hex: str) -> str:
    """Near-black or white: whichever reads better on ``background_hex``."""
    dark_ink, light_ink = "#111111", "#ffffff"
    return dark_ink if contrast(dark_ink, background_hex) >= contrast(light_ink, background_hex) else light_ink


def rgba(hex_color: str, alpha: float) -> str:
    r, g, b = _rgb(hex_color)
    return f"rgba({r},{g},{b},{alpha})"


def short_name(name, max_chars: int = 22) -> str:
    """A model name short enough for a lane label or title: hub ids lose their owner
    ('HuggingFaceTB/SmolLM2-360M' → 'SmolLM2-360M'), local paths their folders; long names cut with '…'."""
    s = str(name).rstrip("/").split("/")[-1] or str(name)
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def compact_names(names) -> tuple[list[str], str]:
    """(names without the prefix they all share, that prefix): 'hsd-family-xs' … 'hsd-family-l'
    → 'xs' … 'l'.  Only a prefix ending at a '-', '_', '.' or '/' of at least 3 characters is
    dropped, and only when two or more names share it; names that are not model names (an
    'ngram' level) keep theirs."""
    named = [str(n) for n in names if str(n) != "ngram"]
    if len(named) < 2:
        return [str(n) for n in names], ""
    common = named[0]
    for n in named[1:]:
        while not n.startswith(common):
            common = common[:-1]
    cut = max((common.rfind(ch) for ch in "-_./"), default=-1)
    prefix = common[: cut + 1] if cut >= 2 else ""
    if not prefix or any(len(n) <= len(prefix) for n in named):
        return [str(n) for n in names], ""
    return [str(n)[len(prefix):] if str(n).startswith(prefix) else str(n) for n in names], prefix


def level_label(level: int, names=None, n_levels: int | None = None) -> str:
    """'L2 target · name' / 'L0 · name' (names optional, shortened)."""
    label = f"L{level}"
    if n_levels is not None and level == n_levels - 1 and n_levels > 1:
        label += " target"
    if names is not None and level < len(names):
        label += f" · {short_name(names[level])}"
    return label


def escape_token(text: str, max_chars: int | None = 10) -> str:
    """Token text made visible and safe inside Plotly text: space → '␣', newline → '↵',
    tab → '⇥', empty → '∅'; HTML specials become entities; long tokens are cut with '…'."""
    if text is None or text == "":
        return "∅"
    s = text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    if max_chars is not None and len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


TITLE_TOP_PX = 30       # title's top edge: clears gr.Plot's own label badge in the top-left corner
TITLE_PX, SUBTITLE_PX, LEGEND_ROW_PX = 24, 22, 24


_DEFER_TEMPLATE: contextvars.ContextVar[bool] = contextvars.ContextVar("hsd_defer_template", default=False)
# the parts of Plotly's templates our figures use (layout look + the trace types we draw); the
# rest (geo, mapbox, polar, 3-D scenes, 20 other trace types) is dead weight on the wire
_TEMPLATE_LAYOUT_KEYS = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor",
                         "plot_bgcolor", "coloraxis", "colorscale", "xaxis", "yaxis", "shapedefaults",
                         "annotationdefaults", "title")
_TEMPLATE_TRACE_TYPES = ("bar", "scatter", "heatmap", "box")


def template_name(dark: bool) -> str:
    return "plotly_dark" if dark else "plotly_white"


@lru_cache(maxsize=2)
def template_json(dark: bool) -> dict:
    """Plotly's light/dark template as plain JSON, trimmed to what our figures use (cached)."""
    full = pio.templates[template_name(dark)].to_plotly_json()
    return {"layout": {k: v for k, v in full["layout"].items() if k in _TEMPLATE_LAYOUT_KEYS},
            "data": {k: v for k, v in full["data"].items() if k in _TEMPLATE_TRACE_TYPES}}


@contextmanager
def deferred_template():
    """Within this block (this thread/context only), ``apply`` records the shared look on the
    figure as plain data instead of setting it through Plotly, and ``plot_json`` merges it into
    the JSON.  Setting a template makes Plotly copy and validate the whole template (~13 ms a
    figure here) and each ``update_layout`` costs ~10 ms: most of a streaming panel update."""
    token = _DEFER_TEMPLATE.set(True)
    try:
        yield
    finally:
        _DEFER_TEMPLATE.reset(token)


def _merge(base: dict, over: dict) -> dict:
    """``update_layout`` semantics on plain dicts: nested dicts merge, other values replace."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def plot_json(fig: go.Figure, dark: bool = False) -> str:
    """The figure as Plotly JSON (what ``gr.Plot`` sends to the browser).  A figure built under
    ``deferred_template`` gets the layout it recorded merged in and the trimmed template of the
    theme ``apply`` was given; any other figure keeps its own template (``dark`` picks one for a
    figure that has none)."""
    d = fig.to_plotly_json()
    layout = d.setdefault("layout", {})
    pending = getattr(fig, "_hsd_layout", None)
    if pending is not None:              # built under deferred_template: Plotly filled in its default
        _merge(layout, json.loads(json.dumps(pending, cls=PlotlyJSONEncoder)))
        layout["template"] = template_json(getattr(fig, "_hsd_dark", dark))
    elif "template" not in layout:
        layout["template"] = template_json(dark)
    return json.dumps(d, cls=PlotlyJSONEncoder, separators=(",", ":"))


def look(dark: bool = False, height: int | None = None, title: str | None = None, legend: bool = True,
         subtitle: str | None = None) -> dict:
    """The shared layout (everything ``apply`` sets but the template) as a plain dict."""
    k = PRESENTER_SCALE if _PRESENTER.get() else 1.0
    top = round(TITLE_TOP_PX + k * ((TITLE_PX if title else 0) + (SUBTITLE_PX if subtitle else 0)) + 4)
    out = dict(
        font=dict(family=FONT_FAMILY, size=fs(FONT_SIZE), color=text_color(dark)),
        margin=dict(MARGIN, l=round(MARGIN["l"] * k), b=round(MARGIN["b"] * k),
                    t=top + round(k * LEGEND_ROW_PX if legend else 0) + 12),
        height=height,
        uirevision=UIREVISION,
        showlegend=legend,
        legend=dict(orientation="h", xanchor="left", x=0, itemsizing="constant",
                    font=dict(size=fs(13)), bgcolor="rgba(0,0,0,0)",
                    **(dict(yref="container", y=1 - top / height, yanchor="top") if height
                       else dict(yref="paper", y=1.02, yanchor="bottom"))),
        hoverlabel=dict(font=dict(size=fs(14), family=FONT_FAMILY)),
        uniformtext=dict(minsize=fs(10), mode="hide"),
    )
    if height is None:
        del out["height"]
    if title is not None:
        y = 1 - TITLE_TOP_PX / height if height else 0.96
        out["title"] = dict(text=title, x=0.01, xanchor="left", y=y, yanchor="top", font=dict(size=fs(17)),
                            subtitle=dict(text=subtitle or "", font=dict(size=fs(13))))
    return out


_SUBPLOT_SKELETONS: dict[str, tuple[dict, object, str]] = {}


def subplots(**kwargs) -> go.Figure:
    """``plotly.subplots.make_subplots(**kwargs)``; inside ``deferred_template()`` a copy of a
    cached skeleton (its layout and grid), ~1.6 ms instead of ~18 ms.  The subplot titles are
    part of the key, so figures with changing titles get their own skeletons (kept small)."""
    from plotly.subplots import make_subplots

    if not _DEFER_TEMPLATE.get():
        return make_subplots(**kwargs)
    key = repr(sorted(kwargs.items()))
    hit = _SUBPLOT_SKELETONS.get(key)
    if hit is None:
        sk = make_subplots(**kwargs)
        if len(_SUBPLOT_SKELETONS) > 64:
            _SUBPLOT_SKELETONS.clear()
        hit = _SUBPLOT_SKELETONS[key] = (sk.layout.to_plotly_json(), sk._grid_ref, sk._grid_str)
    layout, grid_ref, grid_str = hit
    fig = go.Figure(layout=json.loads(json.dumps(layout)), _validate=False)
    fig.__dict__["_grid_ref"] = grid_ref          # what make_subplots attaches (add_trace(row=, col=))
    fig.__dict__["_grid_str"] = grid_str
    return fig


def set_layout(fig: go.Figure, **props) -> go.Figure:
    """``fig.update_layout(**props)``, or inside ``deferred_template()`` the same props recorded as
    plain data for ``plot_json``, in call order (Plotly validates every element of a long list,
    e.g. shapes)."""
    if _DEFER_TEMPLATE.get():
        fig._hsd_layout = _merge(getattr(fig, "_hsd_layout", None) or {}, props)
        return fig
    return fig.update_layout(**props)


def apply(fig: go.Figure, dark: bool = False, height: int | None = None, title: str | None = None,
          legend: bool = True, subtitle: str | None = None) -> go.Figure:
    """Shared look: template, fonts, margins, fixed height, constant uirevision, optional title +
    one-line subtitle, and a horizontal legend hung BELOW the title block (anchored to the
    container, so when it wraps onto more rows in a narrow column it pushes the plot down instead
    of covering the title).  Returns ``fig`` (modified in place).  Inside ``deferred_template()``
    the look is only recorded, for ``plot_json``."""
    lk = look(dark=dark, height=height, title=title, legend=legend, subtitle=subtitle)
    if _DEFER_TEMPLATE.get():
        fig._hsd_dark = dark
        return set_layout(fig, **lk)
    fig.update_layout(template=template_name(dark), **lk)
    return fig


def figure_empty(message: str = "Run a generation to see this panel.", dark: bool = False,
                 height_px: int | None = None) -> go.Figure:
    """Placeholder: no axes, one centred message (used before a run, or when a panel has no data)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=fs(16), color=text_color(dark)), align="center")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply(fig, dark=dark, height=height_px or height("empty"), legend=False)
