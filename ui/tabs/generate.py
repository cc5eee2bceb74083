"""The Generate tab: a prompt, a stack of models with a buffer and a rule per level, sampling
settings; streamed coloured tokens and the per-round panels (timeline, accept map, mass balance,
the optimiser's graph).  ``/generate`` is its API endpoint.

``build(ctx)`` lays the tab out and returns its components; ``wire(ctx, tab)`` connects them.
Callbacks are module-level functions of (ctx, tab, inputs...) returning ``{component: update}``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

import visual
from hsd.trace import Trace
from ui import session, views
from hsd.errors import HSDError
from ui.context import Context, bind, current_session, unchanged
from ui.registry import decode_kind, default_plan
from ui.inputs import RULE_LABELS, Request, chain_of, make_request, whole
from hsd.verify import RULES

SAMPLING_NAMES = ["temperature", "top_p", "top_k", "seed", "max_new_tokens"]
# Gradio's multi-line Textbox submits on Shift+Enter (Enter types a new line)
PROMPT_LABEL = "Prompt (Shift+Enter to generate; Enter types a new line)"
STOP_WAIT_S = 10.0      # how long Stop waits for a running decode's last update (one round, its panels)


@dataclass
class GenerateTab:
    prompt: gr.Textbox
    gen_btn: gr.Button
    stop_btn: gr.Button
    clear_btn: gr.Button
    cancel_queued_btn: gr.Button    # hidden: Stop and Clear press it last (a decode still queued)
    legend: gr.HTML
    code: gr.HTML                   # the output as code (monospace, per-token colours)
    tokens: gr.HighlightedText      # the same tokens as chips (the /generate API's first output)
    stats: gr.Markdown
    note: gr.Markdown               # one sentence when a setting was refused or changed
    family: gr.Dropdown
    models: gr.CheckboxGroup
    optimal_btn: gr.Button
    ar_check: gr.Checkbox
    level_rows: list
    buffer_sliders: list
    rule_dropdowns: list
    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    seed: gr.Number
    max_new: gr.Slider
    timeline: gr.Plot
    view_level: gr.Dropdown
    view_index: gr.Slider
    download: gr.DownloadButton
    accept_plot: gr.Plot
    gsp_plot: gr.Plot
    mass_plot: gr.Plot
    stack0: list
    events: tuple = ()

    @property
    def stack_inputs(self) -> list:
        return [self.family, self.models] + self.buffer_sliders + self.rule_dropdowns

    @property
    def sampling_inputs(self) -> list:
        return [self.temperature, self.top_p, self.top_k, self.seed, self.max_new]

    def stack_names(self) -> list[str]:
        n = len(self.buffer_sliders)
        return ["family", "models"] + [f"buffer_L{i}" for i in range(n)] + [f"rule_L{i + 1}" for i in range(n)]

    def outputs(self) -> list:
        """/generate's outputs, in the API's order."""
        return [self.tokens, self.stats, self.timeline, self.accept_plot, self.mass_plot, self.gsp_plot,
                self.trace_state, self.download, self.view_index, self.legend, self.view_level, self.code]

    trace_state: gr.State = None
    max_new_wanted: gr.State = None     # the max new tokens the visitor asked for (a clamp lowers only the slider)


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------
def build(ctx: Context) -> GenerateTab:
    """1) prompt, buttons, examples, the output; 2) the stack and sampling settings; 3) panels."""
    limits, families = ctx.limits, ctx.families
    names0 = families.names(limits.family)
    stack0, buffers0 = default_plan(families, limits.family, names0, limits)
    prompts = ctx.prompts
    w = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):                          # 1) prompt and output
            w["prompt"] = gr.Textbox(label=PROMPT_LABEL,
                                     value=prompts[0][1], lines=3, max_lines=12, elem_id="prompt", autofocus=True)
            with gr.Row():
                w["gen_btn"] = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                w["stop_btn"] = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                w["clear_btn"] = gr.Button("Clear", elem_id="clear-btn")
                # pressed by Stop and Clear once they are done (see wire): cancels a queued decode
                w["cancel_queued_btn"] = gr.Button("Cancel queued decode", visible="hidden",
                                                   elem_id="cancel-queued-btn")
            gr.Examples([[p] for _, p in prompts], inputs=[w["prompt"]], example_labels=[lb for lb, _ in prompts],
                        label="Example prompts (Python code: the bundled models were trained on the standard library)",
                        cache_examples=False)
            w["legend"] = gr.HTML(visual.legend_html(stack0), elem_id="legend")
            w["code"] = gr.HTML(visual.code_html([]), label="Output: every token coloured by the level that produced it",
                                elem_id="code-view", show_label=True, container=True)
            w["stats"] = gr.Markdown("*Press Generate.*", elem_id="stats")
            w["note"] = gr.Markdown("", elem_id="generate-note", elem_classes=["hsd-note"])
            with gr.Accordion("The same tokens as chips (hover the legend to pick out one level)", open=False):
                w["tokens"] = gr.HighlightedText(label="Output tokens", show_label=False,
                                                 color_map=visual.token_color_map(n_levels=len(names0) or 1),
                                                 show_legend=True, combine_adjacent=False, elem_id="tokens",
                                                 show_inline_category=False)
        with gr.Column(scale=2, min_width=300):                          # 2) the stack
            w.update(_stack_widgets(ctx, names0, stack0, buffers0))
    w.update(_panels(ctx, stack0))                                       # 3) panels
    return GenerateTab(**w, stack0=stack0, trace_state=ctx.trace_state)


def _stack_widgets(ctx: Context, names0, stack0, buffers0) -> dict:
    limits = ctx.limits
    w = {"family": gr.Dropdown(ctx.families.labelled_choices(), value=limits.family, label="Model family",
                               allow_custom_value=True,    # refused with a sentence unless allowed
                               info="bundled = trained offline on Python's standard library"
                                    + ("; or type comma-separated local folders / hub ids"
                                       if limits.allow_custom_models else "")),
         "models": gr.CheckboxGroup(names0, value=stack0, elem_id="models",
                                    label="Stack (smallest first; the target, last, is always included)")}
    with gr.Row():
        w["optimal_btn"] = gr.Button("Optimal (from profile)", size="sm")
        w["ar_check"] = gr.Checkbox(False, label="Also time the target alone (runs it first)",
                                    info="wall-clock speedup measured on the same prompt and seed")
    rule_choices = [RULE_LABELS[r] for r in RULES]
    w["level_rows"], w["buffer_sliders"], w["rule_dropdowns"] = [], [], []
    for i in range(ctx.slots):
        with gr.Row(visible=False) as row:
            w["buffer_sliders"].append(gr.Slider(1, limits.max_buffer, value=buffers0[i] if i < len(buffers0) else 4,
                                                 step=1, label=f"L{i} buffer", info="tokens this level hands up per call"))
            w["rule_dropdowns"].append(gr.Dropdown(rule_choices, value="hsd", label=f"rule at L{i + 1}",
                                                   allow_custom_value=True,   # API: our own error sentence
                                                   info="how the level above verifies it"))
        w["level_rows"].append(row)
    with gr.Accordion("Sampling settings", open=False):
        w["temperature"] = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature",
                                     info="0 = greedy; the same at every level")
        w["top_p"] = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", info="1 = off")
        w["top_k"] = gr.Slider(0, 200, value=0, step=1, label="Top-k", info="0 = off")
        w["seed"] = gr.Number(0, precision=0, label="Seed", info="same seed + settings = same text")
        try:                                 # a family that cannot load must not stop the app from starting
            room = ctx.families.room_for(limits.family, ctx.prompts[0][1] if ctx.prompts else "",
                                         limits.max_new_tokens)
        except HSDError as exc:
            print(f"[hsd-explorer] max new tokens not fitted to the context: {exc}", flush=True)
            room = limits.max_new_tokens
        w["max_new"] = gr.Slider(1, room, value=min(96, room), step=1, label="Max new tokens", elem_id="max-new",
                                 info=f"at most {limits.max_new_tokens} here, and what the model's context "
                                      "leaves after the prompt")
        w["max_new_wanted"] = gr.State(min(96, limits.max_new_tokens))
    return w


def _panels(ctx: Context, stack0) -> dict:
    empty = visual.figure_empty(views.PLACEHOLDER)
    w = {}
    with gr.Row():
        w["timeline"] = ctx.placeholder(gr.Plot(empty, label="Timeline", elem_id="timeline", show_label=False),
                                        views.PLACEHOLDER)
    with gr.Row():
        w["view_level"] = gr.Dropdown(views.level_choices(stack0), value=len(stack0) - 1 if len(stack0) > 1 else None,
                                      label="Verifier level (accept map and mass balance)", scale=2)
        w["view_index"] = gr.Slider(1, 2, value=1, step=1, label="Verification # (1 = the first; drag after a run)",
                                    scale=3, interactive=True, elem_id="view-index")
        w["download"] = gr.DownloadButton("Download trace (JSON)", value=None, interactive=False, scale=1,
                                            elem_id="trace-download")
    with gr.Row(equal_height=False, elem_id="panels-row"):
        with gr.Column(scale=1, min_width=360):
            w["accept_plot"] = ctx.placeholder(gr.Plot(empty, label="Accept map", elem_id="accept-map",
                                                       show_label=False), views.PLACEHOLDER)
        with gr.Column(scale=1, min_width=360):
            w["gsp_plot"] = ctx.placeholder(gr.Plot(empty, label="Optimiser graph", elem_id="gsp", show_label=False),
                                            views.PLACEHOLDER)
    w["mass_plot"] = ctx.placeholder(gr.Plot(empty, label="Mass balance", elem_id="mass-balance", show_label=False),
                                     views.PLACEHOLDER)
    return w


# --------------------------------------------------------------------------------------------
# wiring
# --------------------------------------------------------------------------------------------
def wire(ctx: Context, tab: GenerateTab) -> None:
    level_outputs = tab.level_rows + tab.buffer_sliders + tab.rule_dropdowns
    tab.family.change(bind(on_family, ctx, tab), [tab.family], [tab.models, tab.view_level, tab.legend]
                      + tab.buffer_sliders, api_visibility="private")
    tab.models.change(bind(on_models, ctx, tab), [tab.family, tab.models], level_outputs, api_visibility="private")
    ctx.demo.load(bind(on_models, ctx, tab), [tab.family, tab.models], level_outputs, api_visibility="private")
    names = ["prompt"] + tab.stack_names() + SAMPLING_NAMES + ["time_target_alone", "dark_theme"]
    inputs = [tab.prompt] + tab.stack_inputs + tab.sampling_inputs + [tab.ar_check, ctx.dark]
    # preprocess=False: raw widget values reach make_request, which answers every malformed
    # value (null, text for a number, ...) with its own sentence instead of Gradio's generic error
    decode = dict(concurrency_id="decode", concurrency_limit=ctx.limits.concurrency, show_progress="minimal",
                  preprocess=False)
    gen_event = tab.gen_btn.click(bind(generate, ctx, tab, names=names), inputs, tab.outputs(), api_name="generate",
                                  **decode)
    submit_event = tab.prompt.submit(bind(generate, ctx, tab, names=names), inputs, tab.outputs(),
                                     api_visibility="private", **decode)
    tab.events = (gen_event, submit_event)
    # Stop and Clear first signal this page's running decode and wait for its last update (see
    # session.StopSignals), then press the hidden button that cancels a decode still waiting in
    # the queue.  (Gradio's ``cancels`` works on a direct trigger, not on a ``.then`` step; on
    # Stop's own click it would race the running decode's last update.)
    quiet = dict(api_visibility="private", show_progress="hidden")
    tab.cancel_queued_btn.click(None, cancels=[gen_event, submit_event], **quiet)
    press = dict(js="() => document.querySelector('#cancel-queued-btn')?.click()", **quiet)
    tab.stop_btn.click(bind(request_stop, ctx), [tab.stats], [tab.stats], queue=False, **quiet).then(None, **press)
    tab.clear_btn.click(bind(clear, ctx, tab), [ctx.dark], [tab.prompt, tab.tokens, tab.stats, tab.timeline,
                                                             tab.accept_plot, tab.mass_plot, ctx.trace_state,
                                                             tab.download, tab.code, tab.note],
                        queue=False, api_visibility="private").then(None, **press)
    room = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private")
    fit_in = [tab.family, tab.prompt, tab.max_new, tab.max_new_wanted]
    tab.prompt.change(bind(fit_max_new, ctx), fit_in, [tab.max_new, tab.note], **room)
    tab.family.change(bind(fit_max_new, ctx), fit_in, [tab.max_new, tab.note], **room)
    tab.max_new.input(bind(keep_wanted, ctx), [tab.max_new, tab.max_new_wanted], [tab.max_new_wanted],
                      api_visibility="private", show_progress="hidden")
    views_out = [tab.accept_plot, tab.mass_plot, tab.view_index]
    tab.view_index.release(bind(redraw_views, ctx), [ctx.trace_state, tab.view_level, tab.view_index, ctx.dark],
                           views_out, api_visibility="private")
    tab.view_level.input(bind(redraw_latest, ctx), [ctx.trace_state, tab.view_level, ctx.dark], views_out,
                         api_visibility="private")
    tab.optimal_btn.click(bind(use_optimal, ctx, tab), [tab.family, tab.models, tab.temperature],
                          [tab.models] + tab.buffer_sliders,
                          api_visibility="private")


def on_family(ctx: Context, tab: GenerateTab, spec):
    """A new family: its models, the optimiser's (or the default) stack and buffers."""
    try:
        spec = ctx.families.check_allowed(spec)
        reason = ctx.families.unavailable(spec)
    except Exception as e:
        raise session.as_gr_error(e) from e
    if reason:
        raise session.refuse(reason)
    names = ctx.families.names(spec)
    if not names:
        raise session.refuse(f"No models found for {spec!r}; use the bundled family or local model folders.")
    stack, bufs = default_plan(ctx.families, spec, names, ctx.limits)
    out = {tab.models: gr.update(choices=names, value=stack),
           tab.view_level: gr.update(choices=views.level_choices(stack), value=len(stack) - 1 if len(stack) > 1 else None),
           tab.legend: visual.legend_html(stack)}
    out.update({s: gr.update(value=b) for s, b in zip(tab.buffer_sliders, bufs)})
    return out


