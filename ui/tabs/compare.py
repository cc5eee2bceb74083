"""The Compare tab: 2–4 hierarchies (autoregressive, best single draft, optimal, yours) on the same
prompt, seed and sampling settings, one after another; outputs, wall-clock speed and the
model-predicted ms/token side by side.  ``/compare`` is its API endpoint."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

import visual
from ui import session
from ui.context import Context, bind
from ui.requests import CONTENDERS, Request, compare_requests, make_request
from ui.tabs.generate import SAMPLING_NAMES

CMP_HEADERS = ["hierarchy", "stack [buffer]", "tokens/s (wall clock)", "tokens / target call",
               "ms/token (wall clock)", "ms/token (model-predicted)", "tokens"]


@dataclass
class CompareTab:
    prompt: gr.Textbox
    contenders: gr.CheckboxGroup
    button: gr.Button
    status: gr.Markdown
    figure: gr.Plot
    table: gr.Dataframe
    columns: list                  # (heading, tokens, timeline) per contender

    def outputs(self) -> list:
        return [self.status, self.figure, self.table] + [c for col in self.columns for c in col]


def build(ctx: Context) -> CompareTab:
    gr.Markdown("Run several hierarchies on the **same prompt, seed and sampling settings**, one after "
                "another (never at once, so the wall-clock timings are fair). *Yours* is the stack set on "
                "the Generate tab; *best single draft* and *optimal* come from the optimiser "
                "(model-predicted, needs a profile).")
    prompts = ctx.prompts
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value=prompts[min(2, len(prompts) - 1)][1], lines=2, scale=3,
                            elem_id="cmp-prompt")
        contenders = gr.CheckboxGroup(CONTENDERS, value=list(CONTENDERS), label="Hierarchies", scale=2)
    button = gr.Button("Compare", variant="primary", elem_id="compare-btn")
    status = gr.Markdown("")
    figure = ctx.placeholder(gr.Plot(visual.figure_empty("Press Compare."), show_label=False, elem_id="compare-plot"),
                             "Press Compare.")
    table = gr.Dataframe(headers=CMP_HEADERS, label="Measured (wall clock) and model-predicted",
                         interactive=False, wrap=True)
    columns = []
    with gr.Row(equal_height=False):
        for label in CONTENDERS:
            with gr.Column(min_width=560):          # two per row on a laptop screen
                columns.append((gr.Markdown(f"**{label}**"),
                                gr.HighlightedText(label="output", color_map=visual.TOKEN_COLOR_MAP, show_legend=False,
                                                   show_inline_category=False, elem_classes=["cmp-tokens"]),
                                gr.Plot(visual.figure_empty(" "), show_label=False)))
    return CompareTab(prompt, contenders, button, status, figure, table, columns)


def wire(ctx: Context, tab: CompareTab) -> None:
    gen = ctx.generate
    names = ["prompt", "hierarchies"] + gen.stack_names() + SAMPLING_NAMES + ["dark_theme"]
    tab.button.click(bind(compare, ctx, tab, names=names),
                     [tab.prompt, tab.contenders] + gen.stack_inputs + gen.sampling_inputs + [ctx.dark],
                     tab.outputs(), api_name="compare", concurrency_id="decode",
                     concurrency_limit=ctx.limits.concurrency, preprocess=False)


def compare(ctx: Context, tab: CompareTab, prompt_text, chosen, *values):
    """Run the chosen hierarchies one after another on the same prompt/seed/settings."""
    n = len(ctx.generate.stack_inputs)
    stack, rest = values[:n], values[n:]
    temperature, top_p, top_k, seed, max_new, dark = (list(rest) + [None] * 6)[:6]
    bufs, rules = list(stack[2:2 + ctx.slots]), list(stack[2 + ctx.slots:])
    try:
        req = make_request(ctx.families, prompt_text, stack[0], stack[1], bufs, rules, temperature, top_p, top_k,
                           seed, max_new)
        yield from _runs(ctx, tab, req, list(chosen or CONTENDERS), bool(dark))
    except Exception as exc:
        raise session.as_gr_error(exc) from None


def _runs(ctx: Context, tab: CompareTab, req: Request, chosen: list[str], dark: bool):
    """1) one request per contender, 2) each run to the end in turn, 3) its column, the table and
    the figure updated after each."""
    names = ctx.families.names(req.family)
    runs, skipped = compare_requests(ctx.families, req, names, chosen)              # 1)
    for sentence in skipped:
        gr.Warning(sentence)
    out = {}
    for i, (head, txt, tl) in enumerate(tab.columns):
        label = f"**{runs[i].label}** · waiting" if i < len(runs) else ""
        out.update({head: gr.update(value=label), txt: [], tl: visual.figure_empty(" ", dark=dark)})
    rows, summaries = [], {}
    for i, run in enumerate(runs):
        yield {**out, tab.status: f"Running {i + 1}/{len(runs)}: **{run.label}**…"}
        trace = session.run_to_end(run.request)                                    # 2)
        s = trace.summary()
        summaries[run.label] = {"predicted_ms_per_token": run.predicted_ms_per_token,
                                "measured_ms_per_token": s.ms_per_token,
                                "tokens_per_target_call": s.tokens_per_target_call, "tokens_per_s": s.tokens_per_s}
        sub = run.request
        chain_label = " → ".join(f"{names[c]}" + (f"[{b}]" if j < len(sub.buffers) else "")
                                 for j, (c, b) in enumerate(zip(sub.chain, list(sub.buffers) + [0])))
        pred = run.predicted_ms_per_token
        rows.append([run.label, chain_label, round(s.tokens_per_s, 1), round(s.tokens_per_target_call, 2),
                     round(s.ms_per_token, 2), None if pred is None else round(pred, 2), s.n_tokens])
        head, txt, tl = tab.columns[i]                                              # 3)
        out.update({head: gr.update(value=f"**{run.label}**  \n{chain_label}  \n{s.tokens_per_s:.1f} tokens/s "
                                          f"(wall clock) · {s.tokens_per_target_call:.2f} tokens/target call"),
                    txt: visual.token_spans(trace),
                    tl: session.fast_plot(lambda: visual.figure_timeline(trace, dark=dark)),
                    tab.figure: session.fast_plot(lambda: visual.figure_compare(summaries, dark=dark)),
                    tab.table: rows})
        yield {**out, tab.status: f"Running {i + 1}/{len(runs)}: **{run.label}**…"}
    profile = ctx.families.profile(req.family, names)
    model = (f" Model-predicted numbers: {profile.acceptance_label}, for decodes of {req.max_new_tokens} tokens."
             if profile is not None else "")
    yield {**out, tab.status: f"Done: {len(runs)} hierarchies, same prompt and seed ({req.seed}), "
                              f"run one after another.{model}"}
