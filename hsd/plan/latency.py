"""Expected latency of a hierarchy, with acceptance measured by position (or i.i.d.), and a Monte
Carlo check of it.

OUR DERIVATION.  The paper's full text (Globerson et al., arXiv 2510.19705) was not available to
us; the expression below is our own derivation for the engine's "exact buffer" policy, validated
by simulation (``simulate``, tests) and by measurement (``python -m hsd validate``).

The policy (levels 0..K, chain ``m_0 < … < m_K``, buffers ``T_0 … T_{K-1}``):

- level 0 samples ``T_0`` tokens one at a time: ``T_0`` one-token forwards, cost ``T_0·c_0(1)``;
- level i (0 < i < K) runs rounds: ask level i-1 for ``T_{i-1}`` tokens, verify them in ONE
  forward over ``T_{i-1}+1`` new tokens (cost ``c_i(T_{i-1}+1)``), keep the accepted ones plus one
  replacement/bonus token; once it holds ≥ ``T_i`` it hands up EXACTLY ``T_i`` (rest discarded);
- the target (level K) verifies one block of ``T_{K-1}`` per round and commits accepted + 1.

Under i.i.d. acceptance with rate α a round with γ drafts outputs ``O = k+1`` tokens with
``P(O=k+1) = α^k (1-α)`` for k < γ and ``α^γ`` for k = γ, so ``E[O] = (1-α^{γ+1})/(1-α)``.

Acceptance measured by position (``Profile.accept_lengths``, the default when a profile has it)
replaces that geometric law by the measured one: ``P(O = o | γ)`` for the pair, which holds how
acceptance rises along a block and how bursty a drafter is.  Nothing else changes: the law still
depends only on (drafter, verifier, γ), so every formula below holds with ``E[O]`` and the
renewal recursion read from it, and the optimiser stays an exact shortest path.  What neither
model holds is correlation between rounds (a run of easy text spans several); the validation
measures what that leaves.  Why no correction for the levels in between: a level hands up its
tokens with ITS OWN rows, and a lossless rule makes them distributed as that level sampling
alone, so the target's acceptance of what level K-1 hands up is the pairwise law of (K-1, K),
whatever the levels below it did.

Write ``C_i`` for the expected cost (ms) of one call of level i (producing ``T_i`` tokens):

    C_0 = T_0 · c_0(1) + f_0                                (f_0: the first call's extra cost)
    C_i = E[N_i] · (C_{i-1} + c_i(T_{i-1}+1))              (Wald's identity)

where ``N_i`` is the number of rounds until the running sum of O's reaches ``T_i`` (a renewal
count, ``expected_rounds``).  Each round's cost is independent of whether the round happens
(acceptances are i.i.d.), so Wald applies.  The target is a renewal-reward process:

    ms per committed token = (C_{K-1} + c_K(T_{K-1}+1)) / E[O_K]

which is ``(γ·c_0(1) + c_1(γ+1))·(1-α)/(1-α^{γ+1})`` for one draft and ``c_K(1)`` for the target
alone (docs/design.md §4).  Because the state of level i is just (model, buffer), the expression is Markov
in (model, buffer) — the basis of the shortest-path optimiser in ``hsd.optimize``.  An "at least
T_i" (overshoot) policy would make the hand-up size random and break this.

Costs: ``c_j(n)`` is ``profile.cost_ms[name_j][n-1]`` for n = 1..N; beyond N we extrapolate
linearly from the last two measured points (a forward's cost grows ~linearly in n once the
per-call overhead is paid); never below the last measured value.  When the profile also holds
engine overheads (``Profile.overhead_ms``: the rule's time per verification of γ drafts ``v(γ)``,
the sampling time per draft token ``s``), a drafting step costs ``c(1) + s`` and a verification
``c(γ+1) + v(γ)``; without them (the default) the formulas above hold verbatim.  The engine's own
time, fitted to real decodes by ``hsd profile`` (``overhead_ms`` "step", "round", "token": per
drafting step, per verification at any level, per committed token), adds to the same terms:
``c(1) + s + e_step``, ``c(γ+1) + v(γ) + e_round``, and ``e_token`` to the ms per committed token
(a constant: it moves no argmin).

This module knows nothing of models or tensors; it reads a ``Profile``.
"""
from __future__ import annotations

