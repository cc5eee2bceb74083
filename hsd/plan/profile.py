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

Plain Python only: measuring one on real models is ``hsd.tools.measure.measure_profile`` (the
torch half), which the CLI command ``hsd profile`` wraps.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from hsd.errors import ConfigError

FORMAT = "hsd-profile/1"

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
        from hsd.plan.latency import cost_at
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
