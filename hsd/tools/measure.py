"""Measuring a ``hsd.plan.profile.Profile`` on real models: the torch half of profiling.

1) contexts the TARGET samples at the serving settings; 2) pairwise acceptance α on them;
3) the engine's overheads outside the forwards (sampling, the verification rule); 4) forward cost
by block length with a warm cache, exactly as the engine calls ``LevelModel.probs_after``; 5) the
engine's own time per step, round and token, fitted to the real decodes of 2).
``hsd profile --family bundled --out profile.json`` is the command (``run``).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from hsd.errors import ConfigError
from hsd.plan.profile import ENGINE_TERMS, Profile, law_from_conditional
from hsd.tools.paths import PROMPT_FILES, load_prompts, save_or_rescue
from hsd.tools.progress import ProgressFn, progress_bar
from hsd.trace import Trace

DEFAULT_PROMPTS = (
    "import os\nimport sys\n\n\ndef main(argv):\n",
    "class Cache:\n    \"\"\"A small least-recently-used cache.\"\"\"\n\n    def __init__(self, size):\n",
    "def parse_args(args):\n    result = {}\n    for arg in args:\n",
    "    try:\n        with open(path, 'rb') as f:\n",
    "# Copyright (c) Python Software Foundation.\n\"\"\"Utilities for ",
    "    if not isinstance(value, str):\n        raise TypeError(",
)


# --------------------------------------------------------------------------------------------
# measuring a profile on real models
# --------------------------------------------------------------------------------------------
def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with a transformers tokenizer (or a raw ``tokenizers.Tokenizer``)."""
    if callable(tokenizer):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer.encode(text).ids)


def decode_ids(tokenizer, ids) -> str:
    """The text of ``ids``, special tokens kept and no clean-up: ``encode_prompt``'s inverse."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def sample_contexts(target, prompts_ids: Sequence[Sequence[int]], new_tokens: int, *,
                    seed: int = 0, eos_token_id: int | None = None) -> list[tuple[list[int], int]]:
    """The target (a ``LevelModel``) continues each prompt by ``new_tokens`` sampled tokens at its
    settings (argmax when greedy), with an explicit generator.  Returns (sequence, prompt_len)."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    out = []
    for ids in prompts_ids:
        seq = list(ids)
        target.reset()
        for _ in range(new_tokens):
            row = target.probs_after(seq, 1)[0]                                  # (V,)
            tok = int(row.argmax()) if target.settings.greedy else int(
                torch.multinomial(row, 1, generator=generator))
            seq.append(tok)
            if tok == eos_token_id:
                break
        out.append((seq, len(ids)))
    return out


def measure_acceptance(levels, contexts: Sequence[tuple[list[int], int]]) -> tuple[list[list[float]], int]:
    """α[i][j] = mean over generated positions of Σ_v min(p_i(v), p_j(v)); one forward of each model
    over each whole context gives every row at once.  Returns (matrix, number of positions)."""
    import torch

    n = len(levels)
    sums = [[0.0] * n for _ in range(n)]
    positions = 0
    for seq, prompt_len in contexts:
        generated = len(seq) - prompt_len
        if generated < 1:
            continue
        rows = []
        for lm in levels:
            lm.reset()
            rows.append(lm.probs_after(seq[:-1], generated).double())             # (g, V)
        positions += generated
        for i in range(n):
            for j in range(i + 1, n):
                sums[i][j] += float(torch.minimum(rows[i], rows[j]).sum(-1).sum())
    if positions == 0:
        raise ConfigError("profile: the contexts hold no generated positions to measure acceptance on")
    acc = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            acc[i][j] = acc[j][i] = min(1.0, sums[i][j] / positions)
    return acc, positions


def block_starts(contexts: Sequence[tuple[list[int], int]], every: int) -> list[list[int]]:
    """The prefixes a block is drafted after: every ``every``-th generated position of each
    context (what the target sampled), first position included."""
    return [seq[:start] for seq, prompt_len in contexts for start in range(max(prompt_len, 1), len(seq), every)]


