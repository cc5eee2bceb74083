"""A hardware profile of a model family: forward cost by block length, and pairwise acceptance.

``Profile`` is plain data (JSON-serialisable; DESIGN §4):

- ``models``: names, smallest first, the last is the target;
- ``cost_ms[name][n-1]``: wall-clock ms of one forward over ``n`` new tokens with a warm cache,
  n = 1..N (median of repeats, warm-up excluded), measured through ``hsd.lm.LevelModel`` exactly
  as the engine calls it (forward + logits processing, cache crop included);
- ``acceptance[i][j]``: α of drafter i under verifier j, the mean over positions of
  ``Σ_v min(p_i(v), p_j(v))`` on contexts the TARGET sampled at the serving temperature (one
  forward of each model over each whole context gives every row at once).  The quantity is
  symmetric, so the matrix is stored symmetric with a unit diagonal;
- ``meta``: how it was measured (device, temperature, context length, repeats, torch threads).

``measure_profile`` needs torch and a loaded family; everything else here is plain Python.
The CLI command ``python -m hsd profile`` wraps it.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from hsd.errors import ConfigError

FORMAT = "hsd-profile/1"

DEFAULT_PROMPTS = (
    "import os\nimport sys\n\n\ndef main(argv):\n",
    "class Cache:\n    \"\"\"A small least-recently-used cache.\"\"\"\n\n    def __init__(self, size):\n",
    "def parse_args(args):\n    result = {}\n    for arg in args:\n",
    "    try:\n        with open(path, 'rb') as f:\n",
    "# Copyright (c) Python Software Foundation.\n\"\"\"Utilities for ",
    "    if not isinstance(value, str):\n        raise TypeError(",
)


@dataclass
class Profile:
    models: list[str]
    cost_ms: dict[str, list[float]]
    acceptance: list[list[float]]
    meta: dict = field(default_factory=dict)
    # optional engine overhead outside the forward passes (absent = 0, the pure DESIGN model):
    #   "draft_token": ms per sampled draft token (sampling from the row)
    #   "verify": ms per verification by block length γ = 1..N (the rule + stacking draft rows)
    overhead_ms: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ConfigError`` with a one-sentence reason if the profile is unusable."""
        models = self.models
        if not isinstance(models, (list, tuple)) or not models:
            raise ConfigError("profile: 'models' must be a non-empty list of model names")
        if any(not isinstance(m, str) or not m for m in models):
            raise ConfigError("profile: every model name must be a non-empty string")
        if len(set(models)) != len(models):
            raise ConfigError(f"profile: model names must be distinct, got {list(models)}")
        if not isinstance(self.cost_ms, dict):
            raise ConfigError("profile: 'cost_ms' must map model name -> list of ms by block length")
        for name in models:
            costs = self.cost_ms.get(name)
            if not isinstance(costs, (list, tuple)) or not costs:
                raise ConfigError(f"profile: cost_ms[{name!r}] is missing or empty")
            if any(not _finite_number(c) or c <= 0 for c in costs):
                raise ConfigError(f"profile: cost_ms[{name!r}] must hold positive finite milliseconds")
        extra = set(self.cost_ms) - set(models)
        if extra:
            raise ConfigError(f"profile: cost_ms has models not in 'models': {sorted(extra)}")
        n = len(models)
        acc = self.acceptance
        if (not isinstance(acc, (list, tuple)) or len(acc) != n
                or any(not isinstance(row, (list, tuple)) or len(row) != n for row in acc)):
            raise ConfigError(f"profile: 'acceptance' must be a {n}×{n} matrix (one row per model)")
        for i in range(n):
            for j in range(i + 1, n):
                a = acc[i][j]
                if not _finite_number(a) or not 0.0 <= a <= 1.0:
                    raise ConfigError(
                        f"profile: acceptance[{i}][{j}] ({models[i]} under {models[j]}) must be in [0, 1], got {a!r}")
        if not isinstance(self.meta, dict):
            raise ConfigError("profile: 'meta' must be an object")
        over = self.overhead_ms
        if not isinstance(over, dict) or set(over) - {"draft_token", "verify"}:
            raise ConfigError("profile: 'overhead_ms' may only hold 'draft_token' (ms) and 'verify' (ms by block length)")
        d = over.get("draft_token", 0.0)
        if not _finite_number(d) or d < 0:
            raise ConfigError(f"profile: overhead_ms['draft_token'] must be a finite number ≥ 0, got {d!r}")
        v = over.get("verify", [0.0])
        if (not isinstance(v, (list, tuple)) or not v
                or any(not _finite_number(x) or x < 0 for x in v)):
            raise ConfigError("profile: overhead_ms['verify'] must be a non-empty list of finite ms ≥ 0")

    # -- accessors -------------------------------------------------------------------------
    @property
    def target(self) -> int:
        return len(self.models) - 1

    @property
    def max_n(self) -> int:
        """Largest block length measured for every model."""
        return min(len(self.cost_ms[m]) for m in self.models)

    def alpha(self, drafter: int, verifier: int) -> float:
        """α of ``drafter`` under ``verifier`` (drafter < verifier)."""
        return float(self.acceptance[drafter][verifier])

    def draft_overhead_ms(self) -> float:
        """Engine time per sampled draft token beyond the forward pass (0 when not measured)."""
        return float(self.overhead_ms.get("draft_token", 0.0))

    def verify_overhead_ms(self, gamma: int) -> float:
        """Engine time per verification of γ drafts beyond the forward pass (0 when not measured);
        linear extrapolation past the measured block lengths, as for costs."""
        from hsd.latency import cost_at
        v = self.overhead_ms.get("verify")
        return cost_at(v, gamma) if v else 0.0

    # -- what-if ---------------------------------------------------------------------------
    def what_if(self, cost_scale: dict[str, float] | None = None,
                acceptance: dict[tuple[str, str], float] | None = None) -> "Profile":
        """A copy with some models' measured forward costs multiplied (e.g. the target 3× slower,
        as on hardware where it does not fit the fast memory) and some pairs' α replaced; engine
        overheads stay as measured.  ``meta["what_if"]`` records the changes; the copy is checked
        like any profile (``validate``: positive costs, α in [0, 1])."""
        cost_scale, acceptance = dict(cost_scale or {}), dict(acceptance or {})
        index = {m: i for i, m in enumerate(self.models)}
        for name in [*cost_scale, *(n for pair in acceptance for n in pair)]:
            if name not in index:
                raise ConfigError(f"what-if: no model named {name!r} in the profile "
                                  f"(models: {', '.join(self.models)})")
        cost = {m: [c * cost_scale.get(m, 1.0) for c in self.cost_ms[m]] for m in self.models}
        acc = [list(row) for row in self.acceptance]
        for (a, b), x in acceptance.items():
            i, j = index[a], index[b]
            if i == j:
                raise ConfigError(f"what-if: α needs two different models, got {a} twice")
            acc[i][j] = acc[j][i] = x
        changes = [f"cost({m}) ×{f:g}" for m, f in cost_scale.items()] + \
                  [f"α({a}, {b}) = {x:g}" for (a, b), x in acceptance.items()]
        meta = dict(self.meta, what_if=list(self.meta.get("what_if", [])) + changes)
        return Profile(models=list(self.models), cost_ms=cost, acceptance=acc, meta=meta,
                       overhead_ms=dict(self.overhead_ms))

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "models": list(self.models),
                "cost_ms": {m: [float(c) for c in self.cost_ms[m]] for m in self.models},
                "acceptance": [[float(a) for a in row] for row in self.acceptance],
                "overhead_ms": _plain(self.overhead_ms),
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d) -> "Profile":
        if not isinstance(d, dict):
            raise ConfigError("profile: expected a JSON object")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ConfigError(f"profile: unknown format {fmt!r} (expected {FORMAT!r})")
        missing = [k for k in ("models", "cost_ms", "acceptance") if k not in d]
        if missing:
            raise ConfigError(f"profile: missing field(s) {', '.join(missing)}")
        cost = d["cost_ms"]
        return cls(models=list(d["models"]) if isinstance(d["models"], (list, tuple)) else d["models"],
                   cost_ms={k: list(v) if isinstance(v, (list, tuple)) else v for k, v in cost.items()}
                   if isinstance(cost, dict) else cost,
                   acceptance=[list(r) if isinstance(r, (list, tuple)) else r for r in d["acceptance"]]
                   if isinstance(d["acceptance"], (list, tuple)) else d["acceptance"],
                   meta=dict(d.get("meta") or {}),
                   overhead_ms=d.get("overhead_ms") if d.get("overhead_ms") is not None else {})

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"profile: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(data)

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.write("\n")

    @classmethod
    def load(cls, path) -> "Profile":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"profile: cannot read {path} ({e.strerror})") from None
        return cls.from_json(text)


