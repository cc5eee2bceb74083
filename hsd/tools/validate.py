"""Predicted vs measured: run the optimiser's picks on real models and compare with the model.

``hsd validate`` decodes with several hierarchies — the optimum, the best single draft,
autoregressive decoding and the two best deeper alternatives — through the real engine
(``hsd.engine.Hierarchy``), interleaved per prompt so slow drifts of a shared machine hit every
contender alike, and prints, side by side:

- model-predicted ms/token (``hsd.latency``, OUR derivation) under BOTH acceptance models --
  acceptance measured by position (the profile's ``accept_lengths``, the default) and i.i.d. (one
  α per pair, ``--acceptance iid``), each for decodes of ``max_new_tokens`` tokens as the engine
  runs them (``hsd.plan.latency.horizon_counts``: the last rounds' blocks are cut to the budget;
  the long-run figure, which the optimiser ranks by, is kept beside it) -- and measured ms/token
  (wall clock, decode only: from the end of the prompt prefill to the last commit; Σ ms / Σ
  tokens over the prompts of a repeat, the ratio of totals the model predicts; median over
  repeats);
- each model's relative error, with its spread: the error of each repeat, min–max over
  repeats; model-predicted and measured speedup over AR;
  whether the predicted optimum is the measured best (within how much);
- predicted vs measured tokens per target call;
- per edge: the profile's α, the measured i.i.d. estimate (accepted / positions examined) and the
  measured per-position conditional acceptance P(accept position t | positions < t accepted)
  from the traces.  Under the model's i.i.d. assumption the per-position rates are all α; where
  they drift with t, or differ from α, the assumption breaks.

Contenders are picked with the model asked for (``acceptance``), plus the other model's optimum
when it differs.  ``--fresh-profile`` measures the profile in the same run, just before the
decodes (the same machine state), instead of reading one.  Measured numbers depend on the
machine's load; run nothing else at the same time.
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics
from dataclasses import dataclass
from typing import Sequence

from hsd.errors import ConfigError
from hsd.plan.contenders import Contender, pick_contenders
from hsd.plan.optimize import optimal_hierarchy, plan_for
from hsd.plan.latency import autoregressive_ms, expected_ms_per_token, horizon_counts
from hsd.plan.profile import Profile
from hsd.tools.paths import PROMPT_FILES, load_prompts, profile_path, save_or_rescue, write_json
from hsd.tools.progress import ProgressFn, progress_bar

VALIDATE_PROMPTS = (
    "def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n",
    "class Queue:\n    def __init__(self, maxsize=0):\n",
    "import re\n\n_pattern = re.compile(",
    "    for key, value in sorted(items):\n        if ",
    "def _check_type(obj, expected):\n    if not isinstance(obj, expected):\n",
    "    except OSError as exc:\n        ",
)


def decode_ms_per_token(trace) -> float:
    """Wall ms per committed token, decode only (prefill of the prompt excluded, like the model)."""
    n = committed_tokens(trace)
    return trace.decode_ms() / n if n else float("nan")


def committed_tokens(trace) -> int:
    return sum(len(e.tokens) for e in trace.of_kind("committed"))


def pooled_ms_per_token(traces) -> float:
    """Σ decode ms / Σ committed tokens over ``traces``: the ratio of totals the latency model
    predicts (its laws are pooled over prompts).  A median of per-prompt figures is another
    quantity: when one prompt is much harder (slow, bursty), it lands below the pooled mean."""
    tokens = sum(committed_tokens(t) for t in traces)
    return sum(t.decode_ms() for t in traces) / tokens if tokens else float("nan")


def edge_acceptance(traces, verifier_level: int) -> dict:
    """Acceptance of level ``verifier_level - 1`` under ``verifier_level`` over many traces:
    the i.i.d. estimate (accepted / positions examined — a position is examined when every earlier
    one was accepted) and the conditional rate at each draft position."""
    reached, kept = [], []
    accepted = examined = 0
    for trace in traces:
        for e in trace.of_kind("verified"):
            if e.level != verifier_level:
                continue
            gamma, a = len(e.proposed), e.n_accepted
            accepted += a
            examined += a + (a < gamma)
            for pos in range(min(a + 1, gamma)):
                while len(reached) <= pos:
                    reached.append(0)
                    kept.append(0)
                reached[pos] += 1
                kept[pos] += pos < a
    return {"alpha_iid": accepted / examined if examined else float("nan"),
            "per_position": [k / r if r else float("nan") for k, r in zip(kept, reached)],
            "per_position_n": reached}


@dataclass
class Decodes:
    """Phase 2's result: every contender's traces of the interleaved decodes."""

    ms_runs: list[list[float]]                    # per contender: ms/token of each decode, in run order
    by_repeat: list[list[list]]                   # per contender, per repeat: its traces
    traces: list[list]                            # per contender: all its traces

    def pooled_by_repeat(self) -> list[list[float]]:
        """Per contender: each repeat's Σ ms / Σ tokens over the prompts (a repeat is one pass
        over every prompt, so a slow spell of the machine moves one repeat)."""
        return [[pooled_ms_per_token(x) for x in reps if x] for reps in self.by_repeat]


def validate(family, profile: Profile, *, prompts: Sequence[str] = VALIDATE_PROMPTS, max_new_tokens: int = 64,
             repeats: int = 1, temperature: float | None = None, rule: str = "hsd", max_buffer: int = 16,
             seed: int = 0, progress: ProgressFn | None = None, forward: str = "auto",
             acceptance: str = "position", retime_costs: bool = False) -> dict:
    """Decode every contender on every prompt (interleaved, rotating the order per prompt) and
    return plain data: per contender predicted vs measured; see the module docstring.  With
    ``retime_costs``, every model's forwards are timed again, one ``CostTimer`` round after each
    prompt's runs, and the predictions use those costs (and first calls) with the profile's
    acceptance and engine terms.  The phases: 1) the contenders, 2) the interleaved decodes
    (after a warm-up), 3) the costs the predictions use, 4) one row per contender, 5) the summary."""
    from hsd.engine import Hierarchy

    _check_inputs(family, profile, prompts)
    if temperature is None:
        temperature = float(profile.meta.get("temperature", 1.0))
    profile, other, contenders = choose_contenders(profile, acceptance, max_buffer)                  # 1)
    hierarchies = [Hierarchy.from_family(family, chain=list(c.plan.chain), buffers=list(c.plan.buffers), rules=rule,
                                         forward=forward, threads=None)   # the command set torch's threads
                   for c in contenders]
    ar_index = next(i for i, c in enumerate(contenders) if len(c.plan.chain) == 1)
    for h in hierarchies:            # warm-up (excluded): a hierarchy's first call allocates and fills caches
        h.generate(prompts[0], max_new_tokens=min(8, max_new_tokens), temperature=temperature, seed=seed)
    timer = _cost_timer(family, profile, hierarchies[ar_index], prompts[0], max_new_tokens, temperature, seed,
                        forward) if retime_costs else None
    runs = decode_interleaved(hierarchies, [c.plan.label for c in contenders], prompts, repeats,             # 2)
                              max_new_tokens, temperature, seed, progress, timer)
    profile, other, costs = _costs_used(profile, other, timer)                                               # 3)
    pooled = runs.pooled_by_repeat()
    ar = (statistics.median(pooled[ar_index]), autoregressive_ms(profile, profile.target))   # measured, predicted
    read = {profile.acceptance_model: profile, other.acceptance_model: other}
    rows = [contender_row(c, read, profile, trs, per_repeat, ms, ar, max_new_tokens)                        # 4)
            for c, ms, trs, per_repeat in zip(contenders, runs.ms_runs, runs.traces, pooled)]
    best = min(rows, key=lambda r: r["measured_ms_per_token"])
    return {"format": "hsd-validation/2", "models": list(profile.models), "rule": rule,                      # 5)
            "temperature": temperature, "max_new_tokens": max_new_tokens, "prompts": len(prompts),
            "repeats": repeats, "profile_meta": profile.meta, "rows": rows, "acceptance": acceptance,
            "acceptance_label": profile.acceptance_label,
            "median_abs_relative_error": statistics.median(abs(r["relative_error"]) for r in rows),
            "by_model": {model: model_summary(rows, model, best) for model in ("position", "iid")},
            "measured_best": best["label"], "costs": costs,
            "note": f"predicted = our latency derivation ({profile.acceptance_label}; the other model beside it) "
                    f"for decodes of {max_new_tokens} tokens (the engine's budget cap included); measured = wall "
                    "clock, decode only, Σ ms / Σ tokens over the prompts, median over repeats"}


def _check_inputs(family, profile: Profile, prompts: Sequence[str]) -> None:
    if list(profile.models) != list(family.names):
        raise ConfigError(f"the profile is for models {profile.models} but the family has {list(family.names)}: "
                          "measure a profile of this family with `python -m hsd profile`")
    if not prompts:
        raise ConfigError("validate needs at least one prompt")


def choose_contenders(profile: Profile, acceptance: str, max_buffer: int) -> tuple[Profile, Profile, list[Contender]]:
    """Phase 1: the profile read with the acceptance model asked for, the same profile read with
    the other one, and the contenders (``pick_contenders``'s, plus the other model's optimum when
    it differs)."""
    profile = profile.with_acceptance_model(acceptance)
    other = profile.with_acceptance_model("iid" if acceptance == "position" else "position")
    contenders = pick_contenders(profile, max_buffer)
    other_optimum = optimal_hierarchy(other, max_buffer=max_buffer, top=1, with_graph=False)
    if all((c.plan.chain, c.plan.buffers) != (other_optimum.chain, other_optimum.buffers) for c in contenders):
        contenders.append(Contender(f"{other.acceptance_model} optimum", plan_for(profile, other_optimum.chain,
                                                                                   other_optimum.buffers)))
    return profile, other, contenders


def decode_interleaved(hierarchies, labels: list[str], prompts: Sequence[str], repeats: int, max_new_tokens: int,
                       temperature: float, seed: int, progress: ProgressFn | None, timer=None) -> Decodes:
    """Phase 2: every hierarchy on every prompt and repeat, the order rotated per (prompt,
    repeat) so a slow drift of the machine hits every contender alike; a ``timer`` round (if any)
    after each."""
    n = len(hierarchies)
    runs = Decodes([[] for _ in range(n)], [[[] for _ in range(repeats)] for _ in range(n)], [[] for _ in range(n)])
    total, done = len(prompts) * repeats * n, 0
    for (p, prompt), r in itertools.product(enumerate(prompts), range(repeats)):
        shift = (p * repeats + r) % n
        for i in list(range(n))[shift:] + list(range(n))[:shift]:
            result = hierarchies[i].generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                             seed=seed + 1000 * p + r)
            runs.ms_runs[i].append(decode_ms_per_token(result.trace))
            runs.by_repeat[i][r].append(result.trace)
            runs.traces[i].append(result.trace)
            done += 1
            if progress:
                progress(done, total, labels[i])
        if timer is not None:
            timer.round()
    return runs


def _costs_used(profile: Profile, other: Profile, timer) -> tuple[Profile, Profile, dict]:
    """Phase 3: the profiles the predictions use (with re-timed costs when a timer ran) and the
    report's ``costs``."""
    if timer is None:
        return profile, other, {"source": "profile"}
    cost_ms, first_call_ms = timer.result()
    costs = {"source": f"re-timed between the decodes ({timer.kept} rounds)", "cost_ms": cost_ms,
             "first_call_ms": first_call_ms, "profile_c1_ms": {m: profile.cost_ms[m][0] for m in profile.models}}
    retimed = [dataclasses.replace(p, cost_ms=cost_ms, first_call_ms=first_call_ms) for p in (profile, other)]
    return retimed[0], retimed[1], costs