def measure_accept_lengths(levels, prefixes: Sequence[list[int]], *, settings, max_block: int, rule: str,
                           seed: int = 0, progress: ProgressFn | None = None) -> list[list]:
    """``accept_lengths[i][j][γ-1]`` = [P(O = 1), …, P(O = γ+1)] for γ = 1..max_block: after each
    prefix, drafter i samples a block of ``max_block`` tokens at the serving settings (its own
    rows, as in the engine), each verifier j > i scores it in one forward, and for every γ the
    rule's exact row weights on the first γ tokens (the law of one verification of that block,
    ``hsd.verify.Outcome.weights``; the argmax match length when greedy) are averaged.  The
    first γ tokens of a sampled block ARE a sampled γ-block, so one block serves every γ."""
    import torch

    from hsd.verify import get_rule, greedy_verdict

    verify_rule, n = get_rule(rule), len(levels)
    generator = torch.Generator().manual_seed(int(seed))
    sums = [[None if j <= i else [[0.0] * (g + 2) for g in range(max_block)] for j in range(n)] for i in range(n)]
    for done, prefix in enumerate(prefixes):
        for i in range(n - 1):
            drafter = levels[i]
            tokens, rows = [], []
            for _ in range(max_block):
                row = drafter.probs_after(prefix + tokens, 1)[0]
                tokens.append(settings.sample(row, generator))
                rows.append(row)
            q = torch.stack(rows)
            for j in range(i + 1, n):
                p = levels[j].probs_after(prefix + tokens, max_block + 1)          # (B+1, V)
                for gamma in range(1, max_block + 1):
                    if settings.greedy:
                        weights = [0.0] * (gamma + 1)
                        weights[greedy_verdict(rule, tokens[:gamma], p[: gamma + 1]).n_accepted] = 1.0
                    else:
                        weights = verify_rule.factored(torch.tensor(tokens[:gamma]), q[:gamma], p[: gamma + 1]).weights
                    acc = sums[i][j][gamma - 1]
                    for k, w in enumerate(weights):
                        acc[k] += w
        if progress:
            progress(done + 1, len(prefixes), "measuring acceptance by position")
    if not prefixes:
        raise ConfigError("profile: no block starts to measure acceptance by position on")
    return [[None if c is None else [[x / len(prefixes) for x in d] for d in c] for c in row] for row in sums]


