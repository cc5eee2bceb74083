"""Verification rules: given one draft block, decide how much of it the verifier keeps.

Contract (used by the engine, the tests, the app and external checks)::

    RULES[name](draft_tokens, draft_probs, verifier_probs, generator) -> Verdict

- ``draft_tokens``   LongTensor (γ,)      the drafted tokens x_1..x_γ
- ``draft_probs``    Tensor (γ, V)        row t: the drafter's distribution that x_{t+1} was drawn from
- ``verifier_probs`` Tensor (γ+1, V)      row t: the verifier's distribution after the draft prefix x_≤t
- ``generator``      torch.Generator      the only source of randomness

Every rule is written as its exact *outcome distribution* ``outcome[k, v]`` = P(keep exactly k draft
tokens, then emit token v) -- shape (γ+1, V) --, kept factored (``Outcome``): the γ+1 row weights
P(keep exactly k) and, built only for the row drawn, the next token's law given k.  ONE uniform u
picks the row by inverse CDF over the weights and then, rescaled within that row, the token: the
same draw as an inverse CDF over the whole flattened table (``Outcome.table()``, what the
exact-enumeration tests check), without building it.  That is distributionally identical to the
sequential coin-flip descriptions in the papers, and each verification consumes exactly one random
number.  When every verifier row is one-hot (temperature 0) the rule takes its greedy path
(``greedy_verdict``): keep the draft while it equals the verifier's argmax, then emit the argmax;
no randomness is used.

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
from typing import Callable, Sequence

import numpy as np
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
class Outcome:
    """A rule's exact outcome, factored: P(keep exactly k draft tokens) = ``weights[k]`` (γ+1 floats
    summing to 1) and, given k, the next token's law ``row(k)`` (V,), up to its scale (what an
    inverse CDF needs; a residual is not normalised for nothing).  The outcome table is
    ``table[k, v] = weights[k] * row(k)[v] / Σ row(k)``."""

    weights: list[float]
    row: Callable[[int], torch.Tensor]      # k -> (V,) non-negative, positive total, up to scale
    diagnostics: dict

    def table(self) -> torch.Tensor:
        """The whole (γ+1, V) table (float64): what the exact-enumeration tests check."""
        rows = [self.row(k).to(torch.float64) for k in range(len(self.weights))]
        return torch.stack([w * r / r.sum() for w, r in zip(self.weights, rows)])

    def draw(self, generator: torch.Generator) -> tuple[int, int]:
        """(k, v) from ONE uniform of ``generator``."""
        return self.at(float(torch.rand((), generator=generator, dtype=torch.float64)))

    def at(self, u: float) -> tuple[int, int]:
        """(k, v) for the uniform u: inverse CDF over the row weights, then u, rescaled within
        row k, over that row -- the inverse CDF over the flattened table, without building it."""
        x = u * math.fsum(self.weights)
        k, below = _pick(self.weights, x)
        within = min(max((x - below) / self.weights[k], 0.0), 1.0)
        return k, inverse_cdf(self.row(k), within)


def _pick(weights: Sequence[float], x: float) -> tuple[int, float]:
    """The first k with Σ_{j≤k} w_j > x (a positive weight), and Σ_{j<k} w_j."""
    below, last = 0.0, None
    for k, w in enumerate(weights):
        if w > 0:
            if x < below + w:
                return k, below
            last = (k, below)
        below += w
    return last                                      # x rounded up to the total: the last positive row


@dataclass(frozen=True)
class Rule:
    """A registered verification rule: ``factored(...)`` gives its exact ``Outcome``."""

    name: str
    lossless: bool
    summary: str
    factored: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Outcome]

    def outcome(self, draft_tokens, draft_probs, verifier_probs) -> tuple[torch.Tensor, dict]:
        """The exact (γ+1, V) outcome table (float64) and the diagnostics."""
        found = self.factored(*_checked(draft_tokens, draft_probs, verifier_probs))
        return found.table(), found.diagnostics

    def __call__(self, draft_tokens, draft_probs, verifier_probs, generator, *, greedy: bool | None = None) -> Verdict:
        return verify(self, draft_tokens, draft_probs, verifier_probs, generator, greedy=greedy)


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------

def _checked(draft_tokens, draft_probs, verifier_probs):
    """The three inputs as tensors of checked shapes.  The rows keep their dtype (float32 from
    the engine): every arithmetic step below has a float64 operand, so it runs in float64 on the
    exact float32 values, with no float64 copy of the whole tables."""
    draft_tokens = torch.as_tensor(draft_tokens, dtype=torch.long).reshape(-1)
    draft_probs, verifier_probs = torch.as_tensor(draft_probs), torch.as_tensor(verifier_probs)
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
    gamma = draft_tokens.shape[0]
    at = draft_tokens[:, None]
    q_x, p_x = torch.cat((draft_probs.gather(1, at), verifier_probs[:gamma].gather(1, at)), 1).T.tolist()
    return [p / q if q > 0 else (math.inf if p > 0 else 0.0) for p, q in zip(p_x, q_x)]


def _capped_running(rho: list[float]) -> list[float]:
    """c_0 = 1, c_t = min(1, c_{t-1} ρ_t); γ+1 floats.  (Sun et al. 2024, Alg. 2 line 3)"""
    c = [1.0]
    for r in rho:
        c.append(min(1.0, c[-1] * r) if c[-1] > 0 else 0.0)
    return c


def _finite(xs: list[float]) -> list[float]:
    return [min(x, 1e300) for x in xs]




def _top_entries(a: torch.Tensor, b: torch.Tensor, k: int = TOP_ENTRIES) -> list[dict]:
    """Per node: the k vocabulary entries with the most mass in a or b (plain lists)."""
    if a.shape[0] == 0:
        return []
    ids = torch.topk(torch.maximum(a, b), min(k, a.shape[1]), dim=-1).indices     # (γ, k)
    ids_l, a_l, b_l = ids.tolist(), a.gather(1, ids).tolist(), b.gather(1, ids).tolist()
    return [{"ids": i, "target": x, "draft": y} for i, x, y in zip(ids_l, a_l, b_l)]


def _is_one_hot(rows: torch.Tensor) -> bool:
    return bool((torch.amax(rows, dim=-1) == 1.0).all())


def greedy_verdict(rule: Rule | str, draft_tokens: Sequence[int] | torch.Tensor, verifier_probs) -> Verdict:
    """Temperature 0 (every verifier row one-hot, any dtype): keep the draft while it equals the
    verifier's argmax, then emit the argmax; no randomness is used.  The engine calls it directly
    when its sampling settings are greedy (it knows the rows are one-hot)."""
    return greedy_verdict_ids(rule, draft_tokens, torch.as_tensor(verifier_probs).argmax(dim=-1).tolist())


def greedy_verdict_ids(rule: Rule | str, draft_tokens: Sequence[int] | torch.Tensor, best: Sequence[int]) -> Verdict:
    """``greedy_verdict`` from the verifier rows' argmaxes ``best`` (γ+1 ids) alone."""
    name = rule if isinstance(rule, str) else rule.name
    drafted = draft_tokens.tolist() if isinstance(draft_tokens, torch.Tensor) else list(draft_tokens)
    match = [b == d for b, d in zip(best, drafted)]
    n = match.index(False) if False in match else len(drafted)
    diagnostics = {"greedy": True, "ratios": [1.0 if m else 0.0 for m in match]}
    return Verdict(n, int(best[n]), n == len(drafted), name, diagnostics)


