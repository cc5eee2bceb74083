"""The bundled offline model family: a BPE tokenizer and a stack of Llama models trained on the
running Python's own standard library (present wherever Python is, so no download is needed).

    python -m hsd.family train [--device cpu|cuda] [--out assets/family] [--work .cache/family-train]
                               [--steps-scale F] [--precision auto|bf16|fp32]
                               [--reuse NAME ... [--reuse-from assets/family]] [--plan bundled|v2|second]
    python -m hsd.family design [--json F]                # costs of candidate shapes, before training
    python -m hsd.family card  [--family assets/family]
    python -m hsd.family ngram [--family assets/family]   # the n-gram drafter's fallback table

Build, in order (each stage resumable; a finished stage is skipped on re-run):
  1) corpus   — the stdlib ``.py`` files (its test suite included) in sorted order; every
                ``HELDOUT_EVERY``-th file is held out.
  2) tokenizer — byte-level BPE (``tokenizers``), ``<|endoftext|>`` between files.
  3) target   — the largest model, trained from scratch on next-token cross-entropy (AdamW,
                warmup + cosine LR; bf16 autocast where the hardware has it, else fp32); in
                the bundled plan it is grown: a shallower first phase (``Stage.part_of``) is
                expanded to the target's depth without changing what it computes (``grown``:
                LLaMA Pro block expansion, arXiv 2401.02415) and trained on.
  4) drafts   — largest to smallest, each cut out of the model above it (``pruned``: chosen
                layers, then the most active hidden channels, heads and FFN neurons) and
                distilled toward it on the same batches:
                ``KD_WEIGHT·KL(teacher ‖ student) + (1 − KD_WEIGHT)·CE + TV_WEIGHT·TV`` at
                temperature 1 (the temperature acceptance is measured at; TV = 1 − acceptance).
                Hinton et al. 2015 (arXiv 1503.02531); Minitron (arXiv 2407.14679);
                DistillSpec (arXiv 2310.08461).  A model may take several stages (e.g. more
                distillation at a lower rate, continuing the previous stage's weights).
  5) export   — ``assets/family/<name>/`` (fp16 safetensors + config + tokenizer files in each
                folder, so each folder loads alone) and ``assets/family/family.json``.

``--reuse NAME ...`` seeds the work folder with those models' finished stages from an exported
family (``--reuse-from``), so a rebuild that changes only the smaller drafts retrains only them.

Budgets in ``PLAN`` are optimiser steps (about 90 minutes in all on 2 idle CPU cores with native
bf16, see the card for the build's own time; ``--steps-scale`` scales them).  Steps, not wall clock: an earlier wall-clock-budgeted build on a
busy machine got a third of the steps it was planned for and came out flat (every model at the
same held-out loss).  A stage may also carry a wall-clock cap (``minutes``); the steps and time it
took are recorded in ``family.json``.  Batches are drawn from a generator seeded by (plan seed,
stage, step), so a resumed run sees the same batches as an uninterrupted one and the weights are
reproducible for a given plan.

``card`` measures the exported family (held-out loss, pairwise acceptance, greedy agreement,
forward cost, greedy continuations) and writes ``assets/family/README.md`` + ``card.json``.

This module knows nothing of hierarchical decoding; it only makes models that share a tokenizer.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hsd.family import distill
from hsd.family.corpus import eval_windows, prepare_data, sample_batch
from hsd.family.distill import heldout_loss, precision, stage_loss
from hsd.family.plan import (CHECKPOINT_EVERY_S, EOS, HELDOUT_EVERY, IMPORTANCE_BATCHES, PLANS, TINY_PLAN,
                             TV_WEIGHT, Stage, TrainingPlan, make_config)
from hsd.family.design import add_arguments as add_design_arguments, run as design_run
from hsd.family.prune import grown, pruned


def progress(step: int, elapsed_s: float, stage: Stage) -> float:
    """Fraction of the stage's budget spent: steps, or the wall-clock cap if one is set and it
    is further along."""
    frac = step / stage.steps
    if stage.minutes:
        frac = max(frac, elapsed_s / (60.0 * stage.minutes))
    return min(1.0, frac)


def lr_at(step: int, frac: float, stage: Stage, plan: TrainingPlan) -> float:
    """Linear warmup over the first steps, then cosine decay to 10% of the peak over the budget."""
    if step < plan.warmup_steps:
        return stage.lr * (step + 1) / plan.warmup_steps
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def init_description(stage: Stage, source_config) -> str:
    """How ``stage`` is cut from its ``init_from`` model ('' when it continues it unchanged)."""
    c, spec = source_config, stage.spec
    if stage.grow_at:
        return (f"grown from {c.num_hidden_layers} to {spec.layers} layers: its layers at "
                f"{', '.join(map(str, stage.grow_at))}, each other one a copy of the layer before "
                f"with zeroed output projections (function-preserving block expansion)")
    layers = list(stage.init_layers or range(spec.layers))
    cuts = []
    if layers != list(range(c.num_hidden_layers)):
        cuts.append(f"layers {', '.join(map(str, layers))} of {c.num_hidden_layers}")
    for what, was, now in (("width", c.hidden_size, spec.hidden), ("heads", c.num_attention_heads, spec.heads),
                           ("FFN", c.intermediate_size, spec.ffn)):
        if was != now:
            cuts.append(f"{what} {was}→{now}")
    return "; ".join(cuts)


def describe(stage: Stage, plan: TrainingPlan) -> str:
    source = next((s for s in plan.stages if s.work_key == stage.init_from), None)
    if stage.teacher:
        if source is not None and source.spec == stage.spec:
            return f"distilled from {stage.teacher}, continuing {stage.init_from}"
        start = f", starting as a pruned copy of {stage.init_from}" if stage.init_from else ""
        return f"distilled from {stage.teacher}{start}"
    if stage.grow_at:
        return f"cross-entropy, grown from {stage.init_from}"
    return f"cross-entropy, continued from {stage.init_from}" if stage.init_from else \
        "cross-entropy from scratch"


def train_stage(stage: Stage, index: int, plan: TrainingPlan, work: Path, stream: torch.Tensor,
                windows: torch.Tensor, device: torch.device, log) -> dict:
    """Train (or resume, or skip) one stage; returns its stats and leaves ``work/<name>/final``."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    sdir = work / stage.work_key
    done_path = sdir / "done.json"
    if done_path.exists():
        log(f"[{stage.work_key}] finished earlier — skipped")
        return json.loads(done_path.read_text())
    sdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(plan.seed + index)
    if stage.init_from:
        model = AutoModelForCausalLM.from_pretrained(work / stage.init_from / "final",
                                                     dtype=torch.float32)
        init = init_description(stage, model.config)
        if stage.grow_at:
            model = grown(model, stage.spec, plan, stage.grow_at)
        elif init:
            batches = [sample_batch(stream, plan, index, -1 - k)[:, :-1].to(device)
                       for k in range(IMPORTANCE_BATCHES)]
            model = pruned(model.to(device), stage.spec, plan, stage.init_layers, batches)
        model = model.to(device)
    else:
        init = None
        model = LlamaForCausalLM(make_config(stage.spec, plan, eos_id=0)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, betas=(0.9, 0.95), weight_decay=0.1)
    teacher = None
    if stage.teacher:
        teacher = AutoModelForCausalLM.from_pretrained(work / stage.teacher / "final",
                                                       dtype=torch.float32).to(device).eval()
    step, elapsed = 0, 0.0
    ckpt_path = sdir / "ckpt.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        step, elapsed = ckpt["step"], ckpt["elapsed_s"]
        log(f"[{stage.work_key}] resumed at step {step} after {elapsed / 60:.1f} min")
    n_params = sum(p.numel() for p in model.parameters())
    cap = f" (cap {stage.minutes:.1f} min)" if stage.minutes else ""
    log(f"[{stage.work_key}] {n_params / 1e6:.2f}M params, {stage.steps} steps{cap}, "
        f"{describe(stage, plan)}")

    model.train()
    t_start, t_saved, ema = time.time() - elapsed, time.time(), None
    while (frac := progress(step, time.time() - t_start, stage)) < 1.0:
        # 1) one optimiser step on the batch for (stage, step)
        lr = lr_at(step, frac, stage, plan)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = stage_loss(model, teacher, sample_batch(stream, plan, index, step), device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        # 2) progress line
        if step % 25 == 0:
            spent = time.time() - t_start
            log(f"[{stage.work_key}] step {step}/{stage.steps} loss {ema:.3f} lr {lr:.2e} "
                f"{spent / 60:.1f} min ({spent / step:.2f} s/step)")
        # 3) checkpoint every few minutes
        if time.time() - t_saved > CHECKPOINT_EVERY_S:
            save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "rng": torch.get_rng_state(), "step": step,
                         "elapsed_s": time.time() - t_start}, ckpt_path)
            t_saved = time.time()

    # 4) evaluate, save, mark done
    wall_s = time.time() - t_start
    loss = heldout_loss(model, windows, device)
    model.save_pretrained(sdir / "final")
    stats = {"name": stage.model, "work_key": stage.work_key, "init_from": stage.init_from,
             "init": init, "tv_weight": TV_WEIGHT if stage.teacher else None,
             "params": n_params, **asdict(stage.spec), "steps": step,
             "train_tokens": step * plan.batch_size * plan.context_tokens,
             "train_seconds": round(wall_s, 1), "teacher": stage.teacher,
             "heldout_loss_training": round(loss, 4), "precision": precision(device),
             "device": device.type}
    done_path.write_text(json.dumps(stats, indent=2))
    ckpt_path.unlink(missing_ok=True)
    log(f"[{stage.work_key}] done in {wall_s / 60:.1f} min, held-out loss {loss:.3f}")
    return stats


