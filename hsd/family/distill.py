"""The training loss: cross-entropy from scratch, or distillation (KL + CE + TV with its gradient
written out, ``DistillLoss``), in the training precision (bf16 autocast where the hardware has
it, else fp32)."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
import torch.nn.functional as F

from hsd.family.plan import KD_WEIGHT, TV_WEIGHT


PRECISION = "auto"          # "auto", "bf16" or "fp32": set once per build by train.train_family


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
