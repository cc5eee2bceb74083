"""Guided questions for teaching, on the Learn tab: each sets up a what-if on the Optimise tab (or
the exactness lab) and says, with the numbers it just computed, which panel answers it.

- ``middle``     Does a middle model help here, and why?   (the measured profile, its regime map)
- ``cheap``      What if the smallest draft were ten times cheaper?   (what-if: its cost ×0.1)
- ``dear``       What if the target were four times dearer?   (what-if: the target's cost ×4)
- ``uncapped``   Why is hsd-uncapped wrong?   (the exactness lab's toy example)

Every answer is computed from the family's profile or an exact enumeration, never written in.
``/scenario_<key>`` is each one's API endpoint."""
from __future__ import annotations

import gradio as gr

import visual
from hsd.errors import ConfigError
from hsd.plan import regime
from hsd.plan.exactness import exactness_lab, lab_table
from hsd.plan.optimize import optimal_hierarchy
from ui import session
from ui.context import Context, bind
from ui.inputs import whole
from ui.tabs import optimise

SCENARIOS = {
    "middle": "Does a middle model help here, and why?",
    "cheap": "What if the smallest draft were ten times cheaper?",
    "dear": "What if the target were four times dearer?",
    "uncapped": "Why is hsd-uncapped wrong?",
}
WHAT_IF = {"cheap": (0, 0.1), "dear": (-1, 4.0)}      # (model index, cost multiplier)


def build(ctx: Context):
    """The buttons and the answer line (on the Learn tab, above the step-through)."""
    gr.Markdown("### Guided questions\nEach one sets up the what-if or the example that answers it, "
                "and says where to look.")
    with gr.Row():
        buttons = {key: gr.Button(question, size="sm", elem_id=f"scenario-{key}")
                   for key, question in SCENARIOS.items()}
    note = gr.Markdown("", elem_id="scenario-answer")
    return buttons, note


def wire(ctx: Context, buttons: dict, note, learn_tab, opt) -> None:
    gen = ctx.generate
    solved = [opt.status, opt.figure, opt.table, opt.pick, opt.plans]
    outputs = solved + opt.costs + [opt.alphas, opt.alpha_last, opt.regime, opt.scenario, note,
                                    learn_tab.lab_kind, learn_tab.lab_fig, learn_tab.lab_df]
    for key, button in buttons.items():
        button.click(bind(run_scenario, ctx, opt, learn_tab, note, key), [gen.family, opt.max_buffer, ctx.dark,
                                                                          opt.kind],
                     outputs, api_name=f"scenario_{key}", preprocess=False)     # raw values: checked here


def run_scenario(ctx: Context, opt, learn_tab, note, key: str, spec, max_buffer, dark=False, kind=None):
    """Set the scenario up and answer it (see the module docstring).  The answer is written where
    the question was asked (the Learn tab), and again above the Optimise tab's graph, which the
    scenario has set up; the page stays on the Learn tab."""
    if key == "uncapped":
        return uncapped(learn_tab, note, dark)
    try:
        spec, names, profile = optimise.measured_profile(ctx, spec, kind)
        if profile.target < 2 and key == "middle":
            raise ConfigError("This family has no middle model: it needs at least two drafts and a target.")
        mb = whole(max_buffer, "The largest buffer", 1, ctx.limits.max_buffer)
        kind = optimise.kind_of(kind)
    except Exception as exc:
        raise session.as_gr_error(exc) from exc
    measured = ctx.families.plan(spec, names, mb, kind)          # solved once per family and buffer
    out = optimise.fill_what_if(ctx, opt, spec, kind)
    if key == "middle":
        out.update(optimise.solved_outputs(opt, profile, measured, mb, dark))
        rmap = regime.regime_map(profile, "target cost ×", "adjacent α", max_buffer=min(mb, 8))
        out[opt.regime] = visual.figure_regime(rmap, dark=bool(dark))
        answer = middle_answer(profile, measured, rmap)
    else:
        index, factor = WHAT_IF[key]
        model = names[index]
        factors = [1.0] * len(names)
        factors[index] = factor
        out[opt.costs[index % len(names)]] = gr.update(value=factor)
        edited = profile.what_if({model: factor})
        plan = optimal_hierarchy(edited, max_buffer=mb, top=12)
        prefix = f"**What-if (model-predicted, not measured):** {'; '.join(edited.meta['what_if'])}. "
        out.update(optimise.solved_outputs(opt, edited, plan, mb, dark, prefix))
        answer = cost_answer(SCENARIOS[key], model, factor, measured, plan)
    out[opt.scenario] = answer
    out[note] = (answer + "  \n*The Optimise tab now shows this " + ("profile" if key == "middle" else "what-if")
                 + ": its graph, its ranked table and the regime map.*")
    return out