def contender_edges(plan, traces, profile: Profile) -> list[dict]:
    """Per edge of ``plan``: its block, the profile's α and what the traces measured."""
    return [{"drafter": plan.names[lv - 1], "verifier": plan.names[lv], "block": plan.buffers[lv - 1],
             "alpha_profile": profile.alpha(plan.chain[lv - 1], plan.chain[lv]), **edge_acceptance(traces, lv)}
            for lv in range(1, len(plan.chain))]


def with_measured_alpha(profile: Profile, plan, edges: list[dict]) -> Profile:
    """The same latency model fed the acceptance the traces show (i.i.d. estimates): separates
    acceptance error from cost error."""
    acc = [list(row) for row in profile.acceptance]
    for lv, e in enumerate(edges, start=1):
        if e["alpha_iid"] == e["alpha_iid"]:
            acc[plan.chain[lv - 1]][plan.chain[lv]] = e["alpha_iid"]
    return Profile(list(profile.models), profile.cost_ms, acc, {}, overhead_ms=profile.overhead_ms,
                   first_call_ms=profile.first_call_ms)


def contender_row(c: Contender, read: dict[str, Profile], profile: Profile, traces, per_repeat: list[float],
                  runs: list[float], ar: tuple[float, float], max_new_tokens: int) -> dict:
    """Phase 4: one contender's row: predicted (both acceptance models, for decodes of
    ``max_new_tokens`` tokens with the engine's budget cap) vs measured; ``ar`` is
    (measured, predicted) ms/token of autoregressive decoding."""
    plan = c.plan
    measured = statistics.median(per_repeat)
    at = {m: horizon_counts(read[m], plan.chain, plan.buffers, max_new_tokens) for m in ("position", "iid")}
    pos_ms, iid_ms = at["position"]["ms_per_token"], at["iid"]["ms_per_token"]
    own = at[profile.acceptance_model]
    predicted = own["ms_per_token"]
    n_tokens = sum(committed_tokens(t) for t in traces)
    calls = sum(t.summary().target_calls for t in traces)
    edges = contender_edges(plan, traces, profile)
    forwards = [sum(t.summary().levels[lv].forward_passes - 1 for t in traces) / n_tokens
                for lv in range(len(plan.chain))]                       # minus the prompt prefill
    return {
        "role": c.role, "label": plan.label, "kind": plan.kind,
        "chain": list(plan.chain), "names": list(plan.names), "buffers": list(plan.buffers),
        "predicted_ms_per_token": predicted,
        "predicted_ms_per_token_long_run": expected_ms_per_token(profile, plan.chain, plan.buffers),
        "measured_ms_per_token": measured,
        "measured_ms_per_token_by_repeat": per_repeat,
        "measured_runs_ms_per_token": runs,
        "relative_error": (measured - predicted) / predicted,
        "predicted_ms_per_token_position": pos_ms, "predicted_ms_per_token_iid": iid_ms,
        "relative_error_position": (measured - pos_ms) / pos_ms,
        "relative_error_iid": (measured - iid_ms) / iid_ms,
        "relative_error_position_by_repeat": [(m - pos_ms) / pos_ms for m in per_repeat],
        "relative_error_iid_by_repeat": [(m - iid_ms) / iid_ms for m in per_repeat],
        "predicted_speedup_vs_ar": ar[1] / predicted,
        "measured_speedup_vs_ar": ar[0] / measured,
        "predicted_tokens_per_target_call": own["tokens_per_target_call"],
        "measured_tokens_per_target_call": n_tokens / calls if calls else float("nan"),
        "predicted_ms_per_token_with_measured_alpha":
            horizon_counts(with_measured_alpha(profile, plan, edges), plan.chain, plan.buffers,
                           max_new_tokens)["ms_per_token"],
        "predicted_forwards_per_token": own["forwards_per_token"],
        "measured_forwards_per_token": forwards,
        "edges": edges}