def on_models(ctx: Context, tab: GenerateTab, spec, mods):
    """Show one buffer and one rule per draft level of the chosen stack, named by its model."""
    names = ctx.families.names(spec)
    try:
        chain = chain_of(mods or [], names) if names else []
    except Exception as exc:
        session.log_skipped("showing the stack's buffers and rules", exc)
        chain = []
    out = {}
    for i, (row, slider, rule) in enumerate(zip(tab.level_rows, tab.buffer_sliders, tab.rule_dropdowns)):
        out[row] = gr.update(visible=i < len(chain) - 1)
        if i < len(chain) - 1:
            out[slider] = gr.update(label=f"L{i} {names[chain[i]]}: buffer")
            out[rule] = gr.update(label=f"rule at L{i + 1} {names[chain[i + 1]]}")
    return out


def generate(ctx: Context, tab: GenerateTab, prompt_text, *values):
    """Stream a hierarchical decode: coloured tokens every target round, panels at most every
    HSD_PANEL_INTERVAL_S, the trace (plain dict) and a download at the end."""
    n = len(tab.stack_inputs)
    stack, rest = values[:n], values[n:]
    temperature, top_p, top_k, seed, max_new, time_ar, dark = (list(rest) + [None] * 7)[:7]
    fam, mods = stack[0], stack[1]
    bufs, rules = list(stack[2:2 + ctx.slots]), list(stack[2 + ctx.slots:])
    try:
        req = make_request(ctx.families, prompt_text, fam, mods, bufs, rules, temperature, top_p, top_k, seed,
                           max_new)
        with ctx.stops.running(current_session()) as run:
            yield from _stream(ctx, tab, req, bool(time_ar), bool(dark), run.requested.is_set)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc


