"""The Compare tab: 2–4 hierarchies (autoregressive, best single draft, optimal, yours) on the same
prompt, seed and sampling settings; identical stacks run once under all their names, and every
hierarchy runs ``repeats`` times, interleaved (one run of each, then the next round), so the
machine's drift hits them alike.  Medians and the spread of the runs, wall clock, beside the
model-predicted ms/token, and plain sentences when the spread is larger than the differences or a
stack measured slower than the target alone.  ``/compare`` is its API endpoint; 'Re-time the
forward costs' (``/retime_costs``) times this machine's forwards now, for the predictions."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import gradio as gr

import visual
from ui import session
from ui.context import Context, bind
from hsd.errors import ConfigError
from ui.registry import decode_kind, prediction_note, profile_label
from ui.inputs import CONTENDERS, Request, compare_requests, make_request, whole
from ui.tabs.generate import SAMPLING_NAMES

CMP_HEADERS = ["hierarchy", "stack [buffer]", "tokens/s (wall clock, median)", "tokens / target call",
               "ms/token (wall clock, median)", "ms/token (model-predicted)", "tokens",
               "ms/token spread (min–max of the runs)", "runs"]
DEFAULT_REPEATS = 3
MAX_REPEATS = 10


@dataclass
class CompareTab:
    prompt: gr.Textbox
    contenders: gr.CheckboxGroup
    button: gr.Button
    status: gr.Markdown
    figure: gr.Plot
    table: gr.Dataframe
    columns: list                  # (heading, tokens, timeline) per contender
    repeats: gr.Slider
    retime: gr.Button
    retime_status: gr.Markdown
    codes: list = None             # the output as code, per contender (after the API's older outputs)

    def outputs(self) -> list:
        return [self.status, self.figure, self.table] + [c for col in self.columns for c in col] + self.codes


def build(ctx: Context) -> CompareTab:
    gr.Markdown("Run several hierarchies on the **same prompt, seed and sampling settings**, one after "
                "another (never at once), each several times **interleaved**, so that a busy moment of a "
                "shared machine hits them alike; the table shows medians and the spread. *Yours* is the "
                "stack set on the Generate tab; *best single draft* and *optimal* come from the optimiser "
                "(model-predicted, needs a profile). Identical stacks run once.")
    prompts = ctx.prompts
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value=prompts[min(2, len(prompts) - 1)][1], lines=2, scale=3,
                            elem_id="cmp-prompt")
        contenders = gr.CheckboxGroup(CONTENDERS, value=list(CONTENDERS), label="Hierarchies", scale=2)
    with gr.Row():
        repeats = gr.Slider(1, MAX_REPEATS, value=DEFAULT_REPEATS, step=1, label="Runs per hierarchy (interleaved)",
                            info="more runs: a steadier median on a busy machine", scale=2, elem_id="cmp-repeats")
        button = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=1)
        retime = gr.Button("Re-time the forward costs now", elem_id="retime-btn", scale=1)
    retime_status = gr.Markdown("", elem_id="retime-status")
    status = gr.Markdown("", elem_id="cmp-status")
    figure = ctx.placeholder(gr.Plot(visual.figure_empty("Press Compare."), show_label=False, elem_id="compare-plot"),
                             "Press Compare.")
    table = gr.Dataframe(headers=CMP_HEADERS, label="Measured (wall clock) and model-predicted",
                         interactive=False, wrap=True, elem_id="cmp-table",
                         column_widths=["24%", "17%", "8%", "7%", "8%", "8%", "6%", "14%", "8%"])
    columns, codes = [], []
    with gr.Row(equal_height=False):
        for label in CONTENDERS:
            with gr.Column(min_width=560):          # two per row on a laptop screen
                head = gr.Markdown(f"**{label}**", visible=False)
                codes.append(gr.HTML(visual.code_html([]), visible=False, elem_classes=["cmp-code"]))
                columns.append((head, gr.HighlightedText(label="output", color_map=visual.TOKEN_COLOR_MAP,
                                                         show_legend=False, show_inline_category=False,
                                                         visible=False),     # the API's tokens; the page shows the code
                                gr.Plot(visual.figure_empty(" "), show_label=False, visible=False)))
    return CompareTab(prompt, contenders, button, status, figure, table, columns, repeats, retime, retime_status,
                      codes)


def wire(ctx: Context, tab: CompareTab) -> None:
    gen = ctx.generate
    names = ["prompt", "hierarchies"] + gen.stack_names() + SAMPLING_NAMES + ["dark_theme", "repeats"]
    tab.button.click(bind(compare, ctx, tab, names=names),
                     [tab.prompt, tab.contenders] + gen.stack_inputs + gen.sampling_inputs + [ctx.dark, tab.repeats],
                     tab.outputs(), api_name="compare", concurrency_id="decode",
                     concurrency_limit=ctx.limits.concurrency, preprocess=False)
    tab.retime.click(bind(retime_costs, ctx), [gen.family, gen.temperature], [tab.retime_status],
                     api_name="retime_costs", concurrency_id="decode", concurrency_limit=ctx.limits.concurrency,
                     preprocess=False)


def compare(ctx: Context, tab: CompareTab, prompt_text, chosen, *values):
    """Run the chosen hierarchies on the same prompt/seed/settings, ``repeats`` times interleaved."""
    n = len(ctx.generate.stack_inputs)
    stack, rest = values[:n], values[n:]
    temperature, top_p, top_k, seed, max_new, dark, repeats = (list(rest) + [None] * 7)[:7]
    bufs, rules = list(stack[2:2 + ctx.slots]), list(stack[2 + ctx.slots:])
    try:
        chosen = _chosen(chosen)
        runs = whole(DEFAULT_REPEATS if repeats is None else repeats, "Runs per hierarchy", 1, MAX_REPEATS)
        req = make_request(ctx.families, prompt_text, stack[0], stack[1], bufs, rules, temperature, top_p, top_k,
                           seed, max_new)
        yield from _runs(ctx, tab, req, chosen, bool(dark), runs)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc


def _chosen(chosen) -> list[str]:
    """The hierarchies ticked (None: all of them), each one of ``CONTENDERS``; one sentence else."""
    if chosen is None:
        return list(CONTENDERS)
    if isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, (list, tuple)):
        raise ConfigError(f"The hierarchies to compare must be a list of names from {', '.join(CONTENDERS)}.")
    if not chosen:
        raise ConfigError("Tick at least one hierarchy to compare.")
    unknown = [c for c in chosen if c not in CONTENDERS]
    if unknown:
        raise ConfigError(f"{session.brief(unknown[0])} is not a hierarchy to compare; choose from "
                          f"{', '.join(CONTENDERS)}.")
    return list(chosen)


@dataclass
class _Contender:
    """One distinct stack of the comparison, under every name it was asked for, and its runs."""

    labels: list
    request: Request
    predicted_ms_per_token: float | None
    chain_label: str
    ms_per_token: list = field(default_factory=list)      # one per run, wall clock
    tokens_per_s: list = field(default_factory=list)
    tokens_per_call: list = field(default_factory=list)
    last_trace: object = None

    @property
    def label(self) -> str:
        return " = ".join(self.labels)

    @property
    def speculative(self) -> bool:
        return len(self.request.chain) > 1

    def median(self, values=None) -> float:
        return statistics.median(self.ms_per_token if values is None else values)


def distinct_contenders(runs, names) -> list[_Contender]:
    """``compare_requests``' runs with identical stacks (models, buffers, rules) merged."""
    out: dict[tuple, _Contender] = {}
    for run in runs:
        r = run.request
        key = (r.chain, r.buffers, r.rules if len(r.chain) > 1 else ())
        if key in out:
            out[key].labels.append(run.label)
            continue
        chain_label = " → ".join(f"{names[c]}" + (f"[{b}]" if j < len(r.buffers) else "")
                                 for j, (c, b) in enumerate(zip(r.chain, list(r.buffers) + [0])))
        out[key] = _Contender([run.label], r, run.predicted_ms_per_token, chain_label)
    return list(out.values())


