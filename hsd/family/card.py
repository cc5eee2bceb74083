"""Measure an exported family and write its model card (``python -m hsd.family card``).

Everything in ``assets/family/README.md`` comes from here, none of it by hand:
  - held-out loss (nats/token) and per-token perplexity on the held-out stdlib files;
  - the pairwise acceptance matrix α[i][j] = E_ctx[Σ_v min(p_i(v|ctx), p_j(v|ctx))] at
    temperature 1 (Leviathan et al. 2023, arXiv 2211.17192, §3.1: the expected acceptance of one
    drafted token), and greedy agreement (argmaxes equal), both on the same held-out contexts;
  - CPU forward cost: median ms of a 1-token forward on a warm ``DynamicCache`` of 128 tokens,
    2 threads, fp32, models interleaved so that machine noise hits all of them alike;
  - greedy continuations of a few prompts.

Training facts (steps, tokens, wall time) are read from ``family.json``, written by the build.
This module knows nothing of the engine; it only needs ``hsd.family`` (corpus split) and
``hsd.models`` (loading).
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# no trailing newline: the tokenizer merges a newline with the next line's indentation, so a
# prompt ending in "\n" would cut that token in half and push the model to a new top-level line
PROMPTS = ["def fibonacci(n):", "class Stack:", "import os\n", "def read_config(path):"]
CACHE_TOKENS = 128
COST_REPEATS = 60
CARD_WINDOWS = 48
ACCEPTANCE_BAR = 0.8     # issue 3: adjacent pairs should reach this α


def heldout_windows(tokenizer, n_windows: int, length: int,
                    max_files: int | None = None) -> torch.Tensor:
    """(n, length) evenly spaced windows of the held-out stdlib files (the build's split)."""
    from hsd.family.corpus import corpus_files, encode_files, split_files

    _, held = split_files(corpus_files(max_files=max_files))
    stream = encode_files(tokenizer, held)
    count = min(n_windows, len(stream) // length)
    stride = len(stream) // count
    return torch.stack([stream[i * stride:i * stride + length] for i in range(count)]).long()


@torch.no_grad()
def measure_pairs(models: list, windows: torch.Tensor, vocab: int, batch: int = 8) -> dict:
    """Held-out loss per model, α[i][j] and greedy agreement[i][j] (i < j) over all positions."""
    k = len(models)
    loss_sum = [0.0] * k
    overlap = [[0.0] * k for _ in range(k)]
    agree = [[0.0] * k for _ in range(k)]
    positions = 0
    for start in range(0, len(windows), batch):
        w = windows[start:start + batch]
        x, y = w[:, :-1], w[:, 1:]
        logits = [m(input_ids=x.to(m.device)).logits[..., :vocab].float().cpu().flatten(0, 1)
                  for m in models]                                               # k × (B·T, V)
        probs = [F.softmax(lg, -1) for lg in logits]
        argmax = [lg.argmax(-1) for lg in logits]
        for i in range(k):
            loss_sum[i] += F.cross_entropy(logits[i], y.flatten(), reduction="sum").item()
            for j in range(i + 1, k):
                overlap[i][j] += torch.minimum(probs[i], probs[j]).sum().item()
                agree[i][j] += (argmax[i] == argmax[j]).sum().item()
        positions += y.numel()
    loss = [s / positions for s in loss_sum]
    alpha = [[overlap[i][j] / positions if i < j else None for j in range(k)] for i in range(k)]
    greedy = [[agree[i][j] / positions if i < j else None for j in range(k)] for i in range(k)]
    return {"positions": positions, "heldout_loss": loss, "acceptance": alpha,
            "greedy_agreement": greedy}


@torch.no_grad()
def forward_cost_ms(models: list, repeats: int = COST_REPEATS, warmup: int = 10) -> list[float]:
    """Median ms of one 1-token forward on a warm DynamicCache of CACHE_TOKENS, interleaved."""
    from transformers import DynamicCache

    g = torch.Generator().manual_seed(0)
    times: list[list[float]] = [[] for _ in models]
    states = []
    for m in models:
        prefix = torch.randint(1, m.config.vocab_size, (1, CACHE_TOKENS), generator=g)
        cache = DynamicCache(config=m.config)
        m(input_ids=prefix, past_key_values=cache, use_cache=True)
        states.append(cache)
    token = torch.tensor([[1]])
    for rep in range(warmup + repeats):
        for i, (m, cache) in enumerate(zip(models, states)):
            t0 = time.perf_counter()
            m(input_ids=token, past_key_values=cache, use_cache=True)
            elapsed_ms = (time.perf_counter() - t0) * 1e3
            cache.crop(-1)          # transformers 5.x: a negative count drops that many tokens
            if rep >= warmup:
                times[i].append(elapsed_ms)
    return [statistics.median(t) for t in times]


@torch.no_grad()
def continuations(model, tokenizer, prompts=PROMPTS, max_new_tokens: int = 48) -> list[str]:
    """Greedy continuations (prompt included)."""
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.eos_token_id)
        out.append(tokenizer.decode(gen[0], skip_special_tokens=True))
    return out


def measure(family_dir: Path) -> dict:
    """All card numbers for the family in ``family_dir``."""
    from hsd.models import load_family

    meta = json.loads((family_dir / "family.json").read_text())
    family = load_family([str(family_dir / n) for n in meta["names"]], device="cpu",
                         dtype=torch.float32)
    windows = heldout_windows(family.tokenizer, CARD_WINDOWS, meta["context_tokens"] + 1,
                              meta["corpus"].get("max_files"))
    t0 = time.time()
    pairs = measure_pairs(family.models, windows, family.vocab_size)
    costs = forward_cost_ms(family.models)
    return {
        "names": family.names,
        "threads": torch.get_num_threads(),
        "heldout_windows": len(windows), "window_tokens": meta["context_tokens"] + 1,
        **pairs,
        "perplexity": [math.exp(x) for x in pairs["heldout_loss"]],
        "forward_ms": costs,
        "continuations": {"target": continuations(family.models[-1], family.tokenizer),
                          "smallest": continuations(family.models[0], family.tokenizer)},
        "measure_seconds": round(time.time() - t0, 1),
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _matrix(names: list[str], m: list[list], fmt: str = "{:.3f}") -> str:
    head = "| drafter ↓ / verifier → | " + " | ".join(names[1:]) + " |"
    rule = "|---|" + "---|" * (len(names) - 1)
    rows = []
    for i, name in enumerate(names[:-1]):
        cells = [fmt.format(m[i][j]) if m[i][j] is not None else "" for j in range(1, len(names))]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def quality_checks(card: dict) -> list[tuple[str, bool]]:
    """The bar the family promises, as (claim, holds) pairs."""
    loss, alpha, k = card["heldout_loss"], card["acceptance"], len(card["names"])
    return [
        ("held-out loss falls strictly with size",
         all(loss[i] > loss[i + 1] for i in range(k - 1))),
        ("for every verifier, acceptance rises with drafter size",
         all(alpha[i][j] < alpha[i + 1][j] for j in range(k) for i in range(j - 1))),
        (f"adjacent pairs have α ≥ {ACCEPTANCE_BAR}",
         all(alpha[i][i + 1] >= ACCEPTANCE_BAR for i in range(k - 1))),
    ]


def render_card(meta: dict, card: dict) -> str:
    """The model card (Markdown): 1) header and how to rebuild, 2) the models table, 3) corpus and
    method, the acceptance and agreement matrices, 4) the quality bar, 5) continuations, limits."""
    names = card["names"]
    minutes, reuse_note, trained_in = _training_summary(meta)
    lines = _header(meta, names, minutes, reuse_note)                                  # 1)
    lines += _model_rows(meta, card, names)                                            # 2)
    lines += _method(meta, card, names, trained_in)                                    # 3)
    lines += _quality(card, names, minutes)                                            # 4)
    lines += _continuations_and_limits(meta, card, names)                              # 5)
    return "\n".join(lines)


def _training_summary(meta: dict) -> tuple[float, str, str]:
    """Minutes of training, the note on reused stages, and the precision(s) it ran in."""
    minutes = sum(m["train_seconds"] for m in meta["models"]) / 60
    stages = [(m["name"], st) for m in meta["models"] for st in m.get("stages", [m])]
    reused = [(n, st) for n, st in stages if st.get("reused_from")]
    reuse_note = ""
    if reused:
        reused_min = sum(st["train_seconds"] for _, st in reused) / 60
        reuse_note = (f", of which {reused_min:.0f} min are stages reused from an earlier build "
                      f"(`--reuse`: {', '.join(st['work_key'] for _, st in reused)})")
    by_precision: dict[str, list[str]] = {}
    for _, st in stages:     # builds before the precision field trained with bf16 autocast
        by_precision.setdefault(st.get("precision", "bf16"), []).append(st["work_key"])
    names_of = {"bf16": "bf16 autocast", "fp32": "fp32"}
    if len(by_precision) == 1:
        trained_in = names_of[next(iter(by_precision))]
    else:
        trained_in = (" and ".join(f"{names_of[p]} ({', '.join(keys)})"
                                   for p, keys in by_precision.items())
                      + " (bf16 only on a CPU that has it natively)")
    return minutes, reuse_note, trained_in


def _header(meta: dict, names: list, minutes: float, reuse_note: str) -> list[str]:
    return [
        "# HSD Explorer bundled family: `" + "`, `".join(names) + "`",
        "",
        f"{len(names)} Llama causal LMs (smallest first, `{names[-1]}` is the target) trained by "
        "this project on the `.py` files of the Python standard library, its test suite included "
        f"(Python {meta['python']}, PSF license), sharing one byte-level BPE tokenizer of "
        f"{meta['vocab_size']} tokens (`{meta['eos_token']}` between files). Context length "
        f"{meta['context_tokens']} tokens. Weights are stored fp16 (safetensors); each folder's "
        "config asks for fp32, so a plain `from_pretrained(folder)` upcasts on CPU. Each folder "
        "holds its own tokenizer and loads alone.",
        "",
        "Rebuild: `python -m hsd.family train` (resumable; budgets are optimiser steps; this "
        f"build trained for {minutes:.0f} min on "
        f"`{meta['models'][-1].get('device', 'cpu')}`{reuse_note}; `--device cuda` on a GPU); "
        "re-measure and rewrite this card: `python -m hsd.family card`. Load: "
        "`hsd.models.load_family(\"bundled\")`.",
        "",
        "## Models",
        "",
        "| model | params | layers | width | heads | FFN | trained as | steps | training tokens "
        "| train time | held-out loss (nats/token) | per-token perplexity | 1-token forward (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def _model_rows(meta: dict, card: dict, names: list) -> list[str]:
    models = {m["name"]: m for m in meta["models"]}
    lines = []
    for i, n in enumerate(names):
        m = models[n]
        how = f"distilled from `{m['teacher']}`" if m["teacher"] else "from scratch (CE)"
        if m["teacher"] and m.get("init_from"):
            cut = m.get("init") or f"the first {m['layers']} layers"
            how += f", starting as a cut of `{m['init_from']}` ({cut})"
        grown = _grown_stage(m)
        if grown:
            how += ", then " + grown["init"].split(":")[0]
        if len(m.get("stages", [])) > 1:
            how += " in " + " + ".join(f"{st['steps']}" for st in m["stages"]) + " steps"
        lines.append(
            f"| `{n}` | {m['params'] / 1e6:.2f}M | {m['layers']} | {m['hidden']} | {m['heads']} "
            f"| {m['ffn']} | {how} | {m['steps']} | {m['train_tokens'] / 1e6:.2f}M "
            f"| {m['train_seconds'] / 60:.1f} min | {card['heldout_loss'][i]:.3f} "
            f"| {card['perplexity'][i]:.2f} | {card['forward_ms'][i]:.2f} |")
    return lines


def _grown_stage(model: dict) -> dict | None:
    """The stage of ``model`` (a family.json entry) that grew it deeper (``hsd.family.grown``), if any."""
    return next((st for st in model.get("stages", []) if (st.get("init") or "").startswith("grown from")), None)


def _growth(meta: dict) -> str:
    """The sentence on a target grown deeper mid-training ('' when none was)."""
    for m in meta["models"]:
        st = _grown_stage(m)
        if st:
            return (f" `{m['name']}` was grown: a shallower model trained first, then "
                    f"{st['init']} (LLaMA Pro, Wu et al. 2024), and trained on; a middle model "
                    "cut back out of it at those layers starts as a sub-network of the target.")
    return ""


def _design(card: dict) -> list[str]:
    study = card.get("design_study")
    if not study:
        return []
    from hsd.family.design import format_study

    return ["", "## Design study (before training: `python -m hsd.family design`)", "",
            f"Costs of random-weight models of each candidate shape ({study['forward']}, "
            f"{study['torch_threads']} threads, {study['measured_at']}); the acceptances are "
            f"ASSUMED, and the optimiser says what hierarchy they would make optimal "
            "(model-predicted). The shapes above were chosen from it; the measured acceptances "
            "are in the matrices below.", "", format_study(study)]


def _method(meta: dict, card: dict, names: list, trained_in: str) -> list[str]:
    corpus = meta["corpus"]
    return [
        "",
        f"Corpus: {corpus['train_tokens'] / 1e6:.2f}M training tokens; every "
        f"{meta['heldout_every']}th file (sorted by path) is held out "
        f"({corpus['heldout_tokens'] / 1e3:.0f}k tokens). Held-out numbers below use "
        f"{card['heldout_windows']} evenly spaced windows of {card['window_tokens']} tokens "
        f"({card['positions']} predicted positions), fp32. Training ran in {trained_in}, "
        "AdamW (β=0.9/0.95, weight decay 0.1), linear warmup then cosine decay over a budget of "
        "optimiser steps per stage (4096 tokens a step); the target trains from scratch on "
        "cross-entropy, then each draft, largest to smallest, is distilled toward the next "
        "larger model on the same batches with 0.9·KL(teacher‖student) + 0.1·CE + "
        "1.0·TV(teacher, student) at temperature 1 (TV = 1 − acceptance, the quantity the "
        "hierarchy is scored on; DistillSpec, Zhou et al. 2023). Each draft starts as a cut of "
        "the model above it rather than from noise: chosen decoder layers (as in LayerSkip / "
        "self-speculative drafts), then, where it is narrower, the hidden channels, attention "
        "heads and FFN neurons with the largest mean activations on training batches "
        "(Minitron-style pruning, Muralidharan et al. 2024). A small model trained from scratch "
        "never gets close to a target this far ahead of it on this budget." + _growth(meta),
        *_design(card),
        "",
        "Forward cost: median of "
        f"{COST_REPEATS} one-token forwards on a warm `DynamicCache` of {CACHE_TOKENS} tokens, "
        f"fp32, {card['threads']} CPU threads, models interleaved. Wall-clock times on shared "
        "cores vary 10–25% run to run.",
        "",
        "## Pairwise acceptance α[i][j] = E_ctx[Σ_v min(p_i, p_j)] (temperature 1, held-out contexts)",
        "",
        "The expected probability that verifier j accepts one token drafted by i "
        "(Leviathan et al. 2023).",
        "",
        _matrix(names, card["acceptance"]),
        "",
        "## Greedy agreement (fraction of positions where the argmaxes agree)",
        "",
        _matrix(names, card["greedy_agreement"]),
        "",
        "## Quality bar",
        "",
    ]


def _quality(card: dict, names: list, minutes: float) -> list[str]:
    lines = []
    checks = quality_checks(card)
    for claim, holds in checks:
        lines.append(f"- {'✅' if holds else '❌ NOT MET:'} {claim}")
    if not all(holds for _, holds in checks):
        alpha = card["acceptance"]
        short = [f"α({names[i]}, {names[i + 1]}) = {alpha[i][i + 1]:.2f}"
                 for i in range(len(names) - 1) if alpha[i][i + 1] < ACCEPTANCE_BAR]
        lines += [
            "",
            "Why not: " + (", ".join(short) + f" fall short of {ACCEPTANCE_BAR}. " if short else "")
            + f"The whole build had {minutes:.0f} minutes of 2 CPU cores and 40 MB; a draft with "
            "fewer layers than the model above it is cheap but, at this size, loses more of "
            "its verifier's distribution than width does (see docs/results.md, 'The bundled "
            "family'). A larger step budget (`--steps-scale`) or a GPU (`--device cuda`) narrows it.",
        ]
    return lines


def _continuations_and_limits(meta: dict, card: dict, names: list) -> list[str]:
    corpus = meta["corpus"]
    lines = []
    lines += ["", "## Greedy continuations (48 new tokens, no sampling)", ""]
    for label, key in ((f"target `{names[-1]}`", "target"), (f"smallest `{names[0]}`", "smallest")):
        lines += [f"### {label}", ""]
        for text in card["continuations"][key]:
            lines += ["```python", text.rstrip("\n"), "```", ""]
    lines += [
        "## Limits",
        "",
        f"These are tiny models trained for minutes on {corpus['train_tokens'] / 1e6:.1f}M tokens "
        "of one codebase: they continue "
        "Python in the style of the standard library (indentation, docstrings, plausible names) "
        "but do not write correct programs, and greedy decoding of the smaller ones repeats "
        "itself. They exist so that hierarchical speculative decoding can be demonstrated and "
        "measured offline; acceptance between real model families is usually lower.",
        "",
    ]
    return lines


def write_card(family_dir: Path) -> dict:
    """Measure, then write ``README.md`` and ``card.json`` into ``family_dir``."""
    meta = json.loads((family_dir / "family.json").read_text())
    card = measure(family_dir)
    study = family_dir / "design-study.json"
    if study.exists():
        card["design_study"] = json.loads(study.read_text())
    (family_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (family_dir / "README.md").write_text(render_card(meta, card))
    return card