def model_summary(rows: list[dict], model: str, best: dict) -> dict:
    """Phase 5, per acceptance model: its errors and whether its optimum is the measured best."""
    errs = [abs(r[f"relative_error_{model}"]) for r in rows]
    # the acceptance model matters only where there are drafts: AR's error is the same in both
    drafted = [abs(r[f"relative_error_{model}"]) for r in rows if len(r["chain"]) > 1]
    predicted_best = min(rows, key=lambda r: r[f"predicted_ms_per_token_{model}"])
    return {"median_abs_relative_error": statistics.median(errs), "max_abs_relative_error": max(errs),
            "median_abs_relative_error_drafted": statistics.median(drafted) if drafted else float("nan"),
            "predicted_optimum": predicted_best["label"],
            "predicted_optimum_measured_over_best":
                predicted_best["measured_ms_per_token"] / best["measured_ms_per_token"],
            # the same ratio within each repeat (the two ran interleaved, prompt by prompt)
            "predicted_optimum_over_best_by_repeat":
                [a / b for a, b in zip(predicted_best["measured_ms_per_token_by_repeat"],
                                       best["measured_ms_per_token_by_repeat"])]}


def _cost_timer(family, profile: Profile, ar, prompt: str, max_new_tokens: int, temperature: float, seed: int,
                forward: str):
    """A ``CostTimer`` over fresh levels of every model, on a context like the decodes' (the
    prompt and what the target writes after it), its first two rounds discarded."""
    from hsd.levels import SamplingSettings
    from hsd.tools.measure import CostTimer, encode_prompt, family_levels

    levels = family_levels(family, SamplingSettings(temperature, 0, 1.0), forward)
    written = ar.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed).token_ids
    context = encode_prompt(family.tokenizer, prompt) + list(written)
    return CostTimer(levels, context, max_n=len(profile.cost_ms[profile.models[0]]), seed=seed, warmup=2)