def _stream(ctx: Context, tab: GenerateTab, req: Request, time_ar: bool, dark: bool, stop=None):
    """1) time the target alone first (optional), 2) stream the decode's traces, 3) each update as
    the budget allows: tokens and stats, then panels, then at the end the trace and download.
    ``stop()`` (Stop was pressed) ends the decode after its current round; the last update, like
    any decode's last, has the panels, the trace and its download, and the status says stopped."""
    names = ctx.families.names(req.family)
    level_names = [names[i] for i in req.chain]
    cmap = visual.token_color_map(level_names)
    legend = visual.legend_html(level_names)
    ar_trace = None
    if time_ar and len(req.chain) > 1:                                           # 1)
        yield {tab.tokens: gr.update(value=[], color_map=cmap), tab.legend: legend,
               tab.stats: "*Timing the target alone first (same prompt and seed)…*"}
        ar_trace = session.run_to_end(req.with_stack([req.chain[-1]], []), stop)
        if stop is not None and stop():
            yield {tab.stats: mark_stopped("")}
            return
    pred = views.prediction(ctx.families, req, names)
    budget = session.UiBudget(ctx.limits.ui_share, ctx.limits.panel_interval_s, ctx.limits.token_interval_s)
    panels_ctx = _PanelState(ctx, req, names, dark)
    for trace in session.stream_trace(req, stop):                                # 2)
        finished = trace.events[-1].kind == "finished"
        show, panels = budget.decide(finished)
        if not show:
            continue
        started = time.monotonic()                                               # 3)
        spans = visual.token_spans(trace, with_names=True)
        out = {tab.tokens: gr.update(value=spans, color_map=cmap) if budget.updates == 0 else spans,
               tab.code: visual.code_html(spans),
               tab.stats: visual.stats_markdown(trace, ar_trace, *_predicted(pred))}
        if finished:
            out[tab.stats] += (f"  \n*Page updates paused the decode {budget.spent_s * 1000:.0f} ms in all "
                               f"({budget.updates} update{'s' if budget.updates != 1 else ''}).*")
        if panels:
            out.update(panels_ctx.panels(tab, trace, legend))
        if finished:
            out.update(_final(tab, trace, req, level_names))
        yield out
        budget.record(started, panels=panels)