def _runs(ctx: Context, tab: CompareTab, req: Request, chosen: list[str], dark: bool, repeats: int):
    """1) one request per distinct contender, 2) ``repeats`` rounds, each running every contender
    once to the end, 3) after each run its column, the table and the figure, 4) the verdict."""
    names = ctx.families.names(req.family)
    runs, skipped = compare_requests(ctx.families, req, names, chosen)              # 1)
    for sentence in skipped:
        gr.Warning(sentence)
    contenders = distinct_contenders(runs, names)
    out = {}
    for i, (head, txt, tl) in enumerate(tab.columns):       # a column per distinct stack, the rest hidden
        used = i < len(contenders)
        label = f"**{contenders[i].label}** · waiting" if used else ""
        out.update({head: gr.update(value=label, visible=used), txt: [],
                    tl: gr.update(value=visual.figure_empty(" ", dark=dark), visible=used),
                    tab.codes[i]: gr.update(value=visual.code_html([]), visible=used)})
    total = repeats * len(contenders)
    for r in range(repeats):                                                         # 2)
        for i, c in enumerate(contenders):
            done = r * len(contenders) + i
            yield {**out, tab.status: f"Run {done + 1}/{total} (round {r + 1} of {repeats}): **{c.label}**…"}
            trace = session.run_to_end(c.request)
            s = trace.summary()
            c.ms_per_token.append(s.ms_per_token), c.tokens_per_s.append(s.tokens_per_s)
            c.tokens_per_call.append(s.tokens_per_target_call)
            c.last_trace = trace
            out.update(_column(tab, i, c, dark))                                      # 3)
            out.update({tab.figure: session.fast_plot(lambda: visual.figure_compare(_summaries(contenders), dark=dark)),
                        tab.table: _table(contenders)})
    profile = ctx.families.profile(req.family, names, decode_kind(req.temperature))
    yield {**out, tab.status: verdict(contenders, req, profile, repeats)}           # 4)