def format_report(report: dict) -> str:
    """The printed report: 1) predicted vs measured per hierarchy, 2) long-run and measured-α
    predictions with forwards per token, 3) both acceptance models side by side, 4) costs and
    notes, 5) acceptance per edge."""
    w = max([34] + [len(r["label"]) for r in report["rows"]])
    lines = _main_table(report, w) + [""] + _forwards_table(report, w)                       # 1) 2)
    if "by_model" in report:
        lines += [""] + _both_models(report, w)                                                # 3)
    lines += _costs_and_notes(report)                                                          # 4)
    return "\n".join(lines + [""] + _edge_lines(report))                                       # 5)


def _main_table(report: dict, w: int) -> list[str]:
    lines = [f"{'hierarchy':<{w}} {'role':<19} {'pred ms/tok':>11} {'meas ms/tok':>11} {'rel err':>8} "
             f"{'pred ×AR':>8} {'meas ×AR':>8} {'pred tok/call':>13} {'meas tok/call':>13}"]
    for r in report["rows"]:
        lines.append(f"{r['label']:<{w}} {r['role']:<19} {r['predicted_ms_per_token']:>11.3f} "
                     f"{r['measured_ms_per_token']:>11.3f} {100 * r['relative_error']:>+7.1f}% "
                     f"{r['predicted_speedup_vs_ar']:>7.2f}× {r['measured_speedup_vs_ar']:>7.2f}× "
                     f"{r['predicted_tokens_per_target_call']:>13.2f} {r['measured_tokens_per_target_call']:>13.2f}")
    return lines