def _predicted(pred) -> tuple:
    """``stats_markdown``'s prediction arguments from a ``views.Prediction`` (or None)."""
    return (None, None, None) if pred is None else (pred.speedup, pred.profile, pred.note)


class _PanelState:
    """What the panel updates of one decode build once: the token decoder, the optimiser graph."""

    def __init__(self, ctx: Context, req: Request, names, dark: bool):
        self.ctx, self.req, self.names, self.dark = ctx, req, names, dark
        self.id_to_text = None
        self.gsp_sent = False

    def panels(self, tab: GenerateTab, trace: Trace, legend: str) -> dict:
        if self.id_to_text is None:
            self.id_to_text = views.decoder_for(self.ctx.families, self.req.family)
        dark = self.dark
        out = {tab.timeline: session.fast_plot(lambda: visual.figure_timeline(trace, dark=dark)),
               tab.accept_plot: session.fast_plot(lambda: visual.figure_accept_map(trace, dark=dark)),
               tab.mass_plot: session.fast_plot(lambda: views.figure_mass_for(trace, None, None, self.id_to_text, dark))}
        if not self.gsp_sent:                            # the graph and legend do not change in a decode
            out[tab.gsp_plot] = session.fast_plot(
                lambda: views.gsp_figure(self.ctx.families, self.req.family, self.names,
                                         (list(self.req.chain), list(self.req.buffers)),
                                         decode_kind(self.req.temperature), dark))
            out[tab.legend] = legend
            self.gsp_sent = True
        return out