# --------------------------------------------------------------------------------------------
# 5) export
# --------------------------------------------------------------------------------------------
def export_family(plan: TrainingPlan, work: Path, out: Path, tokenizer, stats: dict[str, dict],
                  corpus: dict) -> None:
    """fp16 safetensors + config + generation config + tokenizer in each folder; family.json."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    eos = tokenizer.eos_token_id
    for name in plan.names:
        final = work / plan.last_stage(name).work_key / "final"
        model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
        model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos,
                                                   pad_token_id=eos, do_sample=False,
                                                   max_new_tokens=64)
        model.to(torch.float16).save_pretrained(out / name, safe_serialization=True)
        set_default_dtype(out / name / "config.json", "float32")
        tokenizer.model_max_length = plan.context_tokens
        tokenizer.save_pretrained(out / name)
        # one line instead of tokenizers' indented form: 104 kB instead of 260 kB a folder
        tokenizer.backend_tokenizer.save(str(out / name / "tokenizer.json"), pretty=False)
        drop_load_flags(out / name / "tokenizer_config.json")
    meta = {"names": plan.names, "target": plan.names[-1], "tokenizer": "byte-level BPE",
            "vocab_size": plan.vocab_size, "context_tokens": plan.context_tokens,
            "eos_token": EOS, "python": sys.version.split()[0], "corpus": corpus,
            "heldout_every": HELDOUT_EVERY, "seed": plan.seed,
            "models": [model_stats(plan, stats, n) for n in plan.names]}
    (out / "family.json").write_text(json.dumps(meta, indent=2) + "\n")


def model_stats(plan: TrainingPlan, stats: dict[str, dict], name: str) -> dict:
    """One model's facts: its last stage's, with steps, tokens and time summed over its stages."""
    stages = [s for s in plan.stages if s.model == name]
    merged = dict(stats[stages[-1].work_key])
    for field in ("steps", "train_tokens", "train_seconds"):
        merged[field] = round(sum(stats[s.work_key][field] for s in stages), 1)
    model_of = {s.work_key: s.model for s in plan.stages}         # work keys → model names
    teacher = next((s.teacher for s in stages if s.teacher), None)
    merged["teacher"] = model_of.get(teacher, teacher)
    first = stats[stages[0].work_key]           # how the model started, not its last stage's start
    merged["init_from"] = model_of.get(first.get("init_from"), first.get("init_from"))
    merged["init"] = first.get("init")
    merged["stages"] = [stats[s.work_key] for s in stages]
    return merged


def drop_load_flags(config_path: Path) -> None:
    """transformers records how the tokenizer was loaded (``local_files_only`` is true when the
    build ran with ``HF_HUB_OFFLINE=1``); that is the builder's setting, not the tokenizer's."""
    config = json.loads(config_path.read_text())
    config.pop("local_files_only", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def set_default_dtype(config_path: Path, dtype: str) -> None:
    """Weights are stored fp16 (half the bytes); the config asks for fp32 so that a plain
    ``from_pretrained(folder)`` on CPU upcasts instead of running slow fp16 kernels."""
    config = json.loads(config_path.read_text())
    config["dtype"] = dtype
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def reuse_stages(plan: TrainingPlan, work: Path, family: Path, names: list[str], log=print) -> None:
    """Seed ``work`` with finished stages taken from an exported family (``family/<name>``, its
    ``family.json``), so that a rebuild retrains only the other stages: the tokenizer is copied,
    each named model's weights become its recorded stages' ``final`` (fp16 → fp32, exact) and
    their stats their ``done.json``.  The recorded stages must be the first of the model's stages
    in the plan; later ones (e.g. more distillation) then train from those weights.  A family
    stores only each model's last weights, so every reused stage of a model gets those: a later
    stage that starts from an EARLIER reused stage of it would start from the wrong weights.
    Refuses a model whose shape differs from the plan's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = json.loads((family / "family.json").read_text())
    recorded = {m["name"]: m for m in meta["models"]}
    problems = [f"{n} is not in the plan" for n in names if n not in plan.names]
    problems += [f"{n} is not in {family}/family.json" for n in names if n not in recorded]
    if meta.get("vocab_size") != plan.vocab_size:
        problems.append(f"its vocabulary is {meta.get('vocab_size')}, the plan's {plan.vocab_size}")
    for n in names:
        if n in recorded and n in plan.names:
            spec, rec = plan.last_stage(n).spec, recorded[n]
            if (rec["hidden"], rec["layers"], rec["heads"], rec["ffn"]) != \
                    (spec.hidden, spec.layers, spec.heads, spec.ffn):
                problems.append(f"{n} is {rec['layers']}×{rec['hidden']} (FFN {rec['ffn']}, "
                                f"{rec['heads']} heads) there, {spec.layers}×{spec.hidden} "
                                f"(FFN {spec.ffn}, {spec.heads} heads) in the plan")
    if problems:
        raise ValueError(f"cannot reuse stages from {family}: " + "; ".join(problems))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "tokenizer" / "tokenizer.json").exists():
        AutoTokenizer.from_pretrained(family / meta["target"]).save_pretrained(work / "tokenizer")
    for n in names:
        stages = [s for s in plan.stages if s.model == n]
        keys = [s.work_key for s in stages]
        done = [st["work_key"] for st in recorded[n]["stages"]]
        if done != keys[:len(done)]:
            raise ValueError(f"cannot reuse {n}: {family} recorded its stages {done}, the plan's "
                             f"are {keys}")
        model = AutoModelForCausalLM.from_pretrained(family / n, dtype=torch.float32)
        for stage, stats in zip(stages, recorded[n]["stages"]):
            sdir = work / stage.work_key
            sdir.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(sdir / "final")
            (sdir / "done.json").write_text(json.dumps({**stats, "reused_from": str(family)},
                                                       indent=2))
        log(f"[{n}] reused from {family}")


