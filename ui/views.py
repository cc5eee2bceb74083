"""What the tabs draw from a trace, a plan or a profile: the ``visual`` figures with the app's
context (which family's tokenizer spells the tokens, which plan the optimiser made).  No
models except a tokenizer for token texts; no gradio."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import visual
from hsd.errors import HSDError
from hsd.trace import Trace
from ui.registry import Families, decode_kind, prediction_note, profile_label
from ui.inputs import Request

PLACEHOLDER = "Run a generation to see this panel."


def decoder_for(families: Families, spec: str):
    """id -> token text, for the mass-balance panel (None when the family cannot be loaded)."""
    try:
        tok = families.load(spec).tokenizer
    except HSDError:
        return None
    return lambda i: tok.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def verifications(trace: Trace, level: int | None = None) -> list:
    """The verifications by ``level`` (default: the target's)."""
    vs = trace.of_kind("verified")
    if level is None:
        start = trace.started
        level = len(start.models) - 1 if start else max((v.level for v in vs), default=0)
    return [v for v in vs if v.level == level]


def figure_mass_for(trace: Trace, level: int | None, index: int | None, id_to_text, dark: bool):
    """The mass-balance panel of verification ``index`` by ``level`` (default: the latest)."""
    vs = verifications(trace, level)
    if not vs:
        who = "this level" if level is not None else "the target"
        return visual.figure_empty(f"No verification by {who} in this run (autoregressive decoding, "
                                   "or choose another level).", dark=dark)
    i = len(vs) - 1 if index is None or index < 0 or index >= len(vs) else int(index)
    return visual.figure_mass_balance(vs[i], id_to_text=id_to_text, dark=dark)


def level_choices(names: Sequence[str]) -> list[tuple[str, int]]:
    """(label, level) for the verifier-level dropdown."""
    k = len(names) - 1
    return [(f"L{j} {names[j]} checks L{j - 1}" + (" (target)" if j == k else ""), j) for j in range(1, k + 1)]


def gsp_figure(families: Families, spec: str, names, current, kind: str | None, dark: bool):
    """The optimiser's graph of the family's profile of ``kind`` with the user's hierarchy
    ``current`` = (chain, buffers) marked (a message without a profile)."""
    plan = families.plan(spec, names, kind=kind) if names else None
    if plan is None:
        return visual.figure_empty("Optimiser graph: no profile of this family yet.<br>"
                                   "Open the Optimise tab and press Optimise.", dark=dark)
    return visual.figure_gsp(plan, current=current, dark=dark)


@dataclass(frozen=True)
class Prediction:
    """The model-predicted speedup of a request's hierarchy over the target alone, the profile it
    was predicted from, and a sentence when that profile's sampling settings differ."""

    speedup: float
    profile: str                    # registry.profile_label
    note: str | None = None         # registry.prediction_note


def prediction(families: Families, req: Request, names) -> Prediction | None:
    """``req``'s hierarchy predicted from the family's profile of the decode's kind (greedy or
    sampled; another one, with a note, when the family has none of that kind); None without a
    profile."""
    from hsd.plan.optimize import plan_for

    prof = families.profile(req.family, names, decode_kind(req.temperature))
    if prof is None:
        return None
    try:
        speedup = plan_for(prof, list(req.chain), list(req.buffers)).speedup_vs_ar
    except HSDError:
        return None
    return Prediction(speedup, profile_label(prof), prediction_note(prof, req.temperature, req.top_k, req.top_p))


def alpha_headers(names) -> list[str]:
    return ["drafter ↓ · verifier →"] + list(names)


def alpha_rows(profile, names) -> list[list]:
    """The profile's α matrix as table rows, the drafter's name first ("" without a profile)."""
    n = len(names)
    return [[names[i]] + [round(float(profile.alpha(i, j)), 4) if profile is not None and i != j else
                          (1.0 if i == j else "") for j in range(n)] for i in range(n)]


def alpha_table(names, matrix) -> dict[tuple[int, int], float]:
    """{(i, j): α} read above the diagonal of an α table (``alpha_rows``' layout: the drafter's
    name first); a ConfigError naming the first cell that is not a number from 0 to 1."""
    from hsd.errors import ConfigError

    if isinstance(matrix, dict):                 # the table as the page sends it: {"headers", "data"}
        matrix = matrix.get("data")
    if matrix is not None and not isinstance(matrix, (list, tuple)):
        raise ConfigError(f"the acceptance table must have {len(names)} rows of {len(names)} values, one per model")
    rows = [list(r) if isinstance(r, (list, tuple)) else [] for r in matrix] if matrix is not None else []
    if len(rows) != len(names) or any(len(r) != len(names) + 1 for r in rows):
        raise ConfigError(f"the acceptance table must have {len(names)} rows of {len(names)} values, one per model")
    out = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            cell = rows[i][j + 1]
            try:
                a = float(cell)
            except (TypeError, ValueError):
                a = float("nan")
            if not 0.0 <= a <= 1.0:
                raise ConfigError(f"the acceptance α({names[i]}, {names[j]}) must be a number from 0 to 1, got {cell!r}")
            out[i, j] = a
    return out