def _plain(overhead: dict) -> dict:
    out = {}
    if "draft_token" in overhead:
        out["draft_token"] = float(overhead["draft_token"])
    if "verify" in overhead:
        out["verify"] = [float(x) for x in overhead["verify"]]
    return out


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------------------------
# measuring a profile on real models
# --------------------------------------------------------------------------------------------
ProgressFn = Callable[[int, int, str], None]     # (done, total, what) -> None


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with a transformers tokenizer (or a raw ``tokenizers.Tokenizer``)."""
    if callable(tokenizer):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer.encode(text).ids)


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


def measure_costs(levels, context: list[int], *, max_n: int, repeats: int, warmup: int, seed: int = 0,
                  progress: ProgressFn | None = None) -> dict[str, list[float]]:
    """cost_ms[name][n-1]: median wall ms of ``LevelModel.probs_after(context + n new tokens, n)``
    with the cache warm on ``context`` — exactly the call the engine makes to verify a block of
    n-1 drafts (n = 1: one drafting step).  The cache crop back to ``context`` is included, as in
    the engine.  Every round times every (model, n) once in a fresh random order, so slow drifts and
    model-switch effects hit all of them alike; the first ``warmup`` rounds are discarded."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    vocab = levels[0].vocab_size
    samples = {lm.name: [[] for _ in range(max_n)] for lm in levels}
    for lm in levels:
        lm.reset()
        lm.logits_after(context, 1)                                              # warm cache
    total, done = (warmup + repeats) * len(levels) * max_n, 0
    jobs = [(lm, n) for lm in levels for n in range(1, max_n + 1)]
    for r in range(warmup + repeats):
        # a fresh random order every round: no (model, n) always runs right after a model switch
        order = torch.randperm(len(jobs), generator=generator).tolist()
        for lm, n in (jobs[i] for i in order):
            new = torch.randint(vocab, (n,), generator=generator).tolist()
            if len(lm.cached_ids) > len(context) and new[0] == lm.cached_ids[len(context)]:
                new[0] = (new[0] + 1) % vocab                                # force the crop
            t0 = time.perf_counter()
            lm.probs_after(context + new, n)
            ms = (time.perf_counter() - t0) * 1000.0
            if r >= warmup:
                samples[lm.name][n - 1].append(ms)
            done += 1
        if progress:
            progress(done, total, "timing forwards")
    return {name: [statistics.median(s) for s in per_n] for name, per_n in samples.items()}


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


