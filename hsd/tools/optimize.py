"""``hsd optimize profile.json``: the latency-optimal hierarchy of a measured profile, with
what-if changes (``--scale-cost MODEL=F``, ``--alpha DRAFTER:VERIFIER=X``; model-predicted)."""
from __future__ import annotations

import json

from hsd.errors import ConfigError
from hsd.plan.optimize import Plan, best_single_draft, optimal_hierarchy
from hsd.plan.profile import Profile


def format_plan(plan: Plan, single: Plan | None = None, acceptance: str = "i.i.d. acceptance (one α per pair)") -> str:
    """The plan, its model-predicted speedups, and the ranked runners-up as a table."""
    lines = [f"optimal hierarchy (model-predicted): {plan.label}   [{plan.kind}]",
             f"  expected {plan.expected_ms_per_token:.3f} ms/token, "
             f"{plan.speedup_vs_ar:.2f}× vs autoregressive"]
    if single is not None:
        lines.append(f"  {single.expected_ms_per_token / plan.expected_ms_per_token:.2f}× vs the best "
                     f"single draft ({single.label}, {single.expected_ms_per_token:.3f} ms/token)")
    lines.append("")
    lines.append(f"{'rank':>4}  {'hierarchy':<44} {'kind':<15} {'ms/token':>9} {'vs AR':>7}")
    for i, p in enumerate(plan.ranking, start=1):
        lines.append(f"{i:>4}  {p.label:<44} {p.kind:<15} {p.expected_ms_per_token:>9.3f} "
                     f"{p.speedup_vs_ar:>6.2f}×")
    lines.append(f"(model-predicted, {acceptance}; our latency derivation — check with `hsd validate`)")
    return "\n".join(lines)


def parse_what_if(scale_cost: list[str], alpha: list[str]) -> tuple[dict, dict]:
    """``["l=2"]``, ``["s:m=0.9"]`` → ({"l": 2.0}, {("s", "m"): 0.9}); ConfigError on bad text."""
    def split(text: str, flag: str, form: str) -> tuple[str, float]:
        key, eq, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not eq or not key or number is None:
            raise ConfigError(f"{flag} expects {form}, got {text!r}")
        return key, number

    costs = dict(split(t, "--scale-cost", "MODEL=FACTOR") for t in scale_cost)
    pairs = {}
    for text in alpha:
        key, x = split(text, "--alpha", "DRAFTER:VERIFIER=ALPHA")
        a, colon, b = key.partition(":")
        if not colon or not a or not b:
            raise ConfigError(f"--alpha expects DRAFTER:VERIFIER=ALPHA, got {text!r}")
        pairs[a, b] = x
    return costs, pairs


def run(args) -> int:
    profile = Profile.load(args.profile).with_acceptance_model(args.acceptance)
    costs, pairs = parse_what_if(args.scale_cost, args.alpha)
    if costs or pairs:
        profile = profile.what_if(costs, pairs)
        if not args.json:
            print("what-if (not measured): " + "; ".join(profile.meta["what_if"]))
    plan = optimal_hierarchy(profile, max_buffer=args.max_buffer, top=args.top, with_graph=False)
    single = best_single_draft(profile, args.max_buffer)
    if args.json:
        d = plan.to_dict()
        d["best_single_draft"] = single.to_dict()
        d["speedup_vs_best_single_draft"] = single.expected_ms_per_token / plan.expected_ms_per_token
        d["acceptance"] = profile.acceptance_label
        print(json.dumps(d, indent=1))
    else:
        print(format_plan(plan, single, profile.acceptance_label))
        if profile.overhead_ms:
            print(f"(costs include the engine's sampling and '{profile.meta.get('rule', '?')}' rule "
                  "overhead measured with the profile)")
    return 0
