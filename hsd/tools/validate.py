"""Predicted vs measured: run the optimiser's picks on real models and compare with the model.

``hsd validate`` decodes with several hierarchies — the optimum, the best single draft,
autoregressive decoding and the two best deeper alternatives — through the real engine
(``hsd.engine.Hierarchy``), interleaved per prompt so slow drifts of a shared machine hit every
contender alike, and prints, side by side:

- model-predicted ms/token (``hsd.latency``, OUR derivation) and measured ms/token (wall clock,
  decode only: from the end of the prompt prefill to the last commit; median over runs);
- their relative error, model-predicted and measured (wall clock) speedup over AR;
- predicted vs measured tokens per target call;
- per edge: the profile's α, the measured i.i.d. estimate (accepted / positions examined) and the
  measured per-position conditional acceptance P(accept position t | positions < t accepted)
  from the traces.  Under the model's i.i.d. assumption the per-position rates are all α; where
  they drift with t, or differ from α, the assumption breaks.

Measured numbers depend on the machine's load; run nothing else at the same time.
"""
from __future__ import annotations

import itertools
import json
import statistics
from typing import Sequence

from hsd.errors import ConfigError
from hsd.plan.contenders import pick_contenders
from hsd.plan.latency import expected_forwards_per_token, expected_ms_per_token, expected_tokens_per_target_call
from hsd.plan.profile import Profile
from hsd.tools.paths import profile_path
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
    prefills = trace.of_kind("prefill")
    finished = trace.of_kind("finished")
    n = sum(len(e.tokens) for e in trace.of_kind("committed"))
    if not finished or n == 0:
        return float("nan")
    start = max((e.t_ms + e.dur_ms for e in prefills), default=0.0)
    return (finished[-1].t_ms - start) / n


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


def validate(family, profile: Profile, *, prompts: Sequence[str] = VALIDATE_PROMPTS, max_new_tokens: int = 64,
             repeats: int = 1, temperature: float | None = None, rule: str = "hsd", max_buffer: int = 16,
             seed: int = 0, progress: ProgressFn | None = None, forward: str = "auto") -> dict:
    """Decode every contender on every prompt (interleaved, rotating the order per prompt) and
    return plain data: per contender predicted vs measured; see the module docstring."""
    from hsd.engine import Hierarchy

    if list(profile.models) != list(family.names):
        raise ConfigError(f"the profile is for models {profile.models} but the family has {list(family.names)}: "
                          "measure a profile of this family with `python -m hsd profile`")
    if not prompts:
        raise ConfigError("validate needs at least one prompt")
    if temperature is None:
        temperature = float(profile.meta.get("temperature", 1.0))
    contenders = pick_contenders(profile, max_buffer)
    hierarchies = [Hierarchy.from_family(family, chain=list(c.plan.chain), buffers=list(c.plan.buffers), rules=rule,
                                         forward=forward)
                   for c in contenders]
    # 1) warm-up (excluded): first call of each hierarchy allocates and fills caches
    for h in hierarchies:
        h.generate(prompts[0], max_new_tokens=min(8, max_new_tokens), temperature=temperature, seed=seed)
    # 2) interleaved runs
    ms_runs = [[] for _ in contenders]
    traces = [[] for _ in contenders]
    total, done = len(prompts) * repeats * len(contenders), 0
    for (p, prompt), r in itertools.product(enumerate(prompts), range(repeats)):
        shift = (p * repeats + r) % len(contenders)
        for i in list(range(len(contenders)))[shift:] + list(range(len(contenders)))[:shift]:
            result = hierarchies[i].generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                             seed=seed + 1000 * p + r)
            ms_runs[i].append(decode_ms_per_token(result.trace))
            traces[i].append(result.trace)
            done += 1
            if progress:
                progress(done, total, contenders[i].plan.label)
    # 3) summarise
    ar_index = next(i for i, c in enumerate(contenders) if len(c.plan.chain) == 1)
    ar_measured = statistics.median(ms_runs[ar_index])
    rows = []
    for c, runs, trs in zip(contenders, ms_runs, traces):
        plan = c.plan
        measured = statistics.median(runs)
        n_tokens = sum(sum(len(e.tokens) for e in t.of_kind("committed")) for t in trs)
        k = len(plan.chain) - 1
        calls = sum(t.summary().target_calls for t in trs)
        edges = []
        for lv in range(1, k + 1):
            stats = edge_acceptance(trs, lv)
            edges.append({"drafter": plan.names[lv - 1], "verifier": plan.names[lv],
                          "block": plan.buffers[lv - 1],
                          "alpha_profile": profile.alpha(plan.chain[lv - 1], plan.chain[lv]), **stats})
        # the same model fed the acceptance the traces show: separates acceptance error from cost error
        acc = [list(row) for row in profile.acceptance]
        for lv, e in enumerate(edges, start=1):
            if e["alpha_iid"] == e["alpha_iid"]:
                acc[plan.chain[lv - 1]][plan.chain[lv]] = e["alpha_iid"]
        seen_alpha = Profile(list(profile.models), profile.cost_ms, acc, {})
        forwards = [sum(t.summary().levels[lv].forward_passes - 1 for t in trs) / n_tokens
                    for lv in range(k + 1)]                       # minus the prompt prefill
        rows.append({
            "role": c.role, "label": plan.label, "kind": plan.kind,
            "chain": list(plan.chain), "names": list(plan.names), "buffers": list(plan.buffers),
            "predicted_ms_per_token": plan.expected_ms_per_token,
            "measured_ms_per_token": measured,
            "measured_runs_ms_per_token": runs,
            "relative_error": (measured - plan.expected_ms_per_token) / plan.expected_ms_per_token,
            "predicted_speedup_vs_ar": plan.speedup_vs_ar,
            "measured_speedup_vs_ar": ar_measured / measured,
            "predicted_tokens_per_target_call": expected_tokens_per_target_call(profile, plan.chain, plan.buffers),
            "measured_tokens_per_target_call": n_tokens / calls if calls else float("nan"),
            "predicted_ms_per_token_with_measured_alpha": expected_ms_per_token(seen_alpha, plan.chain, plan.buffers),
            "predicted_forwards_per_token": expected_forwards_per_token(profile, plan.chain, plan.buffers),
            "measured_forwards_per_token": forwards,
            "edges": edges})
    errors = [abs(r["relative_error"]) for r in rows]
    return {"format": "hsd-validation/1", "models": list(profile.models), "rule": rule,
            "temperature": temperature, "max_new_tokens": max_new_tokens, "prompts": len(prompts),
            "repeats": repeats, "profile_meta": profile.meta, "rows": rows,
            "median_abs_relative_error": statistics.median(errors),
            "note": "predicted = our latency derivation under i.i.d. acceptance; measured = wall clock, "
                    "decode only, median over prompts × repeats"}


