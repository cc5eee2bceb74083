"""The design study behind a family's shapes, run before any training (issue 15):

    python -m hsd.family design [--plan bundled] [--threads 2] [--json F] [--train-steps 3]

Cost depends on shape, not on weight values, so each candidate shape is built with random weights
and timed through the engine's own level (the lean forward), one model in memory at a time.  Each
candidate family gets ASSUMED acceptances (plausible numbers for drafts cut from and distilled
toward the model above, written next to the result), and the optimiser says what hierarchy those
costs and acceptances would make optimal, and by how much it beats the best single draft
(model-predicted).  One training step of each shape is timed too, to size the build.

The result is plain data; ``hsd.family.card`` prints it in the model card."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hsd.family.plan import PLANS, ModelSpec, TrainingPlan, make_config


@dataclass(frozen=True)
class Candidate:
    """A candidate family: shapes smallest first, target last, and the acceptances assumed for them
    (``alpha[(i, j)]`` = α of model i drafting for model j, i < j)."""

    label: str
    specs: tuple[ModelSpec, ...]
    alpha: dict
    about: str


def _spec(name: str, layers: int, hidden: int, ffn: int) -> ModelSpec:
    return ModelSpec(name, hidden=hidden, layers=layers, heads=max(1, hidden // 64), ffn=ffn)


def _alphas(adjacent: float, draft_middle: float, middle_target: float, far: float) -> dict:
    """Four models xs < s < m < l: xs↔s adjacent, either draft ↔ m, m ↔ l, either draft ↔ l."""
    return {(0, 1): adjacent, (0, 2): draft_middle - 0.03, (1, 2): draft_middle,
            (0, 3): far - 0.03, (1, 3): far, (2, 3): middle_target}


ACCEPTANCE_SETS = (   # xs↔s, drafts↔m, m↔l, drafts↔l
    ((0.70, 0.82, 0.90, 0.72), "like the v2 family: a one-layer xs, a middle at 0.90"),
    ((0.70, 0.85, 0.94, 0.72), "a middle close to the target"),
    ((0.90, 0.88, 0.95, 0.70), "optimistic: drafts close to the middle, far from the target"),
)


def candidates(width: int = 192, ffn: int = 384) -> list[Candidate]:
    """Targets of 12-48 layers at one width, a middle of a quarter to a third of them, drafts of
    one and two layers, under each set of assumed acceptances (``ACCEPTANCE_SETS``)."""
    out = []
    for target_layers, middle_layers in ((12, 4), (24, 6), (24, 8), (32, 8), (48, 12)):
        specs = (_spec("xs", 1, width, ffn), _spec("s", 2, width, ffn),
                 _spec("m", middle_layers, width, ffn), _spec("l", target_layers, width, ffn))
        for (adj, dm, mt, far), about in ACCEPTANCE_SETS:
            out.append(Candidate(label=f"1, 2 → {middle_layers} → {target_layers} layers × {width}",
                                 specs=specs, alpha=_alphas(adj, dm, mt, far),
                                 about=f"{about} (α xs↔s {adj}, drafts↔m {dm}, m↔l {mt}, drafts↔l {far})"))
    return out


def time_shape(spec: ModelSpec, plan: TrainingPlan, *, max_n: int, repeats: int, train_steps: int,
               seed: int = 0) -> dict:
    """Engine forward costs c(1..max_n) (fp32, lean level, 64-token context) and seconds per
    training step (the build's batch and loss, ``stage_loss``) of a random-weight model."""
    import torch
    from transformers import LlamaForCausalLM

    from hsd.family.distill import stage_loss
    from hsd.levels import SamplingSettings, build_level
    from hsd.tools.measure import measure_costs

    torch.manual_seed(seed)
    model = LlamaForCausalLM(make_config(spec, plan, eos_id=0)).eval()
    level = build_level(model, name=spec.name, vocab_size=plan.vocab_size, settings=SamplingSettings())
    context = torch.randint(plan.vocab_size, (64,), generator=torch.Generator().manual_seed(seed)).tolist()
    costs, first = measure_costs([level], context, max_n=max_n, repeats=repeats, warmup=2, seed=seed)
    step_s = None
    if train_steps:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = torch.randint(plan.vocab_size, (plan.batch_size, plan.context_tokens + 1))
        times = []
        for _ in range(train_steps + 1):
            t0 = time.perf_counter()
            loss = stage_loss(model, None, batch, torch.device("cpu"))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        step_s = sorted(times[1:])[len(times[1:]) // 2]
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "cost_ms": costs[spec.name], "first_call_ms": first[spec.name],
            "train_step_s": step_s}


def study(plan: TrainingPlan, cands: list[Candidate], *, max_n: int = 9, repeats: int = 7,
          train_steps: int = 3, log=print) -> dict:
    import torch

    from hsd.plan.optimize import best_single_draft, optimal_hierarchy
    from hsd.plan.profile import Profile

    shapes: dict[tuple, dict] = {}
    for c in cands:
        for spec in c.specs:
            key = (spec.layers, spec.hidden, spec.ffn)
            if key not in shapes:
                log(f"timing {spec.layers} × {spec.hidden} (ffn {spec.ffn})")
                shapes[key] = time_shape(spec, plan, max_n=max_n, repeats=repeats, train_steps=train_steps)
    rows = []
    for c in cands:
        names = [s.name for s in c.specs]
        n = len(names)
        acc = [[1.0 if i == j else c.alpha.get((min(i, j), max(i, j)), 0.0) for j in range(n)] for i in range(n)]
        timed = [shapes[(s.layers, s.hidden, s.ffn)] for s in c.specs]
        profile = Profile(models=names, cost_ms={nm: t["cost_ms"] for nm, t in zip(names, timed)},
                          acceptance=acc, first_call_ms={nm: t["first_call_ms"] for nm, t in zip(names, timed)},
                          acceptance_model="iid")
        best = optimal_hierarchy(profile, with_graph=False)
        single = best_single_draft(profile)
        rows.append({"label": c.label, "assumed": c.about, "optimum": best.label, "kind": best.kind,
                     "levels": len(best.chain), "speedup_vs_ar": round(best.speedup_vs_ar, 3),
                     "vs_best_single": round(single.expected_ms_per_token / best.expected_ms_per_token, 3),
                     "best_single": single.label,
                     "target_over_middle": round(timed[-1]["cost_ms"][0] / timed[-2]["cost_ms"][0], 2)})
        log(f"{c.label:<28} {c.about:<52} {best.label:<26} {best.speedup_vs_ar:.2f}× AR  "
            f"{rows[-1]['vs_best_single']:.2f}× single")
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch_threads": torch.get_num_threads(), "forward": "lean, fp32, random weights, 64-token context",
            "acceptance": "assumed (iid), not measured", "vocab_size": plan.vocab_size,
            "shapes": [{"layers": k[0], "hidden": k[1], "ffn": k[2], **v} for k, v in shapes.items()],
            "candidates": rows}


