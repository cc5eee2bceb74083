"""The Learn tab: step through a recorded decode one engine event at a time (draft → verify →
accept/replace → crop → commit), narrated by ``visual.text``; and the exactness lab, each rule's
exact output distribution next to the target's on a tiny vocabulary."""
from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

import visual
from hsd.errors import HSDError
from hsd.plan.exactness import exactness_lab, lab_table
from hsd.trace import Trace
from ui import registry, session, views
from ui.context import Context, bind, unchanged
from ui.tabs import scenarios

LAST_RUN = "last run (Generate tab)"
NO_TRACE = "Load a trace."


@dataclass
class LearnTab:
    tab: gr.Tab
    state: gr.State                 # the trace being stepped through, a plain dict
    source: gr.Dropdown
    load: gr.Button
    prev_btn: gr.Button
    step_btn: gr.Button
    play_btn: gr.Button
    pause_btn: gr.Button
    slider: gr.Slider
    timer: gr.Timer
    explain: gr.Markdown
    tokens: gr.HighlightedText
    code: gr.HTML                   # the output so far as code (monospace, per-token colours)
    timeline: gr.Plot
    accept: gr.Plot
    mass: gr.Plot
    lab_kind: gr.Radio
    lab_vocab: gr.Slider
    lab_gamma: gr.Slider
    lab_seed: gr.Number
    lab_btn: gr.Button
    lab_fig: gr.Plot
    lab_df: gr.Dataframe
    scenario_buttons: dict          # key -> gr.Button (ui.tabs.scenarios)
    scenario_note: gr.Markdown

    def views(self) -> list:
        return [self.explain, self.tokens, self.timeline, self.accept, self.mass, self.code]

    def lab_inputs(self, ctx: Context) -> list:
        return [self.lab_kind, self.lab_vocab, self.lab_gamma, self.lab_seed, ctx.dark]


def build(ctx: Context, tab: gr.Tab) -> LearnTab:
    w = {"tab": tab, "state": gr.State(None, time_to_live=7200)}
    w["scenario_buttons"], w["scenario_note"] = scenarios.build(ctx)
    gr.Markdown("### Step through a recorded decode\nEach step is one engine event: **draft** (the "
                "smallest model samples a block) → **verify** (a larger model scores the block in one "
                "pass) → **accept / replace** → **crop** (rejected drafts are forgotten) → **commit**.")
    choices = list(registry.example_traces()) + [LAST_RUN]
    with gr.Row():
        w["source"] = gr.Dropdown(choices, value=choices[0], label="Recorded trace", scale=3)
        w["load"] = gr.Button("Load", scale=1)
    with gr.Row():
        w["prev_btn"] = gr.Button("◀ Back", size="sm")
        w["step_btn"] = gr.Button("Step ▶", size="sm", variant="primary")
        w["play_btn"] = gr.Button("Play", size="sm")
        w["pause_btn"] = gr.Button("Pause", size="sm")
        w["slider"] = gr.Slider(1, 2, value=1, step=1, label="Step", scale=4, elem_id="learn-slider")
    w["timer"] = gr.Timer(1.2, active=False)
    w["explain"] = gr.Markdown("Load a trace to begin.", elem_id="learn-explain")
    w["code"] = gr.HTML(visual.code_html([]), label="Output so far", show_label=True, elem_id="learn-code",
                        container=True)
    with gr.Accordion("The same tokens as chips, with the legend of this trace's levels", open=False):
        w["tokens"] = gr.HighlightedText(label="Output so far", color_map=visual.TOKEN_COLOR_MAP, show_legend=True,
                                         show_inline_category=False, elem_id="learn-tokens")
    for key, elem in (("timeline", "learn-timeline"), ("accept", "learn-accept"), ("mass", "learn-mass")):
        w[key] = ctx.placeholder(gr.Plot(visual.figure_empty(NO_TRACE), show_label=False, elem_id=elem), NO_TRACE)
    gr.Markdown("### Exactness lab\nOne verification round of a γ-token draft, then the target "
                "alone, enumerated **exactly** over a tiny vocabulary: the lossless rules reproduce "
                "the target's distribution (TV ≈ 0); the uncapped variant does not. The *toy* is the "
                "counterexample from our design notes (target (1/3, 2/3), draft (2/3, 1/3)).")
    with gr.Row():
        w["lab_kind"] = gr.Radio(["toy", "random"], value="toy", label="Example")
        w["lab_vocab"] = gr.Slider(2, 4, value=3, step=1, label="Vocabulary size (random)")
        w["lab_gamma"] = gr.Slider(1, 3, value=2, step=1, label="Block length γ")
        w["lab_seed"] = gr.Number(0, precision=0, label="Seed (random)")
        w["lab_btn"] = gr.Button("Compute", variant="primary")
    w["lab_fig"] = ctx.placeholder(gr.Plot(visual.figure_empty("Press Compute."), show_label=False,
                                           elem_id="exactness"), "Press Compute.")
    w["lab_df"] = gr.Dataframe(headers=["rule", "kind", "TV distance", "E[accepted draft tokens]"],
                               interactive=False, label="Per rule")
    return LearnTab(**w)