def measure_profile(family, *, max_n: int = 17, repeats: int = 15, warmup: int = 3,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    prompts: Sequence[str] = DEFAULT_PROMPTS, contexts: Sequence[Sequence[int]] | None = None,
                    context_tokens: int = 64, seed: int = 0, rule: str | None = "hsd",
                    progress: ProgressFn | None = None) -> Profile:
    """Measure a ``Profile`` of ``family`` (a ``hsd.models.LoadedFamily``) on this machine.

    1) contexts: the target samples ``context_tokens`` tokens after each prompt at the serving
       settings (or use ``contexts``, ready token-id sequences; α is then measured on all but
       their first token);
    2) acceptance: α[i][j] = E_ctx[Σ_v min(p_i, p_j)] over those positions;
    3) overheads (unless ``rule`` is None): sampling per draft token and the verification
       ``rule``'s time per block length, which the engine spends outside the forward passes;
    4) costs: forward over n = 1..max_n new tokens with a warm cache on the longest context,
       median of ``repeats`` after ``warmup`` discarded rounds.
    """
    import torch
    from hsd.lm import LevelModel, SamplingSettings

    if not isinstance(max_n, int) or max_n < 2:
        raise ConfigError(f"profile: max-n must be a whole number ≥ 2, got {max_n!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"profile: repeats must be a whole number ≥ 1, got {repeats!r}")
    settings = SamplingSettings(temperature, top_k, top_p)
    names = list(family.names)
    levels = [LevelModel(m, name=n, vocab_size=family.vocab_size, settings=settings)
              for m, n in zip(family.models, names)]
    # 1) contexts produced by the target at the serving temperature
    if contexts is not None:
        ctxs = [(list(c), 1) for c in contexts if len(c) >= 2]
    else:
        eos = getattr(family.tokenizer, "eos_token_id", None)
        # keep prompt + sampled context + the longest timed block inside every model's window
        windows = [int(getattr(m.config, "max_position_embeddings", 0) or 0) for m in family.models]
        room = min([w for w in windows if w] or [10 ** 9]) - context_tokens - max_n
        if room < 1:
            raise ConfigError(f"profile: context tokens ({context_tokens}) + max-n ({max_n}) do not fit "
                              f"the models' {min(w for w in windows if w)}-token window")
        prompt_ids = [encode_prompt(family.tokenizer, p)[-room:] for p in prompts]
        prompt_ids = [p for p in prompt_ids if p]
        if not prompt_ids:
            raise ConfigError("profile: every prompt encodes to zero tokens")
        if progress:
            progress(0, 1, f"sampling {len(prompt_ids)} contexts from {names[-1]}")
        ctxs = sample_contexts(levels[-1], prompt_ids, context_tokens, seed=seed, eos_token_id=eos)
    if not ctxs:
        raise ConfigError("profile: no usable contexts (each needs at least 2 tokens)")
    # 2) acceptance
    if progress:
        progress(0, 1, "measuring acceptance")
    acceptance, positions = measure_acceptance(levels, ctxs)
    # 3) engine overheads outside the forwards (sampling, the verification rule)
    overhead = {}
    if rule is not None:
        if progress:
            progress(0, 1, f"timing the '{rule}' rule")
        ctx = max(ctxs, key=lambda c: len(c[0]) - c[1])
        overhead = measure_overheads(levels[0], levels[-1], ctx, rule=rule, max_gamma=max_n - 1,
                                     repeats=repeats, seed=seed)
    # 4) costs on the longest context (cache length like a real decode)
    timing_ctx = max((c for c, _ in ctxs), key=len)
    cost_ms = measure_costs(levels, timing_ctx, max_n=max_n, repeats=repeats, warmup=warmup,
                            seed=seed, progress=progress)
    device = str(getattr(family, "device", levels[0].device))
    meta = {"device": device, "torch_threads": torch.get_num_threads(), "temperature": float(temperature),
            "top_k": int(top_k), "top_p": float(top_p), "max_n": max_n, "repeats": repeats,
            "warmup": warmup, "contexts": len(ctxs), "acceptance_positions": positions,
            "timing_context_tokens": len(timing_ctx), "seed": seed,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cost": "LevelModel.probs_after over n new tokens, warm cache, median wall ms",
            "acceptance": "mean over target-sampled positions of sum_v min(p_i, p_j)",
            "rule": rule}
    return Profile(models=names, cost_ms=cost_ms, acceptance=acceptance, meta=meta, overhead_ms=overhead)


# --------------------------------------------------------------------------------------------
# CLI: python -m hsd profile --family bundled --out profile.json
# --------------------------------------------------------------------------------------------
def _progress_bar(stream=sys.stderr, width: int = 30) -> ProgressFn:
    def show(done: int, total: int, what: str) -> None:
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width)
        stream.write(f"\r[{bar:<{width}}] {100 * frac:5.1f}%  {what:<40}")
        if done >= total and total > 1:
            stream.write("\n")
        stream.flush()
    return show


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("profile", help="measure forward costs and pairwise acceptance of a family",
                              description="Measure a latency profile (cost by block length, pairwise "
                                          "acceptance) of a model family on this machine.")
    p.add_argument("--family", default="bundled", help="family to profile (default: bundled)")
    p.add_argument("--out", required=True, help="where to write the profile JSON")
    p.add_argument("--max-n", type=int, default=17, help="longest forward timed, in new tokens (default 17)")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per (model, n) (default 15)")
    p.add_argument("--temperature", type=float, default=1.0, help="serving temperature (default 1.0)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--context-tokens", type=int, default=64,
                   help="tokens the target samples per prompt for the acceptance contexts (default 64)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--rule", default="hsd",
                   help="verification rule whose time per block is measured as overhead (default hsd; "
                        "'none' for the pure forward-cost model)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from hsd.models import load_family

    if args.threads:
        torch.set_num_threads(args.threads)
    family = load_family(args.family, device=args.device)
    profile = measure_profile(family, max_n=args.max_n, repeats=args.repeats, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, context_tokens=args.context_tokens,
                              seed=args.seed, rule=None if args.rule == "none" else args.rule,
                              progress=_progress_bar())
    profile.meta["family"] = args.family
    profile.save(args.out)
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
    return 0