def format_study(result: dict) -> str:
    lines = ["| layers × width | parameters | c(1) ms | c(5)/c(1) | train s/step |", "|---|---|---|---|---|"]
    for s in result["shapes"]:
        c = s["cost_ms"]
        step = f"{s['train_step_s']:.2f}" if s.get("train_step_s") else "—"
        lines.append(f"| {s['layers']} × {s['hidden']} | {s['params'] / 1e6:.2f}M | {c[0]:.2f} | "
                     f"{c[min(4, len(c) - 1)] / c[0]:.2f} | {step} |")
    lines += ["", "| shapes (drafts → middle → target) | assumed acceptances | optimum (model-predicted) | × AR "
              "| × best single draft |", "|---|---|---|---|---|"]
    for r in result["candidates"]:
        lines.append(f"| {r['label']} | {r['assumed']} | {r['optimum']} | {r['speedup_vs_ar']:.2f}× | "
                     f"{r['vs_best_single']:.2f}× |")
    return "\n".join(lines)


def add_arguments(p) -> None:
    """The options of ``python -m hsd.family design``."""
    p.add_argument("--plan", default="bundled", choices=sorted(PLANS), help="vocabulary, context and batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--ffn", type=int, default=384)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--train-steps", type=int, default=3, help="training steps timed per shape (0: none)")
    p.add_argument("--json", type=Path, help="write the study here")


def run(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    result = study(PLANS[args.plan], candidates(args.width, args.ffn), repeats=args.repeats,
                   train_steps=args.train_steps, log=lambda m: print(m, file=sys.stderr))
    print(format_study(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


__all__ = ["Candidate", "add_arguments", "candidates", "format_study", "run", "study", "time_shape"]