def inverse_cdf(weights: torch.Tensor, u: float) -> int:
    """The index i where u in [0, 1] falls in the CDF of non-negative ``weights`` (unnormalised):
    the first i with Σ_{j≤i} w_j > u Σ w, which always has w_i > 0 (a zero weight adds nothing to
    the CDF); u rounding up to the total picks the last positive weight."""
    cdf = torch.cumsum(weights, 0, dtype=torch.float64).cpu().numpy()        # the search: numpy, one call
    idx = int(np.searchsorted(cdf, cdf[-1] * u, side="right"))
    if idx >= weights.shape[0]:
        idx = int(torch.nonzero(weights > 0)[-1])
    return idx


def categorical(weights: torch.Tensor, generator: torch.Generator) -> int:
    """One draw from unnormalised non-negative ``weights`` by inverse CDF (one uniform)."""
    return inverse_cdf(weights, float(torch.rand((), generator=generator, dtype=torch.float64)))


def verify(rule: Rule, draft_tokens, draft_probs, verifier_probs, generator, *, greedy: bool | None = None) -> Verdict:
    """Run ``rule`` on one draft block: its exact factored outcome, then one uniform draw; the
    greedy path when every verifier row is one-hot.  ``greedy``: the caller already knows
    (the engine does, from its sampling settings); None checks the rows.  Either path is exact
    on one-hot rows (the outcome table then has one cell), so a False for one-hot rows only
    spends one uniform."""
    draft_tokens, draft_probs, verifier_probs = _checked(draft_tokens, draft_probs, verifier_probs)
    if greedy or (greedy is None and _is_one_hot(verifier_probs)):
        return greedy_verdict(rule, draft_tokens, verifier_probs)
    found = rule.factored(draft_tokens, draft_probs, verifier_probs)
    n, v = found.draw(generator)
    return Verdict(n, v, n == draft_tokens.shape[0], rule.name, found.diagnostics)


