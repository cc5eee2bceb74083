"""The one cache of the app: model families by spec, their profiles and optimiser plans, the
example prompts and the canned example traces.

Models load lazily, once per process (``hsd.models.load_family`` caches them), one load at a
time, and are shared read-only by every session; profiles (measurements of this machine) and the
plans derived from them are shared the same way.  Nothing is loaded at import, and no gradio here.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Sequence

from hsd.errors import ConfigError, HSDError, ModelLoadError
from ui.settings import EXAMPLES_DIR, PROMPTS_FILE, SHIPPED_PROFILES, Limits

_LOAD_LOCK = threading.Lock()
FALLBACK_PROMPTS = [
    ("function header", "def parse_args(argv):\n"),
    ("class + docstring", "class LRUCache:\n    \"\"\"A small least-recently-used cache.\"\"\"\n\n    def __init__(self, size):\n"),
    ("imports", "import os\nimport sys\n\n\ndef main():\n"),
    ("error handling", "    try:\n        with open(path, 'rb') as f:\n"),
]


def import_engine() -> None:
    """Import the engine and transformers' auto classes in the calling thread.  transformers'
    lazy module is not safe to import from two threads at once (a request thread and the preload
    thread once raised "cannot import name 'LogitsProcessorList' from 'transformers'"): the app
    calls this in its main thread before any other thread starts."""
    import hsd.engine  # noqa: F401  (imported for its side effect: the modules load here)
    import hsd.models  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401


def load_models(spec: str):
    """``hsd.models.load_family`` (cached per process), one load at a time: the preload thread
    and a first request must not load the same weights twice."""
    import_engine()
    from hsd.models import load_family

    with _LOAD_LOCK:
        return load_family(spec)


class Families:
    """Model families by spec: names without loading (for the widgets), models loaded lazily,
    profiles and optimiser plans (see the module docstring)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._profiles: dict[str, object] = {}        # measured here or uploaded, by spec
        self._shipped: dict[str, list] = {}           # the shipped profiles, by normalised spec
        self._plans: dict[tuple, object] = {}

    # -- which families a user may pick ----------------------------------------------------
    def choices(self) -> list[str]:
        from hsd.models import PRESETS

        extra = [p for p in PRESETS if p != "bundled"] if self.limits.allow_custom_models else []
        own = [self.limits.family, self.with_ngram()]
        return own + [p for p in extra if p not in own]

    def labelled_choices(self) -> list[tuple[str, str]]:
        """(label, spec) for the family picker: a family that cannot load here (its weights are not
        on this machine and the Hub is offline) says so before it is picked."""
        out = []
        for spec in self.choices():
            reason = self.unavailable(spec)
            out.append((f"{spec} (not available here: needs the Hugging Face Hub)" if reason else spec, spec))
        return out

    def unavailable(self, spec: str) -> str | None:
        """Why ``spec`` cannot load on this machine (one sentence), without loading anything; None
        when every model is a local folder, in the local Hub cache, or the Hub is reachable."""
        from hsd.models import unavailable_reason

        return unavailable_reason(spec)

    def room(self, spec: str, prompt: str, limit: int) -> tuple[int, str]:
        """(the most new tokens a decode of ``prompt`` may ask for, why): ``limit``, or less when
        the family's context (its shortest) leaves less after the prompt (at least 1)."""
        prompt_tokens, context = self._context(spec, prompt)
        if context and context - prompt_tokens <= int(limit):
            left = max(1, context - prompt_tokens)
            return left, (f"this prompt is {prompt_tokens} tokens and the models read at most {context}, "
                          f"so at most {left} new tokens fit")
        return max(1, int(limit)), f"this app allows at most {max(1, int(limit))}"

    def room_for(self, spec: str, prompt: str, limit: int) -> int:
        """``room``'s number alone."""
        return self.room(spec, prompt, limit)[0]

    def _context(self, spec: str, prompt: str) -> tuple[int, int]:
        """(the prompt's length in tokens, the family's context in tokens; 0 = unbounded)."""
        from hsd.tools.measure import encode_prompt

        family = self.load(spec)
        ids = encode_prompt(family.tokenizer, prompt or "") if isinstance(prompt, str) else []
        lengths = [int(getattr(getattr(m, "config", None), "max_position_embeddings", 0) or 0) for m in family.models]
        lengths = [n for n in lengths if n > 0]
        return len(ids), min(lengths, default=0)

    def with_ngram(self) -> str:
        """The app's own family with the model-free n-gram drafter below it (always allowed)."""
        return f"ngram,{self.limits.family}"

    def check_allowed(self, spec: str) -> str:
        if spec is not None and not isinstance(spec, str):
            raise ConfigError("The model family must be text: a family name or comma-separated model folders.")
        spec = (spec or "").strip() or self.limits.family
        if spec.replace(" ", "") == self.with_ngram():
            return self.with_ngram()
        if spec != self.limits.family and not self.limits.allow_custom_models:
            raise ModelLoadError("Only this app's own model family can be used here "
                                 "(set HSD_ALLOW_CUSTOM_MODELS=1 to allow other models).")
        return spec

    def names(self, spec: str) -> list[str]:
        """Display names, smallest first, without loading any weights."""
        from hsd.models import bundled_names, display_name, resolve_spec

        try:
            return [display_name(r) for r in resolve_spec(spec)]
        except HSDError:
            return bundled_names() if spec.strip().lower() == "bundled" else []

    # -- loading ---------------------------------------------------------------------------
    def load(self, spec: str):
        return load_models(self.check_allowed(spec))

    def preload(self) -> None:
        """Load the default family and its optimiser plan before the first click (a background
        thread at start-up; a failure is left for the first request to report as a sentence)."""
        spec = self.limits.family
        try:
            self.load(spec)                         # load_models imports the engine first
            self.plan(spec, self.names(spec))
        except Exception as exc:
            print(f"[hsd-explorer] preload skipped: {exc}")

    # -- profiles and plans ----------------------------------------------------------------
    def profiles(self, spec: str, names: Sequence[str]) -> list:
        """Every profile of this family, the one measured here or uploaded first, then the shipped
        ones that match its models (default first)."""
        from hsd.plan.profile import Profile

        key = spec.strip().lower().replace(" ", "")
        if key not in self._shipped:
            found = []
            for path in SHIPPED_PROFILES.get(key, ()):
                if not Path(path).is_file():
                    continue                     # a profile this install does not ship
                try:
                    found.append(Profile.load(path))
                except (HSDError, OSError) as exc:
                    print(f"[hsd-explorer] shipped profile {Path(path).name} skipped: {exc}", file=sys.stderr,
                          flush=True)
            self._shipped[key] = found
        own = [self._profiles[spec]] if self._profiles.get(spec) is not None else []
        return [p for p in own + self._shipped[key] if list(p.models) == list(names)]

    def profile(self, spec: str, names: Sequence[str], kind: str | None = None):
        """The family's profile for ``kind`` (see ``profile_kind``): the first of ``profiles`` of
        that kind, else the first measured on the same runtime, else the first of any kind (its
        temperature then differs: ``prediction_note`` says so); ``kind=None``: the first.  A plain
        'greedy' / 'sampled' means the app's own runtime: with ``HSD_FORWARD=llamacpp`` its
        llama.cpp profile first.  None without one."""
        found = self.profiles(spec, names)
        if kind is None or not found:
            return found[0] if found else None
        wanted = [kind]
        if self.limits.forward == "llamacpp" and not kind.endswith(LLAMACPP_SUFFIX):
            wanted.insert(0, kind + LLAMACPP_SUFFIX)
        for k in wanted:
            hit = next((p for p in found if profile_kind(p) == k), None)
            if hit is not None:
                return hit
        same_runtime = next((p for p in found if runtime_of(profile_kind(p)) == runtime_of(wanted[0])), None)
        return same_runtime or found[0]

    def set_profile(self, spec: str, profile) -> None:
        self._profiles[spec] = profile
        for key in [k for k in self._plans if k[0] == spec]:
            del self._plans[key]

    def plan(self, spec: str, names: Sequence[str], max_buffer: int | None = None, kind: str | None = None):
        """The optimiser's plan for this family's profile of ``kind`` (None without a profile)."""
        from hsd.plan.optimize import optimal_hierarchy

        prof = self.profile(spec, names, kind)
        if prof is None:
            return None
        mb = min(max_buffer or self.limits.max_buffer, self.limits.max_buffer)
        key = (spec, mb, id(prof))
        if key not in self._plans:
            self._plans[key] = optimal_hierarchy(prof, max_buffer=mb, top=12)
        return self._plans[key]

    def retime(self, spec: str, names: Sequence[str], kind: str | None = None, rounds: int = 5, progress=None):
        """The family's profile of ``kind`` with its forward costs timed again now, on this
        machine as it is (``rounds`` kept rounds of ``hsd.tools.measure.CostTimer``, one more
        discarded), kept as this family's profile; acceptances and engine terms stay as measured."""
        import dataclasses
        import time as _time

        from hsd.levels import SamplingSettings
        from hsd.tools.measure import CostTimer, encode_prompt, family_levels, time_rounds

        old = self.profile(spec, names, kind)
        family = self.load(spec)
        meta = old.meta
        settings = SamplingSettings(float(meta.get("temperature", 1.0)), int(meta.get("top_k", 0) or 0),
                                    float(meta.get("top_p", 1.0)))
        context = encode_prompt(family.tokenizer, "".join(p for _, p in load_prompts()) * 2)
        context = context[: int(meta.get("timing_context_tokens", 96) or 96)] or [0]
        timer = CostTimer(family_levels(family, settings, self.limits.forward), context,
                          max_n=len(old.cost_ms[old.models[0]]), warmup=1)
        report = None if progress is None else (lambda done, total, what: progress(done / total, what))
        cost_ms, first_call_ms = time_rounds(timer, rounds, report)
        when = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())
        new = dataclasses.replace(old, cost_ms=cost_ms, first_call_ms=first_call_ms,
                                  meta=dict(meta, costs_retimed_at=when, costs_retimed_rounds=rounds))
        new.validate()
        self.set_profile(spec, new)
        return new

    def measure(self, spec: str, progress=None):
        """Profile ``spec`` on this machine (a quick profile: few repeats) and keep it;
        ``progress(fraction, what)`` is told how far it got."""
        from hsd.tools.measure import measure_profile

        family = self.load(spec)
        max_n = max(min(self.limits.max_buffer + 1, 17), 2)

        def report(done, total, what):
            if progress is not None:
                progress(done / total if total else 0.0, what)

        # a quick profile: few repeats, and acceptance by position from evenly spaced blocks (the
        # decodes `hsd profile` counts by default take minutes; blocks overstate acceptance a little)
        prof = measure_profile(family, max_n=max_n, repeats=5, warmup=2, progress=report, accept_source="blocks")
        self.set_profile(spec, prof)
        return prof