def _final(tab: GenerateTab, trace: Trace, req: Request, level_names) -> dict:
    """The end of a decode: the trace kept in the session, its download, the panel selectors."""
    state = trace.to_dict()
    state["meta"]["request"] = req.meta(level_names)
    n_target = len(views.verifications(trace))
    try:
        download = gr.update(value=session.save_trace(state), interactive=True)
    except HSDError as exc:           # the decode is complete: only its download file is missing
        session.log_skipped("the trace download", exc)
        gr.Warning(f"{str(exc)[:1].upper()}{str(exc)[1:]}; the text and the panels are complete.")
        download = gr.update(value=None, interactive=False)
    return {tab.trace_state: state,
            tab.download: download,
            tab.view_index: gr.update(maximum=max(n_target, 2), value=max(n_target, 1)),
            tab.view_level: gr.update(choices=views.level_choices(level_names),
                                      value=len(level_names) - 1 if len(level_names) > 1 else None)}


def clear(ctx: Context, tab: GenerateTab, dark):
    ctx.stops.stop(current_session(), STOP_WAIT_S)       # a decode running now sends nothing after this
    empty = visual.figure_empty(views.PLACEHOLDER, dark=bool(dark))
    return {tab.prompt: "", tab.tokens: [], tab.stats: "*Press Generate.*", tab.timeline: empty,
            tab.accept_plot: empty, tab.mass_plot: empty, tab.trace_state: None,
            tab.download: gr.update(value=None, interactive=False), tab.code: visual.code_html([]), tab.note: ""}


