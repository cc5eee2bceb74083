"""Real model shapes on this machine, on the Optimise tab: build models of a real family's
published shapes (``assets/shapes/``: SmolLM2, Qwen2.5) with random weights, time their forwards
here, and solve with acceptances that are ASSUMED (a documented preset, editable).  Every number
is labelled *costs measured with random weights; acceptance assumed*.  ``/measure_shapes`` and
``/shapes_resolve`` are its API endpoints (``hsd shapes`` is the CLI)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

import visual
from ui import session
from ui.context import Context, bind
from ui.views import alpha_headers, alpha_rows, alpha_table

LABEL = "costs measured with random weights on this machine; acceptance assumed"
MAX_N = 9                       # block lengths timed (the optimiser looks at buffers up to 8)
REPEATS = 3


@dataclass
class ShapesTab:
    family: gr.Dropdown
    preset: gr.Radio
    dtype: gr.Radio
    button: gr.Button
    status: gr.Markdown
    alphas: gr.Dataframe
    resolve: gr.Button
    figure: gr.Plot
    regime: gr.Plot
    download: gr.DownloadButton
    state: gr.State             # the measured profile, a plain dict


def build(ctx: Context) -> ShapesTab:
    from hsd.tools.shapes import ACCEPTANCE_PRESETS, shape_families

    with gr.Accordion("Real model shapes on this machine (random weights; acceptance assumed)", open=False):
        gr.Markdown("Cost depends on a model's shape, not on its weights: build SmolLM2 or Qwen2.5 models "
                    "of their published shapes with random weights, time their forwards **here**, and see "
                    "which hierarchy would win on this hardware. Acceptances cannot be measured without the "
                    "real weights: they are assumed (a preset below, or type your own) and labelled so. "
                    "The largest model takes a minute or more on a small CPU; a model that does not fit "
                    "in memory is refused before it is built.")
        with gr.Row():
            families = shape_families()
            family = gr.Dropdown(families, value=families[-1] if families else None, label="Family shapes")
            preset = gr.Radio(list(ACCEPTANCE_PRESETS), value="close", label="Assumed acceptance",
                              info="; ".join(f"{k}: {v['about']}" for k, v in ACCEPTANCE_PRESETS.items()))
            dtype = gr.Radio(["bf16", "fp32"], value="bf16", label="Weights")
        button = gr.Button("Measure their costs here", elem_id="shapes-btn")
        status = gr.Markdown("", elem_id="shapes-status")
        alphas = gr.Dataframe(value=[], type="array", interactive=True, elem_id="shapes-alpha",
                              label="assumed acceptance α: drafter (row) under verifier (column)")
        resolve = gr.Button("Re-solve with these acceptances", elem_id="shapes-resolve")
        figure = ctx.placeholder(gr.Plot(visual.figure_empty("Measure the costs first."), show_label=False,
                                         elem_id="shapes-gsp"), "Measure the costs first.")
        regime = ctx.placeholder(gr.Plot(visual.figure_empty("Measure the costs first."), show_label=False,
                                         elem_id="shapes-regime"), "Measure the costs first.")
        download = gr.DownloadButton("Download this profile", elem_id="shapes-download")
    return ShapesTab(family, preset, dtype, button, status, alphas, resolve, figure, regime, download, gr.State(None))


def wire(ctx: Context, tab: ShapesTab) -> None:
    outputs = [tab.status, tab.alphas, tab.figure, tab.regime, tab.download, tab.state]
    tab.button.click(bind(measure, ctx, tab), [tab.family, tab.preset, tab.dtype, ctx.dark], outputs,
                     api_name="measure_shapes", concurrency_id="decode", concurrency_limit=ctx.limits.concurrency)
    tab.resolve.click(bind(resolve, ctx, tab), [tab.state, tab.alphas, ctx.dark], outputs, api_name="shapes_resolve")


def measure(ctx: Context, tab: ShapesTab, family, preset, dtype, dark=False, progress=gr.Progress()):
    """Build, time and free each model in turn; solve with the preset acceptances."""
    from hsd.tools.shapes import measure_shapes

    try:
        profile = measure_shapes(str(family), preset=str(preset), dtype=str(dtype), max_n=MAX_N, repeats=REPEATS,
                                 scale=ctx.limits.shapes_scale, forward=ctx.limits.forward,
                                 progress=lambda done, total, what: progress(done / total if total else 0, desc=what))
    except Exception as exc:
        raise session.as_gr_error(exc) from None
    return solved(tab, profile, dark)


def resolve(ctx: Context, tab: ShapesTab, state, matrix, dark=False):
    """The measured costs again, with the acceptances typed in the table (no re-measuring)."""
    from hsd.plan.profile import Profile

    if not state:
        raise session.refuse("Measure the costs first.")
    try:
        base = Profile.from_dict(state)
        names = base.models
        acc = [[1.0] * len(names) for _ in names]
        for (i, j), a in alpha_table(names, matrix).items():
            acc[i][j] = acc[j][i] = a
        meta = dict(base.meta, acceptance="assumed, not measured: set by the user")
        profile = Profile(models=names, cost_ms=base.cost_ms, acceptance=acc, meta=meta)
    except Exception as exc:
        raise session.as_gr_error(exc) from None
    return solved(tab, profile, dark)


def solved(tab: ShapesTab, profile, dark) -> dict:
    from hsd.plan import regime
    from hsd.plan.optimize import best_single_draft, optimal_hierarchy

    plan = optimal_hierarchy(profile, max_buffer=MAX_N - 1, top=8)
    single = best_single_draft(profile, MAX_N - 1)
    costs = ", ".join(f"{m} {profile.cost_ms[m][0]:.1f} ms" for m in profile.models)
    status = (f"**{LABEL}.** One-token forward: {costs} ({profile.meta['dtype']}, {profile.meta['torch_threads']} "
              f"threads). Acceptance: {profile.meta['acceptance']}. Optimal: **{plan.label}** ({plan.kind}) · "
              f"{plan.speedup_vs_ar:.2f}× vs the target alone, {single.expected_ms_per_token / plan.expected_ms_per_token:.2f}× "
              f"vs the best single draft (model-predicted).")
    rmap = regime.regime_map(profile, "target cost ×", "adjacent α", max_buffer=MAX_N - 1)
    return {tab.status: status,
            tab.alphas: gr.update(value=alpha_rows(profile, profile.models), headers=alpha_headers(profile.models)),
            tab.figure: session.fast_plot(lambda: visual.figure_gsp(plan, dark=bool(dark))),
            tab.regime: visual.figure_regime(rmap, dark=bool(dark)),
            tab.download: session.save_json(profile.to_dict(), "profile"),
            tab.state: profile.to_dict()}