def decode_kind(temperature) -> str | None:
    """'greedy' at temperature 0, else 'sampled'; None for a value that is not a number (the
    family's first profile is then used)."""
    try:
        return "greedy" if float(temperature) == 0.0 else "sampled"
    except (TypeError, ValueError):
        return None


def _profile_settings(profile) -> tuple[float, int, float]:
    """(temperature, top-k, top-p) a profile was measured at."""
    meta = profile.meta
    return float(meta.get("temperature", 1.0)), int(meta.get("top_k", 0) or 0), float(meta.get("top_p", 1.0))


LLAMACPP_SUFFIX = "-llamacpp"          # a profile measured on llama.cpp's kernels (forward llamacpp)


def profile_kind(profile) -> str:
    """'greedy' for a profile measured at temperature 0, else 'sampled'; with '-llamacpp' after
    it when its forward costs were measured on llama.cpp (``hsd profile --forward llamacpp``)."""
    runtime = LLAMACPP_SUFFIX if profile.meta.get("forward") == "llamacpp" else ""
    return decode_kind(_profile_settings(profile)[0]) + runtime


def runtime_of(kind: str | None) -> str:
    """'llama.cpp' for a kind ending in '-llamacpp', else 'PyTorch'."""
    return "llama.cpp" if kind and kind.endswith(LLAMACPP_SUFFIX) else "PyTorch"


