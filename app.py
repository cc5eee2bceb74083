"""HSD Explorer: a Gradio app around a real hierarchical speculative decoding engine.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT respected)

Tabs: Generate (streamed, coloured tokens + per-round panels), Compare (what-if hierarchies
side by side), Learn (step through a recorded trace; exactness lab), Optimise (profile, GSP
optimiser, send a plan to Generate).  Named API endpoints: ``/generate`` (streams), ``/compare``,
``/optimize``.

Contract and layout of this file (thin wiring, DESIGN §1):
1) settings: limits read from environment variables (``Limits.from_env``), the family registry
   (models load lazily, once per process, shared by all sessions; never at import);
2) requests: ``make_request`` turns widget values into a validated ``Request`` or raises an
   ``HSDError`` with one sentence, shown as ``gr.Error``; the app keeps serving;
3) decoding: ``decode_events`` (the ``spaces.GPU`` function when ZeroGPU is present) yields plain
   event dicts; ``UiBudget`` keeps the page updates (tokens every target round, panels less often)
   within a small share of the decode's wall time; ``Stop`` closes the generator, which stops the
   decode between two events;
4) views: figures are built here, outside the GPU function, from plain traces (``visual``);
5) the ``gr.Blocks`` layout (``build_demo``) and its event wiring.

Sessions share nothing but the read-only models, the profiles (measurements of this machine) and
the plans derived from them; every request builds its own Hierarchy and caches, and ``gr.State``
holds only plain dicts.

Environment variables (limits; see ``Limits``): HSD_FAMILY, HSD_MAX_PROMPT_CHARS,
HSD_MAX_NEW_TOKENS, HSD_MAX_BUFFER, HSD_MAX_LEVELS, HSD_ALLOW_CUSTOM_MODELS (default: on locally,
off on a Space), HSD_QUEUE_SIZE, HSD_CONCURRENCY, HSD_PANEL_INTERVAL_S, HSD_TOKEN_INTERVAL_S,
HSD_UI_SHARE, HSD_TORCH_THREADS, HSD_PRELOAD.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import html  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, Sequence  # noqa: E402

import gradio as gr  # noqa: E402

import visual  # noqa: E402
from hsd.errors import ConfigError, HSDError, ModelLoadError, PromptError  # noqa: E402
from hsd.exactness import exactness_lab, lab_table  # noqa: E402
from gradio.components.plot import PlotData  # noqa: E402
from hsd.trace import Trace, event_from_dict, event_to_dict  # noqa: E402
from hsd.verify import RULES  # noqa: E402

try:                                    # ZeroGPU on a Space; a no-op decorator everywhere else
    import spaces

    GPU = spaces.GPU
    ZERO_GPU = True
except ImportError:                     # pragma: no cover - depends on the environment
    ZERO_GPU = False

    def GPU(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLES_DIR = ASSETS / "examples"
SHIPPED_PROFILE = ASSETS / "profile-bundled.json"
CSS_PATH = ASSETS / "app.css"
PAPER_HSD = "https://arxiv.org/abs/2510.19705"
PAPER_BRANCH = "https://arxiv.org/abs/2601.05724"
LOSSY_LABEL = "hsd-uncapped (LOSSY)"
RULE_LABELS = {name: (LOSSY_LABEL if not r.lossless else name) for name, r in RULES.items()}
LABEL_TO_RULE = {v: k for k, v in RULE_LABELS.items()}
TRUE_WORDS = {"1", "true", "yes", "on"}

PROMPTS_FILE = ASSETS / "prompts" / "code.txt"
FALLBACK_PROMPTS = [
    ("function header", "def parse_args(argv):\n"),
    ("class + docstring", "class LRUCache:\n    \"\"\"A small least-recently-used cache.\"\"\"\n\n    def __init__(self, size):\n"),
    ("imports", "import os\nimport sys\n\n\ndef main():\n"),
    ("error handling", "    try:\n        with open(path, 'rb') as f:\n"),
]


def load_prompts(path: Path = PROMPTS_FILE, limit: int = 6) -> list[tuple[str, str]]:
    """(label, prompt) pairs from the shared prompt file (one per line, \\n escapes, # comments);
    the built-in list when it is missing.  Labels are the prompt's first line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return FALLBACK_PROMPTS
    out = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line.encode("utf-8").decode("unicode_escape") if "\\" in line else line
        first = text.strip().splitlines()[0] if text.strip() else text
        out.append((first[:32] + ("…" if len(first) > 32 else ""), text))
        if len(out) >= limit:
            break
    return out or FALLBACK_PROMPTS


EXAMPLE_PROMPTS = load_prompts()


# ============================================================================================
# 1) settings
# ============================================================================================
def _env_int(env, name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (environment-configurable; defaults suit a small CPU Space)."""

    family: str = "bundled"             # HSD_FAMILY: 'bundled', a preset, or 'path1,path2,...'
    max_prompt_chars: int = 4000        # HSD_MAX_PROMPT_CHARS
    max_new_tokens: int = 256           # HSD_MAX_NEW_TOKENS
    max_buffer: int = 16                # HSD_MAX_BUFFER (tokens a draft level hands up)
    max_levels: int = 4                 # HSD_MAX_LEVELS (models in one stack, target included)
    allow_custom_models: bool = True    # HSD_ALLOW_CUSTOM_MODELS: other families/hub ids/local folders
    queue_size: int = 32                # HSD_QUEUE_SIZE: waiting requests before new ones are refused
    concurrency: int = 1                # HSD_CONCURRENCY: decodes at once (fair timings: 1)
    panel_interval_s: float = 0.5       # HSD_PANEL_INTERVAL_S: at most one panel refresh per this
    ui_share: float = 0.04              # HSD_UI_SHARE: page updates may pause the decode this share of its time
    token_interval_s: float = 0.1       # HSD_TOKEN_INTERVAL_S: at most one token update per this
    torch_threads: int = 0              # HSD_TORCH_THREADS (0 = all CPU cores but one)

    @classmethod
    def from_env(cls, env=None) -> "Limits":
        env = os.environ if env is None else env
        on_space = bool(env.get("SPACE_ID"))
        custom = env.get("HSD_ALLOW_CUSTOM_MODELS", "").strip().lower()
        interval = env.get("HSD_PANEL_INTERVAL_S", "").strip()
        share = env.get("HSD_UI_SHARE", "").strip()
        tok_interval = env.get("HSD_TOKEN_INTERVAL_S", "").strip()
        return cls(
            family=env.get("HSD_FAMILY", "").strip() or "bundled",
            max_prompt_chars=_env_int(env, "HSD_MAX_PROMPT_CHARS", cls.max_prompt_chars, 1, 1_000_000),
            max_new_tokens=_env_int(env, "HSD_MAX_NEW_TOKENS", cls.max_new_tokens, 1, 100_000),
            max_buffer=_env_int(env, "HSD_MAX_BUFFER", cls.max_buffer, 1, 1024),
            max_levels=_env_int(env, "HSD_MAX_LEVELS", cls.max_levels, 1, 8),
            allow_custom_models=(custom in TRUE_WORDS) if custom else not on_space,
            queue_size=_env_int(env, "HSD_QUEUE_SIZE", cls.queue_size, 1, 10_000),
            concurrency=_env_int(env, "HSD_CONCURRENCY", cls.concurrency, 1, 64),
            panel_interval_s=float(interval) if interval else cls.panel_interval_s,
            ui_share=float(share) if share else cls.ui_share,
            token_interval_s=float(tok_interval) if tok_interval else cls.token_interval_s,
            torch_threads=_env_int(env, "HSD_TORCH_THREADS", 0, 0, 256),
        )


_LOAD_LOCK = threading.Lock()


def load_models(spec: str):
    """``hsd.models.load_family`` (cached per process), one load at a time: the preload thread
    and a first request must not load the same weights twice."""
    from hsd.models import load_family

    with _LOAD_LOCK:
        return load_family(spec)


class Families:
    """Model families by spec: names without loading (for the widgets), models loaded lazily once
    per process (``hsd.models.load_family`` caches them) and shared read-only by every session;
    profiles and optimiser plans (measurements of this machine) shared the same way."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._profiles: dict[str, object] = {}
        self._plans: dict[tuple, object] = {}

    # -- which families a user may pick ----------------------------------------------------
    def choices(self) -> list[str]:
        from hsd.models import PRESETS

        extra = [p for p in PRESETS if p != "bundled"] if self.limits.allow_custom_models else []
        return [self.limits.family] + [p for p in extra if p != self.limits.family]

    def check_allowed(self, spec: str) -> str:
        spec = (spec or "").strip() or self.limits.family
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

    # -- profiles and plans ----------------------------------------------------------------
    def profile(self, spec: str, names: Sequence[str]):
        """A measured profile of this family, or the shipped one when it matches; else None."""
        from hsd.profile import Profile

        if spec in self._profiles:
            return self._profiles[spec]
        if spec.strip().lower() == "bundled" and SHIPPED_PROFILE.exists():
            try:
                prof = Profile.load(SHIPPED_PROFILE)
            except HSDError:
                return None
            if list(prof.models) == list(names):
                self._profiles[spec] = prof
                return prof
        return None

    def set_profile(self, spec: str, profile) -> None:
        self._profiles[spec] = profile
        for key in [k for k in self._plans if k[0] == spec]:
            del self._plans[key]

    def plan(self, spec: str, names: Sequence[str], max_buffer: int | None = None):
        """The optimiser's plan for this family (None without a profile)."""
        from hsd.optimize import optimal_hierarchy

        prof = self.profile(spec, names)
        if prof is None:
            return None
        mb = min(max_buffer or self.limits.max_buffer, self.limits.max_buffer)
        key = (spec, mb)
        if key not in self._plans:
            plan = optimal_hierarchy(prof, max_buffer=mb, top=12)
            self._plans[key] = plan
        return self._plans[key]


# ============================================================================================
# 2) requests
# ============================================================================================
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

    def with_stack(self, chain, buffers, rules=None) -> "Request":
        rules = tuple(rules) if rules is not None else tuple([self.rules[-1] if self.rules else "hsd"] * (len(chain) - 1))
        return Request(self.prompt, self.family, tuple(chain), tuple(buffers), rules, self.temperature,
                       self.top_p, self.top_k, self.seed, self.max_new_tokens)


def _whole(value, what: str, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    if not lo <= int(f) <= hi:
        raise ConfigError(f"{what} must be between {lo} and {hi}, got {int(f)}")
    return int(f)


def _number(value, what: str, lo: float, hi: float, lo_open: bool = False) -> float:
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
    chosen = _chain(models, names)
    if len(chosen) > lim.max_levels:
        raise ConfigError(f"At most {lim.max_levels} models can be stacked here; you picked {len(chosen)}.")
    k = len(chosen) - 1
    buffers = list(buffers or []) if not isinstance(buffers, (int, float, str)) else [buffers]
    if isinstance(buffers, list) and len(buffers) == 1 and isinstance(buffers[0], str):
        buffers = [b for b in buffers[0].split(",") if b.strip()]
    if len(buffers) < k:
        raise ConfigError(f"{k + 1} stacked models need {k} buffer size(s), one per draft level; got {len(buffers)}.")
    bufs = tuple(_whole(b, f"the buffer of level {i}", 1, lim.max_buffer) for i, b in enumerate(buffers[:k]))
    if isinstance(rules, str):
        rules = [r.strip() for r in rules.split(",") if r.strip()] or ["hsd"]
    rules = list(rules or ["hsd"])
    rules = rules * k if len(rules) == 1 else rules
    if len(rules) < k:
        raise ConfigError(f"{k + 1} stacked models need {k} verification rule(s); got {len(rules)}.")
    names_ok = []
    for r in rules[:k]:
        r = LABEL_TO_RULE.get(str(r).strip(), str(r).strip())
        if r not in RULES:
            raise ConfigError(f"Unknown verification rule {r!r}; choose one of {', '.join(RULES)}.")
        names_ok.append(r)
    return Request(
        prompt=prompt, family=spec, chain=tuple(chosen), buffers=bufs, rules=tuple(names_ok),
        temperature=_number(temperature, "Temperature", 0.0, 10.0),
        top_p=_number(top_p, "Top-p", 0.0, 1.0, lo_open=True),
        top_k=_whole(top_k, "Top-k", 0, 1_000_000),
        seed=_whole(seed, "The seed", 0, 2**63 - 1),
        max_new_tokens=_whole(max_new_tokens, "Max new tokens", 1, lim.max_new_tokens))


def _chain(models, names: list[str]) -> list[int]:
    """Model names/indices -> sorted distinct indices ending with the target."""
    if models is None:
        raise ConfigError("The stack is empty (null): send a list of model names, [] for the target alone.")
    if isinstance(models, str):
        models = [m for m in models.split(",") if m.strip()]
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


# ============================================================================================
# 3) decoding
# ============================================================================================
@GPU(duration=120)
def decode_events(req: Request) -> Iterator[dict]:
    """The GPU boundary: decode ``req`` (already validated and allowed) and yield its events.
    Under ZeroGPU (this function runs in a forked worker) they cross as plain dicts
    (``hsd.trace.event_to_dict``); everywhere else the frozen event objects pass as they are
    (no conversion per event).  Consumers accept both."""
    from hsd.engine import Hierarchy

    family = load_models(req.family)
    h = Hierarchy.from_family(family, chain=list(req.chain), buffers=list(req.buffers), rules=list(req.rules))
    events = h.stream(req.prompt, max_new_tokens=req.max_new_tokens, temperature=req.temperature,
                      top_k=req.top_k, top_p=req.top_p, seed=req.seed)
    with _ACTIVE_LOCK:
        _ACTIVE["decodes"] += 1
    try:
        if ZERO_GPU:
            for event in events:
                yield event_to_dict(event)
        else:
            yield from events
    finally:
        events.close()
        with _ACTIVE_LOCK:
            _ACTIVE["decodes"] -= 1


_ACTIVE = {"decodes": 0}
_ACTIVE_LOCK = threading.Lock()


def active_decodes() -> int:
    """How many decodes are running in this process (Stop/cancel must bring it back down)."""
    return _ACTIVE["decodes"]


class UiBudget:
    """Decides when a streaming consumer updates the page, so that page updates pause the decode
    for at most a small share of its wall time.

    The decode and the UI run in ONE thread, one after the other (a second Python thread doing
    figure work starves the decode of the GIL between its many small torch calls -- measured here:
    20x slower).  So every update pauses the decode: our building, then Gradio's round trip (the
    yield crosses to the event loop, every output is post-processed, the message is sent, the
    next step is scheduled on a worker thread) -- about 10 ms for a tokens-only update on this
    machine, more with panels.  Policy: the first commit is shown at once (tokens only); after
    that an update happens only when ``token_interval_s`` has passed AND the pauses so far plus
    the expected cost of this one stay within ``share`` of the elapsed decode time; panels (the
    Plotly figures) ride along at most every ``panel_interval_s`` under the same budget; the
    final update always has everything.  Costs are learnt from the updates made so far."""

    def __init__(self, share: float, panel_interval_s: float, token_interval_s: float = 0.1,
                 token_cost_s: float = 0.01, panel_cost_s: float = 0.06):
        self.share, self.panel_interval_s, self.token_interval_s = share, panel_interval_s, token_interval_s
        self.t0 = time.monotonic()
        self.spent_s = 0.0                      # all page updates
        self.last_update = self.last_panels = -math.inf
        self.token_cost_s = token_cost_s        # expected pause of a tokens-only update (then measured)
        self.panel_cost_s = panel_cost_s        # expected pause of an update with panels (then measured)
        self.updates = 0

    def decide(self, finished: bool) -> tuple[bool, bool]:
        """(update the page now, and redraw the panels in that update)."""
        if finished:
            return True, True
        if self.updates == 0:
            return True, False
        now = time.monotonic()
        allowed = self.share * (now - self.t0)
        if now - self.last_update < self.token_interval_s or self.spent_s + self.token_cost_s > allowed:
            return False, False
        panels = now - self.last_panels >= self.panel_interval_s and self.spent_s + self.panel_cost_s <= allowed
        return True, panels

    def record(self, started: float, panels: bool) -> None:
        """Call when the consumer resumes after an update that began at ``started``."""
        now = time.monotonic()
        cost = now - started
        self.spent_s += cost
        self.updates += 1
        self.last_update = now
        if panels:
            self.last_panels = now
            self.panel_cost_s = cost
        elif self.updates > 1:                  # the first update also pays for warming things up
            self.token_cost_s = cost


def stream_trace(req: Request) -> Iterator[Trace]:
    """Decode ``req``, yielding the growing trace after every target round (commit) and at the
    end.  Closing this generator (Stop, a closed tab) stops the decode between two events."""
    trace = Trace(meta={"app": "hsd-explorer", "family": req.family, "chain": list(req.chain)})
    events = decode_events(req)
    try:
        for e in events:
            event = as_event(e)
            trace.add(event)
            if event.kind in ("committed", "finished"):
                yield trace
    finally:
        events.close()


def as_event(e):
    """An event from ``decode_events``: a plain dict under ZeroGPU, the event itself elsewhere."""
    return event_from_dict(e) if isinstance(e, dict) else e


def _kind(e) -> str:
    return e["kind"] if isinstance(e, dict) else e.kind


def run_to_end(req: Request) -> Trace:
    """Decode ``req`` to the end (no UI); the trace."""
    trace = Trace(meta={"app": "hsd-explorer", "family": req.family, "chain": list(req.chain)})
    for e in decode_events(req):
        trace.add(as_event(e))
    return trace


def as_gr_error(exc: BaseException) -> gr.Error:
    """A user mistake keeps its one sentence; anything else becomes a short generic message."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, HSDError):
        msg = str(exc)
        return gr.Error(msg[:1].upper() + msg[1:])
    return gr.Error(f"Something went wrong inside the app ({type(exc).__name__}: {str(exc)[:200]}); "
                    "the request was abandoned, and the app is still running.")


# ============================================================================================
# 4) views (plain data -> figures/markdown; no models except a tokenizer for token texts)
# ============================================================================================
def decoder_for(families: Families, spec: str):
    """id -> token text, for the mass-balance panel (None when the family is not loaded)."""
    try:
        tok = families.load(spec).tokenizer
    except HSDError:
        return None
    return lambda i: tok.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def verifications(trace: Trace, level: int | None = None) -> list:
    vs = trace.of_kind("verified")
    if level is None:
        start = trace.started
        level = len(start.models) - 1 if start else max((v.level for v in vs), default=0)
    return [v for v in vs if v.level == level]


def fast_plot(build) -> PlotData:
    """``build()`` (a ``visual`` figure builder call) sent to ``gr.Plot`` as ready JSON: the shared
    look is merged as plain data (``visual.theme.deferred_template``), skipping Plotly's template
    copy + validation, which was most of a streaming panel update (~13 ms a figure, several per
    update, all of it pausing the decode).  The JSON is the same figure (tests/test_visual.py)."""
    with visual.theme.deferred_template():
        fig = build()
    return PlotData(type="plotly", plot=visual.theme.plot_json(fig))


def figure_mass_for(trace: Trace, level: int | None, index: int | None, id_to_text, dark: bool):
    vs = verifications(trace, level)
    if not vs:
        who = "this level" if level is not None else "the target"
        return visual.figure_empty(f"No verification by {who} in this run (autoregressive decoding, "
                                   "or choose another level).", dark=dark)
    i = len(vs) - 1 if index is None or index < 0 or index >= len(vs) else int(index)
    return visual.figure_mass_balance(vs[i], id_to_text=id_to_text, dark=dark)


def stats_markdown(trace: Trace, ar_trace: Trace | None = None, predicted_speedup: float | None = None) -> str:
    s = trace.summary()
    parts = [f"**{s.n_tokens} tokens** in {s.wall_ms / 1000:.2f} s",
             f"**{s.tokens_per_s:.1f} tokens/s** (wall clock)",
             f"**{s.tokens_per_target_call:.2f}** tokens per target call" if s.target_calls else ""]
    if ar_trace is not None:
        ar = ar_trace.summary()
        if ar.ms_per_token and s.ms_per_token:
            parts.append(f"**{ar.ms_per_token / s.ms_per_token:.2f}×** vs the target alone "
                         f"(wall clock, measured this run: {ar.tokens_per_s:.1f} tokens/s)")
    if predicted_speedup is not None:
        parts.append(f"{predicted_speedup:.2f}× model-predicted vs the target alone (profile)")
    line = " · ".join(p for p in parts if p)
    edges = " · ".join(f"L{e.drafter}→L{e.verifier}: {e.rate:.0%} of {e.proposed} drafts accepted"
                       for e in s.edges)
    status = {"running": "decoding…", "eos": "finished (end of text)",
              "max_new_tokens": "finished (max new tokens)", "cancelled": "stopped"}.get(s.finish_reason, s.finish_reason)
    return f"{line}  \n**Per-edge acceptance:** {edges or 'none (autoregressive)'}  \n*Status: {status}*"


def legend_for(names: Sequence[str], dark: bool = False) -> str:
    return visual.legend_html(list(names))


TRACE_FILES_MAX_AGE_S = 3600.0
TRACE_FILES_SWEEP_S = 300.0            # sweep old trace files at most this often
_LAST_SWEEP = [0.0]


def save_trace(trace_dict: dict) -> str:
    """Write a trace for the download button; files older than an hour are removed on the way
    (a long-running public app must not fill its disk)."""
    folder = Path(tempfile.gettempdir()) / "hsd-explorer"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    if now - _LAST_SWEEP[0] > TRACE_FILES_SWEEP_S:          # not on every run: it lists the folder
        _LAST_SWEEP[0] = now
        for old in folder.glob("hsd-trace-*.json"):
            try:
                if old.stat().st_mtime < now - TRACE_FILES_MAX_AGE_S:
                    old.unlink()
            except OSError:
                pass
    path = folder / f"hsd-trace-{uuid.uuid4().hex[:10]}.json"
    path.write_text(json.dumps(trace_dict), encoding="utf-8")
    return str(path)


def level_choices(names: Sequence[str]) -> list[tuple[str, int]]:
    k = len(names) - 1
    return [(f"L{j} {names[j]} checks L{j - 1}" + (" (target)" if j == k else ""), j) for j in range(1, k + 1)]


def gsp_figure(families: Families, req: Request | None, spec: str, names, dark: bool):
    plan = families.plan(spec, names)
    if plan is None:
        return visual.figure_empty("Optimiser graph: no profile of this family yet.<br>"
                                   "Open the Optimise tab and press Optimise.", dark=dark)
    current = (list(req.chain), list(req.buffers)) if req is not None else None
    return visual.figure_gsp(plan, current=current, dark=dark)


def predicted_speedup(families: Families, req: Request, names) -> float | None:
    from hsd.optimize import plan_for

    prof = families.profile(req.family, names)
    if prof is None:
        return None
    try:
        return plan_for(prof, list(req.chain), list(req.buffers)).speedup_vs_ar
    except HSDError:
        return None


# -- Learn tab: explaining a trace one event at a time ----------------------------------------
STEP_KINDS = ("prefill", "drafted", "verified", "committed")


def learn_steps(trace: Trace) -> list[int]:
    return [i for i, e in enumerate(trace.events) if e.kind in STEP_KINDS]


def _tok_list(texts) -> str:
    return " ".join(f"`{visual_escape(t)}`" for t in texts) or "(none)"


def visual_escape(text: str) -> str:
    from visual.theme import escape_token

    return html.unescape(escape_token(text, 14))


def explain(event, names: Sequence[str]) -> str:
    """One sentence per step, tied to the panel it changes."""
    name = lambda lv: f"L{lv} ({names[lv]})" if lv < len(names) else f"L{lv}"  # noqa: E731
    k = len(names) - 1
    if event.kind == "prefill":
        return (f"**Prefill** — {name(event.level)} reads the {event.n_tokens}-token prompt once and "
                f"fills its KV cache (hatched bar in the **timeline**).")
    if event.kind == "drafted":
        return (f"**Draft** — {name(event.level)}, the smallest model, samples {len(event.tokens)} tokens "
                f"one at a time: {_tok_list(event.texts)} (a new bar in its **timeline** lane).")
    if event.kind == "verified":
        n, g = event.n_accepted, len(event.proposed)
        marks = "✓" * n + ("✗" if n < g else "")
        fate = (f"keeps all {g} and adds a **bonus** token `{visual_escape(event.next_text)}`" if event.next_kind == "bonus"
                else f"keeps {n} of {g} ({marks}) and **replaces** the first rejected one with "
                     f"`{visual_escape(event.next_text)}`, sampled from the leftover (deficit) mass")
        crop = (f" **Crop**: the {g - n} rejected draft token(s) are discarded and every lower level's cache "
                f"is cut back to {event.context_len + n} tokens." if n < g else "")
        hands = (f" It hands {event.handed_up} token(s) up to {name(event.level + 1)}." if event.level < k else "")
        return (f"**Verify** — {name(event.level)} scores the whole block from {name(event.level - 1)} in ONE "
                f"forward pass with the `{event.rule}` rule and {fate} (**accept map** row, **mass balance** "
                f"panel).{crop}{hands}")
    if event.kind == "committed":
        return (f"**Commit** — the target appends {len(event.tokens)} token(s) to the output: "
                f"{_tok_list(event.texts)} (the **token strip** grows; ▼ on the timeline). "
                f"{event.total_tokens} tokens so far.")
    return ""


def partial_trace(trace: Trace, upto: int) -> Trace:
    return Trace(events=trace.events[: upto + 1], meta=trace.meta)


# ============================================================================================
# canned examples (assets/examples/*.json, made by ``python -m hsd.examples``)
# ============================================================================================
def example_traces() -> dict[str, Path]:
    """label -> file of the canned traces, deepest hierarchy first."""
    found = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
        except (OSError, json.JSONDecodeError):
            continue
        depth = len(meta.get("request", {}).get("chain", []))
        found.append((-depth, meta.get("label") or path.stem, path))
    return {label: path for _, label, path in sorted(found)}


LAST_RUN = "last run (Generate tab)"


# ============================================================================================
# 5) layout and wiring
# ============================================================================================
INTRO = f"""
# HSD Explorer — hierarchical speculative decoding, live

**What am I looking at?** A real decoder runs a *stack* of language models that share one
tokenizer: the smallest model drafts tokens, each larger model verifies the block below it in one
forward pass, keeps what its verification rule accepts and replaces the rest, and the largest model
(the *target*) commits text whose distribution is exactly its own
([Globerson et al., arXiv 2510.19705]({PAPER_HSD})). Every token below is coloured by the level that
produced it; the panels show each round's timeline, accept/reject decisions, and the **branch mass
balancing** of the lossless hierarchical verification rule
([Zhou et al., arXiv 2601.05724]({PAPER_BRANCH})). The latency model and optimiser graph are our own
derivation (labelled *model-predicted*); timings are *wall clock* on this machine.
"""

PLACEHOLDER = "Run a generation to see this panel."


def build_demo(limits: Limits | None = None, families: Families | None = None) -> gr.Blocks:
    """The whole app (no model is loaded here; the first request loads the family)."""
    limits = limits or Limits.from_env()
    families = families or Families(limits)
    names0 = families.names(limits.family)
    stack0, buffers0 = default_plan(families, limits.family, names0, limits)
    slots = max(limits.max_levels - 1, 0)
    rule_choices = [RULE_LABELS[r] for r in RULES]

    with gr.Blocks(title="HSD Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        dark = gr.Checkbox(value=False, visible=False, elem_id="dark-flag")
        trace_state = gr.State(None, time_to_live=7200)   # the latest Generate trace, a plain dict
        plans_state = gr.State([])              # optimiser plans shown in the Optimise table
        learn_state = gr.State(None, time_to_live=7200)   # the trace being stepped through, a plain dict

        gr.Markdown(INTRO, elem_id="intro")
        with gr.Tabs(selected="generate") as tabs:
            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=320):
                        prompt = gr.Textbox(label="Prompt (Enter to generate, Shift+Enter for a new line)",
                                            value=EXAMPLE_PROMPTS[0][1], lines=3, max_lines=12,
                                            elem_id="prompt", autofocus=True)
                        with gr.Row():
                            gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                            clear_btn = gr.Button("Clear", elem_id="clear-btn")
                        gr.Examples([[p] for _, p in EXAMPLE_PROMPTS], inputs=[prompt],
                                    example_labels=[label for label, _ in EXAMPLE_PROMPTS],
                                    label="Example prompts (Python code: the bundled models were trained on the standard library)",
                                    cache_examples=False)
                        legend = gr.HTML(legend_for(stack0), elem_id="legend")
                        tokens = gr.HighlightedText(label="Output: every token coloured by the level that produced it",
                                                    color_map=visual.token_color_map(n_levels=len(names0) or 1),
                                                    show_legend=True, combine_adjacent=False, elem_id="tokens",
                                                    show_inline_category=False)
                        stats = gr.Markdown("*Press Generate.*", elem_id="stats")
                    with gr.Column(scale=2, min_width=300):
                        family = gr.Dropdown(families.choices(), value=limits.family, label="Model family",
                                             allow_custom_value=True,    # refused with a sentence unless allowed
                                             info="bundled = trained offline on Python's standard library"
                                                  + ("; or type comma-separated local folders / hub ids"
                                                     if limits.allow_custom_models else ""))
                        models = gr.CheckboxGroup(names0, value=stack0, label="Stack (smallest first; the target, last, is always included)",
                                                  elem_id="models")
                        with gr.Row():
                            optimal_btn = gr.Button("Optimal (from profile)", size="sm")
                            ar_check = gr.Checkbox(False, label="Also time the target alone (runs it first)",
                                                   info="wall-clock speedup measured on the same prompt and seed")
                        level_rows = []
                        buffer_sliders, rule_dropdowns = [], []
                        for i in range(slots):
                            with gr.Row(visible=False) as row:
                                buffer_sliders.append(gr.Slider(1, limits.max_buffer,
                                                                value=buffers0[i] if i < len(buffers0) else 4, step=1,
                                                                label=f"L{i} buffer", info="tokens this level hands up per call"))
                                rule_dropdowns.append(gr.Dropdown(rule_choices, value="hsd", label=f"rule at L{i + 1}",
                                                                  allow_custom_value=True,   # API: our own error sentence
                                                                  info="how the level above verifies it"))
                            level_rows.append(row)
                        with gr.Accordion("Sampling settings", open=False):
                            temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature",
                                                    info="0 = greedy; the same at every level")
                            top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", info="1 = off")
                            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k", info="0 = off")
                            seed = gr.Number(0, precision=0, label="Seed", info="same seed + settings = same text")
                            max_new = gr.Slider(1, limits.max_new_tokens, value=min(96, limits.max_new_tokens), step=1,
                                                label="Max new tokens", info=f"at most {limits.max_new_tokens} here")
                with gr.Row():
                    timeline = gr.Plot(visual.figure_empty(PLACEHOLDER), label="Timeline", elem_id="timeline", show_label=False)
                with gr.Row():
                    view_level = gr.Dropdown(level_choices(stack0), value=len(stack0) - 1 if len(stack0) > 1 else None,
                                             label="Verifier level (accept map and mass balance)", scale=2)
                    view_index = gr.Slider(0, 1, value=0, step=1, label="Verification # (drag after a run; default: latest)",
                                           scale=3, interactive=True)
                    download = gr.DownloadButton("Download trace (JSON)", value=None, interactive=False, scale=1)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=360):
                        accept_plot = gr.Plot(visual.figure_empty(PLACEHOLDER), label="Accept map", elem_id="accept-map", show_label=False)
                    with gr.Column(scale=1, min_width=360):
                        gsp_plot = gr.Plot(visual.figure_empty(PLACEHOLDER), label="Optimiser graph", elem_id="gsp", show_label=False)
                mass_plot = gr.Plot(visual.figure_empty(PLACEHOLDER), label="Mass balance", elem_id="mass-balance", show_label=False)

            # ---------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare"):
                gr.Markdown("Run several hierarchies on the **same prompt, seed and sampling settings**, one after "
                            "another (never at once, so the wall-clock timings are fair). *Yours* is the stack set on "
                            "the Generate tab; *best single draft* and *optimal* come from the optimiser "
                            "(model-predicted, needs a profile).")
                with gr.Row():
                    cmp_prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[2][1], lines=2, scale=3, elem_id="cmp-prompt")
                    contenders = gr.CheckboxGroup(CONTENDERS, value=list(CONTENDERS), label="Hierarchies", scale=2)
                cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                cmp_status = gr.Markdown("")
                cmp_fig = gr.Plot(visual.figure_empty("Press Compare."), show_label=False, elem_id="compare-plot")
                cmp_table = gr.Dataframe(headers=CMP_HEADERS, label="Measured (wall clock) and model-predicted",
                                         interactive=False, wrap=True)
                cmp_cols = []
                with gr.Row(equal_height=False):
                    for i in range(len(CONTENDERS)):
                        with gr.Column(min_width=560):          # two per row on a laptop screen
                            head = gr.Markdown(f"**{CONTENDERS[i]}**")
                            txt = gr.HighlightedText(label="output", color_map=visual.TOKEN_COLOR_MAP,
                                                     show_legend=False, show_inline_category=False,
                                                     elem_classes=["cmp-tokens"])
                            tl = gr.Plot(visual.figure_empty(" "), show_label=False)
                            cmp_cols.append((head, txt, tl))

            # ---------------------------------------------------------------- Learn
            with gr.Tab("Learn", id="learn") as learn_tab:
                gr.Markdown("### Step through a recorded decode\nEach step is one engine event: **draft** (the "
                            "smallest model samples a block) → **verify** (a larger model scores the block in one "
                            "pass) → **accept / replace** → **crop** (rejected drafts are forgotten) → **commit**.")
                examples = example_traces()
                learn_choices = list(examples) + [LAST_RUN]
                with gr.Row():
                    learn_src = gr.Dropdown(learn_choices, value=learn_choices[0], label="Recorded trace", scale=3)
                    learn_load = gr.Button("Load", scale=1)
                with gr.Row():
                    prev_btn = gr.Button("◀ Back", size="sm")
                    step_btn = gr.Button("Step ▶", size="sm", variant="primary")
                    play_btn = gr.Button("Play", size="sm")
                    pause_btn = gr.Button("Pause", size="sm")
                    step_slider = gr.Slider(0, 1, value=0, step=1, label="Step", scale=4)
                timer = gr.Timer(1.2, active=False)
                explain_md = gr.Markdown("Load a trace to begin.", elem_id="learn-explain")
                learn_tokens = gr.HighlightedText(label="Output so far", color_map=visual.TOKEN_COLOR_MAP,
                                                  show_legend=True, show_inline_category=False, elem_id="learn-tokens")
                learn_timeline = gr.Plot(visual.figure_empty("Load a trace."), show_label=False, elem_id="learn-timeline")
                learn_accept = gr.Plot(visual.figure_empty("Load a trace."), show_label=False, elem_id="learn-accept")
                learn_mass = gr.Plot(visual.figure_empty("Load a trace."), show_label=False, elem_id="learn-mass")
                gr.Markdown("### Exactness lab\nOne verification round of a γ-token draft, then the target "
                            "alone, enumerated **exactly** over a tiny vocabulary: the lossless rules reproduce "
                            "the target's distribution (TV ≈ 0); the uncapped variant does not. The *toy* is the "
                            "counterexample from our design notes (target (1/3, 2/3), draft (2/3, 1/3)).")
                with gr.Row():
                    lab_kind = gr.Radio(["toy", "random"], value="toy", label="Example")
                    lab_vocab = gr.Slider(2, 4, value=3, step=1, label="Vocabulary size (random)")
                    lab_gamma = gr.Slider(1, 3, value=2, step=1, label="Block length γ")
                    lab_seed = gr.Number(0, precision=0, label="Seed (random)")
                    lab_btn = gr.Button("Compute", variant="primary")
                lab_fig = gr.Plot(visual.figure_empty("Press Compute."), show_label=False, elem_id="exactness")
                lab_df = gr.Dataframe(headers=["rule", "kind", "TV distance", "E[accepted draft tokens]"],
                                      interactive=False, label="Per rule")

            # ---------------------------------------------------------------- Optimise
            with gr.Tab("Optimise", id="optimise"):
                gr.Markdown("Find the latency-optimal hierarchy for **this machine**: profile the family (forward "
                            "cost by block length, pairwise acceptance α), then solve the generalised shortest "
                            "path over (model, buffer) nodes. All numbers here are **model-predicted** by our "
                            "latency model (i.i.d. acceptance assumed); check them on the Compare tab.")
                with gr.Row():
                    opt_source = gr.Radio(["shipped profile", "measure now"], value="shipped profile",
                                          label="Profile", info="measuring takes a minute or more on a small CPU")
                    opt_buffer = gr.Slider(1, limits.max_buffer, value=min(12, limits.max_buffer), step=1,
                                           label="Largest buffer considered")
                    opt_btn = gr.Button("Optimise", variant="primary", elem_id="optimise-btn")
                opt_status = gr.Markdown("")
                opt_fig = gr.Plot(visual.figure_empty("Press Optimise."), show_label=False, elem_id="opt-gsp")
                opt_table = gr.Dataframe(headers=PLAN_HEADERS, interactive=False, label="Ranked hierarchies (model-predicted)")
                with gr.Row():
                    opt_pick = gr.Dropdown([], label="Plan to use", scale=3)
                    opt_send = gr.Button("Use this plan on the Generate tab", scale=1)

        # ================================================================ wiring
        level_outputs = level_rows + buffer_sliders + rule_dropdowns
        stack_inputs = [family, models] + buffer_sliders + rule_dropdowns
        sampling_inputs = [temperature, top_p, top_k, seed, max_new]

        def split_stack(values):
            fam, mods = values[0], values[1]
            bufs = list(values[2:2 + slots])
            rls = list(values[2 + slots:2 + 2 * slots])
            return fam, mods, bufs, rls

        # -- family / stack widgets --------------------------------------------------------
        def on_family(spec):
            try:
                spec = families.check_allowed(spec)
            except HSDError as e:
                raise as_gr_error(e)
            names = families.names(spec)
            if not names:
                raise gr.Error(f"No models found for {spec!r}; use the bundled family or local model folders.")
            stack, bufs = default_plan(families, spec, names, limits)
            return (gr.update(choices=names, value=stack),
                    gr.update(choices=level_choices(stack), value=len(stack) - 1 if len(stack) > 1 else None),
                    legend_for(stack),
                    *[gr.update(value=bufs[i]) if i < len(bufs) else gr.update() for i in range(slots)])

        family.change(on_family, [family], [models, view_level, legend] + buffer_sliders, api_visibility="private")

        def on_models(spec, mods):
            names = families.names(spec)
            try:
                chain = _chain(mods or [], names) if names else []
            except HSDError:
                chain = []
            updates = []
            for i in range(slots):
                updates.append(gr.update(visible=i < len(chain) - 1))
            for i in range(slots):
                if i < len(chain) - 1:
                    updates.append(gr.update(label=f"L{i} {names[chain[i]]}: buffer"))
                else:
                    updates.append(gr.update())
            for i in range(slots):
                if i < len(chain) - 1:
                    updates.append(gr.update(label=f"rule at L{i + 1} {names[chain[i + 1]]}"))
                else:
                    updates.append(gr.update())
            return updates

        models.change(on_models, [family, models], level_outputs, api_visibility="private")
        demo.load(on_models, [family, models], level_outputs, api_visibility="private")

        # -- Generate ------------------------------------------------------------------------
        def generate(prompt_text, *values):
            """Stream a hierarchical decode: coloured tokens every target round, panels at most
            every HSD_PANEL_INTERVAL_S, the trace (plain dict) and a download at the end."""
            stack, rest = values[: 2 + 2 * slots], values[2 + 2 * slots:]
            temperature_, top_p_, top_k_, seed_, max_new_, time_ar, dark_ = (list(rest) + [None] * 7)[:7]
            fam, mods, bufs, rls = split_stack(stack)
            try:
                req = make_request(families, prompt_text, fam, mods, bufs, rls, temperature_, top_p_, top_k_, seed_,
                                   max_new_)
                dark_ = bool(dark_)
                names = families.names(req.family)
                yield from _generate_stream(req, names, bool(time_ar), dark_)
            except Exception as exc:
                raise as_gr_error(exc) from None

        def _generate_stream(req: Request, names, time_ar: bool, dark_: bool):
            skip = gr.skip()
            level_names = [names[i] for i in req.chain]
            cmap = visual.token_color_map(level_names)
            ar_trace = None
            if time_ar and len(req.chain) > 1:
                yield (gr.update(value=[], color_map=cmap), "*Timing the target alone first (same prompt and seed)…*",
                       skip, skip, skip, skip, skip, skip, skip, legend_for(level_names, dark_), skip)
                ar_trace = run_to_end(req.with_stack([req.chain[-1]], []))
            id_to_text = None
            gsp = None                                  # built at the first panel update, not before a token
            pred = predicted_speedup(families, req, names)
            budget = UiBudget(limits.ui_share, limits.panel_interval_s, limits.token_interval_s)
            gsp_sent = False
            for trace in stream_trace(req):
                finished = trace.events[-1].kind == "finished"
                show, panels = budget.decide(finished)
                if not show:
                    continue
                started = time.monotonic()
                first = budget.updates == 0
                spans = visual.token_spans(trace, with_names=True)
                spans = gr.update(value=spans, color_map=cmap) if first else spans
                md = stats_markdown(trace, ar_trace, pred)
                if finished:
                    md += (f"  \n*Page updates paused the decode {budget.spent_s * 1000:.0f} ms in all "
                           f"({budget.updates} updates).*")
                if not panels:
                    yield (spans, md, skip, skip, skip, skip, skip, skip, skip, skip, skip)
                    budget.record(started, panels=False)
                    continue
                if id_to_text is None:
                    id_to_text = decoder_for(families, req.family)
                if gsp is None:
                    gsp = fast_plot(lambda: gsp_figure(families, req, req.family, names, dark_))
                tl = fast_plot(lambda: visual.figure_timeline(trace, dark=dark_))
                am = fast_plot(lambda: visual.figure_accept_map(trace, dark=dark_))
                mb = fast_plot(lambda: figure_mass_for(trace, None, None, id_to_text, dark_))
                state, dl, idx = skip, skip, skip
                if finished:
                    state = trace.to_dict()
                    state["meta"]["request"] = _request_meta(req, level_names)
                    dl = gr.update(value=save_trace(state), interactive=True)
                    n_target = len(verifications(trace))
                    idx = gr.update(maximum=max(n_target - 1, 1), value=max(n_target - 1, 0))
                    levels = gr.update(choices=level_choices(level_names),
                                       value=len(level_names) - 1 if len(level_names) > 1 else None)
                else:
                    levels = skip
                yield (spans, md, tl, am, mb, skip if gsp_sent else gsp, state, dl, idx,
                       skip if gsp_sent else legend_for(level_names, dark_), levels)
                gsp_sent = True
                budget.record(started, panels=True)

        stack_names = (["family", "models"] + [f"buffer_L{i}" for i in range(slots)]
                       + [f"rule_L{i + 1}" for i in range(slots)])
        sampling_names = ["temperature", "top_p", "top_k", "seed", "max_new_tokens"]
        _named(generate, ["prompt"] + stack_names + sampling_names + ["time_target_alone", "dark_theme"])
        gen_outputs = [tokens, stats, timeline, accept_plot, mass_plot, gsp_plot, trace_state, download,
                       view_index, legend, view_level]
        gen_inputs = [prompt] + stack_inputs + sampling_inputs + [ar_check, dark]
        # preprocess=False: raw widget values reach make_request, which answers every malformed
        # value (null, text for a number, ...) with its own sentence instead of Gradio's generic error
        gen_event = gen_btn.click(generate, gen_inputs, gen_outputs, api_name="generate",
                                  concurrency_id="decode", concurrency_limit=limits.concurrency,
                                  show_progress="minimal", preprocess=False)
        submit_event = prompt.submit(generate, gen_inputs, gen_outputs, api_visibility="private",
                                     concurrency_id="decode", concurrency_limit=limits.concurrency,
                                     show_progress="minimal", preprocess=False)
        stop_btn.click(None, None, None, cancels=[gen_event, submit_event], api_visibility="private")

        def clear(dark_):
            empty = visual.figure_empty(PLACEHOLDER, dark=bool(dark_))
            return ("", [], "*Press Generate.*", empty, empty, empty, None,
                    gr.update(value=None, interactive=False))

        clear_btn.click(clear, [dark], [prompt, tokens, stats, timeline, accept_plot, mass_plot, trace_state, download],
                        api_visibility="private", cancels=[gen_event, submit_event])

        def redraw_views(trace_dict, level, index, dark_):
            if not trace_dict:
                return gr.skip(), gr.skip(), gr.update()
            trace = Trace.from_dict(trace_dict)
            lv = int(level) if level is not None else None
            n = len(verifications(trace, lv))
            spec = trace.meta.get("family", limits.family)
            mb = figure_mass_for(trace, lv, int(index or 0), decoder_for(families, spec), bool(dark_))
            am = visual.figure_accept_map(trace, level=lv, dark=bool(dark_))
            return am, mb, gr.update(maximum=max(n - 1, 1))

        view_index.release(redraw_views, [trace_state, view_level, view_index, dark], [accept_plot, mass_plot, view_index],
                           api_visibility="private")
        view_level.input(lambda t, lv, d: redraw_views(t, lv, 10**9, d), [trace_state, view_level, dark],
                         [accept_plot, mass_plot, view_index], api_visibility="private")

        def use_optimal(spec, mods, *rest):
            names = families.names(spec)
            plan = families.plan(spec, names)
            if plan is None:
                raise gr.Error("No profile of this family yet: open the Optimise tab and press Optimise first.")
            return _stack_updates(plan.chain, plan.buffers, names, slots, limits)

        optimal_btn.click(use_optimal, [family, models], [models] + buffer_sliders, api_visibility="private")

        # -- Compare ---------------------------------------------------------------------------
        def compare(prompt_text, chosen, *values):
            """Run the chosen hierarchies one after another on the same prompt/seed/settings."""
            stack, rest = values[: 2 + 2 * slots], values[2 + 2 * slots:]
            temperature_, top_p_, top_k_, seed_, max_new_, dark_ = (list(rest) + [None] * 6)[:6]
            fam, mods, bufs, rls = split_stack(stack)
            try:
                req = make_request(families, prompt_text, fam, mods, bufs, rls, temperature_, top_p_, top_k_, seed_,
                                   max_new_)
                yield from _compare_stream(req, list(chosen or CONTENDERS), bool(dark_))
            except Exception as exc:
                raise as_gr_error(exc) from None

        def _compare_stream(req: Request, chosen: list[str], dark_: bool):
            names = families.names(req.family)
            runs = compare_plan(families, req, names, chosen)
            skip = gr.skip()
            rows, summaries = [], {}
            n_cols = len(CONTENDERS)
            col_updates = [[gr.update(value=f"**{label}** · waiting"), [], visual.figure_empty(" ", dark=dark_)]
                           for label, _r, _p in runs] + [[gr.update(value=""), [], visual.figure_empty(" ", dark=dark_)]
                                                         for _ in range(n_cols - len(runs))]
            for i, (label, sub, pred) in enumerate(runs):
                status = f"Running {i + 1}/{len(runs)}: **{label}**…"
                yield (status, skip, skip, *[x for col in col_updates for x in col])
                trace = run_to_end(sub)
                s = trace.summary()
                summaries[label] = {"predicted_ms_per_token": pred, "measured_ms_per_token": s.ms_per_token,
                                    "tokens_per_target_call": s.tokens_per_target_call, "tokens_per_s": s.tokens_per_s}
                chain_label = " → ".join(f"{names[c]}" + (f"[{b}]" if j < len(sub.buffers) else "")
                                         for j, (c, b) in enumerate(zip(sub.chain, list(sub.buffers) + [0])))
                rows.append([label, chain_label, round(s.tokens_per_s, 1), round(s.tokens_per_target_call, 2),
                             round(s.ms_per_token, 2), None if pred is None else round(pred, 2), s.n_tokens])
                col_updates[i] = [gr.update(value=f"**{label}**  \n{chain_label}  \n{s.tokens_per_s:.1f} tokens/s (wall clock) · "
                                                  f"{s.tokens_per_target_call:.2f} tokens/target call"),
                                  visual.token_spans(trace), fast_plot(lambda: visual.figure_timeline(trace, dark=dark_))]
                yield (status, fast_plot(lambda: visual.figure_compare(summaries, dark=dark_)), rows,
                       *[x for col in col_updates for x in col])
            done = f"Done: {len(runs)} hierarchies, same prompt and seed ({req.seed}), run one after another."
            yield (done, fast_plot(lambda: visual.figure_compare(summaries, dark=dark_)), rows,
                   *[x for col in col_updates for x in col])

        _named(compare, ["prompt", "hierarchies"] + stack_names + sampling_names + ["dark_theme"])
        cmp_outputs = [cmp_status, cmp_fig, cmp_table] + [c for col in cmp_cols for c in col]
        cmp_btn.click(compare, [cmp_prompt, contenders] + stack_inputs + sampling_inputs + [dark], cmp_outputs,
                      api_name="compare", concurrency_id="decode", concurrency_limit=limits.concurrency,
                      preprocess=False)

        # -- Learn -----------------------------------------------------------------------------
        def learn_load_fn(src, last_trace, dark_):
            if src == LAST_RUN or src is None:
                if not last_trace:
                    raise gr.Error("No run yet: press Generate on the Generate tab first, or pick a recorded example.")
                d = last_trace
            else:
                path = example_traces().get(src)
                if path is None:
                    raise gr.Error(f"The recorded example {src!r} is missing.")
                d = json.loads(path.read_text(encoding="utf-8"))
            trace = Trace.from_dict(d)
            n = len(learn_steps(trace))
            return (d, gr.update(maximum=max(n - 1, 1), value=0), *learn_view(d, 0, dark_))

        def learn_view(d, step, dark_):
            if not d:
                e = visual.figure_empty("Load a trace.", dark=bool(dark_))
                return "Load a trace to begin.", [], e, e, e
            trace = Trace.from_dict(d)
            steps = learn_steps(trace)
            if not steps:
                e = visual.figure_empty("This trace has no steps.", dark=bool(dark_))
                return "This trace has no steps.", [], e, e, e
            step = max(0, min(int(step or 0), len(steps) - 1))
            idx = steps[step]
            part = partial_trace(trace, idx)
            names = list(trace.started.models) if trace.started else []
            event = trace.events[idx]
            md = f"**Step {step + 1} / {len(steps)}** · " + explain(event, names)
            tl = visual.figure_timeline(part, dark=bool(dark_))
            last_v = event if event.kind == "verified" else next(
                (e for e in reversed(part.events) if e.kind == "verified"), None)
            am = visual.figure_accept_map(part, level=last_v.level if last_v is not None else None, dark=bool(dark_))
            id_to_text = decoder_for(families, trace.meta.get("family", limits.family))
            mb = (visual.figure_mass_balance(last_v, id_to_text=id_to_text, dark=bool(dark_)) if last_v is not None
                  else visual.figure_empty("No verification yet at this step.", dark=bool(dark_)))
            return md, visual.token_spans(part), tl, am, mb

        learn_outputs = [explain_md, learn_tokens, learn_timeline, learn_accept, learn_mass]

        def learn_auto(current, src, last_trace, dark_):
            """Opening the tab loads the chosen example once, so there is something to step through."""
            if current or (src == LAST_RUN and not last_trace):
                return [gr.skip()] * (2 + len(learn_outputs))
            return learn_load_fn(src, last_trace, dark_)

        learn_tab.select(learn_auto, [learn_state, learn_src, trace_state, dark],
                         [learn_state, step_slider] + learn_outputs, api_visibility="private")
        learn_load.click(learn_load_fn, [learn_src, trace_state, dark], [learn_state, step_slider] + learn_outputs,
                         api_visibility="private")
        step_slider.change(learn_view, [learn_state, step_slider, dark], learn_outputs, api_visibility="private",
                           trigger_mode="always_last", show_progress="hidden")

        def step_by(delta):
            def fn(d, step):
                if not d:
                    return gr.update(), gr.update()
                n = len(learn_steps(Trace.from_dict(d)))
                new = max(0, min(int(step or 0) + delta, n - 1))
                at_end = delta > 0 and new >= n - 1
                return gr.update(value=new), (gr.Timer(active=False) if at_end else gr.update())
            return fn

        step_btn.click(step_by(1), [learn_state, step_slider], [step_slider, timer], api_visibility="private")
        prev_btn.click(step_by(-1), [learn_state, step_slider], [step_slider, timer], api_visibility="private")
        timer.tick(step_by(1), [learn_state, step_slider], [step_slider, timer], api_visibility="private",
                   show_progress="hidden")
        play_btn.click(lambda: gr.Timer(active=True), None, timer, api_visibility="private")
        pause_btn.click(lambda: gr.Timer(active=False), None, timer, api_visibility="private")

        def lab_fn(kind, vocab, gamma, lab_seed_, dark_):
            try:
                lab = exactness_lab(kind, vocab=int(vocab), gamma=int(gamma), seed=int(lab_seed_ or 0))
            except HSDError as e:
                raise as_gr_error(e) from None
            return visual.figure_exactness(lab, dark=bool(dark_)), lab_table(lab)

        lab_btn.click(lab_fn, [lab_kind, lab_vocab, lab_gamma, lab_seed, dark], [lab_fig, lab_df], api_visibility="private")
        learn_tab.select(lab_fn, [lab_kind, lab_vocab, lab_gamma, lab_seed, dark], [lab_fig, lab_df],
                         api_visibility="private")

        # -- Optimise --------------------------------------------------------------------------
        def optimize(spec, source, max_buffer, dark_=False, progress=gr.Progress()):
            """Profile (or load the shipped profile), run the optimiser; graph, ranked plans."""
            try:
                spec = families.check_allowed(spec)
                names = families.names(spec)
                if source == "measure now":
                    prof = measure(families, spec, progress)
                    families.set_profile(spec, prof)
                elif families.profile(spec, names) is None:
                    raise ConfigError("No shipped profile matches this family; choose 'measure now'.")
                plan = families.plan(spec, names, _whole(max_buffer, "The largest buffer", 1, limits.max_buffer))
            except Exception as exc:
                raise as_gr_error(exc) from None
            ranking = list(plan.ranking)
            rows = [[i + 1, p.label, p.kind, round(p.expected_ms_per_token, 3), round(p.speedup_vs_ar, 2)]
                    for i, p in enumerate(ranking)]
            labels = [f"{i + 1}. {p.label}" for i, p in enumerate(ranking)]
            prof = families.profile(spec, names)
            src = prof.meta.get("measured_at", "?") if prof is not None else "?"
            msg = (f"Optimal: **{plan.label}** · {plan.expected_ms_per_token:.2f} ms/token · "
                   f"**{plan.speedup_vs_ar:.2f}× vs the target alone** (model-predicted; profile measured {src}).")
            plans = [p.to_dict() for p in ranking]
            return (msg, visual.figure_gsp(plan, dark=bool(dark_)), rows,
                    gr.update(choices=labels, value=labels[0]), plans)

        opt_btn.click(optimize, [family, opt_source, opt_buffer, dark],
                      [opt_status, opt_fig, opt_table, opt_pick, plans_state], api_name="optimize",
                      concurrency_id="decode", concurrency_limit=limits.concurrency)

        def send_plan(spec, pick, plans):
            if not plans or not pick:
                raise gr.Error("Press Optimise first, then pick a plan.")
            i = int(str(pick).split(".")[0]) - 1
            p = plans[max(0, min(i, len(plans) - 1))]
            names = families.names(spec)
            return (*_stack_updates(p["chain"], p["buffers"], names, slots, limits), gr.Tabs(selected="generate"))

        opt_send.click(send_plan, [family, opt_pick, plans_state], [models] + buffer_sliders + [tabs],
                       api_visibility="private")

        # -- dark mode: read the page's theme once, redraw the placeholders --------------------
        def placeholders(dark_):
            if not dark_:
                return [gr.skip()] * 10
            e = lambda m: visual.figure_empty(m, dark=True)  # noqa: E731
            return [e(PLACEHOLDER)] * 4 + [e("Press Compare."), e("Load a trace."), e("Load a trace."),
                                           e("Load a trace."), e("Press Compute."), e("Press Optimise.")]

        demo.load(None, None, dark, js="() => document.body.classList.contains('dark')",
                  api_visibility="private").then(
            placeholders, [dark], [timeline, accept_plot, mass_plot, gsp_plot, cmp_fig, learn_timeline,
                                   learn_accept, learn_mass, lab_fig, opt_fig], api_visibility="private").then(
            lambda d: legend_for(stack0, bool(d)), [dark], [legend], api_visibility="private")
    return demo


CONTENDERS = ("autoregressive (target alone)", "best single draft", "optimal (optimiser)", "yours (Generate tab)")
CMP_HEADERS = ["hierarchy", "stack [buffer]", "tokens/s (wall clock)", "tokens / target call",
               "ms/token (wall clock)", "ms/token (model-predicted)", "tokens"]
PLAN_HEADERS = ["rank", "hierarchy (buffer in brackets)", "kind", "ms/token (model-predicted)",
                "speedup vs target alone (model-predicted)"]


def _named(fn, names: Sequence[str]):
    """Give a ``*values`` callback a real signature, so the API docs and gradio_client show
    ``buffer_L0``, ``rule_L1``... instead of ``param_3``."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                          for n in names])
    return fn


def _default_stack(names: Sequence[str], limits: Limits) -> list[str]:
    """Fallback stack: the smallest model, the target, and (if allowed) one middle model."""
    if len(names) <= 2:
        return list(names)
    pick = [names[0], names[len(names) // 2], names[-1]] if limits.max_levels >= 3 else [names[0], names[-1]]
    return list(dict.fromkeys(pick))[: max(limits.max_levels, 1)]


def default_plan(families: "Families", spec: str, names: Sequence[str], limits: Limits) -> tuple[list[str], list[int]]:
    """What the Generate tab starts with: the optimiser's hierarchy for this family when a profile
    exists (the shipped one for the bundled family) and it fits the limits, else the fallback
    stack with buffers of 4."""
    try:
        plan = families.plan(spec, names) if names else None
    except Exception:                       # a broken profile must not stop the app from starting
        plan = None
    if plan is not None and 2 <= len(plan.chain) <= limits.max_levels and max(plan.buffers, default=1) <= limits.max_buffer:
        return [names[c] for c in plan.chain], [int(b) for b in plan.buffers]
    stack = _default_stack(names, limits)
    return stack, [4] * max(len(stack) - 1, 0)


def _stack_updates(chain, buffers, names, slots: int, limits: Limits) -> list:
    values = [names[c] for c in chain]
    ups = [gr.update(value=values)]
    for i in range(slots):
        ups.append(gr.update(value=min(int(buffers[i]), limits.max_buffer)) if i < len(buffers) else gr.update())
    return ups


def _request_meta(req: Request, level_names) -> dict:
    return {"prompt": req.prompt, "family": req.family, "chain": list(req.chain), "names": list(level_names),
            "buffers": list(req.buffers), "rules": list(req.rules), "temperature": req.temperature,
            "top_p": req.top_p, "top_k": req.top_k, "seed": req.seed, "max_new_tokens": req.max_new_tokens}


def compare_plan(families: Families, req: Request, names, chosen: list[str]) -> list[tuple[str, Request, float | None]]:
    """(label, request, model-predicted ms/token or None) for each chosen contender, in order."""
    from hsd.optimize import autoregressive, best_single_draft, plan_for

    prof = families.profile(req.family, names)
    out = []
    for label in CONTENDERS:
        if label not in chosen:
            continue
        if label.startswith("autoregressive"):
            sub = req.with_stack([len(names) - 1], [])
            pred = autoregressive(prof).expected_ms_per_token if prof else None
        elif label.startswith("yours"):
            sub = req
            pred = plan_for(prof, list(req.chain), list(req.buffers)).expected_ms_per_token if prof else None
        else:
            if prof is None:
                gr.Warning(f"'{label}' needs a profile of this family (Optimise tab); skipped.")
                continue
            plan = (best_single_draft(prof, families.limits.max_buffer) if label.startswith("best")
                    else families.plan(req.family, names))
            if len(plan.chain) > families.limits.max_levels:
                gr.Warning(f"'{label}' stacks more models than allowed here; skipped.")
                continue
            sub = req.with_stack(plan.chain, plan.buffers)
            pred = plan.expected_ms_per_token
        out.append((label, sub, pred))
    if not out:
        raise ConfigError("Pick at least one hierarchy to compare.")
    return out


def measure(families: Families, spec: str, progress) -> object:
    """Profile ``spec`` on this machine (a quick profile: few repeats), with a progress bar."""
    from hsd.profile import measure_profile

    family = families.load(spec)
    max_n = min(families.limits.max_buffer + 1, 17)

    def report(done, total, what):
        progress(done / total if total else 0.0, desc=what)

    return measure_profile(family, max_n=max(max_n, 2), repeats=5, warmup=2, progress=report)


def main() -> None:
    limits = Limits.from_env()
    # Gradio encodes and sends each streamed message in its event-loop thread while the decode
    # runs in a worker thread; with Python's default 5 ms GIL switch interval the decode, which
    # releases the GIL around every small torch call, waits behind that work (convoy effect).
    import sys

    sys.setswitchinterval(float(os.environ.get("HSD_SWITCH_INTERVAL_S", "0.0005")))
    import torch

    # CPU: leave one core to the web server.  torch's intra-op threads wait for each other at
    # every op, so the server's work (post-processing, sending, the browser) on a core the decode
    # also uses stalls every forward: measured on 2 cores, the decode ran 57 % slower inside the
    # app than alone with 2 threads, 8 % slower with 1 (and 1 thread decodes these small models
    # as fast as 2 when nothing else runs).  HSD_TORCH_THREADS overrides.
    torch.set_num_threads(limits.torch_threads or default_torch_threads())
    families = Families(limits)
    demo = build_demo(limits, families)
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=4)
    if os.environ.get("HSD_PRELOAD", "1").strip().lower() in TRUE_WORDS:
        # warm the models in the background: the server is up at once, the first click is fast
        threading.Thread(target=_preload, args=(families,), daemon=True, name="hsd-preload").start()
    css = CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=gr.themes.Soft(), css=css, footer_links=["api", "settings"])


def default_torch_threads(cpus: int | None = None) -> int:
    """torch CPU threads for the app: all cores but one (at least one)."""
    cpus = cpus if cpus is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                          else os.cpu_count() or 1)
    return max(1, cpus - 1)


def _preload(families: Families) -> None:
    """Load the default family and its optimiser plan before the first click."""
    spec = families.limits.family
    try:
        families.load(spec)
        families.plan(spec, families.names(spec))
    except Exception as exc:       # the first request will show the same error as a sentence
        print(f"[hsd-explorer] preload skipped: {exc}")


if __name__ == "__main__":
    main()
