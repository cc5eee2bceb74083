"""Verification rules: given one draft block, decide how much of it the verifier keeps.

Contract (used by the engine, the tests, the app and external checks)::

    RULES[name](draft_tokens, draft_probs, verifier_probs, generator) -> Verdict

- ``draft_tokens``   LongTensor (γ,)      the drafted tokens x_1..x_γ
- ``draft_probs``    Tensor (γ, V)        row t: the drafter's distribution that x_{t+1} was drawn from
- ``verifier_probs`` Tensor (γ+1, V)      row t: the verifier's distribution after the draft prefix x_≤t
- ``generator``      torch.Generator      the only source of randomness

Every rule is written as its exact *outcome distribution* ``outcome[k, v]`` = P(keep exactly k draft
tokens, then emit token v) -- shape (γ+1, V) -- followed by ONE categorical draw from it.  That is
distributionally identical to the sequential coin-flip descriptions in the papers, it is what the
exact-enumeration tests check, and it makes each verification consume exactly one random number.
When every verifier row is one-hot (temperature 0) the rule takes its greedy path: keep the draft
while it equals the verifier's argmax, then emit the argmax; no randomness is used.

Rules (one pure function each; a new rule is a new function, never a flag):
- ``token``        Leviathan et al. 2023 / Chen et al. 2023: token-wise rejection sampling.
- ``block``        Sun et al. 2024, "Block Verification Accelerates Speculative Decoding"
                   (arXiv 2403.10444), Algorithm 2: capped running ratio and a backward scan.
- ``hsd``          Zhou et al. 2026, "Overcoming Joint Intractability with Lossless Hierarchical
                   Speculative Decoding" (arXiv 2601.05724): the same decision written as branch
                   mass balancing along the draft path (excess vs deficit mass, step-back flow).
- ``hsd-uncapped`` the tempting variant that accepts the whole block with the *uncapped* joint
                   ratio min(1, Π ρ_t).  LOSSY; kept as a labelled teaching/negative control.

This module knows nothing about models, tokenizers or caches: plain tensors in, a Verdict out.
All arithmetic is float64; 0/0 is guarded so p = q rows, one-hot rows and zero-probability draft
tokens never produce NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

TOP_ENTRIES = 6  # vocabulary entries per node kept in the diagnostics (for the pictures)


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one draft block, plus plain-data diagnostics.

    ``n_accepted`` in 0..γ draft tokens are kept; ``next_token`` follows them: a *replacement*
    (drawn from the residual at the stopping node) when ``n_accepted < γ`` or a resample happened,
    a *bonus* (drawn from the verifier's last row) when the whole block is accepted.
    """

    n_accepted: int
    next_token: int
    bonus: bool
    rule: str
    diagnostics: dict = field(default_factory=dict, compare=False)

    @property
    def next_kind(self) -> str:
        return "bonus" if self.bonus else "replacement"


@dataclass(frozen=True)
class Rule:
    """A registered verification rule: ``outcome(...)`` gives the exact (γ+1, V) outcome table."""

    name: str
    lossless: bool
    summary: str
    outcome: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]

    def __call__(self, draft_tokens, draft_probs, verifier_probs, generator) -> Verdict:
        return verify(self, draft_tokens, draft_probs, verifier_probs, generator)


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------

def _as64(draft_tokens, draft_probs, verifier_probs):
    draft_tokens = torch.as_tensor(draft_tokens, dtype=torch.long).reshape(-1)
    draft_probs = torch.as_tensor(draft_probs).to(torch.float64)
    verifier_probs = torch.as_tensor(verifier_probs).to(torch.float64)
    gamma = draft_tokens.shape[0]
    if draft_probs.shape[0] != gamma or verifier_probs.shape[0] != gamma + 1:
        raise ValueError(
            f"shape mismatch: draft_tokens ({gamma},), draft_probs {tuple(draft_probs.shape)}, "
            f"verifier_probs {tuple(verifier_probs.shape)}; expected (γ, V) and (γ+1, V)")
    if draft_probs.shape[1] != verifier_probs.shape[1]:
        raise ValueError("draft_probs and verifier_probs must have the same vocabulary size")
    return draft_tokens, draft_probs, verifier_probs