def measure_trace_lengths(family, names: Sequence[str], prompts_ids: Sequence[list[int]], *, settings,
                          max_block: int, rule: str, new_tokens: int, seed: int = 0, forward: str = "auto",
                          progress: ProgressFn | None = None, records: list | None = None,
                          blocks: Sequence[int] | None = None, timer: "CostTimer | None" = None) -> list[list]:
    """``accept_lengths`` from real decodes: for every pair (i < j) and block γ = 1..max_block
    (or only the γ's in ``blocks``), the single-draft hierarchy i[γ] → j decodes ``new_tokens``
    after each prompt.  A round starts
    right where the previous one ended -- often after a rejection, in hard text -- which blocks
    drafted at evenly spaced positions miss.  From the verifications (full blocks only) of all
    the γ's together, the conditional acceptance a_t = P(position t kept | positions < t kept) is
    pooled (every block that reached position t counts), and each γ's law, γ = 1..max_block, is
    built from it (a subset of ``blocks`` must include max_block, so every position is reached):
    P(O = k+1) = a_1…a_k (1 - a_{k+1}), P(O = γ+1) = a_1…a_γ.  Pooling keeps the laws smooth in
    γ; laws counted per γ alone are noisy, and the optimiser would pick the γ whose noise flatters
    it.  With ``records`` (a list), each decode's counts and wall clock are appended to it
    (``decode_record``), and the target decodes alone after each prompt too: what
    ``fit_engine_overhead`` needs.  With a ``timer`` (``CostTimer``), one round of forward costs
    is timed after each (pair, γ)'s decodes, so the costs the fit subtracts saw the same minutes
    of the machine as the decodes."""
    from hsd.engine import Hierarchy

    gammas = trace_block_lengths(blocks, max_block)
    n = len(names)
    pairs = [(i, j) for i in range(n - 1) for j in range(i + 1, n)]
    out = [[None] * n for _ in range(n)]
    text = [family.tokenizer.decode(ids) for ids in prompts_ids]
    for done, (i, j) in enumerate(pairs):
        reached, kept = [0] * max_block, [0] * max_block
        for gamma in gammas:
            h = Hierarchy([family.models[i], family.models[j]], tokenizer=family.tokenizer, names=[names[i], names[j]],
                          vocab_size=family.vocab_size, buffers=[gamma], rules=rule, forward=forward,
                          threads=None)   # the command set torch's threads
            for p, prompt in enumerate(text):
                events = list(h.stream(prompt, max_new_tokens=new_tokens, temperature=settings.temperature,
                                       top_k=settings.top_k, top_p=settings.top_p, seed=seed + p, stop_at_eos=False))
                for e in events:
                    if e.kind == "verified" and len(e.proposed) == gamma:
                        for t in range(min(e.n_accepted + 1, gamma)):
                            reached[t] += 1
                            kept[t] += t < e.n_accepted
                if records is not None:
                    records.append(decode_record(events, (i, j)))
            if timer is not None:
                timer.round()
        cond = [k / r if r else 1.0 for k, r in zip(kept, reached)]
        out[i][j] = [law_from_conditional(cond[:gamma]) for gamma in range(1, max_block + 1)]
        if progress:
            progress(done + 1, len(pairs), "measuring acceptance from decodes")
    if records is not None:                                  # the target alone: steps, no rounds
        h = Hierarchy([family.models[-1]], tokenizer=family.tokenizer, names=[names[-1]],
                      vocab_size=family.vocab_size, buffers=[], forward=forward, threads=None)
        for p, prompt in enumerate(text):
            records.append(decode_record(list(h.stream(prompt, max_new_tokens=new_tokens, temperature=settings.temperature,
                                                       top_k=settings.top_k, top_p=settings.top_p, seed=seed + p,
                                                       stop_at_eos=False)), (n - 1,)))
        if timer is not None:
            timer.round()
    return out


def trace_block_lengths(blocks: Sequence[int] | None, max_block: int) -> list[int]:
    """The block lengths the traces decode with: 1..max_block, or ``blocks`` clipped to it and
    with max_block added (the pooled conditional acceptance needs every position reached)."""
    if blocks is None:
        return list(range(1, max_block + 1))
    bad = [b for b in blocks if not isinstance(b, int) or b < 1]
    if bad:
        raise ConfigError(f"trace blocks must be whole numbers ≥ 1, got {bad}")
    return sorted({b for b in blocks if b <= max_block} | {max_block})


def decode_record(events, chain: Sequence[int]) -> dict:
    """What one decode did and how long it took: ``chain`` (model indices, target last), the wall
    ms of the decode (prefill excluded), committed ``tokens``, drafting ``steps`` and ``calls`` of
    the bottom level, and each verification as (verifier's model index, block length)."""
    trace = Trace(events=list(events))
    drafted = trace.of_kind("drafted")
    return {"chain": list(chain), "wall_ms": trace.decode_ms(),
            "tokens": len(trace.token_ids), "steps": sum(e.forward_passes for e in drafted), "calls": len(drafted),
            "verifies": [(chain[e.level], len(e.proposed)) for e in trace.of_kind("verified")]}


