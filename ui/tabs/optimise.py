"""The Optimise tab: profile the family on this machine (or take the shipped profile), solve the
generalised shortest path, show the graph and the ranked plans (model-predicted), and send a plan
to the Generate tab.  What-if: a cost multiplier per model and an editable acceptance matrix,
starting from the measured profile; every edit re-solves (``Profile.what_if``, the CLI's
``--scale-cost`` / ``--alpha``) and is marked *what-if (model-predicted)*.  ``/optimize`` and
``/what_if`` are its API endpoints."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

import visual
from hsd.errors import ConfigError
from ui import session
from ui.context import Context, bind
from ui.registry import profile_label
from ui.inputs import whole
from ui.tabs import shapes
from ui.views import alpha_headers, alpha_rows, alpha_table
from ui.tabs.generate import stack_updates

MAX_WHATIF_MODELS = 8           # cost sliders built (a family's extra ones stay hidden)
# which of a family's profiles the tab works on: the shipped profiles are measured at T = 1 and greedy
KINDS = {"sampled (T = 1)": "sampled", "greedy (T = 0)": "greedy",            # forward costs of PyTorch
         "sampled (T = 1), llama.cpp": "sampled-llamacpp", "greedy (T = 0), llama.cpp": "greedy-llamacpp"}
COST_RANGE = (0.1, 10.0)
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
    costs: list                     # MAX_WHATIF_MODELS gr.Slider: cost multiplier per model
    alphas: gr.Dataframe            # the acceptance matrix (drafter row, verifier column)
    reset: gr.Button
    upload: gr.File                 # bring your own profile (JSON)
    download: gr.DownloadButton     # the family's current profile
    regime_x: gr.Dropdown
    regime_y: gr.Dropdown
    regime_button: gr.Button
    regime: gr.Plot                 # where a stack pays (hsd.plan.regime)
    scenario: gr.Markdown           # a guided question's answer (ui.tabs.scenarios), else empty
    kind: gr.Radio                  # the profile's decoding: sampled (T = 1) or greedy (KINDS)
    alpha_last: gr.State            # the α table as last shown (which cell an edit changed)
    what_if_api: gr.Button          # hidden: carries the /what_if endpoint


def build(ctx: Context) -> OptimiseTab:
    gr.Markdown("Find the latency-optimal hierarchy for **this machine**: profile the family (forward "
                "cost by block length, pairwise acceptance α), then solve the generalised shortest "
                "path over (model, buffer) nodes. All numbers here are **model-predicted** by our "
                "latency model, with acceptance measured by position in the block where the profile "
                "has it (the status line says which); check them on the Compare tab.")
    with gr.Row():
        source = gr.Radio(["shipped profile", "measure now"], value="shipped profile", label="Profile",
                          info="measuring takes a minute or more on a small CPU")
        kind = gr.Radio(list(KINDS), value=next(iter(KINDS)), label="Decoding the profile is for",
                        info="acceptance depends on the temperature", elem_id="opt-kind")
        max_buffer = gr.Slider(1, ctx.limits.max_buffer, value=min(12, ctx.limits.max_buffer), step=1,
                               label="Largest buffer considered")
        button = gr.Button("Optimise", variant="primary", elem_id="optimise-btn")
    scenario = gr.Markdown("", elem_id="opt-scenario")
    status = gr.Markdown("")
    figure = ctx.placeholder(gr.Plot(visual.figure_empty("Press Optimise."), show_label=False, elem_id="opt-gsp"),
                             "Press Optimise.")
    table = gr.Dataframe(headers=PLAN_HEADERS, interactive=False, label="Ranked hierarchies (model-predicted)",
                         wrap=True, column_widths=["7%", "45%", "14%", "16%", "18%"], elem_id="opt-table")
    with gr.Row():
        pick = gr.Dropdown([], label="Plan to use", scale=3)
        send = gr.Button("Use this plan on the Generate tab", scale=1)
    costs, alphas, reset = build_what_if(ctx)
    alpha_last = gr.State(None)
    what_if_api = gr.Button("what-if", visible=False)
    with gr.Row():
        upload = gr.File(label="Bring your own profile (JSON from `hsd profile`, e.g. measured on a GPU)",
                         file_types=[".json"], type="filepath", elem_id="profile-upload", scale=3)
        download = gr.DownloadButton("Download the current profile", elem_id="profile-download", scale=1)
    regime_x, regime_y, regime_button, regime = build_regime(ctx)
    ctx.shapes = shapes.build(ctx)
    return OptimiseTab(source, max_buffer, button, status, figure, table, pick, send, gr.State([]),
                       costs, alphas, reset, upload, download, regime_x, regime_y, regime_button, regime, scenario,
                       kind, alpha_last, what_if_api)


def build_regime(ctx: Context):
    from hsd.plan.regime import AXES

    with gr.Accordion("When does a stack pay? The regime map (model-predicted)", open=True):
        gr.Markdown("Each cell re-solves the measured profile with two things changed, and shows how much "
                    "faster the optimum is than the best single draft or the target alone (1.00×: no "
                    "stack pays). The dashed line is where a stack starts to pay; the star is the measured "
                    "profile. Paper A reports stacks \"up to 1.2×\" faster than the best single draft: "
                    "this map shows what a family needs for that.")
        with gr.Row():
            axes = list(AXES)
            regime_x = gr.Dropdown(axes, value="target cost ×", label="x axis", scale=2)
            regime_y = gr.Dropdown(axes, value="adjacent α", label="y axis", scale=2)
            regime_button = gr.Button("Draw the regime map", scale=1, elem_id="regime-btn")
        regime = ctx.placeholder(gr.Plot(visual.figure_empty("Press Draw the regime map."), show_label=False,
                                         elem_id="opt-regime"), "Press Draw the regime map.")
    return regime_x, regime_y, regime_button, regime


def build_what_if(ctx: Context):
    """The what-if controls, filled from the default family's profile (when it has one)."""
    names = ctx.families.names(ctx.limits.family)
    profile = ctx.families.profile(ctx.limits.family, names)
    with gr.Accordion("What-if: change costs and acceptances (model-predicted)", open=True):
        gr.Markdown("Multiply a model's measured forward cost, or type another acceptance α for a pair (row: "
                    "the drafter, column: its verifier; the table is symmetric, so both cells of a pair change "
                    "together): the optimiser re-solves at once. A value that is not a number from 0 to 1 is "
                    "put back, with a sentence why. Everything changed is *what-if (model-predicted)*, not "
                    "measured; a pair whose α you set is read as i.i.d. acceptance. Send a what-if plan to the "
                    "Generate tab to measure it for real.")
        with gr.Row():
            costs = [gr.Slider(*COST_RANGE, value=1.0, step=0.1, label=f"cost × {_name(names, i)}",
                               visible=i < len(names), elem_id=f"whatif-cost-{i}", min_width=120)
                     for i in range(MAX_WHATIF_MODELS)]
        alphas = gr.Dataframe(value=alpha_rows(profile, names), headers=alpha_headers(names), type="array",
                              interactive=True, label="acceptance α: drafter (row) under verifier (column)",
                              elem_id="whatif-alpha")
        reset = gr.Button("Back to the measured profile", elem_id="whatif-reset")
    return costs, alphas, reset