import bisect
import itertools
import math
import random
from typing import Sequence

from hsd.errors import ConfigError


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------
def output_distribution(gamma: int, alpha: float) -> list[float]:
    """P(O = o) for o = 1..γ+1: a verify of γ i.i.d. drafts keeps k of them plus one token."""
    probs = [alpha ** k * (1.0 - alpha) for k in range(gamma)]
    probs.append(alpha ** gamma)
    return probs


def expected_output(gamma: int, alpha: float) -> float:
    """E[O] = (1 - α^{γ+1}) / (1 - α): expected tokens out of one verify of γ drafts (γ+1 at α=1)."""
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def rounds_table(max_tokens: int, gamma: int, alpha: float) -> list[float]:
    """``table[t]`` = E[number of rounds until the outputs sum to ≥ t], t = 0..max_tokens.

    Renewal recursion: f(t) = 1 + Σ_o P(O=o)·f(t-o), with f(t) = 0 for t ≤ 0."""
    return renewal_rounds(max_tokens, output_distribution(gamma, alpha))


def mean_output(probs: Sequence[float]) -> float:
    """E[O] of a law [P(O = 1), …, P(O = γ+1)]."""
    return sum(o * p for o, p in enumerate(probs, start=1))


def renewal_rounds(max_tokens: int, probs: Sequence[float]) -> list[float]:
    """``table[t]`` = E[rounds until the outputs sum to ≥ t], t = 0..max_tokens, for i.i.d.
    rounds whose output has law ``probs`` (P(O = 1), P(O = 2), …)."""
    table = [0.0] * (max_tokens + 1)
    for t in range(1, max_tokens + 1):
        table[t] = 1.0 + sum(p * table[t - o] for o, p in enumerate(probs, start=1) if o < t)
    return table


def pair_output(profile, drafter: int, verifier: int, gamma: int) -> list[float]:
    """The profile's law of tokens out of one verification of γ drafts (its acceptance model)."""
    return profile.output_distribution(drafter, verifier, gamma)


def expected_rounds(tokens: int, gamma: int, alpha: float) -> float:
    """E[N]: expected verify rounds a level needs to hold ≥ ``tokens`` when each round verifies a
    block of ``gamma`` drafts accepted i.i.d. with rate ``alpha``."""
    return rounds_table(tokens, gamma, alpha)[tokens]


# --------------------------------------------------------------------------------------------
# costs from a profile
# --------------------------------------------------------------------------------------------
def cost_at(costs_ms: Sequence[float], n_tokens: int) -> float:
    """c(n): measured forward cost over ``n_tokens`` new tokens, linear extrapolation past the end."""
    if n_tokens < 1:
        raise ValueError(f"a forward covers at least 1 token, got {n_tokens}")
    if n_tokens <= len(costs_ms):
        return float(costs_ms[n_tokens - 1])
    last = float(costs_ms[-1])
    if len(costs_ms) < 2:
        return last
    slope = max(0.0, last - float(costs_ms[-2]))
    return last + slope * (n_tokens - len(costs_ms))


def model_cost(profile, model: int, n_tokens: int) -> float:
    """c_model(n) in ms: one forward over ``n_tokens`` new tokens."""
    return cost_at(profile.cost_ms[profile.models[model]], n_tokens)


def draft_step_cost(profile, model: int) -> float:
    """ms of one token-by-token sampling step: c(1) + the profile's sampling overhead (if any)."""
    return model_cost(profile, model, 1) + profile.draft_overhead_ms()


def autoregressive_ms(profile, model: int) -> float:
    """ms per committed token of ``model`` decoding alone: one drafting step and the engine's time
    per committed token (0 when not fitted)."""
    return draft_step_cost(profile, model) + profile.token_overhead_ms()


def leaf_cost(profile, model: int, buffer: int) -> float:
    """ms of one call of the bottom level: ``buffer`` drafting steps, plus the first call's extra
    cost after another model ran (``Profile.first_call_ms``; 0 when not measured)."""
    return buffer * draft_step_cost(profile, model) + profile.first_call(model)


