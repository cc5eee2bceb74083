"""A hardware profile of a model family: forward cost by block length, and pairwise acceptance.

``Profile`` is plain data (JSON-serialisable; docs/design.md §4):

- ``models``: names, smallest first, the last is the target;
- ``cost_ms[name][n-1]``: wall-clock ms of one forward over ``n`` new tokens with a warm cache,
  n = 1..N (median of repeats, warm-up excluded), measured through ``hsd.lm.LevelModel`` exactly
  as the engine calls it (forward + logits processing, cache crop included);
- ``acceptance[i][j]``: α of drafter i under verifier j, the mean over positions of
  ``Σ_v min(p_i(v), p_j(v))`` on contexts the TARGET sampled at the serving temperature (one
  forward of each model over each whole context gives every row at once).  The quantity is
  symmetric, so the matrix is stored symmetric with a unit diagonal;
- ``accept_lengths[i][j]`` (optional): what a verification really keeps.  For γ = 1..B, the
  distribution of the tokens one verification of a γ-token block of drafter i by verifier j
  outputs, ``[P(O = 1), …, P(O = γ+1)]`` (accepted drafts + the replacement/bonus token), under
  the profile's rule, from blocks the drafter sampled after contexts the target sampled (the
  rule's exact row weights averaged over blocks).  Acceptance rises along a block and an n-gram
  drafter is bursty, which one α per pair cannot say.  ``None`` where not measured (and below the
  diagonal);
- ``first_call_ms[name]`` (optional): how much more a one-token call costs when it comes right
  after another model's call (caches cold) than the next drafting step does; ``cost_ms[name][0]``
  is then the steady drafting step.  A draft level pays it once per call (``hsd.plan.latency``);
- ``meta``: how it was measured (device, temperature, context length, repeats, torch threads).

Which acceptance model the latency model reads (``acceptance_model``, chosen at run time, not
stored): ``"position"`` uses ``accept_lengths`` where a pair has them (beyond the measured B, the
conditional acceptance of the last measured position continues), ``"iid"`` treats every draft
token as accepted independently with the pair's α, the model of docs/design.md §4.

Plain Python only: measuring one on real models is ``hsd.tools.measure.measure_profile`` (the
torch half), which the CLI command ``hsd profile`` wraps.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace

from hsd.errors import ConfigError

FORMAT = "hsd-profile/1"
ACCEPTANCE_MODELS = ("position", "iid")
ENGINE_TERMS = ("step", "round", "token")   # overhead_ms keys fitted to real decodes (hsd.tools.measure)
SUM_TOLERANCE = 1e-6

@dataclass
class Profile:
    models: list[str]
    cost_ms: dict[str, list[float]]
    acceptance: list[list[float]]
    meta: dict = field(default_factory=dict)
    # optional engine overhead outside the forward passes (absent = 0, the pure model of docs/design.md §4):
    #   "draft_token": ms per sampled draft token (sampling from the row)
    #   "verify": ms per verification by block length γ = 1..N (the rule + stacking draft rows)
    #   "step", "round", "token": the engine's own time per drafting step, per verification (any
    #   level) and per committed token, fitted to real decodes' wall clock beyond the above
    overhead_ms: dict = field(default_factory=dict)
    accept_lengths: list | None = None
    first_call_ms: dict = field(default_factory=dict)
    acceptance_model: str = "position"          # run-time choice, not stored (see the module doc)

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
        if self.acceptance_model not in ACCEPTANCE_MODELS:
            raise ConfigError(f"acceptance model must be one of {', '.join(ACCEPTANCE_MODELS)}, "
                              f"got {self.acceptance_model!r}")
        self._validate_accept_lengths()
        first = self.first_call_ms
        if not isinstance(first, dict) or set(first) - set(models) or any(
                not _finite_number(x) or x < 0 for x in first.values()):
            raise ConfigError("profile: 'first_call_ms' must map model names to finite ms ≥ 0")
        over = self.overhead_ms
        if not isinstance(over, dict) or set(over) - {"draft_token", "verify", *ENGINE_TERMS}:
            raise ConfigError("profile: 'overhead_ms' may only hold 'draft_token' (ms), 'verify' (ms by block "
                              "length) and the engine's 'step', 'round' and 'token' (ms)")
        for key in ("draft_token", *ENGINE_TERMS):
            d = over.get(key, 0.0)
            if not _finite_number(d) or d < 0:
                raise ConfigError(f"profile: overhead_ms[{key!r}] must be a finite number ≥ 0, got {d!r}")
        v = over.get("verify", [0.0])
        if (not isinstance(v, (list, tuple)) or not v
                or any(not _finite_number(x) or x < 0 for x in v)):
            raise ConfigError("profile: overhead_ms['verify'] must be a non-empty list of finite ms ≥ 0")

    def _validate_accept_lengths(self) -> None:
        lengths, n = self.accept_lengths, len(self.models)
        if lengths is None:
            return
        if (not isinstance(lengths, (list, tuple)) or len(lengths) != n
                or any(not isinstance(row, (list, tuple)) or len(row) != n for row in lengths)):
            raise ConfigError(f"profile: 'accept_lengths' must be a {n}×{n} matrix (null where not measured)")
        for i in range(n):
            for j in range(n):
                curves = lengths[i][j]
                if curves is None:
                    continue
                pair = f"accept_lengths[{i}][{j}] ({self.models[i]} under {self.models[j]})"
                if i >= j:
                    raise ConfigError(f"profile: {pair} must be null: only a smaller model drafts for a larger one")
                if not isinstance(curves, (list, tuple)) or not curves:
                    raise ConfigError(f"profile: {pair} must list one distribution per block length 1..B")
                for gamma, dist in enumerate(curves, start=1):
                    if (not isinstance(dist, (list, tuple)) or len(dist) != gamma + 1
                            or any(not _finite_number(x) or x < 0 for x in dist)):
                        raise ConfigError(f"profile: {pair} for block {gamma} must hold {gamma + 1} "
                                          f"probabilities ≥ 0 (P(O = 1..{gamma + 1}))")
                    if abs(math.fsum(dist) - 1.0) > SUM_TOLERANCE:
                        raise ConfigError(f"profile: {pair} for block {gamma} sums to {math.fsum(dist):.6g}, not 1")

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

    @property
    def uses_positions(self) -> bool:
        """True when the latency model reads measured acceptance by position (some pair has it)."""
        return self.acceptance_model == "position" and self.accept_lengths is not None and any(
            c is not None for row in self.accept_lengths for c in row)

    @property
    def acceptance_label(self) -> str:
        """What the model-predicted numbers assume, in words (for tables and panels)."""
        if self.uses_positions:
            return "acceptance measured by position in the block"
        return "i.i.d. acceptance (one α per pair)"

    def with_acceptance_model(self, model: str) -> "Profile":
        """This profile read with acceptance model ``model`` ("position" or "iid")."""
        return replace(self, acceptance_model=model)

    def output_distribution(self, drafter: int, verifier: int, gamma: int) -> list[float]:
        """[P(O = 1), …, P(O = γ+1)]: tokens out of one verification of γ drafts of ``drafter`` by
        ``verifier``, under this profile's acceptance model (see the module docstring)."""
        curves = self.accept_lengths[drafter][verifier] if self.uses_positions else None
        if curves is None:
            alpha = self.alpha(drafter, verifier)
            return [alpha ** k * (1.0 - alpha) for k in range(gamma)] + [alpha ** gamma]
        if gamma <= len(curves):
            return [float(x) for x in curves[gamma - 1]]
        return _extended(curves[-1], gamma)

    def first_call(self, model: int) -> float:
        """ms a draft level's call pays once beyond its steady drafting steps (0 when not measured)."""
        return float(self.first_call_ms.get(self.models[model], 0.0))

    def draft_overhead_ms(self) -> float:
        """Engine time per sampled draft token beyond the forward pass: sampling, plus the engine's
        fitted time per drafting step (0 when not measured)."""
        return float(self.overhead_ms.get("draft_token", 0.0)) + float(self.overhead_ms.get("step", 0.0))

    def verify_overhead_ms(self, gamma: int) -> float:
        """Engine time per verification of γ drafts beyond the forward pass: the rule (linear
        extrapolation past the measured block lengths, as for costs), plus the engine's fitted time
        per verification (0 when not measured)."""
        from hsd.plan.latency import cost_at
        v = self.overhead_ms.get("verify")
        return (cost_at(v, gamma) if v else 0.0) + float(self.overhead_ms.get("round", 0.0))

    def token_overhead_ms(self) -> float:
        """The engine's fitted time per committed token (0 when not measured)."""
        return float(self.overhead_ms.get("token", 0.0))

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
        lengths = None if self.accept_lengths is None else [list(row) for row in self.accept_lengths]
        for (a, b), _ in acceptance.items():            # a what-if α: that pair is read i.i.d.
            if lengths is not None:
                i, j = sorted((index[a], index[b]))
                lengths[i][j] = None
        first = {m: x * cost_scale.get(m, 1.0) for m, x in self.first_call_ms.items()}
        return Profile(models=list(self.models), cost_ms=cost, acceptance=acc, meta=meta,
                       overhead_ms=dict(self.overhead_ms), accept_lengths=lengths, first_call_ms=first,
                       acceptance_model=self.acceptance_model)

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "models": list(self.models),
                "cost_ms": {m: [float(c) for c in self.cost_ms[m]] for m in self.models},
                "acceptance": [[float(a) for a in row] for row in self.acceptance],
                "overhead_ms": _plain(self.overhead_ms),
                **({"first_call_ms": {m: float(x) for m, x in self.first_call_ms.items()}} if self.first_call_ms else {}),
                **({} if self.accept_lengths is None else {"accept_lengths": [
                    [None if c is None else [[float(x) for x in d] for d in c] for c in row]
                    for row in self.accept_lengths]}),
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
                   overhead_ms=d.get("overhead_ms") if d.get("overhead_ms") is not None else {},
                   accept_lengths=d.get("accept_lengths"),
                   first_call_ms=d.get("first_call_ms") if d.get("first_call_ms") is not None else {})

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
        except UnicodeDecodeError:
            raise ConfigError(f"profile: {os.path.basename(str(path))} is not a text file (a profile is UTF-8 JSON written "
                              "by `hsd profile` or the Optimise tab's download)") from None
        return cls.from_json(text)


