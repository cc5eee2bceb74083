"""Which hierarchies to run side by side: the ONE contender picker of validation, the benchmark
and the app's Compare tab.

Every contender is a role and a ``Plan`` (model-predicted by ``hsd.plan.latency`` on the profile):

- ``optimum``               the optimiser's hierarchy (``optimal_hierarchy``);
- ``best single draft``     the best one-draft hierarchy (any drafter, any buffer);
- ``autoregressive``        the target alone;
- ``smallest draft alone``  the smallest model as the only draft, its best buffer;
- ``deeper alternative``    the ``n_deeper`` best hierarchies with two or more drafts on chains
                            other than the optimum's (the full stack among them when it differs).

``distinct=True`` drops a contender whose (chain, buffers) an earlier one already has (validation
and the benchmark time each hierarchy once); ``distinct=False`` keeps one per role asked for (the
app shows every row the user ticked).  Plain data; no models.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

from hsd.plan.optimize import Plan, best_for_chain, best_single_draft, optimal_hierarchy, plan_for
from hsd.plan.profile import Profile

ROLES = ("optimum", "best single draft", "autoregressive", "smallest draft alone", "deeper alternative")
VALIDATE_ROLES = ("optimum", "best single draft", "autoregressive", "deeper alternative")


@dataclass(frozen=True)
class Contender:
    role: str          # one of ROLES
    plan: Plan


def deeper_alternatives(profile: Profile, max_buffer: int, n_deeper: int, optimum: Plan) -> list[Plan]:
    """The ``n_deeper`` best hierarchies with ≥ 2 draft levels on chains other than the optimum's;
    the full stack replaces the last of them when it is not already there."""
    k = profile.target
    deep = sorted((best_for_chain(profile, drafts + (k,), max_buffer)
                   for depth in range(2, k + 1) for drafts in itertools.combinations(range(k), depth)),
                  key=lambda p: p.expected_ms_per_token)
    deep = [p for p in deep if p.chain != optimum.chain]
    picks = deep[:n_deeper]
    full = [p for p in deep if len(p.chain) == k + 1]
    if full and n_deeper >= 2 and full[0] not in picks:
        picks = picks[:n_deeper - 1] + [full[0]]
    return picks


def pick_contenders(profile: Profile, max_buffer: int = 16, roles: Sequence[str] = VALIDATE_ROLES,
                    n_deeper: int = 2, distinct: bool = True, optimum: Plan | None = None) -> list[Contender]:
    """The contenders of ``roles``, in that order (see the module docstring).  ``optimum``: a plan
    already solved for this profile and ``max_buffer`` (saves solving it again)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown contender role {unknown[0]!r}; roles: {', '.join(ROLES)}")
    optimum = optimum or optimal_hierarchy(profile, max_buffer=max_buffer, top=1, with_graph=False)
    k = profile.target
    chosen, keys = [], set()
    for role in roles:
        if role == "optimum":
            plans = [optimum]
        elif role == "best single draft":
            plans = [best_single_draft(profile, max_buffer)]
        elif role == "autoregressive":
            plans = [plan_for(profile, [k], [])]
        elif role == "smallest draft alone":
            plans = [best_for_chain(profile, (0, k), max_buffer)] if k >= 1 else []
        else:
            plans = deeper_alternatives(profile, max_buffer, n_deeper, optimum)
        for plan in plans:
            key = (plan.chain, plan.buffers)
            if distinct and key in keys:
                continue
            keys.add(key)
            chosen.append(Contender(role, plan))
    return chosen
