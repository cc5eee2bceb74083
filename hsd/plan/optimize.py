"""The latency-optimal hierarchy: a generalized shortest path (GSP) with multiplicative gains.

OUR DERIVATION (the paper's full text, Globerson et al. arXiv 2510.19705, was not available; this
follows its published description of the GSP reduction, specialised to our engine's exact-buffer
policy — see ``hsd.latency``).  Under that policy the expected cost of one call of a level depends
only on its (model, buffer) and on the sub-hierarchy below it:

    C(m, T) = T·c_m(1)                                          if m is the bottom level
    C(m, T) = E[N(T; T', α_{m'm})] · (C(m', T') + c_m(T'+1))      if (m', T') is the level below
    ms/token = (C(m', T') + c_K(T'+1)) / E[O(T'; α_{m'K})]          at the target (c_K(1) for AR)

so the optimum is a shortest path in a DAG whose arcs carry a cost and a multiplicative gain.
Every composition ``x ↦ g·(x + c)`` is increasing, so a dynamic programme over models in
increasing order is exact, and keeping the ``top`` best values per node (k-best DP) gives the
exact ``top`` best hierarchies overall.  Time O(K²·B²·top) for K models and buffers 1..B.

Graph convention (``Plan.graph``, drawn by ``visual/``):
- nodes ``("draft", model, buffer)`` — that model used as a draft level handing up ``buffer``
  tokens — and ``("target", K)``; attrs ``model`` (int), ``name`` (str), ``buffer`` (int|None),
  ``best_cost_ms`` (best expected ms of one call of that node with the best sub-hierarchy below it;
  at the target: the best ms per committed token), ``leaf_cost_ms`` (``buffer·c_m(1)`` (+ sampling overhead), the cost
  when the node is the bottom level; None at the target), ``on_optimal`` (bool);
- arcs from the lower node to the upper node (drafter → verifier); attrs ``cost_ms`` (the upper
  level's verify cost ``c_upper(T_below+1)``, plus the rule overhead ``v(T_below)`` when the profile
  has one), ``gain`` (E[rounds of the upper level per call of
  it] = how many times the lower node is called per call of the upper node; on arcs INTO THE
  TARGET it is ``1/E[O]`` so that ``gain·(C_below + cost_ms)`` is ms per committed token),
  ``on_optimal`` (bool).
``Plan.path`` lists the optimal path's nodes bottom-up, ending at the target.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Sequence

import networkx as nx

from hsd.errors import ConfigError
from hsd.plan.latency import (autoregressive_ms, draft_step_cost, expected_ms_per_token, leaf_cost, mean_output, pair_output,
                              renewal_rounds, verify_cost)
from hsd.plan.profile import Profile


@dataclass(frozen=True)
class Plan:
    """A hierarchy and its model-predicted latency (ms per committed token)."""

    chain: tuple[int, ...]
    names: tuple[str, ...]
    buffers: tuple[int, ...]
    expected_ms_per_token: float
    speedup_vs_ar: float                                    # model-predicted
    runners_up: tuple["Plan", ...] = field(default=(), compare=False, repr=False)
    graph: nx.DiGraph | None = field(default=None, compare=False, repr=False)
    path: tuple = field(default=(), compare=False, repr=False)
    acceptance: str = field(default="", compare=False)        # the latency model's acceptance, in words

    @property
    def kind(self) -> str:
        """"autoregressive", "single draft" or "N-level stack"."""
        depth = len(self.chain) - 1
        return "autoregressive" if depth == 0 else "single draft" if depth == 1 else f"{depth + 1}-level stack"

    @property
    def label(self) -> str:
        """e.g. ``xs[4] → m[8] → l`` (buffer in brackets; the target has none)."""
        parts = [f"{n}[{b}]" for n, b in zip(self.names, self.buffers)]
        return " → ".join(parts + [self.names[-1]])

    @property
    def ranking(self) -> tuple["Plan", ...]:
        """This plan followed by its runners-up, best first."""
        return (self,) + self.runners_up

    def to_dict(self) -> dict:
        """Plain data (no graph): what ``--json`` prints and the app may keep in state."""
        return {"chain": list(self.chain), "names": list(self.names), "buffers": list(self.buffers),
                "label": self.label, "kind": self.kind,
                "expected_ms_per_token": self.expected_ms_per_token,
                "speedup_vs_ar": self.speedup_vs_ar, "acceptance": self.acceptance,
                "path": [list(n) for n in self.path],
                "runners_up": [p.to_dict() for p in self.runners_up]}


# --------------------------------------------------------------------------------------------
# plans for fixed hierarchies
# --------------------------------------------------------------------------------------------
def plan_for(profile: Profile, chain: Sequence[int], buffers: Sequence[int]) -> Plan:
    """A ``Plan`` (no graph, no runners-up) for a given hierarchy."""
    ms = expected_ms_per_token(profile, chain, buffers)
    ar = autoregressive_ms(profile, chain[-1])
    return Plan(chain=tuple(int(c) for c in chain), names=tuple(profile.models[c] for c in chain),
                buffers=tuple(int(b) for b in buffers), expected_ms_per_token=ms, speedup_vs_ar=ar / ms)


def autoregressive(profile: Profile) -> Plan:
    return plan_for(profile, [profile.target], [])


def best_single_draft(profile: Profile, max_buffer: int = 16) -> Plan:
    """The best one-draft hierarchy (any drafter, γ in 1..max_buffer); AR if the target is alone."""
    _check_max_buffer(max_buffer)
    k = profile.target
    candidates = [([d, k], [g]) for d in range(k) for g in range(1, max_buffer + 1)]
    if not candidates:
        return autoregressive(profile)
    return min((plan_for(profile, c, b) for c, b in candidates), key=lambda p: p.expected_ms_per_token)


def best_for_chain(profile: Profile, chain: Sequence[int], max_buffer: int = 16) -> Plan:
    """The best buffers (each in 1..max_buffer) for a FIXED chain: the same DP restricted to one
    model per level, O(depth·max_buffer²)."""
    _check_max_buffer(max_buffer)
    chain = [int(c) for c in chain]
    if len(chain) == 1:
        return plan_for(profile, chain, [])
    plan_for(profile, chain, [1] * (len(chain) - 1))                 # validates the chain
    b_max = max_buffer
    # level 0: C(T) = T·c(1); back-pointers hold the buffers chosen below
    best = {t: (leaf_cost(profile, chain[0], t), (t,)) for t in range(1, b_max + 1)}
    for lo, hi in zip(chain[:-2], chain[1:-1]):
        tables = {t_lo: renewal_rounds(b_max, pair_output(profile, lo, hi, t_lo)) for t_lo in range(1, b_max + 1)}
        best = {t: min(((tables[t_lo][t] * (c + verify_cost(profile, hi, t_lo)), bufs + (t,))
                        for t_lo, (c, bufs) in best.items()), key=lambda x: x[0])
                for t in range(1, b_max + 1)}
    ms, buffers = min((((c + verify_cost(profile, chain[-1], t))
                        / mean_output(pair_output(profile, chain[-2], chain[-1], t)) + profile.token_overhead_ms(), bufs)
                       for t, (c, bufs) in best.items()), key=lambda x: x[0])
    plan = plan_for(profile, chain, buffers)
    return plan


def brute_force(profile: Profile, max_buffer: int) -> list[tuple[float, tuple[int, ...], tuple[int, ...]]]:
    """Every hierarchy (every increasing chain ending at the target × every buffer in
    1..max_buffer per draft level) as ``(ms_per_token, chain, buffers)``, best first.
    Exponential — for tests and small profiles only."""
    _check_max_buffer(max_buffer)
    k = profile.target
    out = []
    for depth in range(k + 1):
        for drafts in itertools.combinations(range(k), depth):
            chain = drafts + (k,)
            for buffers in itertools.product(range(1, max_buffer + 1), repeat=depth):
                out.append((expected_ms_per_token(profile, chain, buffers), chain, buffers))
    out.sort(key=lambda r: r[0])
    return out


# --------------------------------------------------------------------------------------------
# the GSP dynamic programme
# --------------------------------------------------------------------------------------------
def optimal_hierarchy(profile: Profile, max_buffer: int = 16, top: int = 8,
                      with_graph: bool = True) -> Plan:
    """The exact argmin of ``hsd.latency.expected_ms_per_token`` over every chain and every
    buffer in 1..max_buffer, with the next ``top - 1`` best hierarchies as ``runners_up`` (AR
    and the best single draft are always among them unless they are the optimum)."""
    _check_max_buffer(max_buffer)
    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a whole number ≥ 1, got {top!r}")
    k, b_max = profile.target, max_buffer
    step = [draft_step_cost(profile, m) for m in range(k + 1)]                    # one sampled token
    cost = [[0.0] + [verify_cost(profile, m, g) for g in range(1, b_max + 1)] for m in range(k + 1)]

    # cost[m][γ]: one verification of γ drafts by m; step[m]: one sampled token of m
    # 1) k-best values per draft node, models in increasing order (a DAG: arcs go up in model)
    #    best[m][T] = sorted [(C, back)], back = None (bottom level) or (m', T', rank)
    best: list[list[list[tuple[float, tuple | None]]]] = []
    gains: dict[tuple[int, int], list[list[float]]] = {}
    for m in range(k):
        per_t = [[] for _ in range(b_max + 1)]
        for lo in range(m):
            gains[lo, m] = [[]] + [renewal_rounds(b_max, pair_output(profile, lo, m, t_lo))
                                   for t_lo in range(1, b_max + 1)]
        for t in range(1, b_max + 1):
            cands = [(leaf_cost(profile, m, t), None)]
            for lo in range(m):
                for t_lo in range(1, b_max + 1):
                    g, arc = gains[lo, m][t_lo][t], cost[m][t_lo]
                    cands.extend((g * (c_lo + arc), (lo, t_lo, r))
                                 for r, (c_lo, _) in enumerate(best[lo][t_lo]))
            per_t[t] = heapq.nsmallest(top, cands, key=lambda x: x[0])
        best.append(per_t)

    # 2) the target: AR, or one block of T' from any draft node per round
    per_token = profile.token_overhead_ms()          # a constant per committed token
    ar_ms = autoregressive_ms(profile, k)
    cands = [(ar_ms, None)]
    for lo in range(k):
        for t_lo in range(1, b_max + 1):
            eo = mean_output(pair_output(profile, lo, k, t_lo))
            cands.extend(((c_lo + cost[k][t_lo]) / eo + per_token, (lo, t_lo, r))
                         for r, (c_lo, _) in enumerate(best[lo][t_lo]))
    ranked = heapq.nsmallest(top, cands, key=lambda x: x[0])

    # 3) read the hierarchies back, best first
    def unwind(back) -> tuple[list[int], list[int]]:
        chain, buffers = [], []
        while back is not None:
            lo, t_lo, r = back
            chain.append(lo)
            buffers.append(t_lo)
            back = best[lo][t_lo][r][1]
        return chain[::-1] + [k], buffers[::-1]

    plans = []
    for ms, back in ranked:
        chain, buffers = unwind(back)
        plans.append(Plan(tuple(chain), tuple(profile.models[c] for c in chain), tuple(buffers),
                          ms, ar_ms / ms))
    for extra in (autoregressive(profile), best_single_draft(profile, max_buffer)):
        if all((p.chain, p.buffers) != (extra.chain, extra.buffers) for p in plans):
            plans.append(extra)
    plans.sort(key=lambda p: p.expected_ms_per_token)
    winner = plans[0]
    path = tuple(_node(profile, c, b) for c, b in zip(winner.chain, winner.buffers)) + (("target", k),)
    graph = _build_graph(profile, b_max, step, cost, gains, best, ranked[0][0], path) if with_graph else None
    return Plan(winner.chain, winner.names, winner.buffers, winner.expected_ms_per_token,
                winner.speedup_vs_ar, runners_up=tuple(plans[1:]), graph=graph, path=path,
                acceptance=profile.acceptance_label)


def _node(profile: Profile, model: int, buffer: int | None):
    return ("target", model) if buffer is None else ("draft", model, buffer)


def _build_graph(profile, b_max, step, cost, gains, best, best_ms, path) -> nx.DiGraph:
    k = profile.target
    on_path = set(path)
    on_arcs = set(zip(path, path[1:]))
    g = nx.DiGraph(convention="arcs drafter→verifier; node cost = gain·(C_below + cost_ms); "
                              "gain into the target = 1/E[O] (ms per committed token)")
    for m in range(k):
        for t in range(1, b_max + 1):
            n = ("draft", m, t)
            g.add_node(n, model=m, name=profile.models[m], buffer=t, best_cost_ms=best[m][t][0][0],
                       leaf_cost_ms=leaf_cost(profile, m, t), on_optimal=n in on_path)
    tgt = ("target", k)
    g.add_node(tgt, model=k, name=profile.models[k], buffer=None, best_cost_ms=best_ms,
               leaf_cost_ms=None, on_optimal=True)
    for (lo, m), table in gains.items():
        for t_lo in range(1, b_max + 1):
            for t in range(1, b_max + 1):
                u, v = ("draft", lo, t_lo), ("draft", m, t)
                g.add_edge(u, v, cost_ms=cost[m][t_lo], gain=table[t_lo][t], on_optimal=(u, v) in on_arcs)
    for lo in range(k):
        for t_lo in range(1, b_max + 1):
            u = ("draft", lo, t_lo)
            g.add_edge(u, tgt, cost_ms=cost[k][t_lo], gain=1.0 / mean_output(pair_output(profile, lo, k, t_lo)),
                       on_optimal=(u, tgt) in on_arcs)
    return g


def _check_max_buffer(max_buffer) -> None:
    if not isinstance(max_buffer, int) or isinstance(max_buffer, bool) or max_buffer < 1:
        raise ConfigError(f"max buffer must be a whole number ≥ 1, got {max_buffer!r}")
