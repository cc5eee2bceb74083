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
    runtime: gr.Radio
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
            runtime = gr.Radio(RUNTIME_CHOICES, value=_default_runtime(ctx), label="Runtime",
                               info="llama.cpp times each model's GGUF copy (f16 for bf16, f32 for fp32)"
                                    + ("" if _llamacpp_ready() else "; not installed here: "
                                       "pip install -r requirements-llamacpp.txt"))
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
    return ShapesTab(family, preset, dtype, runtime, button, status, alphas, resolve, figure, regime, download, gr.State(None))


def wire(ctx: Context, tab: ShapesTab) -> None:
    outputs = [tab.status, tab.alphas, tab.figure, tab.regime, tab.download, tab.state]
    tab.button.click(bind(measure, ctx, tab), [tab.family, tab.preset, tab.dtype, ctx.dark, tab.runtime], outputs,
                     api_name="measure_shapes", concurrency_id="decode", concurrency_limit=ctx.limits.concurrency,
                     preprocess=False)                  # raw values: checked in ``measure``
    tab.resolve.click(bind(resolve, ctx, tab), [tab.state, tab.alphas, ctx.dark], outputs, api_name="shapes_resolve")


def measure(ctx: Context, tab: ShapesTab, family, preset, dtype, dark=False, runtime=None, progress=gr.Progress()):
    """Build, time and free each model in turn, on one runtime or both; solve with the preset
    acceptances."""
    from hsd.tools.shapes import measure_shapes_on

    try:
        forwards = _forwards(ctx, runtime)
        profiles = measure_shapes_on(str(family), forwards, preset=str(preset), dtype=str(dtype), max_n=MAX_N,
                                     repeats=REPEATS, scale=ctx.limits.shapes_scale,
                                     progress=lambda done, total, what: progress(done / total if total else 0,
                                                                                 desc=what))
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    shown = profiles[-1]                     # llama.cpp where both ran: the runtime a CPU user runs
    if len(profiles) > 1:
        shown.meta["compared"] = [{"runtime": p.meta["runtime"], "forward": p.meta["forward"], "cost_ms": p.cost_ms}
                                  for p in profiles[:-1]]
    return solved(tab, shown, dark)


RUNTIME_CHOICES = ["PyTorch", "llama.cpp", "both"]


def _llamacpp_ready() -> bool:
    from hsd.levels.ggml import llamacpp_missing
    return llamacpp_missing() is None


def _default_runtime(ctx: Context) -> str:
    if not _llamacpp_ready():
        return "PyTorch"
    return "llama.cpp" if ctx.limits.forward == "llamacpp" else "both"


def _forwards(ctx: Context, runtime) -> list[str]:
    """The forward paths a runtime choice times (the app's own torch forward for PyTorch)."""
    from hsd.errors import ConfigError
    from hsd.levels.ggml import llamacpp_missing

    runtime = runtime or _default_runtime(ctx)
    if runtime not in RUNTIME_CHOICES:
        raise ConfigError(f"the runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {runtime!r}")
    torch_forward = ctx.limits.forward if ctx.limits.forward in ("lean", "hf") else "auto"
    if runtime != "PyTorch" and llamacpp_missing():
        raise ConfigError(f"llama.cpp is not installed here ({llamacpp_missing()}): pick PyTorch")
    return {"PyTorch": [torch_forward], "llama.cpp": ["llamacpp"], "both": [torch_forward, "llamacpp"]}[runtime]


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
        raise session.as_gr_error(exc) from exc
    return solved(tab, profile, dark)


def solved(tab: ShapesTab, profile, dark) -> dict:
    from hsd.plan import regime

    plan, single = _optimum(profile)
    runtime = profile.meta.get("runtime", f"{profile.meta['dtype']} weights")
    costs = ", ".join(f"{m} {profile.cost_ms[m][0]:.1f} ms" for m in profile.models)
    status = (f"**{LABEL}.** One-token forward on {runtime}: {costs} ({profile.meta['torch_threads']} threads). "
              f"Acceptance: {profile.meta['acceptance']}. Optimal: **{plan.label}** ({plan.kind}) · "
              f"{plan.speedup_vs_ar:.2f}× vs the target alone, {single.expected_ms_per_token / plan.expected_ms_per_token:.2f}× "
              f"vs the best single draft (model-predicted).")
    for other in _compared(profile):
        status += "\n\n" + _runtime_comparison(other, profile, plan)
    rmap = regime.regime_map(profile, "target cost ×", "adjacent α", max_buffer=MAX_N - 1)
    return {tab.status: status,
            tab.alphas: gr.update(value=alpha_rows(profile, profile.models), headers=alpha_headers(profile.models)),
            tab.figure: session.fast_plot(lambda: visual.figure_gsp(plan, dark=bool(dark))),
            tab.regime: visual.figure_regime(rmap, dark=bool(dark)),
            tab.download: session.save_json(profile.to_dict(), "profile"),
            tab.state: profile.to_dict()}


def _optimum(profile):
    from hsd.plan.optimize import best_single_draft, optimal_hierarchy

    return optimal_hierarchy(profile, max_buffer=MAX_N - 1, top=8), best_single_draft(profile, MAX_N - 1)


def _compared(profile) -> list:
    """The other runtimes timed in the same run (``meta["compared"]``), as profiles with the shown
    profile's acceptances."""
    from hsd.plan.profile import Profile

    out = []
    for entry in profile.meta.get("compared") or []:
        meta = {k: v for k, v in profile.meta.items() if k != "compared"}
        meta.update(runtime=entry["runtime"], forward=entry["forward"])
        out.append(Profile(models=profile.models, cost_ms=entry["cost_ms"], acceptance=profile.acceptance, meta=meta))
    return out


def _runtime_comparison(a, b, b_plan) -> str:
    """A markdown table: each model's one-token and longest-block cost on runtime a and b, and
    each runtime's optimum (model-predicted ms per token; ``b_plan``: b's, already solved)."""
    n = len(b.cost_ms[b.models[0]])
    rows = [f"| model | {a.meta['runtime']}: c(1) · c({n}) | {b.meta['runtime']}: c(1) · c({n}) | c(1) ratio |",
            "|---|---:|---:|---:|"]
    for m in b.models:
        ca, cb = a.cost_ms[m], b.cost_ms[m]
        ratio = f"{ca[0] / cb[0]:.1f}×" if cb[0] > 0 else "n/a"
        rows.append(f"| {m} | {ca[0]:.2f} · {ca[-1]:.2f} ms | {cb[0]:.2f} · {cb[-1]:.2f} ms | {ratio} |")
    lines = []
    for p, plan in ((a, _optimum(a)[0]), (b, b_plan)):
        lines.append(f"{p.meta['runtime']}: optimum **{plan.label}**, {plan.expected_ms_per_token:.2f} ms/token, "
                     f"{plan.speedup_vs_ar:.2f}× vs its target alone")
    return ("Both runtimes, the same random weights, timed in this run (wall clock):\n\n" + "\n".join(rows)
            + "\n\n" + " · ".join(lines) + " (model-predicted, assumed acceptances).")