def _forwards_table(report: dict, w: int) -> list[str]:
    lines = [f"{'hierarchy':<{w}} {'pred long run':>13} {'pred ms/tok with measured α':>28}   "
             "forwards/token per level: predicted | measured"]
    for r in report["rows"]:
        fw = "  ".join(f"{p:.2f}|{m:.2f}" for p, m in zip(r["predicted_forwards_per_token"],
                                                         r["measured_forwards_per_token"]))
        long_run = r.get("predicted_ms_per_token_long_run", float("nan"))
        lines.append(f"{r['label']:<{w}} {long_run:>13.3f} {r['predicted_ms_per_token_with_measured_alpha']:>28.3f}   {fw}")
    lines.append(f"median |relative error|: {100 * report['median_abs_relative_error']:.1f}%   "
                 f"(predicted: model, {report.get('acceptance_label', 'i.i.d. acceptance')}, decodes of "
                 f"{report['max_new_tokens']} tokens; measured: wall clock, decode only, Σ ms / Σ tokens over "
                 f"{report['prompts']} prompts, median of {report['repeats']} repeat(s); rule {report['rule']}, "
                 f"T={report['temperature']})")
    return lines


def _both_models(report: dict, w: int) -> list[str]:
    lines = ["both acceptance models side by side: relative error, all runs (min–max over repeats)",
             f"{'hierarchy':<{w}} {'by position':>26} {'i.i.d.':>26}"]
    for r in report["rows"]:
        cells = []
        for model in ("position", "iid"):
            reps = r[f"relative_error_{model}_by_repeat"]
            spread = f"({100 * min(reps):+.1f}…{100 * max(reps):+.1f})" if len(reps) > 1 else ""
            cells.append(f"{100 * r[f'relative_error_{model}']:+6.1f}% {spread:>18}")
        lines.append(f"{r['label']:<{w}} {cells[0]:>26} {cells[1]:>26}")
    for model, name in (("position", "by position"), ("iid", "i.i.d.")):
        m = report["by_model"][model]
        reps = m.get("predicted_optimum_over_best_by_repeat", [])
        spread = f" ({min(reps):.3f}…{max(reps):.3f} by repeat)" if len(reps) > 1 else ""
        drafted = m.get("median_abs_relative_error_drafted")
        with_drafts = f" ({100 * drafted:.1f}% over the hierarchies with drafts)" if drafted is not None else ""
        lines.append(f"{name}: median |error| {100 * m['median_abs_relative_error']:.1f}%{with_drafts}, worst "
                     f"{100 * m['max_abs_relative_error']:.1f}%; predicted optimum {m['predicted_optimum']} "
                     f"measured {m['predicted_optimum_measured_over_best']:.3f}× the measured best "
                     f"({report['measured_best']}){spread}")
    return lines


