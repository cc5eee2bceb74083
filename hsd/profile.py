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

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "models": list(self.models),
                "cost_ms": {m: [float(c) for c in self.cost_ms[m]] for m in self.models},
                "acceptance": [[float(a) for a in row] for row in self.acceptance],
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
                   meta=dict(d.get("meta") or {}))

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


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