def fit_engine_overhead(records: Sequence[dict], profile: Profile) -> dict:
    """The engine's own time per drafting step, per verification and per committed token
    (``Profile.overhead_ms`` "step", "round", "token"): a least-squares fit, with every term ≥ 0,
    of what real decodes took beyond what ``profile`` (its forward costs, first calls, sampling
    and rule times) says their forwards and rule cost.  Returns the three terms and the fit's
    facts (``n``, the residual's RMS in ms per token, before and after)."""
    import itertools

    import numpy as np

    from hsd.plan.latency import model_cost

    rows, ys, tokens = [], [], []
    for r in records:
        if not r["tokens"] or not math.isfinite(r["wall_ms"]):
            continue
        bottom = r["chain"][0]
        base = r["steps"] * (model_cost(profile, bottom, 1) + profile.draft_overhead_ms())
        if len(r["chain"]) > 1:
            base += r["calls"] * profile.first_call(bottom)
        base += sum(model_cost(profile, m, g + 1) + profile.verify_overhead_ms(g) for m, g in r["verifies"])
        rows.append([r["steps"], len(r["verifies"]), r["tokens"]])
        ys.append(r["wall_ms"] - base)
        tokens.append(r["tokens"])
    if len(rows) < 3:
        return {}
    x, y, w = np.array(rows, float), np.array(ys, float), 1.0 / np.array(tokens, float)
    xw, yw = x * w[:, None], y * w                      # per committed token: long decodes don't dominate
    best = (float(np.sum(yw ** 2)), np.zeros(3))
    for k in range(1, 4):                               # exact non-negative least squares over 3 terms
        for cols in itertools.combinations(range(3), k):
            coef, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(3)
            full[list(cols)] = coef
            err = float(np.sum((yw - xw @ full) ** 2))
            if err < best[0]:
                best = (err, full)
    terms = {key: round(float(v), 4) for key, v in zip(("step", "round", "token"), best[1])}
    return {**terms, "n": len(rows), "rms_before_ms_per_token": float(np.sqrt(np.mean(yw ** 2))),
            "rms_after_ms_per_token": float(np.sqrt(best[0] / len(rows)))}


class CostTimer:
    """Forward costs timed round by round, so the rounds can be spread over other work (``hsd
    validate`` times one round between its decodes: the costs then see the machine state the
    decodes saw).  Each ``round()`` times every (model, n) once in a fresh random order;
    ``result()`` is ``measure_costs``' answer over the rounds kept.  The first ``warmup`` rounds
    run at once and are discarded."""

    def __init__(self, levels, context: list[int], *, max_n: int, seed: int = 0, warmup: int = 0):
        import torch

        self.levels, self.context, self.max_n = list(levels), list(context), int(max_n)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.vocab = self.levels[0].vocab_size
        self.samples = {lm.name: [[] for _ in range(self.max_n)] for lm in self.levels}
        self.warm = {lm.name: [] for lm in self.levels}
        for lm in self.levels:
            lm.reset()
            lm.probs_after(self.context, 1)                                      # warm cache
        self.jobs = [(lm, n) for lm in self.levels for n in range(1, self.max_n + 1)]
        self.kept = 0
        for _ in range(warmup):
            self.round(keep=False)

    def round(self, keep: bool = True) -> None:
        import torch

        g, context, vocab = self.generator, self.context, self.vocab
        for lm in self.levels:                           # other work between rounds may have reset a level
            if list(lm.cached_ids[:len(context)]) != context:
                lm.reset()
                lm.probs_after(context, 1)
        # a fresh random order every round: no (model, n) always runs right after a model switch
        order = torch.randperm(len(self.jobs), generator=g).tolist()
        for lm, n in (self.jobs[i] for i in order):
            new = torch.randint(vocab, (n,), generator=g).tolist()
            if len(lm.cached_ids) > len(context) and new[0] == lm.cached_ids[len(context)]:
                new[0] = (new[0] + 1) % vocab                                # force the crop
            t0 = time.perf_counter()
            lm.probs_after(context + new, n)
            ms = (time.perf_counter() - t0) * 1000.0
            if n == 1:                                   # the next drafting step: same model again
                t0 = time.perf_counter()
                lm.probs_after(context + new + [int(torch.randint(vocab, (), generator=g))], 1)
                again = (time.perf_counter() - t0) * 1000.0
                if keep:
                    self.warm[lm.name].append(again)
            if keep:
                self.samples[lm.name][n - 1].append(ms)
        self.kept += bool(keep)

    def result(self) -> tuple[dict[str, list[float]], dict[str, float]]:
        if not self.kept:
            raise ValueError("no timing round was kept")
        costs = {name: [statistics.median(s) for s in per_n] for name, per_n in self.samples.items()}
        first = {}
        for name, per_n in costs.items():
            steady = statistics.median(self.warm[name])
            first[name] = max(0.0, per_n[0] - steady)
            per_n[0] = steady
        return costs, first