def _costs_and_notes(report: dict) -> list[str]:
    lines = []
    costs = report.get("costs", {})
    if costs.get("cost_ms"):
        c1 = ", ".join(f"{m} {costs['profile_c1_ms'][m]:.2f} → {v[0]:.2f}" for m, v in costs["cost_ms"].items())
        lines.append(f"costs: {costs['source']}; c(1) ms, profile → re-timed: {c1}")
    prule = report.get("profile_meta", {}).get("rule")
    if prule and prule != report["rule"]:
        lines.append(f"note: the profile's overheads were timed for rule '{prule}', these runs used '{report['rule']}'")
    return lines


def _edge_lines(report: dict) -> list[str]:
    lines = ["acceptance per edge: profile α | measured i.i.d. estimate | measured P(accept position t | "
             "earlier accepted), t = 1, 2, …"]
    seen = set()
    for r in report["rows"]:
        for e in r["edges"]:
            key = (e["drafter"], e["verifier"], e["block"])
            if key in seen:
                continue
            seen.add(key)
            pos = " ".join(f"{a:.2f}" for a, n in zip(e["per_position"], e["per_position_n"]) if n >= 5)
            lines.append(f"  {e['drafter']} → {e['verifier']} (block {e['block']}): {e['alpha_profile']:.3f} | "
                         f"{e['alpha_iid']:.3f} | {pos}")
    return lines


# --------------------------------------------------------------------------------------------
# CLI: python -m hsd validate
# --------------------------------------------------------------------------------------------
def run(args) -> int:
    import torch
    from hsd.models import load_family

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile_prompts and not args.fresh_profile:
        raise ConfigError("--profile-prompts measures a profile: it needs --fresh-profile")
    prompts = args.prompts or load_prompts(args.prompts_file or PROMPT_FILES["validate"])
    profile_prompts = load_prompts(args.profile_prompts or PROMPT_FILES["profile"]) if args.fresh_profile else None
    path, saved = "measured in this run (--fresh-profile)", True
    if not args.fresh_profile:                  # a missing or malformed profile answers before any model loads
        path = profile_path(args.family, args.profile, "validate")
        profile = Profile.load(path)
    family = load_family(args.family, device=args.device)
    if args.fresh_profile:
        from hsd.tools.measure import measure_profile

        temperature = 1.0 if args.temperature is None else args.temperature
        profile = measure_profile(family, temperature=temperature, seed=args.seed, progress=progress_bar(),
                                  forward=args.forward, rule=args.rule, trace_blocks=args.trace_blocks,
                                  prompts=profile_prompts)
        if args.save_profile:
            saved = save_or_rescue(args.save_profile, profile.save, "profile")
    report = validate(family, profile, prompts=prompts,
                      max_new_tokens=args.max_new_tokens, repeats=args.repeats, temperature=args.temperature,
                      rule=args.rule, max_buffer=args.max_buffer, seed=args.seed, progress=progress_bar(),
                      forward=args.forward, acceptance=args.acceptance, retime_costs=args.retime_costs)
    report["profile"] = str(path)
    print(format_report(report))
    if args.json:
        saved &= save_or_rescue(args.json, lambda p: write_json(report, p), "report")
    return 0 if saved else 2