def middle_answer(profile, plan, rmap) -> str:
    """Why the optimum has (or has not) a middle model, from the profile's α and costs, and where
    on the regime map a stack would pay."""
    names, k = profile.models, profile.target
    mid = max(range(1, k), key=lambda i: profile.alpha(i, k))          # the middle model closest to the target
    cost = lambda i: profile.cost_ms[names[i]][0]                      # noqa: E731
    uses = [names[i] for i in plan.chain[1:-1]]
    verdict = (f"Yes: the optimum stacks {', '.join(uses)} between the smallest draft and the target" if uses
               else "No: the optimum has no model between its draft and the target")
    parts = [f"**{SCENARIOS['middle']}** {verdict}. The optimum on the measured profile is **{plan.label}** "
             f"({plan.kind})."]
    parts.append(f"A middle model pays when it is much closer to the target than the smallest draft is, "
                 f"and much cheaper than the target. Here {names[mid]} accepts under {names[k]} with "
                 f"α = {profile.alpha(mid, k):.2f}, against {profile.alpha(0, k):.2f} for {names[0]}, and one "
                 f"forward of {names[mid]} costs {cost(mid):.2f} ms, {100 * cost(mid) / cost(k):.0f} % of "
                 f"{names[k]}'s {cost(k):.2f} ms.")
    column = regime.nearest(rmap.xs, 1.0, True)
    pays = [y for y, row in zip(rmap.ys, rmap.gain) if row[column] >= visual.regime.PAYS]
    if pays:
        parts.append(f"The regime map (below) says the same: at this target's cost a stack starts to pay "
                     f"once neighbouring models accept with α ≥ {min(pays):g}; this profile's neighbours "
                     f"average {rmap.here[1]:.2f} (the star).")
    else:
        parts.append("The regime map (below) finds no adjacent α on its grid where a stack pays at this "
                     "target's cost.")
    return " ".join(parts)


def cost_answer(question: str, model: str, factor: float, measured, plan) -> str:
    if plan.label == measured.label:
        change = (f"the optimum stays **{plan.label}** ({plan.kind}, {plan.speedup_vs_ar:.2f}×), against "
                  f"{measured.speedup_vs_ar:.2f}× vs the target alone on the measured profile")
    else:
        change = (f"the optimum moves from **{measured.label}** ({measured.speedup_vs_ar:.2f}× vs the target "
                  f"alone) to **{plan.label}** ({plan.kind}, {plan.speedup_vs_ar:.2f}×)")
    return (f"**{question}** With {model}'s forward cost ×{factor:g} {change}, model-predicted. The GSP graph "
            f"shows the new path; the what-if sliders hold the change, and 'Back to the measured profile' "
            f"undoes it.")


def uncapped(learn_tab, note, dark) -> dict:
    """The toy example, enumerated exactly: every lossless rule's TV distance is ~0, the uncapped
    rule's is not, and the sequence it over-produces."""
    lab = exactness_lab("toy", gamma=2)
    bad = lab["rules"]["hsd-uncapped"]
    worst = max(range(len(lab["sequences"])), key=lambda i: bad["probs"][i] - lab["target"][i])
    lossless = max(r["tv"] for name, r in lab["rules"].items() if r["lossless"])
    answer = (f"**{SCENARIOS['uncapped']}** It accepts a whole block with min(1, Π ρ), so a later ratio above 1 "
              f"pays back an earlier one below 1. On the toy example (target (1/3, 2/3), draft (2/3, 1/3)), "
              f"enumerated exactly in the lab below, it outputs “{lab['sequences'][worst]}” with probability "
              f"{bad['probs'][worst]:.4f} where the target's is {lab['target'][worst]:.4f}: total variation "
              f"{bad['tv']:.4f}, while the lossless rules' largest total variation is {lossless:.1g}.")
    return {learn_tab.lab_kind: "toy", learn_tab.lab_fig: visual.figure_exactness(lab, dark=bool(dark)),
            learn_tab.lab_df: lab_table(lab), note: answer}