def family_levels(family, settings, forward: str = "auto") -> list:
    """A fresh level (``hsd.levels.build_level``) for every model of a loaded family, smallest
    first, all with the same sampling ``settings``."""
    from hsd.levels import build_level

    return [build_level(m, name=n, vocab_size=family.vocab_size, settings=settings, forward=forward)
            for m, n in zip(family.models, family.names)]


def measure_costs(levels, context: list[int], *, max_n: int, repeats: int, warmup: int, seed: int = 0,
                  progress: ProgressFn | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """(cost_ms, first_call_ms).  cost_ms[name][n-1]: median wall ms of ``LevelModel.probs_after(context + n new tokens, n)``
    with the cache warm on ``context`` — exactly the call the engine makes to verify a block of
    n-1 drafts (n = 1: one drafting step).  The cache crop back to ``context`` is included, as in
    the engine.  Every round times every (model, n) once in a fresh random order, so slow drifts and
    model-switch effects hit all of them alike; the first ``warmup`` rounds are discarded.

    One-token calls are what a drafter makes γ times in a row, and only the first of them comes
    after another model ran (its caches cold): cost_ms[name][0] is the median of a one-token call
    made right after one of the same model (the drafting step), and first_call_ms[name] how much
    more the first one after a switch costs (median difference, ≥ 0).  ``CostTimer`` is the same,
    a round at a time."""
    return time_rounds(CostTimer(levels, context, max_n=max_n, seed=seed, warmup=warmup), repeats, progress)


def time_rounds(timer: CostTimer, repeats: int,
                progress: ProgressFn | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``repeats`` more kept rounds of ``timer``, then its (cost_ms, first_call_ms) over every
    round it kept."""
    for r in range(repeats):
        timer.round()
        if progress:
            progress(r + 1, repeats, "timing forwards")
    return timer.result()


def measure_overheads(drafter, verifier, context: tuple[list[int], int], *, rule: str, max_gamma: int,
                      repeats: int, seed: int = 0) -> dict:
    """Engine time outside the forward passes, as the engine spends it (``hsd.engine``):
    ``draft_token`` — sampling one token from a row; ``verify[γ-1]`` — stacking γ draft rows and
    running the verification rule on real rows (drafter under verifier) for γ = 1..max_gamma.
    Medians of ``repeats`` (one discarded warm-up)."""
    import torch
    from hsd.verify import get_rule

    seq, prompt_len = context
    verify_rule = get_rule(rule)
    generator = torch.Generator().manual_seed(int(seed))
    n_rows = len(seq) - prompt_len
    max_gamma = max(1, min(max_gamma, n_rows - 1))
    drafter.reset()
    verifier.reset()
    draft_rows = list(drafter.probs_after(seq[:-1], n_rows))                       # n_rows × (V,)
    verifier_rows = verifier.probs_after(seq[:-1], n_rows)                         # (n_rows, V)
    tokens = seq[prompt_len:]
    greedy = drafter.settings.greedy
    sample_ms, verify_ms = [], [[] for _ in range(max_gamma)]
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        row = draft_rows[r % n_rows]
        _ = int(row.argmax()) if greedy else int(torch.multinomial(row, 1, generator=generator))
        if r:
            sample_ms.append((time.perf_counter() - t0) * 1000.0)
        for gamma in range(1, max_gamma + 1):
            t0 = time.perf_counter()
            verify_rule(torch.tensor(tokens[:gamma], dtype=torch.long), torch.stack(draft_rows[:gamma]),
                        verifier_rows[: gamma + 1], generator)
            if r:
                verify_ms[gamma - 1].append((time.perf_counter() - t0) * 1000.0)
    return {"draft_token": statistics.median(sample_ms),
            "verify": [statistics.median(v) for v in verify_ms]}


@dataclass(frozen=True)
class ProfileRequest:
    """What ``measure_profile`` was asked to measure (its keyword arguments, checked once)."""

    max_n: int = 17
    repeats: int = 15
    warmup: int = 3
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    prompts: Sequence[str] = DEFAULT_PROMPTS
    contexts: Sequence[Sequence[int]] | None = None
    context_tokens: int = 64
    seed: int = 0
    rule: str | None = "hsd"
    forward: str = "auto"
    block_every: int = 8
    accept_rule: str = "hsd"
    accept_source: str = "traces"
    trace_blocks: Sequence[int] | None = None

    def __post_init__(self):
        if not isinstance(self.max_n, int) or self.max_n < 2:
            raise ConfigError(f"profile: max-n must be a whole number ≥ 2, got {self.max_n!r}")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"profile: repeats must be a whole number ≥ 1, got {self.repeats!r}")
        if self.accept_source not in ("blocks", "traces"):
            raise ConfigError(f"accept source must be blocks or traces, got {self.accept_source!r}")


@dataclass
class AcceptancePhase:
    """Phase 2's result: α per pair, the acceptance law by block length (if measured), the
    decodes it came from (for the engine fit) and the cost timer that ran between them."""

    acceptance: list[list[float]]
    positions: int
    accept_lengths: list | None = None
    starts: list = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    timer: "CostTimer | None" = None
    blocks: list[int] | None = None


def measure_profile(family, request: ProfileRequest | None = None, *, progress: ProgressFn | None = None,
                    **fields) -> Profile:
    """Measure a ``Profile`` of ``family`` (a ``hsd.models.LoadedFamily``) on this machine, as
    ``request`` asks (or a ``ProfileRequest`` of the keyword ``fields``: ``max_n``, ``repeats``,
    ``temperature``, ``contexts``, ``rule``, ...).

    1) contexts: the target samples ``context_tokens`` tokens after each prompt at the serving
       settings (or use ``contexts``, ready token-id sequences; α is then measured on all but
       their first token);
    2) acceptance: α[i][j] = E_ctx[Σ_v min(p_i, p_j)] over those positions, and by position:
       blocks of max_n - 1 tokens drafted after every ``block_every``-th of them, verified with
       ``accept_rule``, from real single-draft decodes of every pair (``accept_source="traces"``,
       the default: ``measure_trace_lengths``, at the block lengths ``trace_blocks``, default
       every one) or from blocks drafted after evenly spaced
       positions of the contexts (``"blocks"``: ``measure_accept_lengths``, faster, but it
       overstates acceptance: rounds start where the previous one failed); ``block_every=0``
       skips both;
    3) overheads (unless ``rule`` is None): sampling per draft token and the verification
       ``rule``'s time per block length, which the engine spends outside the forward passes;
    4) costs: forward over n = 1..max_n new tokens with a warm cache on the longest context,
       median of ``repeats`` after ``warmup`` discarded rounds;
    5) with decodes from 2) and a ``rule``: the engine's own time per drafting step, verification
       and committed token (``fit_engine_overhead``), which the latency model adds to the above;
       the profile is built once, with them.
    """
    from hsd.levels import SamplingSettings

    req = request if request is not None else ProfileRequest(**fields)
    settings = SamplingSettings(req.temperature, req.top_k, req.top_p)
    levels = family_levels(family, settings, req.forward)
    ctxs = profile_contexts(family, levels, req, progress)                                             # 1)
    timing_ctx = max((c for c, _ in ctxs), key=len)      # costs: on the longest context (a real decode's cache)
    phase = acceptance_phase(family, levels, ctxs, timing_ctx, settings, req, progress)                 # 2)
    overhead = {}
    if req.rule is not None:                                                                           # 3)
        if progress:
            progress(0, 1, f"timing the '{req.rule}' rule")
        ctx = max(ctxs, key=lambda c: len(c[0]) - c[1])
        overhead = measure_overheads(levels[0], levels[-1], ctx, rule=req.rule, max_gamma=req.max_n - 1,
                                     repeats=req.repeats, seed=req.seed)
    # 4) costs on the longest context (cache length like a real decode): ``repeats`` rounds, after
    #    those timed between the decodes of 2) where there were any
    timer = phase.timer or CostTimer(levels, timing_ctx, max_n=req.max_n, seed=req.seed, warmup=req.warmup)
    interleaved = timer.kept
    cost_ms, first_call_ms = time_rounds(timer, req.repeats, progress)
    meta = profile_meta(family, levels, req, ctxs, phase, timing_ctx, timer.kept, interleaved)
    profile = Profile(models=list(family.names), cost_ms=cost_ms, acceptance=phase.acceptance, meta=meta,
                      overhead_ms=overhead, accept_lengths=phase.accept_lengths, first_call_ms=first_call_ms)
    # 5) the engine's own time, fitted to the decodes of 2) (rule overheads measured: same engine)
    fit = fit_engine_overhead(phase.records, profile) if req.rule is not None else {}
    if not fit:
        return profile
    engine = {"how": "non-negative least squares of the decodes' wall clock beyond their forwards, first calls, "
                     "sampling and rule (per committed token)", **{k: v for k, v in fit.items() if k not in ENGINE_TERMS}}
    return dataclasses.replace(profile, overhead_ms={**overhead, **{k: fit[k] for k in ENGINE_TERMS}},
                               meta={**meta, "engine_overhead": engine})


def profile_contexts(family, levels, req: ProfileRequest, progress: ProgressFn | None) -> list[tuple[list[int], int]]:
    """Phase 1: (token ids, prompt length) per context: ``req.contexts`` as given, or the target's
    own continuation of each prompt at the serving settings, kept inside every model's window."""
    if req.contexts is not None:
        ctxs = [(list(c), 1) for c in req.contexts if len(c) >= 2]
    else:
        eos = getattr(family.tokenizer, "eos_token_id", None)
        # keep prompt + sampled context + the longest timed block inside every model's window
        windows = [int(getattr(getattr(m, "config", None), "max_position_embeddings", 0) or 0)
                   for m in family.models]                          # 0: no window (the n-gram level)
        room = min([w for w in windows if w] or [10 ** 9]) - req.context_tokens - req.max_n
        if room < 1:
            raise ConfigError(f"profile: context tokens ({req.context_tokens}) + max-n ({req.max_n}) do not fit "
                              f"the models' {min(w for w in windows if w)}-token window")
        prompt_ids = [p for p in (encode_prompt(family.tokenizer, p)[-room:] for p in req.prompts) if p]
        if not prompt_ids:
            raise ConfigError("profile: every prompt encodes to zero tokens")
        if progress:
            progress(0, 1, f"sampling {len(prompt_ids)} contexts from {family.names[-1]}")
        ctxs = sample_contexts(levels[-1], prompt_ids, req.context_tokens, seed=req.seed, eos_token_id=eos)
    if not ctxs:
        raise ConfigError("profile: no usable contexts (each needs at least 2 tokens)")
    return ctxs