def verify_cost(profile, model: int, gamma: int) -> float:
    """ms of one verification of γ drafts: c(γ+1) + the profile's rule overhead v(γ) (if any)."""
    return model_cost(profile, model, gamma + 1) + profile.verify_overhead_ms(gamma)


def check_hierarchy(profile, chain: Sequence[int], buffers: Sequence[int]) -> tuple[list[int], list[int]]:
    """Validate (chain, buffers) against a profile; returns them as lists of ints."""
    chain = [int(c) for c in chain]
    buffers = [int(b) for b in buffers]
    n = len(profile.models)
    if not chain:
        raise ConfigError("a hierarchy needs at least the target model")
    if any(not 0 <= c < n for c in chain):
        raise ConfigError(f"chain {chain} names a model outside 0..{n - 1}")
    if any(a >= b for a, b in zip(chain, chain[1:])):
        raise ConfigError(f"chain {chain} must be strictly increasing (smallest model first)")
    if len(buffers) != len(chain) - 1:
        raise ConfigError(f"chain {chain} has {len(chain) - 1} draft level(s) but {len(buffers)} buffer(s)")
    if any(b < 1 for b in buffers):
        raise ConfigError(f"every buffer must be ≥ 1, got {buffers}")
    return chain, buffers


# --------------------------------------------------------------------------------------------
# the expression
# --------------------------------------------------------------------------------------------
def level_costs_ms(profile, chain: Sequence[int], buffers: Sequence[int]) -> list[float]:
    """[C_0, …, C_{K-1}]: expected ms of one call of each draft level (see module docstring)."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    costs: list[float] = []
    for i in range(len(buffers)):
        if i == 0:
            costs.append(leaf_cost(profile, chain[0], buffers[0]))
            continue
        law = pair_output(profile, chain[i - 1], chain[i], buffers[i - 1])
        rounds = renewal_rounds(buffers[i], law)[buffers[i]]
        costs.append(rounds * (costs[-1] + verify_cost(profile, chain[i], buffers[i - 1])))
    return costs


def expected_ms_per_token(profile, chain: Sequence[int], buffers: Sequence[int]) -> float:
    """Model-predicted expected ms per committed token of the hierarchy (OUR derivation)."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    if len(chain) == 1:
        return autoregressive_ms(profile, chain[0])
    below = level_costs_ms(profile, chain, buffers)[-1]
    gamma = buffers[-1]
    round_ms = below + verify_cost(profile, chain[-1], gamma)
    return round_ms / mean_output(pair_output(profile, chain[-2], chain[-1], gamma)) + profile.token_overhead_ms()


def expected_tokens_per_target_call(profile, chain: Sequence[int], buffers: Sequence[int]) -> float:
    """E[O_K]: model-predicted committed tokens per target forward (1.0 for AR)."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    if len(chain) == 1:
        return 1.0
    return mean_output(pair_output(profile, chain[-2], chain[-1], buffers[-1]))


def expected_forwards_per_token(profile, chain: Sequence[int], buffers: Sequence[int]) -> list[float]:
    """Model-predicted forward passes of each level per committed token, level 0 first.

    Target rounds per token R_K = 1/E[O_K]; each round calls level K-1 once; a call of level i
    runs E[N_i] rounds (one forward of M_i and one call of level i-1 each); a call of level 0
    runs T_0 one-token forwards."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    k = len(chain) - 1
    if k == 0:
        return [1.0]
    calls = 1.0 / expected_tokens_per_target_call(profile, chain, buffers)    # target rounds / token
    forwards = [calls]
    for i in range(k - 1, 0, -1):                 # calls of level i per token = calls above
        law = pair_output(profile, chain[i - 1], chain[i], buffers[i - 1])
        rounds = calls * renewal_rounds(buffers[i], law)[buffers[i]]
        forwards.append(rounds)
        calls = rounds                            # each round calls level i-1 once
    forwards.append(calls * buffers[0])
    return forwards[::-1]