def _name(names, i: int) -> str:
    return names[i] if i < len(names) else f"model {i}"


def wire(ctx: Context, tab: OptimiseTab) -> None:
    gen = ctx.generate
    solving = tab.button.click(bind(optimize, ctx, tab), [gen.family, tab.source, tab.max_buffer, ctx.dark, tab.kind],
                               [tab.status, tab.figure, tab.table, tab.pick, tab.plans], api_name="optimize",
                               concurrency_id="decode", concurrency_limit=ctx.limits.concurrency, **RAW)
    tab.send.click(bind(send_plan, ctx, tab), [gen.family, tab.pick, tab.plans],
                   [gen.models] + gen.buffer_sliders + [ctx.tabs], api_visibility="private")
    solved = [tab.status, tab.figure, tab.table, tab.pick, tab.plans]
    filled = tab.costs + [tab.alphas, tab.alpha_last]
    inputs = [gen.family, tab.max_buffer, tab.alphas, ctx.dark] + tab.costs + [tab.kind]
    what = bind(what_if, ctx, tab, names=["family", "max_buffer", "alphas", "dark"] +
                [f"cost_{i}" for i in range(MAX_WHATIF_MODELS)] + ["kind"])
    tab.what_if_api.click(what, inputs, solved, api_name="what_if", show_progress="hidden", **RAW)
    # the page's edits: a refused cell is put back with one sentence, a pair's two cells move together
    edit = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private")
    page_inputs = [gen.family, tab.max_buffer, tab.alphas, ctx.dark, tab.alpha_last] + tab.costs + [tab.kind]
    tab.alphas.input(bind(edit_what_if, ctx, tab), page_inputs, solved + [tab.alphas, tab.alpha_last], **edit)
    for slider in tab.costs:            # while dragging too: "always_last" drops the stale edits
        slider.input(bind(edit_what_if, ctx, tab), page_inputs, solved + [tab.alphas, tab.alpha_last], **edit)
    again = [gen.family, tab.max_buffer, ctx.dark, tab.kind]
    tab.reset.click(bind(measured_again, ctx, tab), again, solved + filled, api_name="measured_profile", **RAW)
    tab.kind.input(bind(measured_again, ctx, tab), again, solved + filled, api_visibility="private")
    # once the profile is solved (measured now, perhaps): the what-if controls start from it
    solving.success(bind(fill_what_if, ctx, tab), [gen.family, tab.kind], filled, api_visibility="private")
    tab.upload.upload(bind(upload_profile, ctx, tab), [gen.family, tab.upload, tab.max_buffer, ctx.dark],
                      solved + filled, api_name="upload_profile")
    tab.download.click(bind(download_profile, ctx), [gen.family, tab.kind], [tab.download], api_name="download_profile",
                       **RAW)
    shapes.wire(ctx, ctx.shapes)
    tab.regime_button.click(bind(regime_map, ctx), [gen.family, tab.regime_x, tab.regime_y, tab.max_buffer, ctx.dark,
                                                    tab.kind], [tab.regime], api_name="regime_map", **RAW)