def acceptance_phase(family, levels, ctxs, timing_ctx: list[int], settings, req: ProfileRequest,
                     progress: ProgressFn | None) -> AcceptancePhase:
    """Phase 2: α on the contexts, then the law by block length from real single-draft decodes
    (with the forward costs timed a round at a time between them, so the engine fit does not take
    a drift of the machine for engine time) or from drafted blocks."""
    if progress:
        progress(0, 1, "measuring acceptance")
    acceptance, positions = measure_acceptance(levels, ctxs)
    phase = AcceptancePhase(acceptance, positions)
    if req.block_every and req.accept_source == "traces":
        phase.blocks = trace_block_lengths(req.trace_blocks, req.max_n - 1)
        phase.timer = CostTimer(levels, timing_ctx, max_n=req.max_n, seed=req.seed, warmup=req.warmup)
        phase.starts = [seq[:prompt_len] for seq, prompt_len in ctxs]
        phase.accept_lengths = measure_trace_lengths(
            family, list(family.names), phase.starts, settings=settings, max_block=req.max_n - 1,
            rule=req.accept_rule, new_tokens=max(req.context_tokens, 16), seed=req.seed, forward=req.forward,
            progress=progress, records=phase.records, blocks=phase.blocks, timer=phase.timer)
    elif req.block_every:
        phase.starts = block_starts(ctxs, req.block_every)
        phase.accept_lengths = measure_accept_lengths(levels, phase.starts, settings=settings,
                                                      max_block=req.max_n - 1, rule=req.accept_rule,
                                                      seed=req.seed, progress=progress)
    return phase