# --------------------------------------------------------------------------------------------
# a decode of a given length: the engine's budget cap, exactly
# --------------------------------------------------------------------------------------------
def horizon_counts(profile, chain: Sequence[int], buffers: Sequence[int], max_new_tokens: int) -> dict:
    """The expected cost of ONE decode of ``max_new_tokens`` tokens, exactly as the engine runs it
    near its end: every block is capped by the budget still ahead of the context it is drafted
    after (``hsd.engine``: γ = min(T, end − len(ctx)), the target's last commit cut at the
    budget).  The expression above is this decode's limit as the length grows; a short decode
    differs: its last target round drafts fewer tokens (fewer tokens per target call), and
    nothing past the budget is drafted (less discarded work).

    An exact recursion over the budget r still ahead (the same laws, costs and overheads):
    ``V_i(r)``, the cost of level i handing up n = min(T_i, r) tokens, is ``W_i(0, r)`` with
    ``W_i(h, r) = V_{i-1}(r−h) + verify_i(g) + Σ_o P_i(o | g)·W_i(h + min(o, n−h), r)``,
    g = min(T_{i-1}, r−h), and ``W_i(h, r) = 0`` once h ≥ n; the target's
    ``U(r) = V_{K-1}(r) + verify_K(g) + Σ_o P_K(o | g)·U(r − min(o, r))`` with g = min(T_{K-1}, r)
    is the same recursion with the whole decode as the target's buffer: U(N) = W_K(0, N).
    Returns ``ms_per_token`` (U(N)/N plus the per-token term), ``tokens_per_target_call``
    (N / E[target calls]) and ``forwards_per_token`` (per level, level 0 first), the quantities
    ``simulate_counts(..., max_new_tokens=N)`` estimates and ``hsd validate`` measures."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"a decode's length must be a whole number ≥ 1, got {max_new_tokens!r}")
    k = len(chain) - 1
    if k == 0:
        return {"ms_per_token": autoregressive_ms(profile, chain[0]), "tokens_per_target_call": 1.0,
                "forwards_per_token": [1.0]}
    total = _Horizon(profile, chain, buffers, max_new_tokens).produce(k, max_new_tokens)  # U(N) = W_K(0, N)
    return {"ms_per_token": total[0] / max_new_tokens + profile.token_overhead_ms(),
            "tokens_per_target_call": max_new_tokens / total[1 + k],
            "forwards_per_token": [f / max_new_tokens for f in total[1:]]}


class _Horizon:
    """``horizon_counts``' recursion for one hierarchy, memoised: ``produce(level, r)`` is
    [expected ms, expected forwards of levels 0..K] of ``level`` handing up min(T_level, r) tokens
    with r tokens of budget still ahead (``V_level(r)``; for the target, whose "buffer" is the
    whole decode, ``U(r)``)."""

    def __init__(self, profile, chain: Sequence[int], buffers: Sequence[int], max_new_tokens: int):
        self.profile, self.chain, self.buffers = profile, list(chain), list(buffers)
        self.k = len(chain) - 1
        self.sizes = self.buffers + [max_new_tokens]                      # the target hands up the whole decode
        self.below = [sum(self.buffers[:i]) for i in range(self.k + 1)]   # how far below level i a budget binds
        self.laws: dict = {}
        self.memo: dict = {}

    def law(self, level: int, gamma: int) -> list[float]:
        key = (level, gamma)
        if key not in self.laws:
            self.laws[key] = pair_output(self.profile, self.chain[level - 1], self.chain[level], gamma)
        return self.laws[key]

    def produce(self, level: int, r: int) -> list[float]:
        n = min(self.sizes[level], r)
        r = min(r, n + self.below[level])                 # a budget past this binds nothing below
        key = (level, r)
        if key not in self.memo:
            self.memo[key] = self._leaf(n) if level == 0 else self._rounds(level, n, r)
        return self.memo[key]

    def _leaf(self, n: int) -> list[float]:
        out = [leaf_cost(self.profile, self.chain[0], n)] + [0.0] * (self.k + 1)
        out[1] += n
        return out

    def _rounds(self, level: int, n: int, r: int) -> list[float]:
        """W(0): the rounds of ``level`` until it holds n tokens, h = tokens held so far."""
        held_cost = [[0.0] * (self.k + 2) for _ in range(n + 1)]   # W(h) for h = n … 0 (W(n) = 0)
        for h in range(n - 1, -1, -1):
            g = min(self.buffers[level - 1], r - h)
            acc = list(self.produce(level - 1, r - h))
            acc[0] += verify_cost(self.profile, self.chain[level], g)
            acc[1 + level] += 1
            for o, p in enumerate(self.law(level, g), start=1):
                if p:
                    nxt = held_cost[min(h + o, n)]
                    for j, v in enumerate(nxt):
                        acc[j] += p * v
            held_cost[h] = acc
        return held_cost[0]


def expected_ms_per_token_at(profile, chain: Sequence[int], buffers: Sequence[int], max_new_tokens: int | None) -> float:
    """Model-predicted ms per token of a decode of ``max_new_tokens`` tokens (``horizon_counts``);
    None: the long-run figure (``expected_ms_per_token``)."""
    if max_new_tokens is None:
        return expected_ms_per_token(profile, chain, buffers)
    return horizon_counts(profile, chain, buffers, max_new_tokens)["ms_per_token"]


# --------------------------------------------------------------------------------------------
# Monte Carlo simulation of the same policy
# --------------------------------------------------------------------------------------------
def simulate(profile, chain: Sequence[int], buffers: Sequence[int], n_tokens: int = 20000,
             seed: int = 0, max_new_tokens: int | None = None) -> float:
    """Simulated ms per committed token: play the exact-buffer policy level by level, drawing
    each verification's output from the profile's law (Bernoulli(α) acceptances when i.i.d.),
    summing model costs, until ≥ ``n_tokens`` are committed (whole target rounds; ratio of
    totals = the renewal-reward estimate).  With ``max_new_tokens``: decodes of that length, one
    after another, each with the engine's budget cap (the estimate of ``horizon_counts``)."""
    return simulate_counts(profile, chain, buffers, n_tokens, seed, max_new_tokens)["ms_per_token"]