# the API's endpoints take the values as sent (no Gradio preprocessing, which answers a value
# outside a widget's choices or range with a message that echoes the whole value): every handler
# checks what it reads and answers a bad value with one sentence
RAW = dict(preprocess=False)
SOURCES = ("shipped profile", "measure now")


def kind_of(label) -> str | None:
    """The profile kind of a ``KINDS`` label (also the kinds themselves; None = the family's first)."""
    if label is None:
        return None
    text = str(label).strip()
    if text in KINDS.values():
        return text
    if text in KINDS:
        return KINDS[text]
    raise ConfigError(f"Decoding must be one of {', '.join(repr(k) for k in KINDS)}; got {label!r}.")


def optimize(ctx: Context, tab: OptimiseTab, spec, source, max_buffer, dark=False, kind=None,
             progress=gr.Progress()):
    """Profile (or load the shipped profile of ``kind``), run the optimiser; graph, ranked plans."""
    families = ctx.families
    try:
        spec = families.check_allowed(spec)
        names = families.names(spec)
        kind = kind_of(kind)
        if source not in SOURCES:
            raise ConfigError(f"The profile source must be {' or '.join(repr(s) for s in SOURCES)}, "
                              f"got {session.brief(source)}.")
        if source == "measure now":
            families.measure(spec, lambda frac, what: progress(frac, desc=what))
            kind = None                                   # the profile just measured
        elif families.profile(spec, names, kind) is None:
            raise ConfigError("No shipped profile matches this family; choose 'measure now'.")
        plan = families.plan(spec, names, whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer), kind)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    return solved_outputs(tab, families.profile(spec, names, kind), plan, max_buffer, dark)


def what_if_profile(profile, names, matrix, factors):
    """The measured ``profile`` with the edits: ``factors[i]`` multiplies model i's costs,
    ``matrix[i][j + 1]`` (i < j) replaces α(i, j) where it differs.  One sentence on bad input."""
    cost_scale, acceptance = {}, {}
    for i, name in enumerate(names):
        f = factors[i] if i < len(factors) else 1.0
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not COST_RANGE[0] <= f <= COST_RANGE[1]:
            raise ConfigError(f"the cost multiplier of {name} must be a number from {COST_RANGE[0]:g} to "
                              f"{COST_RANGE[1]:g}, got {f!r}")
        if f != 1.0:
            cost_scale[name] = float(f)
    for (i, j), a in alpha_table(names, matrix).items():
        if abs(a - profile.alpha(i, j)) > 5e-5:             # the table shows α to 4 decimals
            acceptance[names[i], names[j]] = a
    return profile.what_if(cost_scale, acceptance) if cost_scale or acceptance else profile


def solved_outputs(tab: OptimiseTab, profile, plan, max_buffer: int, dark: bool, prefix: str = "") -> dict:
    """The status line, the GSP graph, the ranked table and the plan picker for ``plan``."""
    from hsd.plan.optimize import best_single_draft

    ranking = list(plan.ranking)
    labels = [f"{i + 1}. {p.label}" for i, p in enumerate(ranking)]
    single = best_single_draft(profile, int(max_buffer))
    vs_single = single.expected_ms_per_token / plan.expected_ms_per_token
    return {tab.status: f"{prefix}Optimal: **{plan.label}** · {plan.expected_ms_per_token:.2f} ms/token · "
                        f"**{plan.speedup_vs_ar:.2f}× vs the target alone**, {vs_single:.2f}× vs the best single "
                        f"draft (model-predicted, {profile.acceptance_label}; {profile_label(profile)}).",
            tab.figure: session.fast_plot(lambda: visual.figure_gsp(plan, dark=bool(dark))),
            tab.table: [[i + 1, p.label, p.kind, round(p.expected_ms_per_token, 3), round(p.speedup_vs_ar, 2)]
                        for i, p in enumerate(ranking)],
            tab.pick: gr.update(choices=labels, value=labels[0]),
            tab.plans: [p.to_dict() for p in ranking]}