def request_stop(ctx: Context, stats):
    """Stop: signal this page's running decode and wait (up to ``STOP_WAIT_S``) until it has sent
    its last update, which says stopped; then there is nothing to change.  With no decode running
    (one still waiting in the queue: the next step cancels it), or one that did not end in time
    (it is cancelled too), the status line is changed here."""
    signalled, ended = ctx.stops.stop(current_session(), STOP_WAIT_S)
    if signalled and ended:
        return gr.skip()
    return mark_stopped(stats)


def mark_stopped(stats) -> str:
    """The status line says stopped, unless the decode had already finished."""
    text = str(stats or "")
    if "*Status: finished" in text:
        return text
    if "*Status:" in text:
        return text[:text.rindex("*Status:")] + f"*Status: {visual.text.STATUS['cancelled']}*"
    return f"*Status: {visual.text.STATUS['cancelled']}*"


def fit_max_new(ctx: Context, spec, prompt, max_new, wanted=None):
    """The max-new-tokens slider's range: what the limit and the model's context leave after this
    prompt.  The value the visitor asked for (``wanted``; else the slider's) comes down to the
    range, with one sentence, and back up to what they asked once a shorter prompt leaves room."""
    tab = ctx.generate
    try:
        room, why = ctx.families.room(spec, prompt, ctx.limits.max_new_tokens)
    except HSDError:                         # a family that cannot load: on_family says so
        return unchanged([tab.max_new, tab.note])
    value = _whole_or_none(max_new)
    asked = _whole_or_none(wanted) or value or min(96, room)
    if value is None or asked > room:
        shown = min(asked, room)
        note = f"Max new tokens lowered from {asked} to {room}: {why}." if asked > room else ""
        return {tab.max_new: gr.update(maximum=room, value=shown), tab.note: note}
    if value != asked:                      # an earlier prompt had lowered it: there is room again
        return {tab.max_new: gr.update(maximum=room, value=asked), tab.note: ""}
    return {tab.max_new: gr.update(maximum=room), tab.note: ""}


