"""The bundled offline model family: a BPE tokenizer and a stack of Llama models trained on the
running Python's own standard library (present wherever Python is, so no download is needed).

    python -m hsd.family train [--device cpu|cuda] [--out assets/family] [--work .cache/family-train]
                               [--steps-scale F] [--precision auto|bf16|fp32]
                               [--reuse NAME ... [--reuse-from assets/family]]
    python -m hsd.family card  [--family assets/family]

Build, in order (each stage resumable; a finished stage is skipped on re-run):
  1) corpus   — the stdlib ``.py`` files (its test suite included) in sorted order; every
                ``HELDOUT_EVERY``-th file is held out.
  2) tokenizer — byte-level BPE (``tokenizers``), ``<|endoftext|>`` between files.
  3) target   — the largest model, trained from scratch on next-token cross-entropy (AdamW,
                warmup + cosine LR; bf16 autocast where the hardware has it, else fp32).
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

Budgets in ``PLAN`` are optimiser steps (about 105 minutes in all on 2 idle CPU cores with native
bf16; longer in fp32 on a CPU without it, where the s and xs stages took 1.1–1.3 and 0.65 s a
step; ``--steps-scale`` scales them).  Steps, not wall clock: an earlier wall-clock-budgeted build on a
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
import contextlib
import functools
import json
import math
import os
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

EOS = "<|endoftext|>"
HELDOUT_EVERY = 20          # file i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1
KD_WEIGHT = 0.9             # weight of KL(teacher ‖ student); the rest is cross-entropy
TV_WEIGHT = 1.0             # plus this weight of the total-variation distance (= 1 − acceptance)
IMPORTANCE_BATCHES = 4      # batches that rank channels, heads and neurons when pruning
CHECKPOINT_EVERY_S = 180.0
# The test suite is part of the corpus: without it the stdlib is 3.3M tokens and a 12M-parameter
# target overfits it (train 2.31, held-out 2.63 nats) until its own 3-layer distilled draft ties it.
SKIP_DIR_NAMES = {"site-packages", "__pycache__"}


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """Shape of one family member (tied input/output embeddings)."""

    name: str
    hidden: int
    layers: int
    heads: int
    ffn: int

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden {self.hidden} not divisible by heads {self.heads}")


@dataclass(frozen=True)
class Stage:
    """One training stage: ``teacher`` None = cross-entropy from scratch, else distillation.

    The budget is ``steps`` optimiser steps (the cosine schedule runs over them), optionally cut
    short by a wall-clock cap of ``minutes`` (whichever ends first)."""

    spec: ModelSpec
    steps: int
    lr: float
    teacher: str | None = None          # work key of the teacher's finished stage
    minutes: float | None = None
    init_from: str | None = None        # start from this finished stage's weights (pruned to spec)
    key: str | None = None              # work-dir key; default: the model name
    init_layers: tuple[int, ...] | None = None   # init_from's layers to keep; default the first

    @property
    def work_key(self) -> str:
        return self.key or self.spec.name


@dataclass(frozen=True)
class Plan:
    vocab_size: int
    context_tokens: int
    batch_size: int
    stages: tuple[Stage, ...]          # target first, then drafts largest → smallest
    eval_windows: int = 48
    seed: int = 1234
    max_files: int | None = None       # corpus slice (tests)
    warmup_steps: int = 60

    @property
    def names(self) -> list[str]:
        """Smallest first, target last (stages list each model first time largest-first)."""
        return list(reversed(list(dict.fromkeys(s.spec.name for s in self.stages))))

    def last_stage(self, name: str) -> Stage:
        """The stage whose weights are exported for ``name``."""
        return [s for s in self.stages if s.spec.name == name][-1]

    def scaled(self, factor: float) -> "Plan":
        return replace(self, stages=tuple(replace(s, steps=max(1, round(s.steps * factor)))
                                          for s in self.stages))


# Sizes are capped by the 40 MB the family may take in fp16 (≈ 19.5M parameters in all) and
# shaped by this CPU, where every decoder layer costs ~1 ms a call whatever its width: drafts
# are shallow.  Each draft is cut out of the model above it (layers chosen, then the least
# important hidden channels, heads and FFN neurons dropped -- Minitron-style) and distilled
# toward it, so it starts close to its verifier instead of from noise.
XS = ModelSpec("hsd-family-xs", hidden=128, layers=2, heads=2, ffn=256)   # s at 2/3 width
S = ModelSpec("hsd-family-s", hidden=192, layers=2, heads=3, ffn=256)     # m's layers 0, 2
M = ModelSpec("hsd-family-m", hidden=384, layers=3, heads=6, ffn=512)     # l's layers 0, 4, 5
L = ModelSpec("hsd-family-l", hidden=384, layers=6, heads=6, ffn=1024)

PLAN = Plan(
    vocab_size=4096,
    context_tokens=256,
    batch_size=16,
    stages=(
        # idle 2-core CPU, bf16 autocast, 4096 tokens a step (2026-11-23 build): l 0.90 s/step
        # alone (33 min), m 0.86 s/step with l teaching (22 min), s 0.77 (19 min).  2026-11-29/30,
        # an AVX2-only EPYC, fp32 and the fused loss: s 1.1-1.3 s/step with m teaching, xs 0.65
        Stage(L, steps=2200, lr=2e-3),                    # 9.0M tokens ≈ one pass of the corpus
        # m keeps l's first and last two layers (a first/last-layer cut starts at α 0.54 against
        # l, the first three layers at 0.42) with the FFN halved; a from-scratch 3x256 m
        # distilled for 700 steps only reached α(m, l) = 0.64 against this well-trained target.
        # s keeps m's first and last layers at half width (FFN 256): α(s, m) = 0.79, where one
        # 192-wide layer cut from l (FFN 768, same parameter count) reached 0.64 (copying via
        # induction heads needs two layers: Olsson et al. 2022).
        Stage(M, steps=1500, lr=1e-3, teacher=L.name, init_from=L.name, init_layers=(0, 4, 5)),
        Stage(S, steps=1500, lr=3e-3, teacher=M.name, init_from=M.name, init_layers=(0, 2)),
        # ... then more steps at a third of the rate: α(s, m) 0.792 after the first 1500 (card,
        # 48 windows), 0.806 after 600 more, 0.816 after 800 more (2026-11-30, fp32 weights)
        Stage(S, steps=600, lr=1e-3, teacher=M.name, init_from=S.name, key="hsd-family-s-2"),
        Stage(S, steps=800, lr=1e-3, teacher=M.name, init_from="hsd-family-s-2",
              key="hsd-family-s-3"),
        # xs keeps both of s's layers at 2/3 width: α(xs, s) = 0.891, where the one-layer xs
        # (s's first layer, 128 wide) stalled at 0.66 -- copying via induction heads needs two
        # layers; it fits the 40 MB since tokenizer.json is written on one line
        Stage(XS, steps=1500, lr=3e-3, teacher="hsd-family-s-3", init_from="hsd-family-s-3"),
    ),
)

TINY_PLAN = Plan(  # for tests: seconds, not minutes
    vocab_size=320,
    context_tokens=32,
    batch_size=4,
    stages=(
        Stage(ModelSpec("tiny-b", hidden=32, layers=2, heads=2, ffn=64), steps=6, lr=3e-3,
              minutes=5),
        Stage(ModelSpec("tiny-a", hidden=16, layers=1, heads=1, ffn=32), steps=4, lr=3e-3,
              teacher="tiny-b", minutes=5, init_from="tiny-b", init_layers=(1,)),
    ),
    eval_windows=4,
    max_files=40,
    warmup_steps=2,
)


# --------------------------------------------------------------------------------------------
# 1) corpus
# --------------------------------------------------------------------------------------------
def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None, max_files: int | None = None) -> list[Path]:
    """The stdlib's ``.py`` files, its test suite included (no site-packages), sorted by relative
    path."""
    root = root or stdlib_dir()
    files = sorted((p for p in root.rglob("*.py")
                    if not SKIP_DIR_NAMES.intersection(p.relative_to(root).parts[:-1])),
                   key=lambda p: p.relative_to(root).as_posix())
    return files[:max_files] if max_files else files


def split_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held_out): every HELDOUT_EVERY-th file is held out."""
    held = [f for i, f in enumerate(files) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [f for i, f in enumerate(files) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, held


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# 2) tokenizer
# --------------------------------------------------------------------------------------------
def train_tokenizer(files: list[Path], vocab_size: int):
    """Byte-level BPE with ``<|endoftext|>`` as id 0, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((read_text(f) for f in files), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=EOS, unk_token=None, model_max_length=None,
                                   clean_up_tokenization_spaces=False)


def encode_files(tokenizer, files: list[Path]) -> torch.Tensor:
    """One long stream of token ids: file, EOS, file, EOS, ...  (int32)."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for f in files:
        ids.extend(tokenizer(read_text(f), add_special_tokens=False, verbose=False)["input_ids"])
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


def prepare_data(plan: Plan, work: Path, log) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Tokenizer + train/held-out token streams, cached under ``work``."""
    from transformers import AutoTokenizer

    tok_dir, data_path = work / "tokenizer", work / "tokens.pt"
    files = corpus_files(max_files=plan.max_files)
    train, held = split_files(files)
    if not (tok_dir / "tokenizer.json").exists():
        t0 = time.time()
        tokenizer = train_tokenizer(train, plan.vocab_size)
        tokenizer.save_pretrained(tok_dir)
        log(f"tokenizer: {len(tokenizer)} tokens from {len(train)} files in {time.time() - t0:.1f}s")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if not data_path.exists():
        t0 = time.time()
        data = {"train": encode_files(tokenizer, train), "held_out": encode_files(tokenizer, held),
                "train_files": len(train), "held_out_files": len(held),
                "train_bytes": sum(f.stat().st_size for f in train)}
        torch.save(data, data_path)
        log(f"corpus: {len(data['train'])} train / {len(data['held_out'])} held-out tokens "
            f"({len(train)}/{len(held)} files) in {time.time() - t0:.1f}s")
    data = torch.load(data_path)
    return tokenizer, data["train"], data["held_out"]


def sample_batch(stream: torch.Tensor, plan: Plan, stage_index: int, step: int) -> torch.Tensor:
    """(batch, context+1) windows at offsets drawn from a generator seeded by (seed, stage, step)."""
    g = torch.Generator().manual_seed(plan.seed * 1_000_003 + stage_index * 100_003 + step)
    n = plan.context_tokens + 1
    starts = torch.randint(0, len(stream) - n, (plan.batch_size,), generator=g)
    return torch.stack([stream[s:s + n] for s in starts.tolist()]).long()


def eval_windows(stream: torch.Tensor, plan: Plan) -> torch.Tensor:
    """(eval_windows, context+1) evenly spaced held-out windows — the same for every model."""
    n = plan.context_tokens + 1
    count = min(plan.eval_windows, len(stream) // n)
    stride = len(stream) // count
    return torch.stack([stream[i * stride:i * stride + n] for i in range(count)]).long()


# --------------------------------------------------------------------------------------------
# 3–4) models and training
# --------------------------------------------------------------------------------------------
def make_config(spec: ModelSpec, plan: Plan, eos_id: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=plan.vocab_size, hidden_size=spec.hidden,
                       intermediate_size=spec.ffn, num_hidden_layers=spec.layers,
                       num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
                       max_position_embeddings=plan.context_tokens, tie_word_embeddings=True,
                       bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
                       rope_theta=10000.0, attention_dropout=0.0)


def progress(step: int, elapsed_s: float, stage: Stage) -> float:
    """Fraction of the stage's budget spent: steps, or the wall-clock cap if one is set and it
    is further along."""
    frac = step / stage.steps
    if stage.minutes:
        frac = max(frac, elapsed_s / (60.0 * stage.minutes))
    return min(1.0, frac)


def lr_at(step: int, frac: float, stage: Stage, plan: Plan) -> float:
    """Linear warmup over the first steps, then cosine decay to 10% of the peak over the budget."""
    if step < plan.warmup_steps:
        return stage.lr * (step + 1) / plan.warmup_steps
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


PRECISION = "auto"          # "auto", "bf16" or "fp32"; train_family sets it


@functools.lru_cache(maxsize=None)
def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run in hardware here: CUDA, or a CPU with AVX512-BF16 / AMX.  On an
    AVX2-only CPU (AMD EPYC, 2026-11-29) bf16 autocast made a distillation step 6× SLOWER than
    fp32 (14.5 s against 2.3 s), so ``auto`` trains in fp32 there."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision(device: torch.device) -> str:
    """The training precision actually used on ``device`` ("bf16" autocast or "fp32")."""
    if PRECISION == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return PRECISION


def autocast(device: torch.device):
    if precision(device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class DistillLoss(torch.autograd.Function):
    """``kd·KL(teacher ‖ student) + ce·CE + tv·TV`` over (N, V) logits rows, with its gradient
    written out instead of traced through a dozen full-vocabulary temporaries (on a 2-core CPU
    those elementwise passes took a third of a distillation step).  With s = softmax(z),
    t = softmax(teacher), σ = sign(s − t) and e_y the label's one-hot, per row:

        ∂/∂z [KL]  = s − t,   ∂/∂z [CE] = s − e_y,   ∂/∂z [½Σ|s − t|] = ½·s ⊙ (σ − ⟨σ, s⟩)

    (sign(0) = 0, as autograd's |·|).  Everything is averaged over the N rows.  The forward
    computes the gradient too, a block of rows at a time, so each block stays in cache."""

    CHUNK_ROWS = 128

    @staticmethod
    def forward(ctx, logits, teacher_logits, labels, kd: float, ce: float, tv: float):
        n = logits.shape[0]
        grad = torch.empty_like(logits)
        total = logits.new_zeros(())
        for lo in range(0, n, DistillLoss.CHUNK_ROWS):     # cache-sized row blocks
            rows = slice(lo, lo + DistillLoss.CHUNK_ROWS)
            log_s = torch.log_softmax(logits[rows], -1)
            log_t = torch.log_softmax(teacher_logits[rows], -1)
            p_t = log_t.exp()
            y = labels[rows, None]
            kl = (p_t * (log_t - log_s)).sum()
            nll = -log_s.gather(1, y).sum()
            p_s = log_s.exp_()
            diff = p_s - p_t
            total += kd * kl + ce * nll + tv * 0.5 * diff.abs().sum()
            sign = diff.sign_()
            sign -= (sign * p_s).sum(-1, keepdim=True)                   # σ − ⟨σ, s⟩
            g = grad[rows]
            torch.mul(p_s, sign, out=g).mul_(0.5 * tv).add_(p_s, alpha=kd + ce).sub_(p_t, alpha=kd)
            g.scatter_add_(1, y, torch.full_like(y, -ce, dtype=g.dtype))
        ctx.save_for_backward(grad.div_(n))
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None, None


def stage_loss(student, teacher, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Cross-entropy from scratch, or KD_WEIGHT·KL(teacher ‖ student) + rest·CE + TV_WEIGHT·TV.

    TV(p, q) = ½ Σ|p − q| is exactly 1 − the acceptance rate of speculative sampling, so the TV
    term optimises what the hierarchy is scored on (DistillSpec, Zhou et al. 2023, arXiv
    2310.08461, found TVD among the best distillation objectives for acceptance); the KL term
    keeps full-distribution gradients where TV's are flat."""
    x, y = batch[:, :-1].to(device), batch[:, 1:].to(device)
    with autocast(device):
        logits = student(input_ids=x).logits.float()                       # (B, T, V)
    if teacher is None:
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())
    with torch.no_grad(), autocast(device):
        t_logits = teacher(input_ids=x).logits.float()
    return DistillLoss.apply(logits.flatten(0, 1), t_logits.flatten(0, 1), y.flatten(),
                             KD_WEIGHT, 1 - KD_WEIGHT, TV_WEIGHT)


@torch.no_grad()
def heldout_loss(model, windows: torch.Tensor, device: torch.device, batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats/token) over the held-out windows, in the training
    precision (``autocast``)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch].to(device)
        with autocast(device):
            logits = model(input_ids=w[:, :-1]).logits.float()
        total += F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum").item()
        count += w[:, 1:].numel()
    return total / count


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def init_description(stage: Stage, source_config) -> str:
    """How ``stage`` is cut from its ``init_from`` model ('' when it continues it unchanged)."""
    c, spec = source_config, stage.spec
    layers = list(stage.init_layers or range(spec.layers))
    cuts = []
    if layers != list(range(c.num_hidden_layers)):
        cuts.append(f"layers {', '.join(map(str, layers))} of {c.num_hidden_layers}")
    for what, was, now in (("width", c.hidden_size, spec.hidden), ("heads", c.num_attention_heads, spec.heads),
                           ("FFN", c.intermediate_size, spec.ffn)):
        if was != now:
            cuts.append(f"{what} {was}→{now}")
    return "; ".join(cuts)


def describe(stage: Stage, plan: Plan) -> str:
    source = next((s for s in plan.stages if s.work_key == stage.init_from), None)
    if stage.teacher:
        if source is not None and source.spec == stage.spec:
            return f"distilled from {stage.teacher}, continuing {stage.init_from}"
        start = f", starting as a pruned copy of {stage.init_from}" if stage.init_from else ""
        return f"distilled from {stage.teacher}{start}"
    return f"cross-entropy, continued from {stage.init_from}" if stage.init_from else \
        "cross-entropy from scratch"


@torch.no_grad()
def activation_importance(model, batches) -> dict:
    """Activation-based importance (Minitron: Muralidharan et al. 2024, arXiv 2407.14679) from
    forwards over ``batches``: per hidden channel the mean |output| of every RMSNorm, per attention
    head the mean L2 norm of its output before ``o_proj``, per FFN neuron the mean |input| of
    ``down_proj``.  Layer-indexed lists for heads and neurons."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    layers = model.model.layers
    imp = {"hidden": torch.zeros(c.hidden_size),
           "heads": [torch.zeros(c.num_attention_heads) for _ in layers],
           "ffn": [torch.zeros(c.intermediate_size) for _ in layers]}

    def add_hidden(_mod, _inp, out):
        imp["hidden"].add_(out.detach().float().abs().flatten(0, -2).mean(0))

    hooks = [model.model.norm.register_forward_hook(add_hidden)]
    for i, layer in enumerate(layers):
        hooks += [layer.input_layernorm.register_forward_hook(add_hidden),
                  layer.post_attention_layernorm.register_forward_hook(add_hidden)]

        def add_heads(_mod, inp, i=i):
            x = inp[0].detach().float()
            imp["heads"][i].add_(x.view(*x.shape[:-1], -1, head_dim).norm(dim=-1).flatten(0, -2).mean(0))

        def add_ffn(_mod, inp, i=i):
            imp["ffn"][i].add_(inp[0].detach().float().abs().flatten(0, -2).mean(0))

        hooks += [layer.self_attn.o_proj.register_forward_pre_hook(add_heads),
                  layer.mlp.down_proj.register_forward_pre_hook(add_ffn)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(input_ids=batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return imp


def _keep(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` highest scores, in their original order (all of them when n = len)."""
    if n == len(scores):
        return torch.arange(n)
    return scores.topk(n).indices.sort().values


def pruned(source, spec: ModelSpec, plan: Plan, layers: tuple[int, ...] | None = None,
           batches=None):
    """A ``spec``-shaped model cut out of a trained ``source``: the decoder layers ``layers``
    (default: the first ``spec.layers`` -- an early-exit copy as in LayerSkip), and, where
    ``spec`` is narrower, the most important hidden channels, attention heads and FFN neurons
    by ``activation_importance`` over ``batches`` (Minitron-style width pruning).  Head size
    stays the source's.  Distillation then starts close to the teacher instead of from noise."""
    from transformers import LlamaForCausalLM

    c = source.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    layers = tuple(range(spec.layers)) if layers is None else tuple(layers)
    problems = []
    if c.num_key_value_heads != c.num_attention_heads:
        problems.append("grouped-query attention is not supported")
    if spec.hidden > c.hidden_size or spec.heads > c.num_attention_heads or spec.ffn > c.intermediate_size:
        problems.append("width, heads and FFN must not exceed the source's")
    if spec.hidden != spec.heads * head_dim:
        problems.append(f"head size must stay {head_dim} (hidden = heads × {head_dim})")
    if len(layers) != spec.layers or list(layers) != sorted(set(layers)) \
            or not all(0 <= i < c.num_hidden_layers for i in layers):
        problems.append(f"layers {list(layers)} must be {spec.layers} increasing indices "
                        f"below {c.num_hidden_layers}")
    narrower = (spec.hidden, spec.heads, spec.ffn) != (c.hidden_size, c.num_attention_heads,
                                                       c.intermediate_size)
    if narrower and not batches and not problems:
        problems.append("pruning width needs batches to measure importance on")
    if problems:
        raise ValueError(f"{spec.name} cannot be cut from a {c.num_hidden_layers}-layer model of "
                         f"width {c.hidden_size}: " + "; ".join(problems))
    imp = activation_importance(source, batches) if narrower else None

    def ranked(kind: str, n: int, layer: int | None = None) -> torch.Tensor:
        if imp is None:
            return torch.arange(n)
        return _keep(imp[kind] if layer is None else imp[kind][layer], n)

    keep_h = ranked("hidden", spec.hidden)
    keep_attn = {i: (ranked("heads", spec.heads, i)[:, None] * head_dim + torch.arange(head_dim)).flatten()
                 for i in layers}                                  # rows of the kept heads
    keep_ffn = {i: ranked("ffn", spec.ffn, i) for i in layers}

    sd = {}
    for k, v in source.state_dict().items():
        if not k.startswith("model.layers."):
            sd[k] = v[:, keep_h] if v.dim() == 2 else v[keep_h]      # embeddings, head, final norm
            continue
        i = int(k.split(".")[2])
        if i not in layers:
            continue
        new_k = k.replace(f"model.layers.{i}.", f"model.layers.{layers.index(i)}.", 1)
        if k.endswith("layernorm.weight"):
            v = v[keep_h]
        elif any(p in k for p in ("q_proj", "k_proj", "v_proj")):
            v = v[keep_attn[i]][:, keep_h]
        elif "o_proj" in k:
            v = v[keep_h][:, keep_attn[i]]
        elif "gate_proj" in k or "up_proj" in k:
            v = v[keep_ffn[i]][:, keep_h]
        elif "down_proj" in k:
            v = v[keep_h][:, keep_ffn[i]]
        else:
            raise ValueError(f"{spec.name}: unexpected weight {k} in the source")
        sd[new_k] = v.clone()
    model = LlamaForCausalLM(make_config(spec, plan, eos_id=c.eos_token_id or 0))
    model.load_state_dict(sd, strict=True)
    return model


def train_stage(stage: Stage, index: int, plan: Plan, work: Path, stream: torch.Tensor,
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
        if init:
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
    stats = {"name": stage.spec.name, "work_key": stage.work_key, "init_from": stage.init_from,
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
def export_family(plan: Plan, work: Path, out: Path, tokenizer, stats: dict[str, dict],
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


def model_stats(plan: Plan, stats: dict[str, dict], name: str) -> dict:
    """One model's facts: its last stage's, with steps, tokens and time summed over its stages."""
    stages = [s for s in plan.stages if s.spec.name == name]
    merged = dict(stats[stages[-1].work_key])
    for field in ("steps", "train_tokens", "train_seconds"):
        merged[field] = round(sum(stats[s.work_key][field] for s in stages), 1)
    model_of = {s.work_key: s.spec.name for s in plan.stages}     # work keys → model names
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


def reuse_stages(plan: Plan, work: Path, family: Path, names: list[str], log=print) -> None:
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
        stages = [s for s in plan.stages if s.spec.name == n]
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


def train_family(plan: Plan, out: Path, work: Path, device: str = "cpu", log=print,
                 precision_: str = "auto") -> dict:
    """Steps 1–5; resumable.  Returns the family.json contents."""
    global PRECISION
    if precision_ not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision_!r}")
    PRECISION = precision_
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
    tr.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="bf16 autocast or fp32; auto = bf16 where the hardware has it "
                         "(CUDA, AVX512-BF16/AMX CPUs), else fp32")
    tr.add_argument("--reuse", nargs="+", metavar="NAME", default=[],
                    help="take these models' finished stages from --reuse-from instead of "
                         "training them (same shapes as the plan's)")
    tr.add_argument("--reuse-from", type=Path, default=Path("assets/family"),
                    help="the exported family --reuse takes models from")
    cd = sub.add_parser("card", help="measure the exported family and write its model card")
    cd.add_argument("--family", type=Path, default=Path("assets/family"))
    cd.add_argument("--work", type=Path, default=Path(".cache/family-train"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    if args.command == "train":
        plan = (TINY_PLAN if args.tiny else PLAN).scaled(args.steps_scale)

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
    from hsd.family_card import write_card
    write_card(args.family)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