def measured_profile(ctx: Context, spec, kind=None):
    """(spec, names, profile) of the family asked for, its profile of ``kind`` (a ``KINDS``
    label or kind; None: its first); a ConfigError when it has no profile yet."""
    spec = ctx.families.check_allowed(spec)
    names = ctx.families.names(spec)
    profile = ctx.families.profile(spec, names, kind_of(kind))
    if profile is None:
        raise ConfigError("There is no profile of this family yet: press Optimise with 'measure now' first.")
    return spec, names, profile


def _factors_and_kind(rest) -> tuple[list, object]:
    """A what-if callback's trailing values: the cost multipliers, then (optionally) the kind."""
    rest = list(rest)
    return rest[:MAX_WHATIF_MODELS], (rest[MAX_WHATIF_MODELS] if len(rest) > MAX_WHATIF_MODELS else None)


def _solve_what_if(ctx: Context, tab: OptimiseTab, profile, names, matrix, factors, max_buffer, dark) -> dict:
    from hsd.plan.optimize import optimal_hierarchy

    edited = what_if_profile(profile, names, matrix, list(factors))
    plan = optimal_hierarchy(edited, max_buffer=whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer),
                             top=12)
    changes = edited.meta.get("what_if", []) if edited is not profile else []
    prefix = f"**What-if (model-predicted, not measured):** {'; '.join(changes)}. " if changes else ""
    return solved_outputs(tab, edited, plan, max_buffer, dark, prefix)


def what_if(ctx: Context, tab: OptimiseTab, spec, max_buffer, matrix, dark, *rest):
    """Re-solve on the measured profile with the edits (model-predicted, not measured); a bad
    value is refused with one sentence (``gr.Error``)."""
    factors, kind = _factors_and_kind(rest)
    try:
        spec, names, profile = measured_profile(ctx, spec, kind)
        return _solve_what_if(ctx, tab, profile, names, matrix, factors, max_buffer, dark)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc


def edit_what_if(ctx: Context, tab: OptimiseTab, spec, max_buffer, matrix, dark, last, *rest):
    """The page's what-if edit: the α table reconciled with the table as last shown (a pair's two
    cells move together; a value that is not a number from 0 to 1, the diagonal and the names are
    put back), then re-solved; a refused edit shows one sentence in the status line and a toast,
    and the page keeps working."""
    factors, kind = _factors_and_kind(rest)
    try:
        spec, names, profile = measured_profile(ctx, spec, kind)
        base = last if _table_shape_ok(last, names) else alpha_rows(profile, names)
        table, refused = reconcile_alpha_table(names, matrix, base)
        out = _solve_what_if(ctx, tab, profile, names, table, factors, max_buffer, dark)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    if refused:
        gr.Warning(refused)
        out[tab.status] = f"⚠ {refused}  \n{out[tab.status]}"
    return {**out, tab.alphas: table, tab.alpha_last: table}


def _table_shape_ok(rows, names) -> bool:
    return isinstance(rows, list) and len(rows) == len(names) and all(
        isinstance(r, (list, tuple)) and len(r) == len(names) + 1 for r in rows)


def reconcile_alpha_table(names, matrix, last) -> tuple[list[list], str | None]:
    """The α table after one page edit: ``matrix`` compared with ``last`` (as shown before).  An
    edited off-diagonal cell sets its pair's α in both cells (α of a pair is one number: the mass
    two rows share); a value that is not a number from 0 to 1 is put back, as are the diagonal
    (a model under itself, 1) and the names column.  Returns (the table, the sentence of what was
    refused or None)."""
    rows = [list(r) for r in last]
    incoming = [list(r) for r in matrix] if _table_shape_ok(matrix, names) else rows
    refused = None
    n = len(names)
    for r in range(n):
        for c in range(n + 1):
            new, old = incoming[r][c], last[r][c]
            if _same_cell(new, old):
                continue
            if c == 0:
                refused = "The first column names the drafter and cannot be edited; it was put back."
                continue
            j = c - 1
            if j == r:
                refused = (f"The diagonal is {names[r]} under itself (α = 1) and cannot be edited; "
                           "it was put back.")
                continue
            a = _alpha_value(new)
            if a is None:
                i, k = min(r, j), max(r, j)
                refused = (f"The acceptance α({names[i]}, {names[k]}) must be a number from 0 to 1, got "
                           f"{new!r}; the cell was put back to {old}.")
                continue
            rows[r][c] = rows[j][r + 1] = round(a, 4)
    return rows, refused


