"""Random but plausible profiles for the latency / optimiser tests (plain data, no torch)."""
from __future__ import annotations

import random

from hsd.profile import Profile


def random_profile(n_models: int, seed: int, max_n: int = 17) -> Profile:
    """Costs grow with model index and (sub-linearly) with block length; α in [0.2, 0.97],
    higher for drafters closer in size to the verifier."""
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(n_models)]
    base = sorted(rng.uniform(0.3, 20.0) for _ in range(n_models))
    cost_ms = {}
    for name, b in zip(names, base):
        slope = b * rng.uniform(0.01, 0.25)
        cost_ms[name] = [b + slope * (n - 1) * rng.uniform(0.9, 1.1) for n in range(1, max_n + 1)]
        cost_ms[name] = sorted(cost_ms[name])
    acc = [[1.0] * n_models for _ in range(n_models)]
    for i in range(n_models):
        for j in range(i + 1, n_models):
            a = min(0.97, max(0.2, rng.uniform(0.5, 0.95) - 0.04 * (j - i)))
            acc[i][j] = acc[j][i] = a
    return Profile(models=names, cost_ms=cost_ms, acceptance=acc, meta={"seed": seed})