def profile_meta(family, levels, req: ProfileRequest, ctxs, phase: AcceptancePhase, timing_ctx: list[int],
                 kept: int, interleaved: int) -> dict:
    """The profile's ``meta``: how and where each number was measured."""
    import torch

    device = str(getattr(family, "device", getattr(levels[-1], "device", "cpu")))
    meta = {"device": device, "torch_threads": torch.get_num_threads(), "temperature": float(req.temperature),
            "top_k": int(req.top_k), "top_p": float(req.top_p), "max_n": req.max_n, "repeats": req.repeats,
            "warmup": req.warmup, "contexts": len(ctxs), "acceptance_positions": phase.positions,
            "timing_context_tokens": len(timing_ctx), "seed": req.seed,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cost": "the engine's level.probs_after over n new tokens, warm cache, median wall ms" + (
                f" over {kept} rounds, {interleaved} of them between the acceptance decodes"
                if interleaved else ""),
            "forward": req.forward, "levels": [type(lv).__name__ for lv in levels],
            "acceptance": "mean over target-sampled positions of sum_v min(p_i, p_j)",
            "rule": req.rule}
    if phase.accept_lengths is not None:
        how = ("single-draft decodes of every pair after each prompt" if req.accept_source == "traces" else
               "blocks the drafter sampled after target-sampled prefixes")
        meta.update(accept_lengths=f"law of tokens out of one verification by block length, rule "
                                   f"'{req.accept_rule}', {how}",
                    accept_rule=req.accept_rule, accept_source=req.accept_source, block_starts=len(phase.starts),
                    block_every=req.block_every)
        if req.accept_source == "traces":
            meta["trace_blocks"] = phase.blocks
    meta["first_call"] = "a one-token call right after another model's, above the drafting step's cost"
    return meta