def _column(tab: CompareTab, i: int, c: _Contender, dark: bool) -> dict:
    head, txt, tl = tab.columns[i]
    s = c.last_trace.summary()
    runs = len(c.ms_per_token)
    return {head: gr.update(value=f"**{c.label}**  \n{c.chain_label}  \n"
                                  f"{statistics.median(c.tokens_per_s):.1f} tokens/s (wall clock, median of {runs}) · "
                                  f"{s.tokens_per_target_call:.2f} tokens/target call"),
            txt: visual.token_spans(c.last_trace),
            tab.codes[i]: visual.code_html(visual.token_spans(c.last_trace, with_names=True)),
            tl: session.fast_plot(lambda: visual.figure_timeline(c.last_trace, dark=dark))}


def _summaries(contenders) -> dict:
    return {c.label: {"predicted_ms_per_token": c.predicted_ms_per_token, "measured_ms_per_token": c.median(),
                      "measured_min_ms_per_token": min(c.ms_per_token), "measured_max_ms_per_token": max(c.ms_per_token),
                      "runs": len(c.ms_per_token), "tokens_per_target_call": statistics.median(c.tokens_per_call),
                      "tokens_per_s": statistics.median(c.tokens_per_s)}
            for c in contenders if c.ms_per_token}


def _table(contenders) -> list[list]:
    rows = []
    for c in contenders:
        if not c.ms_per_token:
            continue
        pred = c.predicted_ms_per_token
        rows.append([c.label, c.chain_label, round(statistics.median(c.tokens_per_s), 1),
                     round(statistics.median(c.tokens_per_call), 2), round(c.median(), 2),
                     None if pred is None else round(pred, 2), c.last_trace.summary().n_tokens,
                     f"{min(c.ms_per_token):.2f}–{max(c.ms_per_token):.2f}", len(c.ms_per_token)])
    return rows