def settings_label(temperature: float, top_k: int = 0, top_p: float = 1.0) -> str:
    """'greedy (T = 0)' / 'T = 1' / 'T = 0.7, top-k 20, top-p 0.9'."""
    if float(temperature) == 0.0:
        return "greedy (T = 0)"
    return (f"T = {float(temperature):g}" + (f", top-k {int(top_k)}" if top_k else "")
            + (f", top-p {float(top_p):g}" if float(top_p) < 1.0 else ""))


def profile_label(profile) -> str:
    """'greedy (T = 0) profile measured 2026-12-02' / 'T = 1 profile …' for prediction labels,
    with ' on llama.cpp' for costs measured there (they are some 4× below PyTorch's)."""
    where = " on llama.cpp" if runtime_of(profile_kind(profile)) == "llama.cpp" else ""
    return (f"{settings_label(*_profile_settings(profile))} profile measured "
            f"{str(profile.meta.get('measured_at', '?'))[:10]}{where}")


def prediction_note(profile, temperature: float, top_k: int = 0, top_p: float = 1.0) -> str | None:
    """One sentence when a decode's sampling settings differ from those ``profile`` was measured
    at (acceptance depends on them: a one-hot drafter measured greedy is accepted far less at
    T = 1), else None."""
    measured, decoded = _profile_settings(profile), (float(temperature), int(top_k), float(top_p))
    if measured == decoded:
        return None
    return (f"the prediction is for another setting: the profile was measured {settings_label(*measured)}, "
            f"this decode samples {settings_label(*decoded)}, so its acceptance may differ")