# --------------------------------------------------------------------------------------------
# hsd profile --family bundled --out profile.json
# --------------------------------------------------------------------------------------------
def run(args) -> int:
    import torch
    from hsd.models import load_family

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = load_prompts(args.profile_prompts or PROMPT_FILES["profile"])
    family = load_family(args.family, device=args.device)
    profile = measure_profile(family, max_n=args.max_n, repeats=args.repeats, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, context_tokens=args.context_tokens,
                              seed=args.seed, rule=None if args.rule == "none" else args.rule,
                              progress=progress_bar(), forward=args.forward, block_every=args.block_every,
                              accept_source=args.accept_source, prompts=prompts, trace_blocks=args.trace_blocks)
    profile.meta["family"] = args.family
    if not save_or_rescue(args.out, profile.save, "profile"):
        return 2
    print(f"\nwrote {args.out}: {len(profile.models)} models, costs n=1..{args.max_n}", file=sys.stderr)
    width = max(len(m) for m in profile.models)
    print(f"{'model':<{width}}  {'c(1) ms':>8}  {'c(' + str(args.max_n) + ') ms':>9}  α under target")
    for i, m in enumerate(profile.models):
        a = profile.alpha(i, profile.target) if i < profile.target else 1.0
        print(f"{m:<{width}}  {profile.cost_ms[m][0]:>8.3f}  {profile.cost_ms[m][-1]:>9.3f}  {a:.3f}")
    if profile.overhead_ms:
        v = profile.overhead_ms["verify"]
        print(f"overhead: sampling {profile.overhead_ms['draft_token']:.3f} ms/token; rule '{args.rule}' "
              f"{v[0]:.3f} ms (γ=1) … {v[-1]:.3f} ms (γ={len(v)})")
    fit = profile.meta.get("engine_overhead")
    if fit:
        o = profile.overhead_ms
        print(f"engine's own time (fitted to {fit['n']} decodes): {o['step']:.3f} ms a drafting step, "
              f"{o['round']:.3f} ms a verification, {o['token']:.3f} ms a committed token "
              f"(residual {fit['rms_before_ms_per_token']:.3f} → {fit['rms_after_ms_per_token']:.3f} ms/token RMS)")
    return 0
