"""The app's settings: limits and knobs read from environment variables, and where its assets are.

No gradio here: plain data, testable alone.  Variables (see ``Limits``): HSD_FAMILY,
HSD_MAX_PROMPT_CHARS, HSD_MAX_NEW_TOKENS, HSD_MAX_BUFFER, HSD_MAX_LEVELS, HSD_ALLOW_CUSTOM_MODELS
(default: on locally, off on a Space), HSD_QUEUE_SIZE, HSD_CONCURRENCY, HSD_PANEL_INTERVAL_S,
HSD_TOKEN_INTERVAL_S, HSD_UI_SHARE, HSD_TORCH_THREADS, HSD_FORWARD, HSD_PRELOAD, HSD_SWITCH_INTERVAL_S,
HSD_MAX_SESSIONS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hsd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
EXAMPLES_DIR = ASSETS / "examples"
SHIPPED_PROFILE = ASSETS / "profile-bundled.json"
# family spec -> its measured profiles, the default first (the app decodes at T = 1 by default):
# one sampled (T = 1) and one greedy (T = 0) each, so a prediction is for the decode's temperature
# and, beside them, the same measured on llama.cpp's kernels (``hsd profile --forward llamacpp``)
SHIPPED_PROFILES = {"bundled": (SHIPPED_PROFILE, ASSETS / "validation-bundled-t0-profile.json",
                                ASSETS / "profile-bundled-llamacpp-t1.json", ASSETS / "profile-bundled-llamacpp-t0.json"),
                    "ngram,bundled": (ASSETS / "profile-ngram-bundled-t1.json", ASSETS / "profile-ngram-bundled.json",
                                      ASSETS / "profile-ngram-bundled-llamacpp-t1.json",
                                      ASSETS / "profile-ngram-bundled-llamacpp-t0.json")}
CSS_PATH = ASSETS / "app.css"
PROMPTS_FILE = ASSETS / "prompts" / "code.txt"
TRUE_WORDS = {"1", "true", "yes", "on"}
OFFLINE_DEFAULTS = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                    "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


def offline_defaults(env=None) -> None:
    """Nothing the app or gradio_client does may reach the internet unless asked to (set before
    gradio is imported; a variable already set is kept)."""
    env = os.environ if env is None else env
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)


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


def _env_choice(env, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _env_float(env, name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


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
    forward: str = "auto"               # HSD_FORWARD: auto (lean where it applies), lean, hf or llamacpp
    shapes_scale: float = 1.0           # HSD_SHAPES_SCALE: real shapes scaled down (tests; 1.0 = as published)
    # HSD_MAX_SESSIONS: sessions whose state (the last trace, the widgets a request updated: about
    # 0.5 MB each) the server keeps, least recently used dropped first.  Gradio's default, 10,000,
    # let a soak of API traffic grow the server by 110 MB a minute: every API call is a session.
    max_sessions: int = 256

    @classmethod
    def from_env(cls, env=None) -> "Limits":
        env = os.environ if env is None else env
        on_space = bool(env.get("SPACE_ID"))
        custom = env.get("HSD_ALLOW_CUSTOM_MODELS", "").strip().lower()
        return cls(
            family=env.get("HSD_FAMILY", "").strip() or "bundled",
            max_prompt_chars=_env_int(env, "HSD_MAX_PROMPT_CHARS", cls.max_prompt_chars, 1, 1_000_000),
            max_new_tokens=_env_int(env, "HSD_MAX_NEW_TOKENS", cls.max_new_tokens, 1, 100_000),
            max_buffer=_env_int(env, "HSD_MAX_BUFFER", cls.max_buffer, 1, 1024),
            max_levels=_env_int(env, "HSD_MAX_LEVELS", cls.max_levels, 1, 8),
            allow_custom_models=(custom in TRUE_WORDS) if custom else not on_space,
            queue_size=_env_int(env, "HSD_QUEUE_SIZE", cls.queue_size, 1, 10_000),
            concurrency=_env_int(env, "HSD_CONCURRENCY", cls.concurrency, 1, 64),
            panel_interval_s=_env_float(env, "HSD_PANEL_INTERVAL_S", cls.panel_interval_s),
            ui_share=_env_float(env, "HSD_UI_SHARE", cls.ui_share),
            token_interval_s=_env_float(env, "HSD_TOKEN_INTERVAL_S", cls.token_interval_s),
            torch_threads=_env_int(env, "HSD_TORCH_THREADS", 0, 0, 256),
            forward=_env_choice(env, "HSD_FORWARD", cls.forward, ("auto", "lean", "hf", "llamacpp")),
            shapes_scale=_env_float(env, "HSD_SHAPES_SCALE", cls.shapes_scale),
            max_sessions=_env_int(env, "HSD_MAX_SESSIONS", cls.max_sessions, 1, 1_000_000),
        )


def default_torch_threads(cpus: int | None = None) -> int:
    """torch CPU threads for the app: all cores but one (at least one), the policy of every entry
    point (``hsd.threads``, where the measurements behind it are)."""
    from hsd.threads import default_threads

    return default_threads(cpus, env={})        # HSD_TORCH_THREADS is read by Limits


def preload_wanted(env=None) -> bool:
    """HSD_PRELOAD (default on): warm the models in the background when the server starts."""
    env = os.environ if env is None else env
    return env.get("HSD_PRELOAD", "1").strip().lower() in TRUE_WORDS


def switch_interval_s(env=None) -> float:
    """Python's GIL switch interval for the app (HSD_SWITCH_INTERVAL_S, default 0.5 ms): Gradio
    sends each streamed message in its event-loop thread while the decode runs in a worker thread;
    with the default 5 ms the decode, which releases the GIL around every small torch call, waits
    behind that work (convoy effect)."""
    env = os.environ if env is None else env
    return float(env.get("HSD_SWITCH_INTERVAL_S", "0.0005"))
