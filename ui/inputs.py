"""Turning raw UI/API values into engine requests: ``make_request`` validates widget values (or
whatever an API client sent: null, text for a number, NaN ...) into a frozen ``Request``, or raises
an ``hsd.errors.HSDError`` whose message is one sentence.  ``compare_requests`` turns the Compare
tab's choices into one request per contender (``hsd.plan.contenders``, the one picker).

No gradio here: the tabs show these sentences as ``gr.Error``/``gr.Warning``.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, replace
from typing import Sequence

from hsd.errors import ConfigError, ModelLoadError, PromptError
from hsd.verify import RULES
from ui.registry import Families, decode_kind

LOSSY_LABEL = "hsd-uncapped (LOSSY)"
RULE_LABELS = {name: (LOSSY_LABEL if not r.lossless else name) for name, r in RULES.items()}
LABEL_TO_RULE = {v: k for k, v in RULE_LABELS.items()}
# the Compare tab's contenders, and the role of hsd.plan.contenders each one is
CONTENDERS = ("autoregressive (target alone)", "best single draft", "optimal (optimiser)", "yours (Generate tab)")
CONTENDER_ROLES = {CONTENDERS[0]: "autoregressive", CONTENDERS[1]: "best single draft", CONTENDERS[2]: "optimum"}


@dataclass(frozen=True)
class Request:
    """One validated decode: a stack of a family's models and the sampling settings."""

    prompt: str
    family: str
    chain: tuple[int, ...]
    buffers: tuple[int, ...]
    rules: tuple[str, ...]
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    max_new_tokens: int = 64
    forward: str = "auto"           # the app's HSD_FORWARD (not a per-request choice)

    def with_stack(self, chain, buffers, rules=None) -> "Request":
        """The same request on another stack (one rule for every level unless ``rules``)."""
        rule = self.rules[-1] if self.rules else "hsd"
        rules = tuple(rules) if rules is not None else (rule,) * (len(chain) - 1)
        return replace(self, chain=tuple(chain), buffers=tuple(buffers), rules=rules)

    def meta(self, level_names: Sequence[str]) -> dict:
        """What a saved trace records about how it was made (``meta.request``)."""
        return {"prompt": self.prompt, "family": self.family, "chain": list(self.chain),
                "names": list(level_names), "buffers": list(self.buffers), "rules": list(self.rules),
                "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed,
                "max_new_tokens": self.max_new_tokens}


def whole(value, what: str, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    if not lo <= int(f) <= hi:
        raise ConfigError(f"{what} must be between {lo} and {hi}, got {int(f)}")
    return int(f)


def number(value, what: str, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f) or f > hi or f < lo or (lo_open and f == lo):
        span = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ConfigError(f"{what} must be a number in {span}, got {value!r}")
    return f


def check_prompt(prompt, max_chars: int) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("The prompt is empty: type some text to continue.")
    if len(prompt) > max_chars:
        raise PromptError(f"The prompt is {len(prompt)} characters; this app accepts at most {max_chars}.")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in prompt):
        raise PromptError("The prompt contains invalid Unicode (unpaired surrogate characters); paste it as plain text.")
    bad = [c for c in prompt if unicodedata.category(c) == "Cc" and c not in "\n\t\r"]
    if bad:
        raise PromptError(f"The prompt contains control characters such as U+{ord(bad[0]):04X}; remove them.")
    return prompt


def chain_of(models, names: list[str]) -> list[int]:
    """Model names/indices -> sorted distinct indices ending with the target."""
    if models is None:
        raise ConfigError("The stack is empty (null): send a list of model names, [] for the target alone.")
    if isinstance(models, str):
        models = [m for m in models.split(",") if m.strip()]
    elif isinstance(models, (int, float)) and not isinstance(models, bool):
        models = [models]                                         # one index
    elif not isinstance(models, (list, tuple)):
        raise ConfigError("The stack must be a list of model names from this family, [] for the target alone.")
    picked = set()
    for m in models:
        if isinstance(m, (int, float)) and not isinstance(m, bool) and float(m).is_integer() and 0 <= int(m) < len(names):
            picked.add(int(m))
        elif str(m).strip() in names:
            picked.add(names.index(str(m).strip()))
        else:
            raise ConfigError(f"{m!r} is not a model of this family; choose from {', '.join(names)}.")
    picked.add(len(names) - 1)                                    # the target is always in
    return sorted(picked)


def _listed(values) -> list:
    """A widget value, an API list, one number or one comma-separated string -> a list."""
    if isinstance(values, str):
        return [v for v in values.split(",") if v.strip()]
    if isinstance(values, (int, float)):
        return [values]
    if values is not None and not isinstance(values, (list, tuple)):
        raise ConfigError("The buffers must be a list of whole numbers, one per draft level.")
    values = list(values or [])
    if len(values) == 1 and isinstance(values[0], str):        # ["2,3"] from a text box
        return [v for v in values[0].split(",") if v.strip()]
    return values