def wire(ctx: Context, tab: LearnTab) -> None:
    private = dict(api_visibility="private")
    loaded = [tab.state, tab.slider] + tab.views()
    tab.tab.select(bind(learn_auto, ctx, tab), [tab.state, tab.source, ctx.trace_state, ctx.dark], loaded, **private)
    tab.load.click(bind(learn_load_fn, ctx, tab), [tab.source, ctx.trace_state, ctx.dark], loaded, **private)
    tab.slider.change(bind(learn_view, ctx, tab), [tab.state, tab.slider, ctx.dark], tab.views(),
                      trigger_mode="always_last", show_progress="hidden", **private)
    stepping = ([tab.state, tab.slider], [tab.slider, tab.timer])
    tab.step_btn.click(bind(step_forward, tab), *stepping, **private)
    tab.prev_btn.click(bind(step_back, tab), *stepping, **private)
    tab.timer.tick(bind(step_forward, tab), *stepping, show_progress="hidden", **private)
    tab.play_btn.click(play, None, tab.timer, **private)
    tab.pause_btn.click(pause, None, tab.timer, **private)
    lab = bind(lab_fn, tab)
    tab.lab_btn.click(lab, tab.lab_inputs(ctx), [tab.lab_fig, tab.lab_df], **private)
    tab.tab.select(lab, tab.lab_inputs(ctx), [tab.lab_fig, tab.lab_df], **private)


def learn_load_fn(ctx: Context, tab: LearnTab, src, last_trace, dark):
    """Load the chosen recorded trace (or the last Generate run) at its first step."""
    if src == LAST_RUN or src is None:
        if not last_trace:
            raise session.refuse("No run yet: press Generate on the Generate tab first, or pick a recorded example.")
        d = last_trace
    else:
        path = registry.example_traces().get(src)
        if path is None:
            raise session.refuse(f"The recorded example {src!r} is missing.")
        d = json.loads(path.read_text(encoding="utf-8"))
    n = len(visual.learn_steps(_trace(d)))
    return {tab.state: d, tab.slider: gr.update(minimum=1, maximum=max(n, 2), value=1),
            **learn_view(ctx, tab, d, 1, dark)}


def learn_auto(ctx: Context, tab: LearnTab, current, src, last_trace, dark):
    """Opening the tab loads the chosen example once, so there is something to step through."""
    if current or (src == LAST_RUN and not last_trace):
        return unchanged([tab.state, tab.slider] + tab.views())
    return learn_load_fn(ctx, tab, src, last_trace, dark)


def learn_view(ctx: Context, tab: LearnTab, d, step, dark):
    """Step ``step`` (1 = the first, as the slider and the counter show it) of trace ``d``: its
    sentence and the panels as they stood after it; the timeline keeps the whole trace's axes."""
    dark = bool(dark)
    if not d:
        return _empty_view(tab, "Load a trace to begin.", NO_TRACE, dark)
    trace = _trace(d)
    steps = visual.learn_steps(trace)
    if not steps:
        return _empty_view(tab, "This trace has no steps.", "This trace has no steps.", dark)
    step = max(0, min(_whole_step(step) - 1, len(steps) - 1))
    part = visual.partial_trace(trace, steps[step])
    names = list(trace.started.models) if trace.started else []
    event = trace.events[steps[step]]
    last_v = event if event.kind == "verified" else next(
        (e for e in reversed(part.events) if e.kind == "verified"), None)
    id_to_text = views.decoder_for(ctx.families, trace.meta.get("family", ctx.limits.family))
    mass = (visual.figure_mass_balance(last_v, id_to_text=id_to_text, dark=dark) if last_v is not None
            else visual.figure_empty("No verification yet at this step.", dark=dark))
    spans = visual.token_spans(part, with_names=True)
    return {tab.explain: f"**Step {step + 1} / {len(steps)}** · " + visual.explain(event, names),
            tab.tokens: gr.update(value=spans, color_map=visual.token_color_map(names)),
            tab.code: visual.code_html(spans),
            tab.timeline: visual.figure_timeline(part, dark=dark, whole=trace),
            tab.accept: visual.figure_accept_map(part, level=last_v.level if last_v is not None else None, dark=dark),
            tab.mass: mass}


def _whole_step(step) -> int:
    try:
        return int(float(step))
    except (TypeError, ValueError, OverflowError):       # junk, NaN, ±inf: the first step
        return 1


def _trace(d) -> Trace:
    """The stored trace, or one sentence when it is not one (a damaged file, a foreign dict)."""
    try:
        return Trace.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise session.refuse(f"This trace cannot be read ({type(exc).__name__}); load an example or "
                             "press Generate again.") from exc


def _empty_view(tab: LearnTab, sentence: str, message: str, dark: bool) -> dict:
    e = visual.figure_empty(message, dark=dark)
    return {tab.explain: sentence, tab.tokens: [], tab.timeline: e, tab.accept: e, tab.mass: e,
            tab.code: visual.code_html([])}


def _step_by(tab: LearnTab, d, step, delta: int) -> dict:
    if not d:
        return unchanged([tab.slider, tab.timer])
    n = len(visual.learn_steps(_trace(d)))
    new = max(1, min(_whole_step(step) + delta, n))
    out = {tab.slider: gr.update(value=new)}
    if delta > 0 and new >= n:                           # the end: stop playing
        out[tab.timer] = gr.Timer(active=False)
    return out


def step_forward(tab: LearnTab, d, step):
    return _step_by(tab, d, step, 1)


def step_back(tab: LearnTab, d, step):
    return _step_by(tab, d, step, -1)


def play():
    return gr.Timer(active=True)


def pause():
    return gr.Timer(active=False)


def lab_fn(tab: LearnTab, kind, vocab, gamma, seed, dark):
    """The exactness lab: exact output distributions of every rule next to the target's."""
    try:
        lab = exactness_lab(kind, vocab=int(vocab), gamma=int(gamma), seed=int(seed or 0))
    except HSDError as e:
        raise session.as_gr_error(e) from e
    return {tab.lab_fig: visual.figure_exactness(lab, dark=bool(dark)), tab.lab_df: lab_table(lab)}