def keep_wanted(ctx: Context, max_new, wanted):
    """The visitor moved the slider: that value (within the app's limit) is what they ask for
    from now on."""
    value = _whole_or_none(max_new)
    return wanted if value is None else min(value, ctx.limits.max_new_tokens)


def _whole_or_none(value) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 1 else None


def redraw_outputs(tab: GenerateTab) -> list:
    """The panels ``redraw_panels`` draws again."""
    return [tab.timeline, tab.accept_plot, tab.mass_plot, tab.gsp_plot]


def redraw_panels(ctx: Context, tab: GenerateTab, trace_dict, dark) -> dict:
    """The panels of the stored last run (or the empty ones), in the look being drawn."""
    dark = bool(dark)
    if not trace_dict:
        empty = visual.figure_empty(views.PLACEHOLDER, dark=dark)
        return dict.fromkeys(redraw_outputs(tab), empty)
    trace = Trace.from_dict(trace_dict)
    meta = trace_dict.get("meta", {}).get("request", {})
    spec = meta.get("family", trace.meta.get("family", ctx.limits.family))
    names = ctx.families.names(spec)
    current = (meta.get("chain", []), meta.get("buffers", []))
    gsp = views.gsp_figure(ctx.families, spec, names, current, decode_kind(meta.get("temperature", 1.0)), dark)
    return {tab.timeline: visual.figure_timeline(trace, dark=dark),
            tab.accept_plot: visual.figure_accept_map(trace, dark=dark),
            tab.mass_plot: views.figure_mass_for(trace, None, None, views.decoder_for(ctx.families, spec), dark),
            tab.gsp_plot: gsp}


def redraw_views(ctx: Context, trace_dict, level, index, dark):
    """The accept map and mass balance of the chosen verification of the stored trace."""
    if not trace_dict:
        return gr.skip(), gr.skip(), gr.update()
    trace = Trace.from_dict(trace_dict)
    lv = int(level) if level is not None else None
    n = len(views.verifications(trace, lv))
    spec = trace.meta.get("family", ctx.limits.family)
    i = min(max(int(float(index or 1)), 1), max(n, 1))          # 1-based, as the slider shows it
    mb = views.figure_mass_for(trace, lv, i - 1, views.decoder_for(ctx.families, spec), bool(dark))
    am = visual.figure_accept_map(trace, level=lv, dark=bool(dark))
    return am, mb, gr.update(maximum=max(n, 2), value=i)


def redraw_latest(ctx: Context, trace_dict, level, dark):
    """A new verifier level: its latest verification."""
    return redraw_views(ctx, trace_dict, level, 10**9, dark)


def use_optimal(ctx: Context, tab: GenerateTab, spec, mods, temperature=1.0):
    names = ctx.families.names(spec)
    plan = ctx.families.plan(spec, names, kind=decode_kind(temperature))
    if plan is None:
        raise session.refuse("No profile of this family yet: open the Optimise tab and press Optimise first.")
    return stack_updates(ctx, tab, plan.chain, plan.buffers, names)


def stack_updates(ctx: Context, tab: GenerateTab, chain, buffers, names) -> dict:
    """Set the stack widgets to a hierarchy (from the optimiser, or a plan picked elsewhere)."""
    out = {tab.models: gr.update(value=[names[c] for c in chain])}
    out.update({s: gr.update(value=min(whole(b, "a buffer", 1, 10**6), ctx.limits.max_buffer))
                for s, b in zip(tab.buffer_sliders, buffers)})
    return out
