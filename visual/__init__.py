"""HSD Explorer figures: pure functions from plain data (Trace, Plan, dicts) to Plotly figures,
and pure text from the same data (``visual.text``: the stats line, the Learn narration).

Never imports torch, transformers or gradio, never touches a model (a test enforces it).
Every builder takes ``dark=False`` for the dark template; colours come from ``visual.theme``.
"""
from visual.accept_map import figure_accept_map
from visual.gsp import figure_gsp
from visual.lab import figure_compare, figure_exactness
from visual.mass_balance import figure_mass_balance
from visual.regime import figure_regime
from visual.theme import figure_empty
from visual.text import explain, learn_steps, partial_trace, stats_markdown
from visual.timeline import figure_timeline
from visual.tokens import TOKEN_COLOR_MAP, code_html, legend_html, token_color_map, token_spans

__all__ = ["figure_accept_map", "figure_compare", "figure_empty", "figure_exactness", "figure_gsp",
           "figure_mass_balance", "figure_regime", "figure_timeline", "TOKEN_COLOR_MAP", "code_html", "legend_html", "token_color_map",
           "token_spans", "explain", "learn_steps", "partial_trace", "stats_markdown"]