def verdict(contenders, req: Request, profile, repeats: int) -> str:
    """The closing sentences: what ran, which profile the predictions are from, whether the runs'
    spread is larger than the differences, and which stacks measured slower than the target alone
    and the likely reason."""
    lines = [f"**Done:** {len(contenders)} distinct hierarch{'y' if len(contenders) == 1 else 'ies'}, "
             f"{repeats} interleaved run{'s' if repeats > 1 else ''} each, same prompt and seed ({req.seed}); "
             "wall-clock numbers are medians."]
    if profile is not None:
        lines.append(f"Model-predicted numbers: {profile.acceptance_label}, for decodes of {req.max_new_tokens} "
                     f"tokens, from the {profile_label(profile)}.")
        note = prediction_note(profile, req.temperature, req.top_k, req.top_p)
        if note:
            lines.append(f"⚠ {note[:1].upper()}{note[1:]}.")
    ranked = sorted(contenders, key=lambda c: c.median())
    if len(ranked) > 1:
        best, second = ranked[0], ranked[1]
        gap = (second.median() - best.median()) / best.median()
        overlap = max(best.ms_per_token) >= min(second.ms_per_token)
        if repeats == 1:
            lines.append("One run per hierarchy: on a shared machine a single run can be off by 10–25 %, "
                         "so raise the runs before reading a ranking into it.")
        elif overlap:
            lines.append(f"⚠ **The spread is larger than the difference:** {best.label} and {second.label} are "
                         f"{gap:.0%} apart in median, but their runs overlap "
                         f"({min(best.ms_per_token):.2f}–{max(best.ms_per_token):.2f} against "
                         f"{min(second.ms_per_token):.2f}–{max(second.ms_per_token):.2f} ms/token): on this machine, "
                         "now, these runs cannot tell them apart. Raise the runs, or try when it is quieter.")
        else:
            lines.append(f"Fastest: **{best.label}**, {gap:.0%} ahead of {second.label}; their runs do not overlap.")
    ar = next((c for c in contenders if not c.speculative), None)
    slower = [c for c in contenders if c.speculative and ar is not None and c.median() > ar.median()]
    for c in slower:
        lines.append(_slower_sentence(c, ar))
    return "  \n".join(lines)


def _slower_sentence(c: _Contender, ar: _Contender) -> str:
    """Why a stack measured slower than the target alone: the machine (the target's own time
    against its prediction) or the stack (its own time against its prediction)."""
    head = (f"⚠ **{c.label} measured slower than the target alone:** {c.median():.2f} against "
            f"{ar.median():.2f} ms/token (wall clock).")
    if c.predicted_ms_per_token is None or ar.predicted_ms_per_token is None:
        return head + " Without a profile there is no prediction to compare with."
    machine = ar.median() / ar.predicted_ms_per_token
    stack = c.median() / c.predicted_ms_per_token
    if stack > 1.15 * machine:
        return (head + f" The model predicted {c.predicted_ms_per_token:.2f} ms/token; the stack ran {stack:.1f}× "
                f"its prediction while the target alone ran {machine:.1f}× its own, so the drafts cost or "
                "earned less here than in the profile: fewer tokens accepted (see tokens / target call, and "
                "the profile's sampling settings above) or the small models' forwards slowed more than the "
                "target's on a busy machine. 'Re-time the forward costs now' measures them again.")
    return (head + f" The whole machine is slower than when the profile was measured: the target alone ran "
            f"{machine:.1f}× its predicted time. Speculation saves target forwards, and on a busy CPU every "
            "small forward pays the same contention; press 'Re-time the forward costs now' to time them again "
            "in place, and raise the runs.")


def retime_costs(ctx: Context, spec, temperature, progress=gr.Progress()):
    """Time this family's forwards now (a few rounds) and use them for the predictions from here
    on; the acceptances stay as measured."""
    try:
        spec = ctx.families.check_allowed(spec)
        names = ctx.families.names(spec)
        kind = decode_kind(temperature)
        old = ctx.families.profile(spec, names, kind)
        if old is None:
            raise ConfigError("This family has no profile to re-time yet: press Optimise with 'measure now' first.")
        new = ctx.families.retime(spec, names, kind, progress=lambda f, what: progress(f, desc=what))
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    k = names[-1]
    return (f"**Forward costs re-timed now** ({new.meta.get('costs_retimed_at', '')}): one-token forward of "
            f"{k} {new.cost_ms[k][0]:.2f} ms (the profile had {old.cost_ms[k][0]:.2f}), of {names[0]} "
            f"{new.cost_ms[names[0]][0]:.3f} ms (had {old.cost_ms[names[0]][0]:.3f}). The predictions on every tab "
            "now use these costs; the acceptances stay as measured.")
