"""Random but plausible profiles for the latency / optimiser tests (plain data, no torch)."""
from __future__ import annotations

import random

from hsd.plan.profile import Profile


def random_profile(n_models: int, seed: int, max_n: int = 17, style: str = "mixed",
                   overhead: bool = False, positions: bool = False, first_call: bool = False,
                   engine: bool = False) -> Profile:
    """``mixed``: costs anywhere in 0.3–20 ms, α in [0.2, 0.97] falling with the size gap — single
    drafts or AR usually win.  ``deep``: each model 3–6× the cost of the one below, cheap
    verification, high neighbour α decaying with the gap — deep stacks usually win.
    ``overhead``: also engine overheads (sampling per draft token, rule time growing with γ).
    ``first_call``: also a first-call cost per model (``first_call_ms``).
    ``engine``: also the engine's own time per drafting step, verification and committed token
    (drawn from a separate stream, so the rest of the profile is the same with or without it).
    ``positions``: also acceptance by position (``accept_lengths`` for blocks 1..max_n-2, so the
    optimiser's buffers up to max_n-1 also read the extension past B): conditional acceptance
    rising along the block from below α, as measured, and a different law for each γ."""
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(n_models)]
    if style == "deep":
        base = [rng.uniform(0.3, 1.0)]
        for _ in range(n_models - 1):
            base.append(base[-1] * rng.uniform(3.0, 6.0))
        slopes = [b * rng.uniform(0.01, 0.06) for b in base]
    else:
        base = sorted(rng.uniform(0.3, 20.0) for _ in range(n_models))
        slopes = [b * rng.uniform(0.01, 0.25) for b in base]
    cost_ms = {name: sorted(b + s * (n - 1) * rng.uniform(0.9, 1.1) for n in range(1, max_n + 1))
               for name, b, s in zip(names, base, slopes)}
    acc = [[1.0] * n_models for _ in range(n_models)]
    for i in range(n_models):
        for j in range(i + 1, n_models):
            if style == "deep":
                a = rng.uniform(0.8, 0.95) ** (j - i)
            else:
                a = min(0.97, max(0.2, rng.uniform(0.5, 0.95) - 0.04 * (j - i)))
            acc[i][j] = acc[j][i] = a
    over, first = {}, {}
    if first_call:
        first = {name: b * rng.uniform(0.0, 0.6) for name, b in zip(names, base)}
    if overhead:
        over = {"draft_token": rng.uniform(0.0, 0.2) * base[0],
                "verify": sorted(rng.uniform(0.05, 0.5) * base[0] * g ** rng.uniform(0.5, 1.5)
                                 for g in range(1, max_n))}
    lengths = None
    if positions:
        lengths = [[None] * n_models for _ in range(n_models)]
        for i in range(n_models):
            for j in range(i + 1, n_models):
                lengths[i][j] = [position_law(acc[i][j], gamma, rng) for gamma in range(1, max_n - 1)]
    if engine:
        erng = random.Random(seed + 7919)
        over = {**over, "step": erng.uniform(0.0, 0.3) * base[0], "round": erng.uniform(0.0, 0.5) * base[0],
                "token": erng.uniform(0.0, 0.3) * base[0]}
    return Profile(models=names, cost_ms=cost_ms, acceptance=acc, meta={"seed": seed, "style": style},
                   overhead_ms=over, accept_lengths=lengths, first_call_ms=first)


def position_law(alpha: float, gamma: int, rng: random.Random) -> list[float]:
    """[P(O = 1..γ+1)] with conditional acceptance rising from 0.8 α towards 1 along the block."""
    out, reach = [], 1.0
    for t in range(gamma):
        a = min(0.995, alpha * (0.8 + 0.5 * t / (t + 2)) * rng.uniform(0.97, 1.03))
        out.append(reach * (1.0 - a))
        reach *= a
    return out + [reach]