def simulate_counts(profile, chain: Sequence[int], buffers: Sequence[int], n_tokens: int = 20000,
                    seed: int = 0, max_new_tokens: int | None = None) -> dict:
    """``simulate``, with what it counted: ``ms_per_token``, ``tokens_per_target_call`` and
    ``forwards_per_token`` (per level, level 0 first), to compare with the expressions.  With
    ``max_new_tokens``, whole decodes of that length are played (≥ ``n_tokens`` in all), each
    block capped by the budget left after its context as ``hsd.engine`` caps it."""
    chain, buffers = check_hierarchy(profile, chain, buffers)
    rng = random.Random(seed)
    k = len(chain) - 1
    if k == 0:
        return {"ms_per_token": autoregressive_ms(profile, chain[0]),
                "tokens_per_target_call": 1.0,
                "forwards_per_token": [1.0]}
    unbounded = max_new_tokens is None
    if not unbounded and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise ConfigError(f"a decode's length must be a whole number ≥ 1, got {max_new_tokens!r}")
    horizon = max_new_tokens
    cumulative: dict = {}
    forwards = [0] * (k + 1)

    def round_output(level: int, gamma: int) -> int:    # tokens out of one verification by `level`
        forwards[level] += 1
        cdf = cumulative.get((level, gamma))
        if cdf is None:
            cdf = cumulative[level, gamma] = list(itertools.accumulate(
                pair_output(profile, chain[level - 1], chain[level], gamma)))
        return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1) + 1

    def produce(level: int, n: int, budget: float) -> float:   # ms for `level` to hand up n tokens
        if level == 0:
            forwards[0] += n
            return leaf_cost(profile, chain[0], n)
        held, spent = 0, 0.0
        while held < n:
            gamma = int(min(buffers[level - 1], budget - held))   # the engine's cap: the budget left
            spent += produce(level - 1, gamma, budget - held) + verify_cost(profile, chain[level], gamma)
            held += round_output(level, gamma)
        return spent                        # truncated to exactly n

    committed, spent = 0, 0.0
    while committed < n_tokens:
        if unbounded:                       # one target round
            spent += produce(k - 1, buffers[-1], math.inf) + verify_cost(profile, chain[k], buffers[-1])
            committed += round_output(k, buffers[-1])
        else:                               # one whole decode: the target's rounds up to the budget
            spent += produce(k, horizon, horizon)
            committed += horizon
    return {"ms_per_token": spent / committed + profile.token_overhead_ms(),
            "tokens_per_target_call": committed / forwards[k],
            "forwards_per_token": [f / committed for f in forwards]}