def _same_cell(new, old) -> bool:
    if new == old:
        return True
    try:
        return abs(float(new) - float(old)) <= 5e-5
    except (TypeError, ValueError):
        return str(new).strip() == str(old).strip()


def _alpha_value(cell) -> float | None:
    try:
        a = float(cell)
    except (TypeError, ValueError):
        return None
    return a if 0.0 <= a <= 1.0 else None


def fill_what_if(ctx: Context, tab: OptimiseTab, spec, kind=None):
    """The what-if controls reset to the family's measured profile (after Optimise)."""
    try:
        names = ctx.families.names(ctx.families.check_allowed(spec))
        profile = ctx.families.profile(spec, names, kind_of(kind))
    except Exception as exc:
        session.log_skipped("filling the what-if controls", exc)
        return {}.fromkeys(tab.costs + [tab.alphas, tab.alpha_last], gr.skip())
    out = {s: gr.update(value=1.0, visible=i < len(names), label=f"cost × {_name(names, i)}")
           for i, s in enumerate(tab.costs)}
    rows = alpha_rows(profile, names)
    out[tab.alphas] = gr.update(value=rows, headers=alpha_headers(names))
    out[tab.alpha_last] = rows
    return out


def measured_again(ctx: Context, tab: OptimiseTab, spec, max_buffer, dark=False, kind=None):
    """One click back: the what-if controls and the plans of the measured profile."""
    try:
        spec = ctx.families.check_allowed(spec)
        names = ctx.families.names(spec)
        kind = kind_of(kind)
        plan = ctx.families.plan(spec, names, whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer),
                                 kind)
        if plan is None:
            raise ConfigError("There is no profile of this family yet: press Optimise with 'measure now' first.")
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    return {**solved_outputs(tab, ctx.families.profile(spec, names, kind), plan, max_buffer, dark),
            **fill_what_if(ctx, tab, spec, kind)}


def upload_profile(ctx: Context, tab: OptimiseTab, spec, path, max_buffer, dark=False):
    """A profile file the user brings: checked (one sentence on what is wrong), kept for this
    family, solved, and the what-if controls reset to it."""
    from hsd.plan.profile import Profile

    try:
        spec = ctx.families.check_allowed(spec)
        names = ctx.families.names(spec)
        if not path:
            raise ConfigError("Choose a profile JSON file to upload.")
        profile = Profile.load(path)
        if list(profile.models) != list(names):
            raise ConfigError(f"The profile is for models {', '.join(profile.models)}, but this family has "
                              f"{', '.join(names)}: measure one of this family with `hsd profile`.")
        ctx.families.set_profile(spec, profile)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    return measured_again(ctx, tab, spec, max_buffer, dark)


def download_profile(ctx: Context, spec, kind=None):
    """The family's current profile (measured here, uploaded or shipped) as a JSON file."""
    try:
        spec, _, profile = measured_profile(ctx, spec, kind)
        return session.save_json(profile.to_dict(), "profile")
    except Exception as exc:
        raise session.as_gr_error(exc) from exc


def regime_map(ctx: Context, spec, x_axis, y_axis, max_buffer, dark=False, kind=None):
    """The regime map of the family's measured profile over the two chosen axes."""
    from hsd.plan import regime

    try:
        spec, _, profile = measured_profile(ctx, spec, kind)
        rmap = regime.regime_map(profile, x_axis, y_axis,
                                 max_buffer=min(whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer), 8))
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    return visual.figure_regime(rmap, dark=bool(dark))


def send_plan(ctx: Context, tab: OptimiseTab, spec, pick, plans):
    """The picked plan onto the Generate tab's stack widgets, and that tab shown."""
    if not plans or not pick:
        raise session.refuse("Press Optimise first, then pick a plan.")
    i = int(str(pick).split(".")[0]) - 1
    p = plans[max(0, min(i, len(plans) - 1))]
    names = ctx.families.names(spec)
    return {**stack_updates(ctx, ctx.generate, p["chain"], p["buffers"], names), ctx.tabs: gr.Tabs(selected="generate")}