def format_report(report: dict) -> str:
    lines = [f"{'hierarchy':<34} {'role':<19} {'pred ms/tok':>11} {'meas ms/tok':>11} {'rel err':>8} "
             f"{'pred ×AR':>8} {'meas ×AR':>8} {'pred tok/call':>13} {'meas tok/call':>13}"]
    for r in report["rows"]:
        lines.append(f"{r['label']:<34} {r['role']:<19} {r['predicted_ms_per_token']:>11.3f} "
                     f"{r['measured_ms_per_token']:>11.3f} {100 * r['relative_error']:>+7.1f}% "
                     f"{r['predicted_speedup_vs_ar']:>7.2f}× {r['measured_speedup_vs_ar']:>7.2f}× "
                     f"{r['predicted_tokens_per_target_call']:>13.2f} {r['measured_tokens_per_target_call']:>13.2f}")
    lines.append("")
    lines.append(f"{'hierarchy':<34} {'pred ms/tok with measured α':>28}   forwards/token per level: predicted | measured")
    for r in report["rows"]:
        fw = "  ".join(f"{p:.2f}|{m:.2f}" for p, m in zip(r["predicted_forwards_per_token"],
                                                         r["measured_forwards_per_token"]))
        lines.append(f"{r['label']:<34} {r['predicted_ms_per_token_with_measured_alpha']:>28.3f}   {fw}")
    lines.append(f"median |relative error|: {100 * report['median_abs_relative_error']:.1f}%   "
                 f"(predicted: model, i.i.d. acceptance; measured: wall clock, decode only, median of "
                 f"{report['prompts']}×{report['repeats']} runs; rule {report['rule']}, T={report['temperature']})")
    prule = report.get("profile_meta", {}).get("rule")
    if prule and prule != report["rule"]:
        lines.append(f"note: the profile's overheads were timed for rule '{prule}', these runs used '{report['rule']}'")
    lines.append("")
    lines.append("acceptance per edge: profile α | measured i.i.d. estimate | measured P(accept position t | "
                 "earlier accepted), t = 1, 2, …")
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
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI: python -m hsd validate
# --------------------------------------------------------------------------------------------
def run(args) -> int:
    import torch
    from hsd.models import load_family

    if args.threads:
        torch.set_num_threads(args.threads)
    path = profile_path(args.family, args.profile, "validate")
    profile = Profile.load(path)
    family = load_family(args.family, device=args.device)
    report = validate(family, profile, prompts=args.prompts or VALIDATE_PROMPTS,
                      max_new_tokens=args.max_new_tokens, repeats=args.repeats, temperature=args.temperature,
                      rule=args.rule, max_buffer=args.max_buffer, seed=args.seed, progress=progress_bar(),
                      forward=args.forward)
    report["profile"] = str(path)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return 0