def train_family(plan: TrainingPlan, out: Path, work: Path, device: str = "cpu", log=print,
                 precision_: str = "auto") -> dict:
    """Steps 1–5; resumable.  Returns the family.json contents."""
    if precision_ not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision_!r}")
    distill.PRECISION = precision_          # the build's one precision setting (hsd.family.distill)
    dev = torch.device(device)
    log(f"training precision: {precision(dev)}")
    work.mkdir(parents=True, exist_ok=True)
    tokenizer, train, held = prepare_data(plan, work, log)
    windows = eval_windows(held, plan)
    stats = {}
    for index, stage in enumerate(plan.stages):
        stats[stage.work_key] = train_stage(stage, index, plan, work, train, windows, dev, log)
    corpus = {"source": "Python standard library .py files (test suite included)",
              "train_tokens": len(train), "heldout_tokens": len(held), "max_files": plan.max_files}
    export_family(plan, work, out, tokenizer, stats, corpus)
    log(f"exported {', '.join(plan.names)} to {out}")
    return json.loads((out / "family.json").read_text())


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsd.family", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="build (or resume) the bundled family")
    tr.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    tr.add_argument("--out", type=Path, default=Path("assets/family"))
    tr.add_argument("--work", type=Path, default=Path(".cache/family-train"))
    tr.add_argument("--steps-scale", type=float, default=1.0,
                    help="scale every stage's step budget (1.0 ≈ 105 min on 2 idle CPU cores "
                         "with native bf16)")
    tr.add_argument("--tiny", action="store_true", help="the seconds-long test plan")
    tr.add_argument("--plan", default="bundled", choices=sorted(PLANS),
                    help="which family: the bundled one (default) or the second one the latency model "
                         "is checked on (hsd.family.plan.SECOND_PLAN)")
    tr.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="bf16 autocast or fp32; auto = bf16 where the hardware has it "
                         "(CUDA, AVX512-BF16/AMX CPUs), else fp32")
    tr.add_argument("--reuse", nargs="+", metavar="NAME", default=[],
                    help="take these models' finished stages from --reuse-from instead of "
                         "training them (same shapes as the plan's)")
    tr.add_argument("--reuse-from", type=Path, default=Path("assets/family"),
                    help="the exported family --reuse takes models from")
    ng = sub.add_parser("ngram", help="build the n-gram drafter's fallback bigram table for an exported family")
    ng.add_argument("--family", type=Path, default=Path("assets/family"))
    add_design_arguments(sub.add_parser("design", help="the design study: costs of candidate shapes (random "
                                                       "weights) and the optimum they would give with assumed "
                                                       "acceptances"))
    cd = sub.add_parser("card", help="measure the exported family and write its model card")
    cd.add_argument("--family", type=Path, default=Path("assets/family"))
    cd.add_argument("--work", type=Path, default=Path(".cache/family-train"))
    args = parser.parse_args(argv)
    if args.command == "design":
        return design_run(args)
    torch.set_num_threads(2)
    if args.command == "train":
        plan = (TINY_PLAN if args.tiny else PLANS[args.plan]).scaled(args.steps_scale)

        def log(msg: str) -> None:
            print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

        if args.reuse:
            try:
                reuse_stages(plan, args.work, args.reuse_from, args.reuse, log)
            except (ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        train_family(plan, args.out, args.work, args.device, log, args.precision)
        return 0
    if args.command == "ngram":
        from hsd.family.corpus import write_bigram

        write_bigram(args.family)
        return 0
    from hsd.family.card import write_card
    write_card(args.family)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