def default_stack(names: Sequence[str], limits: Limits) -> list[str]:
    """Fallback stack: the smallest model, the target, and (if allowed) one middle model."""
    if len(names) <= 2:
        return list(names)
    pick = [names[0], names[len(names) // 2], names[-1]] if limits.max_levels >= 3 else [names[0], names[-1]]
    return list(dict.fromkeys(pick))[: max(limits.max_levels, 1)]


def default_plan(families: Families, spec: str, names: Sequence[str], limits: Limits) -> tuple[list[str], list[int]]:
    """What the Generate tab starts with: the optimiser's hierarchy for this family when a profile
    exists (the shipped one for the bundled family) and it fits the limits, else the fallback
    stack with buffers of 4."""
    try:
        plan = families.plan(spec, names) if names else None
    except Exception as exc:                # a broken profile must not stop the app from starting
        print(f"[hsd-explorer] the optimiser's default stack for {spec} skipped ({type(exc).__name__}: "
              f"{str(exc)[:200]}); the fallback stack is shown", file=sys.stderr, flush=True)
        plan = None
    if plan is not None and 2 <= len(plan.chain) <= limits.max_levels and max(plan.buffers, default=1) <= limits.max_buffer:
        return [names[c] for c in plan.chain], [int(b) for b in plan.buffers]
    stack = default_stack(names, limits)
    return stack, [4] * max(len(stack) - 1, 0)


def load_prompts(path: Path = PROMPTS_FILE, limit: int = 6) -> list[tuple[str, str]]:
    """(label, prompt) pairs from the shared prompts file (``hsd.tools.paths.parse_prompts``: one
    per line, ``\\n`` escapes, # comments); the built-in list when it is missing.  Labels are the
    prompt's first line."""
    from hsd.tools.paths import parse_prompts

    try:
        prompts = parse_prompts(path.read_text(encoding="utf-8"))
    except OSError:
        return FALLBACK_PROMPTS
    out = []
    for text in prompts[:limit]:
        first = text.strip().splitlines()[0] if text.strip() else text
        out.append((first[:32] + ("…" if len(first) > 32 else ""), text))
    return out or FALLBACK_PROMPTS


def example_traces(folder: Path | None = None) -> dict[str, Path]:
    """label -> file of the canned traces (``python -m hsd.tools.examples``) in ``folder``
    (default ``EXAMPLES_DIR``), deepest hierarchy first."""
    found = []
    for path in sorted((folder if folder is not None else EXAMPLES_DIR).glob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
        except (OSError, json.JSONDecodeError) as exc:
            print(f"[hsd-explorer] example trace {path.name} skipped: {exc}", file=sys.stderr, flush=True)
            continue
        depth = len(meta.get("request", {}).get("chain", []))
        found.append((-depth, meta.get("label") or path.stem, path))
    return {label: path for _, label, path in sorted(found)}