# --------------------------------------------------------------------------------------------
# token-wise verification (Leviathan et al. 2023, Alg. 1; Chen et al. 2023)
# --------------------------------------------------------------------------------------------

def token_outcome(draft_tokens, draft_probs, verifier_probs) -> Outcome:
    """P(keep k, emit v) = Π_{t<k} β_t · (1-β_k) · norm(p_k - q_k)_+(v), β_t = min(1, ρ_t);
    keep all γ: Π β_t · p_γ(v).  Only the row drawn is built: the weights need no V-wide work."""
    gamma = draft_tokens.shape[0]
    rho = _ratios(draft_tokens, draft_probs, verifier_probs)
    beta = [min(1.0, r) for r in rho]                                  # γ floats
    reach = [1.0]
    for b in beta:
        reach.append(reach[-1] * b)                                    # γ+1 floats
    stop = [r * (1.0 - b) for r, b in zip(reach, beta)]

    def row(k: int) -> torch.Tensor:              # (p_k - q_k)_+, or p_k where it has no mass
        if k == gamma or stop[k] <= 0:
            return verifier_probs[k]
        residual = (verifier_probs[k].to(torch.float64) - draft_probs[k]).clamp(min=0)
        return residual if residual.sum() > 0 else verifier_probs[k]

    diagnostics = {
        "ratios": _finite(rho),
        "accept_prob": beta,
        "reach_prob": reach,
        "nodes": _top_entries(verifier_probs[:gamma], draft_probs),
    }
    return Outcome(stop + [reach[gamma]], row, diagnostics)


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


def _scan_outcome(resampled: list[float], residual_rows, residual_mass: list[float], verifier_probs,
                  accept_all: float, diagnostics) -> Outcome:
    """Resample at node t from its residual (weight ``resampled[t]``; the verifier's row where the
    residual has no mass), or keep all (weight ``accept_all``) and draw the bonus from the
    verifier's last row."""
    gamma = len(resampled)

    def row(k: int) -> torch.Tensor:
        return residual_rows[k] if k < gamma and residual_mass[k] > 0 else verifier_probs[k]

    return Outcome(resampled + [accept_all], row, diagnostics)


def block_outcome(draft_tokens, draft_probs, verifier_probs) -> Outcome:
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
    return _scan_outcome(resampled, resid, z, verifier_probs, c[gamma], diagnostics)


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
    gap = a - b
    deficit_rows = gap.clamp(min=0)                                     # (A-B)_+, (γ, V)
    deficit, excess = torch.stack((deficit_rows.sum(-1), (deficit_rows - gap).sum(-1))).tolist()   # E_t, D_t
    return rho, c, a, b, excess, deficit_rows, deficit


def _balanced_outcome(draft_tokens, draft_probs, verifier_probs, accept_all_of, lossy_note) -> Outcome:
    """``accept_all_of(rho, c)`` gives the whole-block acceptance: the one place the two
    balancing rules differ (ratios and capped ratios are computed once, here)."""
    gamma = draft_tokens.shape[0]
    rho, c, a, b, excess, deficit_rows, deficit = _branch_masses(draft_tokens, draft_probs, verifier_probs)
    accept_all = accept_all_of(rho, c)
    balance = [min(1.0, e / d) if d > 0 else 0.0 for e, d in zip(deficit, excess)]   # E_t / D_t
    arriving, resampled = _backward_scan(balance, accept_all)
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
    return _scan_outcome(resampled, deficit_rows, deficit, verifier_probs, accept_all, diagnostics)


def _uncapped_joint(rho: list[float]) -> float:
    """min(1, Π ρ_t) computed in log space (no 0·inf)."""
    if any(r == 0.0 for r in rho):
        return 0.0
    return min(1.0, math.exp(min(700.0, sum(min(700.0, math.log(r)) for r in rho))))


def hsd_outcome(draft_tokens, draft_probs, verifier_probs) -> Outcome:
    """Branch mass balancing: whole block kept with the CAPPED ratio c_γ; the rejected mass walks
    back along the path and at node t a share E_t / D_t is resampled into the deficit children."""
    return _balanced_outcome(draft_tokens, draft_probs, verifier_probs, lambda rho, c: c[-1], None)


def hsd_uncapped_outcome(draft_tokens, draft_probs, verifier_probs) -> Outcome:
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
    table, _ = get_rule(name).outcome(draft_tokens, draft_probs, verifier_probs)
    return table
