"""The Optimise tab: profile the family on this machine (or take the shipped profile), solve the
generalised shortest path, show the graph and the ranked plans (model-predicted), and send a plan
to the Generate tab.  ``/optimize`` is its API endpoint."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

import visual
from hsd.errors import ConfigError
from ui import session
from ui.context import Context, bind
from ui.requests import whole
from ui.tabs.generate import stack_updates

PLAN_HEADERS = ["rank", "hierarchy (buffer in brackets)", "kind", "ms/token (model-predicted)",
                "speedup vs target alone (model-predicted)"]


@dataclass
class OptimiseTab:
    source: gr.Radio
    max_buffer: gr.Slider
    button: gr.Button
    status: gr.Markdown
    figure: gr.Plot
    table: gr.Dataframe
    pick: gr.Dropdown
    send: gr.Button
    plans: gr.State                 # the ranked plans shown, plain dicts


def build(ctx: Context) -> OptimiseTab:
    gr.Markdown("Find the latency-optimal hierarchy for **this machine**: profile the family (forward "
                "cost by block length, pairwise acceptance α), then solve the generalised shortest "
                "path over (model, buffer) nodes. All numbers here are **model-predicted** by our "
                "latency model, with acceptance measured by position in the block where the profile "
                "has it (the status line says which); check them on the Compare tab.")
    with gr.Row():
        source = gr.Radio(["shipped profile", "measure now"], value="shipped profile", label="Profile",
                          info="measuring takes a minute or more on a small CPU")
        max_buffer = gr.Slider(1, ctx.limits.max_buffer, value=min(12, ctx.limits.max_buffer), step=1,
                               label="Largest buffer considered")
        button = gr.Button("Optimise", variant="primary", elem_id="optimise-btn")
    status = gr.Markdown("")
    figure = ctx.placeholder(gr.Plot(visual.figure_empty("Press Optimise."), show_label=False, elem_id="opt-gsp"),
                             "Press Optimise.")
    table = gr.Dataframe(headers=PLAN_HEADERS, interactive=False, label="Ranked hierarchies (model-predicted)")
    with gr.Row():
        pick = gr.Dropdown([], label="Plan to use", scale=3)
        send = gr.Button("Use this plan on the Generate tab", scale=1)
    return OptimiseTab(source, max_buffer, button, status, figure, table, pick, send, gr.State([]))


def wire(ctx: Context, tab: OptimiseTab) -> None:
    gen = ctx.generate
    tab.button.click(bind(optimize, ctx, tab), [gen.family, tab.source, tab.max_buffer, ctx.dark],
                     [tab.status, tab.figure, tab.table, tab.pick, tab.plans], api_name="optimize",
                     concurrency_id="decode", concurrency_limit=ctx.limits.concurrency)
    tab.send.click(bind(send_plan, ctx, tab), [gen.family, tab.pick, tab.plans],
                   [gen.models] + gen.buffer_sliders + [ctx.tabs], api_visibility="private")


def optimize(ctx: Context, tab: OptimiseTab, spec, source, max_buffer, dark=False, progress=gr.Progress()):
    """Profile (or load the shipped profile), run the optimiser; graph, ranked plans."""
    families = ctx.families
    try:
        spec = families.check_allowed(spec)
        names = families.names(spec)
        if source == "measure now":
            families.measure(spec, lambda frac, what: progress(frac, desc=what))
        elif families.profile(spec, names) is None:
            raise ConfigError("No shipped profile matches this family; choose 'measure now'.")
        plan = families.plan(spec, names, whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer))
    except Exception as exc:
        raise session.as_gr_error(exc) from None
    ranking = list(plan.ranking)
    labels = [f"{i + 1}. {p.label}" for i, p in enumerate(ranking)]
    profile = families.profile(spec, names)
    meta = profile.meta
    at = f" at temperature {meta['temperature']:g}" if "temperature" in meta else ""
    return {tab.status: f"Optimal: **{plan.label}** · {plan.expected_ms_per_token:.2f} ms/token · "
                        f"**{plan.speedup_vs_ar:.2f}× vs the target alone** (model-predicted, "
                        f"{profile.acceptance_label}; profile measured {meta.get('measured_at', '?')}{at}).",
            tab.figure: visual.figure_gsp(plan, dark=bool(dark)),
            tab.table: [[i + 1, p.label, p.kind, round(p.expected_ms_per_token, 3), round(p.speedup_vs_ar, 2)]
                        for i, p in enumerate(ranking)],
            tab.pick: gr.update(choices=labels, value=labels[0]),
            tab.plans: [p.to_dict() for p in ranking]}


def send_plan(ctx: Context, tab: OptimiseTab, spec, pick, plans):
    """The picked plan onto the Generate tab's stack widgets, and that tab shown."""
    if not plans or not pick:
        raise session.refuse("Press Optimise first, then pick a plan.")
    i = int(str(pick).split(".")[0]) - 1
    p = plans[max(0, min(i, len(plans) - 1))]
    names = ctx.families.names(spec)
    return {**stack_updates(ctx, ctx.generate, p["chain"], p["buffers"], names), ctx.tabs: gr.Tabs(selected="generate")}
