"""The Blocks: the intro, the four tabs (``ui.tabs``), the state they share, and the dark-theme
redraw of the placeholders.  No model is loaded here; the first request loads the family.

Sessions share nothing but the read-only models, the profiles (measurements of this machine) and
the plans derived from them (``ui.registry``); every request builds its own Hierarchy and caches,
and ``gr.State`` holds only plain dicts.
"""
from __future__ import annotations

import gradio as gr

import visual
from ui.context import Context, unchanged
from ui.registry import Families, load_prompts
from ui.settings import CSS_PATH, Limits
from ui.tabs import compare, generate, learn, optimise, scenarios

PAPER_HSD = "https://arxiv.org/abs/2510.19705"
PAPER_BRANCH = "https://arxiv.org/abs/2601.05724"
INTRO = f"""
# HSD Explorer — hierarchical speculative decoding, live

**What am I looking at?** A real decoder runs a *stack* of language models that share one
tokenizer: the smallest model drafts tokens, each larger model verifies the block below it in one
forward pass, keeps what its verification rule accepts and replaces the rest, and the largest model
(the *target*) commits text whose distribution is exactly its own
([Globerson et al., arXiv 2510.19705]({PAPER_HSD})). Every token below is coloured by the level that
produced it; the panels show each round's timeline, accept/reject decisions, and the **branch mass
balancing** of the lossless hierarchical verification rule
([Zhou et al., arXiv 2601.05724]({PAPER_BRANCH})). The latency model and optimiser graph are our own
derivation (labelled *model-predicted*); timings are *wall clock* on this machine.
"""


def build_demo(limits: Limits | None = None, families: Families | None = None) -> gr.Blocks:
    """1) the shared state, 2) each tab's layout, 3) each tab's wiring, 4) the theme redraw."""
    limits = limits or Limits.from_env()
    ctx = Context(limits=limits, families=families or Families(limits), prompts=load_prompts())
    with gr.Blocks(title="HSD Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        ctx.demo = demo                                                          # 1)
        ctx.dark = gr.Checkbox(value=False, visible=False, elem_id="dark-flag")
        ctx.trace_state = gr.State(None, time_to_live=7200)
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Tabs(selected="generate") as ctx.tabs:                           # 2)
            with gr.Tab("Generate", id="generate"):
                ctx.generate = generate.build(ctx)
            with gr.Tab("Compare", id="compare"):
                cmp = compare.build(ctx)
            with gr.Tab("Learn", id="learn") as learn_tab:
                lrn = learn.build(ctx, learn_tab)
            with gr.Tab("Optimise", id="optimise"):
                opt = optimise.build(ctx)
        generate.wire(ctx, ctx.generate)                                         # 3)
        compare.wire(ctx, cmp)
        learn.wire(ctx, lrn)
        optimise.wire(ctx, opt)
        scenarios.wire(ctx, lrn.scenario_buttons, lrn.scenario_note, lrn, opt)
        plots = [p for p, _ in ctx.placeholders]                                 # 4)
        demo.load(None, None, ctx.dark, js="() => document.body.classList.contains('dark')",
                  api_visibility="private").then(
            lambda dark: redraw_placeholders(ctx, dark), [ctx.dark], plots, api_visibility="private").then(
            lambda dark: visual.legend_html(ctx.generate.stack0), [ctx.dark], [ctx.generate.legend],
            api_visibility="private")
    return demo


def redraw_placeholders(ctx: Context, dark) -> dict:
    """In the dark theme, the empty panels are drawn again with the dark template."""
    if not dark:
        return unchanged(p for p, _ in ctx.placeholders)
    return {plot: visual.figure_empty(message, dark=True) for plot, message in ctx.placeholders}


def launch_options() -> dict:
    """What ``demo.launch`` needs beyond the server address: the theme, the CSS, the footer."""
    css = CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None
    return dict(theme=gr.themes.Soft(), css=css, footer_links=["api", "settings"])