def _rules(rules, k: int) -> tuple[str, ...]:
    if rules is not None and not isinstance(rules, (str, list, tuple)):
        raise ConfigError(f"The verification rules must be a rule name or a list of them, one per draft level; "
                          f"choose from {', '.join(RULES)}.")
    names = [r.strip() for r in rules.split(",") if r.strip()] if isinstance(rules, str) else list(rules or [])
    names = names or ["hsd"]
    names = names * k if len(names) == 1 else names
    if len(names) < k:
        raise ConfigError(f"{k + 1} stacked models need {k} verification rule(s); got {len(names)}.")
    out = []
    for r in names[:k]:
        r = LABEL_TO_RULE.get(str(r).strip(), str(r).strip())
        if r not in RULES:
            raise ConfigError(f"Unknown verification rule {r!r}; choose one of {', '.join(RULES)}.")
        out.append(r)
    return tuple(out)


def make_request(families: Families, prompt, family, models, buffers, rules, temperature=1.0, top_p=1.0,
                 top_k=0, seed=0, max_new_tokens=64) -> Request:
    """Validate widget/API values into a ``Request``; raise an ``HSDError`` (one sentence) if not.

    ``models``: names (or indices) of the family's members to stack; the target is always added.
    ``buffers``/``rules``: one per draft level (extra entries are ignored, missing ones refused);
    ``rules`` may also be one name for every level.  Rule labels like 'hsd-uncapped (LOSSY)' work."""
    lim = families.limits
    prompt = check_prompt(prompt, lim.max_prompt_chars)
    spec = families.check_allowed(family)
    names = families.names(spec)
    if not names:
        raise ModelLoadError(f"The model family {spec!r} could not be found; use the bundled family or local model folders.")
    chosen = chain_of(models, names)
    if len(chosen) > lim.max_levels:
        raise ConfigError(f"At most {lim.max_levels} models can be stacked here; you picked {len(chosen)}.")
    k = len(chosen) - 1
    bufs = _listed(buffers)
    if len(bufs) < k:
        raise ConfigError(f"{k + 1} stacked models need {k} buffer size(s), one per draft level; got {len(bufs)}.")
    return Request(
        prompt=prompt, family=spec, chain=tuple(chosen),
        buffers=tuple(whole(b, f"the buffer of level {i}", 1, lim.max_buffer) for i, b in enumerate(bufs[:k])),
        rules=_rules(rules, k),
        temperature=number(temperature, "Temperature", 0.0, 10.0),
        top_p=number(top_p, "Top-p", 0.0, 1.0, lo_open=True),
        top_k=whole(top_k, "Top-k", 0, 1_000_000),
        seed=whole(seed, "The seed", 0, 2**63 - 1),
        max_new_tokens=whole(max_new_tokens, "Max new tokens", 1, lim.max_new_tokens), forward=lim.forward)


@dataclass(frozen=True)
class ComparedRun:
    label: str                          # one of CONTENDERS
    request: Request
    predicted_ms_per_token: float | None    # model-predicted (None without a profile)


def compare_requests(families: Families, req: Request, names, chosen: Sequence[str]) -> tuple[list[ComparedRun], list[str]]:
    """One request per chosen contender, in ``CONTENDERS`` order, and the sentences saying which
    were skipped and why (no profile; more levels than allowed).  Each prediction is for a decode
    of the request's length (``hsd.plan.latency.horizon_counts``: the last blocks cut to the
    budget, as the engine runs them); the contenders are the long-run optimiser's."""
    from hsd.plan.contenders import pick_contenders
    from hsd.plan.latency import expected_ms_per_token_at

    kind = decode_kind(req.temperature)
    prof = families.profile(req.family, names, kind)
    plans = {}
    if prof is not None:
        optimum = families.plan(req.family, names, kind=kind)
        roles = [CONTENDER_ROLES[c] for c in CONTENDERS if c in chosen and c in CONTENDER_ROLES]
        picked = pick_contenders(prof, families.limits.max_buffer, roles=roles, distinct=False, optimum=optimum)
        plans = {c.role: c.plan for c in picked}
    runs, skipped = [], []

    def predict(chain, buffers):
        return expected_ms_per_token_at(prof, list(chain), list(buffers), req.max_new_tokens) if prof else None

    for label in (c for c in CONTENDERS if c in chosen):
        role = CONTENDER_ROLES.get(label)
        if role is None:                                        # yours: the Generate tab's stack
            runs.append(ComparedRun(label, req, predict(req.chain, req.buffers)))
        elif role == "autoregressive":
            runs.append(ComparedRun(label, req.with_stack([len(names) - 1], []), predict([len(names) - 1], [])))
        elif prof is None:
            skipped.append(f"'{label}' needs a profile of this family (Optimise tab); skipped.")
        elif len(plans[role].chain) > families.limits.max_levels:
            skipped.append(f"'{label}' stacks more models than allowed here; skipped.")
        else:
            plan = plans[role]
            runs.append(ComparedRun(label, req.with_stack(plan.chain, plan.buffers), predict(plan.chain, plan.buffers)))
    if not runs:
        raise ConfigError("Pick at least one hierarchy to compare.")
    return runs, skipped
