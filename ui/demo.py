"""The Blocks: the intro, the four tabs (``ui.tabs``), the state they share, and the dark-theme
redraw of the placeholders.  No model is loaded here; the first request loads the family.

Sessions share nothing but the read-only models, the profiles (measurements of this machine) and
the plans derived from them (``ui.registry``); every request builds its own Hierarchy and caches,
and ``gr.State`` holds only plain dicts.
"""
from __future__ import annotations

import gradio as gr

import visual
from ui import session
from ui.context import PRESENTER, Context, bind, current_session, unchanged
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


class ExplorerBlocks(gr.Blocks):
    """gr.Blocks whose API answers a malformed request with ONE sentence, never silence.

    Gradio checks a request before any handler runs (the number of values, each widget's value
    model, a choice outside a dropdown's list) and answers what fails with an exception the page
    shows as a bare "Error", or with a message that echoes the whole bad value.  Here every such
    failure becomes one short sentence naming the endpoint (``session.input_error``), logged as
    one line.  And a request body FastAPI refuses (a JSON body of the wrong shape) is answered
    with HTTP 422 even when it holds NaN or infinity, which FastAPI's own handler cannot write
    (it answered 500).  It keeps at most ``max_sessions`` sessions' state (``Limits``)."""

    max_sessions = Limits.max_sessions

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as exc:
            raise session.input_error(getattr(block_fn, "api_name", None) or getattr(block_fn, "name", "?"),
                                      exc) from exc

    def launch(self, *args, **kwargs):
        from fastapi.exceptions import RequestValidationError

        kwargs.setdefault("state_session_capacity", self.max_sessions)     # bounded memory (Limits)
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        handlers = dict(app_kwargs.get("exception_handlers") or {})
        handlers.setdefault(RequestValidationError, session.refused_body)
        app_kwargs["exception_handlers"] = handlers
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)


def build_demo(limits: Limits | None = None, families: Families | None = None) -> gr.Blocks:
    """1) the shared state, 2) each tab's layout, 3) each tab's wiring, 4) the theme redraw."""
    limits = limits or Limits.from_env()
    ctx = Context(limits=limits, families=families or Families(limits), prompts=load_prompts())
    with ExplorerBlocks(title="HSD Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        ctx.demo = demo                                                          # 1)
        demo.max_sessions = limits.max_sessions
        ctx.dark = gr.Checkbox(value=False, visible=False, elem_id="dark-flag")
        ctx.trace_state = gr.State(None, time_to_live=7200)
        with gr.Row(elem_id="presenter-row"):
            gr.Markdown(INTRO, elem_id="intro")
            ctx.presenter = gr.Checkbox(False, label="Presenter view", elem_id="presenter-toggle", scale=0,
                                        min_width=190, info="large text for a projector (or ?presenter=1)")
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
        demo.load(None, None, [ctx.dark, ctx.presenter], js=PAGE_LOOK_JS, api_visibility="private").then(
            bind(start_look, ctx), [ctx.dark, ctx.presenter], plots, api_visibility="private").then(
            lambda dark: visual.legend_html(ctx.generate.stack0), [ctx.dark], [ctx.generate.legend],
            api_visibility="private")
        redrawn = generate.redraw_outputs(ctx.generate) + lrn.views()
        ctx.presenter.input(bind(toggle_presenter, ctx, lrn), [ctx.presenter, ctx.dark, ctx.trace_state, lrn.state,
                                                               lrn.slider], redrawn,
                            js=PRESENTER_JS, api_visibility="private", show_progress="hidden")
    return demo


# A number typed into a slider's box outside its range is clamped by Gradio when the box loses
# focus, silently.  This listener (capturing, so it sees the typed value first) says so beside the
# slider in one sentence: what was typed, the range, and the value it became.
CLAMP_NOTE_JS = """
if (!window.__hsdClampNotes) {
  window.__hsdClampNotes = true;
  document.addEventListener('change', (ev) => {
    const el = ev.target;
    if (!(el instanceof HTMLInputElement) || el.type !== 'number') return;
    const block = el.closest('.block');
    if (!block) return;
    const old = block.querySelector('.hsd-clamp-note');
    if (old) old.remove();
    const lo = el.min === '' ? -Infinity : Number(el.min), hi = el.max === '' ? Infinity : Number(el.max);
    const raw = el.value.trim(), v = Number(raw);
    let why = null, to = null;
    if (raw === '' || !Number.isFinite(v)) { why = `"${raw}" is not a number`; to = lo; }
    else if (v > hi) { why = `${raw} is above the largest value allowed here, ${hi}`; to = hi; }
    else if (v < lo) { why = `${raw} is below the smallest value allowed here, ${lo}`; to = lo; }
    else if (el.step && el.step !== 'any' && Math.abs(v / Number(el.step) - Math.round(v / Number(el.step))) > 1e-9) {
      why = `${raw} is not a whole step of ${el.step}`; to = Math.round(v / Number(el.step)) * Number(el.step); }
    if (why === null) return;
    const name = (el.getAttribute('aria-label') || '').replace(/^number input for /, '') || 'This value';
    const note = document.createElement('div');
    note.className = 'hsd-clamp-note';
    note.setAttribute('role', 'status');
    note.textContent = `${name}: ${why}; it was set to ${to}.`;
    block.appendChild(note);
  }, true);
}
"""

# the page's look, read once: the theme Gradio chose and ?presenter=1 (which sets the body class)
PAGE_LOOK_JS = """() => {
  const presenter = ['1', 'true', 'yes', 'on'].includes(
      (new URLSearchParams(window.location.search).get('presenter') || '').toLowerCase());
  document.body.classList.toggle('hsd-presenter', presenter);
""" + CLAMP_NOTE_JS + """
  return [document.body.classList.contains('dark'), presenter];
}"""
PRESENTER_JS = """(on, ...rest) => { document.body.classList.toggle('hsd-presenter', !!on); return [on, ...rest]; }"""


def start_look(ctx: Context, dark, presenter=False) -> dict:
    """The page's look at load: the presenter view remembered for this session, and the empty
    panels drawn again when the theme is dark or the view is the presenter's."""
    PRESENTER.set(current_session(), bool(presenter))
    return redraw_placeholders(ctx, dark, bool(presenter))


def redraw_placeholders(ctx: Context, dark, presenter: bool = False) -> dict:
    """The empty panels drawn again in the dark template or the presenter view."""
    if not dark and not presenter:
        return unchanged(p for p, _ in ctx.placeholders)
    with visual.theme.presenting(presenter):
        return {plot: visual.figure_empty(message, dark=bool(dark)) for plot, message in ctx.placeholders}


def toggle_presenter(ctx: Context, lrn, on, dark, trace_dict, learn_trace, learn_step) -> dict:
    """The presenter view on or off for this session: the Generate tab's panels (its last run) and
    the Learn tab's step are drawn again in the new look; panels on the other tabs follow the next
    time they are drawn (the page's text follows at once: ``PRESENTER_JS``)."""
    on = bool(on)
    PRESENTER.set(current_session(), on)
    with visual.theme.presenting(on):
        return {**generate.redraw_panels(ctx, ctx.generate, trace_dict, dark),
                **learn.learn_view(ctx, lrn, learn_trace, learn_step, dark)}


def launch_options() -> dict:
    """What ``demo.launch`` needs beyond the server address: the theme, the CSS, the footer."""
    css = CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None
    return dict(theme=gr.themes.Soft(), css=css, footer_links=["api", "settings"])