def _ratios(draft_tokens, draft_probs, verifier_probs) -> list[float]:
    """ρ_t = verifier(x_t) / draft(x_t), a list of γ floats.  A token the drafter gave zero mass
    counts as ρ = +inf (capped to 1 wherever a cap applies) if the verifier likes it, and 0 if
    nobody does.  (γ-length scalars are plain floats: cheaper than tensor ops at this size.)"""
    idx = torch.arange(draft_tokens.shape[0])
    q_x = draft_probs[idx, draft_tokens].tolist()
    p_x = verifier_probs[idx, draft_tokens].tolist()
    return [p / q if q > 0 else (math.inf if p > 0 else 0.0) for p, q in zip(p_x, q_x)]


def _capped_running(rho: list[float]) -> list[float]:
    """c_0 = 1, c_t = min(1, c_{t-1} ρ_t); γ+1 floats.  (Sun et al. 2024, Alg. 2 line 3)"""
    c = [1.0]
    for r in rho:
        c.append(min(1.0, c[-1] * r) if c[-1] > 0 else 0.0)
    return c


def _finite(xs: list[float]) -> list[float]:
    return [min(x, 1e300) for x in xs]


def _normalise(rows: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Row-normalise; a row with no mass is replaced by the matching ``fallback`` row."""
    z = rows.sum(-1, keepdim=True)
    return torch.where(z > 0, rows / torch.where(z > 0, z, torch.ones_like(z)), fallback)


def _top_entries(a: torch.Tensor, b: torch.Tensor, k: int = TOP_ENTRIES) -> list[dict]:
    """Per node: the k vocabulary entries with the most mass in a or b (plain lists)."""
    if a.shape[0] == 0:
        return []
    ids = torch.topk(torch.maximum(a, b), min(k, a.shape[1]), dim=-1).indices     # (γ, k)
    ids_l, a_l, b_l = ids.tolist(), a.gather(1, ids).tolist(), b.gather(1, ids).tolist()
    return [{"ids": i, "target": x, "draft": y} for i, x, y in zip(ids_l, a_l, b_l)]


def _is_one_hot(rows: torch.Tensor) -> bool:
    return bool((torch.amax(rows, dim=-1) == 1.0).all())


def _greedy(rule: Rule, draft_tokens, verifier_probs) -> Verdict:
    """Temperature 0: keep the draft while it equals the verifier's argmax, then emit the argmax."""
    best = verifier_probs.argmax(dim=-1)                     # (γ+1,)
    gamma = draft_tokens.shape[0]
    match = (best[:gamma] == draft_tokens).tolist()
    n = match.index(False) if False in match else gamma
    diagnostics = {"greedy": True, "ratios": [1.0 if m else 0.0 for m in match]}
    return Verdict(n, int(best[n]), n == gamma, rule.name, diagnostics)


def categorical(weights: torch.Tensor, generator: torch.Generator) -> int:
    """One draw from unnormalised non-negative ``weights`` by inverse CDF (one uniform)."""
    cdf = torch.cumsum(weights, 0)
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    idx = int(torch.searchsorted(cdf, u, right=True))
    idx = min(idx, weights.shape[0] - 1)
    while weights[idx] <= 0 and idx > 0:       # u landed exactly on a boundary after a zero run
        idx -= 1
    return idx


def verify(rule: Rule, draft_tokens, draft_probs, verifier_probs, generator) -> Verdict:
    """Run ``rule`` on one draft block: exact outcome table, then one categorical draw."""
    draft_tokens, draft_probs, verifier_probs = _as64(draft_tokens, draft_probs, verifier_probs)
    if _is_one_hot(verifier_probs):
        return _greedy(rule, draft_tokens, verifier_probs)
    table, diagnostics = rule.outcome(draft_tokens, draft_probs, verifier_probs)   # (γ+1, V)
    pick = categorical(table.reshape(-1), generator)
    n, v = divmod(pick, table.shape[1])
    gamma = draft_tokens.shape[0]
    return Verdict(n, v, n == gamma, rule.name, diagnostics)


# --------------------------------------------------------------------------------------------
# token-wise verification (Leviathan et al. 2023, Alg. 1; Chen et al. 2023)
# --------------------------------------------------------------------------------------------

def token_outcome(draft_tokens, draft_probs, verifier_probs):
    """P(keep k, emit v) = Π_{t<k} β_t · (1-β_k) · norm(p_k - q_k)_+(v), β_t = min(1, ρ_t);
    keep all γ: Π β_t · p_γ(v)."""
    gamma = draft_tokens.shape[0]
    rho = _ratios(draft_tokens, draft_probs, verifier_probs)
    beta = [min(1.0, r) for r in rho]                                  # γ floats
    reach = [1.0]
    for b in beta:
        reach.append(reach[-1] * b)                                    # γ+1 floats
    stop = torch.tensor([r * (1.0 - b) for r, b in zip(reach, beta)], dtype=torch.float64)
    residual = _normalise((verifier_probs[:gamma] - draft_probs).clamp(min=0), verifier_probs[:gamma])
    table = torch.empty_like(verifier_probs)
    table[:gamma] = stop[:, None] * residual
    table[gamma] = reach[gamma] * verifier_probs[gamma]
    diagnostics = {
        "ratios": _finite(rho),
        "accept_prob": beta,
        "reach_prob": reach,
        "nodes": _top_entries(verifier_probs[:gamma], draft_probs),
    }
    return table, diagnostics


# --------------------------------------------------------------------------------------------
# block verification (Sun et al. 2024, arXiv 2403.10444, Alg. 2)
# --------------------------------------------------------------------------------------------

def _backward_scan(stop: list[float], accept_all: float):
    """Mass flowing down the draft path from the leaf: 1 - accept_all arrives at node γ-1; at node
    t a share stop_t is resampled there, the rest steps back to the parent.  Returns per node t
    (γ floats each) the mass arriving and the mass resampled; node 0 resamples all that reaches it."""
    gamma = len(stop)
    arriving, resampled = [0.0] * gamma, [0.0] * gamma
    flow = max(0.0, 1.0 - accept_all)
    for t in range(gamma - 1, -1, -1):
        arriving[t] = flow
        resampled[t] = flow if t == 0 else max(0.0, flow * stop[t])
        flow = max(0.0, flow - resampled[t])       # rounding never makes mass negative
    return arriving, resampled


def _scan_table(resampled: list[float], residual_rows, verifier_probs, accept_all: float):
    """(γ+1, V) outcome table: resample at node t from its normalised residual, or keep all."""
    gamma = len(resampled)
    table = torch.empty_like(verifier_probs)
    weights = torch.tensor(resampled, dtype=torch.float64)
    table[:gamma] = weights[:, None] * _normalise(residual_rows, verifier_probs[:gamma])
    table[gamma] = accept_all * verifier_probs[gamma]
    return table


def block_outcome(draft_tokens, draft_probs, verifier_probs):
    """Capped running ratio c_t; residual at node t: (c_t p_t - q_t)_+ with mass Z_t; stop weight
    h_t = Z_t / (Z_t + 1 - c_t); accept all with probability c_γ, else the last node whose
    Bernoulli(h_t) fires (scanning backward) resamples from its normalised residual."""
    gamma = draft_tokens.shape[0]
    rho = _ratios(draft_tokens, draft_probs, verifier_probs)
    c = _capped_running(rho)                                            # γ+1 floats
    capped = torch.tensor(c[:gamma], dtype=torch.float64)[:, None] * verifier_probs[:gamma]   # (γ, V)
    resid = (capped - draft_probs).clamp(min=0)                         # (γ, V)
    z = resid.sum(-1).tolist()                                          # Z_t
    h = [zt / (zt + 1 - ct) if zt + 1 - ct > 0 else 0.0 for zt, ct in zip(z, c)]
    arriving, resampled = _backward_scan(h, c[gamma])
    table = _scan_table(resampled, resid, verifier_probs, c[gamma])
    diagnostics = {
        "ratios": _finite(rho),
        "capped": c,
        "stop_prob": h,
        "residual_mass": z,
        "accept_all_prob": c[gamma],
        "arriving": arriving,
        "resampled": resampled,
        "nodes": _top_entries(capped, draft_probs),
    }
    return table, diagnostics


# --------------------------------------------------------------------------------------------
# hierarchical / branch-mass-balancing verification (Zhou et al. 2026, arXiv 2601.05724)
# --------------------------------------------------------------------------------------------

def _branch_masses(draft_tokens, draft_probs, verifier_probs):
    """At node t (prefix x_≤t): capped target child mass A_t(v) = c_t p_t(v), draft child mass
    B_t(v) = q_t(v); excess D_t = Σ(B-A)_+ (draft-heavy), deficit E_t = Σ(A-B)_+ (target-heavy)."""
    gamma = draft_tokens.shape[0]
    rho = _ratios(draft_tokens, draft_probs, verifier_probs)
    c = _capped_running(rho)
    a = torch.tensor(c[:gamma], dtype=torch.float64)[:, None] * verifier_probs[:gamma]   # (γ, V)
    b = draft_probs                                                     # (γ, V)
    excess = (b - a).clamp(min=0).sum(-1).tolist()                     # D_t
    deficit_rows = (a - b).clamp(min=0)                                 # (γ, V)
    deficit = deficit_rows.sum(-1).tolist()                             # E_t
    return rho, c, a, b, excess, deficit_rows, deficit


def _balanced_outcome(draft_tokens, draft_probs, verifier_probs, accept_all_of, lossy_note):
    """``accept_all_of(rho, c)`` gives the whole-block acceptance: the one place the two
    balancing rules differ (ratios and capped ratios are computed once, here)."""
    gamma = draft_tokens.shape[0]
    rho, c, a, b, excess, deficit_rows, deficit = _branch_masses(draft_tokens, draft_probs, verifier_probs)
    accept_all = accept_all_of(rho, c)
    balance = [min(1.0, e / d) if d > 0 else 0.0 for e, d in zip(deficit, excess)]   # E_t / D_t
    arriving, resampled = _backward_scan(balance, accept_all)
    table = _scan_table(resampled, deficit_rows, verifier_probs, accept_all)
    diagnostics = {
        "ratios": _finite(rho),
        "capped": c,
        "excess": excess,
        "deficit": deficit,
        "stop_prob": balance,
        "accept_all_prob": accept_all,
        "accept_all_capped": c[gamma],
        "accept_all_uncapped": _uncapped_joint(rho),
        "arriving": arriving,
        "resampled": resampled,
        "stepped_back": [x - y for x, y in zip(arriving, resampled)],
        "nodes": _top_entries(a, b),
    }
    if lossy_note:
        diagnostics["lossy"] = lossy_note
    return table, diagnostics


def _uncapped_joint(rho: list[float]) -> float:
    """min(1, Π ρ_t) computed in log space (no 0·inf)."""
    if any(r == 0.0 for r in rho):
        return 0.0
    return min(1.0, math.exp(min(700.0, sum(min(700.0, math.log(r)) for r in rho))))


def hsd_outcome(draft_tokens, draft_probs, verifier_probs):
    """Branch mass balancing: whole block kept with the CAPPED ratio c_γ; the rejected mass walks
    back along the path and at node t a share E_t / D_t is resampled into the deficit children."""
    return _balanced_outcome(draft_tokens, draft_probs, verifier_probs, lambda rho, c: c[-1], None)


def hsd_uncapped_outcome(draft_tokens, draft_probs, verifier_probs):
    """LOSSY: as ``hsd`` but the whole block is kept with min(1, Π ρ_t), which overshoots the
    target wherever a later ratio above 1 'pays back' an earlier one below 1."""
    note = "accepts the whole block with the uncapped joint ratio min(1, Πρ); not the target distribution"
    return _balanced_outcome(draft_tokens, draft_probs, verifier_probs, lambda rho, c: _uncapped_joint(rho), note)


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("token", True, "token-wise rejection sampling (Leviathan et al. / Chen et al.)", token_outcome),
        Rule("block", True, "block verification, capped running ratio (Sun et al. 2024)", block_outcome),
        Rule("hsd", True, "branch mass balancing, capped (Zhou et al. 2026)", hsd_outcome),
        Rule("hsd-uncapped", False, "LOSSY teaching variant: uncapped joint acceptance", hsd_uncapped_outcome),
    )
}

LOSSLESS_RULES = tuple(name for name, r in RULES.items() if r.lossless)


def get_rule(name: str) -> Rule:
    """The rule called ``name``; an unknown name raises ``UnknownRuleError`` listing the known ones."""
    from hsd.errors import UnknownRuleError

    try:
        return RULES[name]
    except KeyError:
        raise UnknownRuleError(f"unknown verification rule {name!r}; known rules: {', '.join(RULES)}") from None


def outcome_table(name: str, draft_tokens, draft_probs, verifier_probs) -> torch.Tensor:
    """Exact (γ+1, V) table P(keep k, emit v) of rule ``name`` (float64); greedy rows included."""
    rule = get_rule(name)
    draft_tokens, draft_probs, verifier_probs = _as64(draft_tokens, draft_probs, verifier_probs)
    table, _ = rule.outcome(draft_tokens, draft_probs, verifier_probs)
    return table