def _extended(last: list[float], gamma: int) -> list[float]:
    """A block longer than the measured B: the conditional acceptances a_t = P(O > t | O > t-1)
    of the longest measured block, the last of them repeated for positions past B."""
    survive, cond = 1.0, []
    for t in range(1, len(last)):                   # P(O > t) for t = 1..B
        above = max(0.0, survive - last[t - 1])
        cond.append(above / survive if survive > 0 else 0.0)
        survive = above
    cond += [cond[-1]] * (gamma - len(cond))
    return law_from_conditional(cond[:gamma])


def law_from_conditional(cond) -> list[float]:
    """[P(O = 1..γ+1)] of one verification from conditional acceptances a_1..a_γ
    (a_t = P(position t kept | positions < t kept)): P(O = k+1) = a_1…a_k (1 - a_{k+1})."""
    out, reach = [], 1.0
    for a in cond:
        out.append(reach * (1.0 - a))
        reach *= a
    return out + [reach]


def _plain(overhead: dict) -> dict:
    out = {}
    if "draft_token" in overhead:
        out["draft_token"] = float(overhead["draft_token"])
    if "verify" in overhead:
        out["verify"] = [float(x) for x in overhead["verify"]]
    for key in ENGINE_TERMS:
        if key in overhead:
            out[key] = float(overhead[key])
    return out


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
