"""When does a stack pay?  A grid of what-ifs over two axes of a profile, each cell the optimum's
model-predicted speedup over the best hierarchy without a stack -- the best single draft, or the
target alone where that is faster (1.0: no stack pays; above 1: a stack of two or more drafts
wins by that much).  Plain data, no models.

Axes (``AXES``; each cell is ``Profile.what_if`` of the measured profile, then the optimiser):

- ``target cost ×``   the target's measured forward costs multiplied by x;
- ``draft costs ×``   every draft model's costs multiplied by x;
- ``adjacent α``      every pair of neighbouring models accepts with α = x; a pair further apart
                      keeps its measured α, but never above x (a what-if α is read i.i.d.);
- ``α to the target`` every drafter's α under the target set to x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hsd.errors import ConfigError
from hsd.plan.optimize import Plan, autoregressive, best_single_draft, optimal_hierarchy
from hsd.plan.profile import Profile

AXES = {
    "target cost ×": [0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0],
    "draft costs ×": [0.125, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0],
    "adjacent α": [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98],
    "α to the target": [0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9],
}


@dataclass(frozen=True)
class RegimeMap:
    x_axis: str
    y_axis: str
    xs: list[float]
    ys: list[float]
    gain: list[list[float]]           # gain[iy][ix]: optimum ÷ best without a stack (model-predicted)
    depth: list[list[int]]            # draft levels of the optimum in that cell
    labels: list[list[str]]           # the optimum's hierarchy in that cell
    here: tuple[float, float]         # where the measured profile sits on the two axes


def apply_axis(profile: Profile, axis: str, x: float, cost: dict, acceptance: dict) -> None:
    """Add axis ``axis`` at value ``x`` to the what-if changes ``cost`` / ``acceptance``."""
    names, k = profile.models, profile.target
    if axis == "target cost ×":
        cost[names[k]] = cost.get(names[k], 1.0) * x
    elif axis == "draft costs ×":
        for name in names[:k]:
            cost[name] = cost.get(name, 1.0) * x
    elif axis == "adjacent α":
        for i in range(k):
            for j in range(i + 1, k + 1):
                a = x if j == i + 1 else min(acceptance.get((names[i], names[j]), profile.alpha(i, j)), x)
                acceptance[names[i], names[j]] = a
    elif axis == "α to the target":
        for i in range(k):
            acceptance[names[i], names[k]] = x
    else:
        raise ConfigError(f"unknown regime-map axis {axis!r}; axes: {', '.join(AXES)}")


def where(profile: Profile, axis: str) -> float:
    """The measured profile's own value on ``axis``."""
    k = profile.target
    if axis in ("target cost ×", "draft costs ×"):
        return 1.0
    if axis == "adjacent α":
        return sum(profile.alpha(i, i + 1) for i in range(k)) / k
    return sum(profile.alpha(i, k) for i in range(k)) / k


def gain(profile: Profile, max_buffer: int) -> tuple[float, Plan]:
    """(best without a stack ÷ optimum, the optimum), model-predicted: how much faster the
    optimum is than the best single draft or the target alone, whichever is faster."""
    best = optimal_hierarchy(profile, max_buffer=max_buffer, top=1, with_graph=False)
    flat = min(best_single_draft(profile, max_buffer).expected_ms_per_token,
               autoregressive(profile).expected_ms_per_token)
    return flat / best.expected_ms_per_token, best


def regime_map(profile: Profile, x_axis: str, y_axis: str, max_buffer: int = 8) -> RegimeMap:
    """Every cell of the (x_axis × y_axis) grid of ``AXES``; see the module docstring."""
    for axis in (x_axis, y_axis):
        if axis not in AXES:
            raise ConfigError(f"unknown regime-map axis {axis!r}; axes: {', '.join(AXES)}")
    if x_axis == y_axis:
        raise ConfigError("the regime map needs two different axes")
    if profile.target < 2:
        raise ConfigError("a regime map needs a family of at least three models (two drafts and a target)")
    xs, ys = AXES[x_axis], AXES[y_axis]
    gains, depths, labels = [], [], []
    for y in ys:
        row_g, row_d, row_l = [], [], []
        for x in xs:
            cost, acceptance = {}, {}
            apply_axis(profile, y_axis, y, cost, acceptance)
            apply_axis(profile, x_axis, x, cost, acceptance)
            g, best = gain(profile.what_if(cost, acceptance), max_buffer)
            row_g.append(g)
            row_d.append(len(best.chain) - 1)
            row_l.append(best.label)
        gains.append(row_g)
        depths.append(row_d)
        labels.append(row_l)
    here = (where(profile, x_axis), where(profile, y_axis))
    return RegimeMap(x_axis, y_axis, list(xs), list(ys), gains, depths, labels, here)


def nearest(values: list[float], x: float, log: bool) -> int:
    f = (lambda v: math.log(v)) if log else (lambda v: v)
    return min(range(len(values)), key=lambda i: abs(f(values[i]) - f(x)))
