"""``python -m ui.stress`` (also ``hsd stress``): reliability of the running app under strange input, many users at
once, cancellation and long use (issue 7).

This command drives the app over HTTP with ``gradio_client`` and knows nothing of its internals:
it reads the ``/generate`` endpoint's parameters from the app's own API description
(``view_api``) and finds them by their labels ("Model family", "Temperature", "L0 buffer", ...).
It never imports gradio, app.py or visual/ (``gradio_client`` is imported lazily, inside
functions), and it talks to loopback addresses only.  It lives in ``ui/`` because it knows the
app's widget labels and launches ``app.py``.

Unless ``--url`` is given, it launches ``app.py`` as a subprocess on a free 127.0.0.1 port with
``GRADIO_ANALYTICS_ENABLED=False``, ``HF_HUB_OFFLINE=1``, ``NO_PROXY=127.0.0.1,localhost``,
``GRADIO_SERVER_PORT``, ``HSD_FAMILY`` and a small ``HSD_QUEUE_SIZE``, waits until
``/gradio_api/info`` answers, and stops it at the end.  ``--family tiny`` builds a throwaway
family of three tiny random Llamas (one shared character tokenizer) in a temporary folder, so the
command runs anywhere in seconds.

What it tries, in order (each a row of the printed table and of the JSON report):
1. the bad-input matrix: every case must come back as ONE clear sentence (an app error, not a
   generic crash message), and the next normal request must work;
2. ``--sessions`` clients at once with different seeds all finish, and each result (tokens and the
   level that produced each one) equals the same request run alone afterwards;
3. a burst of ``--burst`` submits at once is queued or refused cleanly ("queue is full"), never a
   crash; the server still answers afterwards;
4. cancellation: ``job.cancel()`` mid-stream, and a client process killed mid-stream (a closed
   tab); the decode stops (server CPU falls idle), the next request works, and the server's
   memory returns to its level;
5. ``--sequential`` generations one after another keep the server's resident memory (VmRSS of
   its process, from ``/proc/PID/status``) within 10% of its level after the first.

``hsd stress`` runs ``python -m ui.loadtest``: these parts, or its other modes (``--faults``,
``--fuzz N``, ``--soak MINUTES``), which import this module and which it never imports.

Memory and CPU figures need the server's process id: known when this command launched it, else
pass ``--pid``; without one those figures are reported as not measured.  Exit code 0 only if
everything held.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from hsd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
APP_FILE = ROOT / "app.py"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
FORMAT = "hsd-stress/1"
MEMORY_TOLERANCE = 0.10            # "within 10% of its level"
MEMORY_SLACK_MB = 5.0              # allocator noise on a small process (reported, not hidden)
IDLE_CPU = 0.35                    # a server decoding uses ~1 core; idle it uses almost none
GENERIC_CRASH = "something went wrong inside the app"
NO_MESSAGE = "error (no message)"      # what the page shows of an exception that is not a gr.Error: nothing
NORMAL_PROMPTS = ["def parse_args(argv):\n", "class Stack:\n    def push(self, item):\n",
                  "import os\n\n\ndef main():\n", "    for i in range(n):\n"]
QUICK = {"sessions": 4, "burst": 20, "sequential": 10, "new_tokens": 12}
PARTS = ("bad", "sessions", "burst", "cancel", "sequential")
FULL = {"sessions": 8, "burst": 50, "sequential": 50, "new_tokens": 24}


# ============================================================================================
# results
# ============================================================================================
@dataclass
class Check:
    """One row of the report: what was tried, whether it held, and its figures."""

    group: str
    name: str
    held: bool | None                  # None: not measured (e.g. memory without a pid)
    detail: str = ""
    figures: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """How one API call ended."""

    kind: str                          # "ok" | "error" (app error) | "refused" (queue full) | "failed"
    message: str = ""
    final: object = None
    seconds: float = 0.0

    def __post_init__(self):
        with _TALLY_LOCK:
            TALLY[self.kind] = TALLY.get(self.kind, 0) + 1

    @property
    def tokens(self) -> list:
        return token_list(self.final) if self.kind == "ok" else []


TALLY: dict[str, int] = {}             # every request's outcome in this run, by kind
_TALLY_LOCK = threading.Lock()


def token_list(final) -> list:
    """The coloured tokens of a /generate result as (token, level category) pairs."""
    if not final:
        return []
    spans = final[0] if isinstance(final, (list, tuple)) else final
    if isinstance(spans, dict):
        spans = spans.get("value") or []
    out = []
    for s in spans or []:
        if isinstance(s, dict):
            out.append((s.get("token"), s.get("class_or_confidence")))
        else:
            out.append(tuple(s))
    return out


def one_sentence(message: str) -> bool:
    """A message a person can read: one sentence, one line, short, no traceback, not the app's
    generic 'something went wrong' (which means an unexpected exception, not a handled mistake)."""
    msg = (message or "").strip()
    if not msg or "\n" in msg or len(msg) > 300 or "Traceback" in msg:
        return False
    if GENERIC_CRASH in msg.lower():
        return False
    return not re.search(r"[.!?]\s+[A-Z]", msg)


# ============================================================================================
# the server: launch, readiness, process figures
# ============================================================================================
def check_loopback(url: str) -> str:
    host = urllib.parse.urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise ConfigError(f"stress only drives an app on this machine (127.0.0.1 or localhost), not {host or url!r}")
    return url.rstrip("/") + "/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_proxy_open(url: str, timeout: float):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url, timeout=timeout)


def _no_proxy_open_req(req, timeout: float):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(req, timeout=timeout)


def answers(url: str, timeout: float = 5.0) -> bool:
    """Whether ``GET /gradio_api/info`` answers 200."""
    try:
        with _no_proxy_open(url.rstrip("/") + "/gradio_api/info", timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _proc_file(pid: int | None, name: str) -> str | None:
    """The text of ``/proc/PID/name``; None when the process is unknown or gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except OSError:
        return None


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (VmRSS), MB; None when unknown."""
    text = _proc_file(pid, "status") or ""
    line = next((ln for ln in text.splitlines() if ln.startswith("VmRSS:")), None)
    return int(line.split()[1]) / 1024.0 if line else None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (all threads), seconds."""
    text = _proc_file(pid, "stat")
    try:
        fields = text.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, IndexError, ValueError):
        return None


def cpu_busy(pid: int | None, window_s: float = 1.0) -> float | None:
    """Cores' worth of CPU the process used over the next ``window_s`` seconds."""
    a = cpu_seconds(pid)
    if a is None:
        return None
    time.sleep(window_s)
    b = cpu_seconds(pid)
    return None if b is None else (b - a) / window_s


SETTLED_CPU = 0.15                 # a window this quiet ends the wait at once


def wait_idle(pid: int | None, within_s: float = 10.0) -> float | None:
    """Poll 1-second CPU windows until the process has settled (or ``within_s`` passes); the
    quietest window's figure (cores).  Callers judge it against IDLE_CPU."""
    best = None
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        busy = cpu_busy(pid, 1.0)
        if busy is None:
            return None
        best = busy if best is None else min(best, busy)
        if busy < SETTLED_CPU:
            break
    return best


class AppServer:
    """``app.py`` in a subprocess on a free loopback port; a context manager."""

    def __init__(self, family: str, queue_size: int = 8, concurrency: int = 4, extra_env: dict | None = None,
                 log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="hsd-stress-app-", suffix=".log")[1])
        env = dict(os.environ)
        env.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                    "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "HSD_FAMILY": family, "HSD_QUEUE_SIZE": str(queue_size),
                    "HSD_CONCURRENCY": str(concurrency), "TOKENIZERS_PARALLELISM": "false",
                    "GRADIO_SSR_MODE": "False"})
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.started_s = 0.0

    def start(self, timeout_s: float = 180.0) -> "AppServer":
        t0 = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(APP_FILE)], cwd=str(ROOT), env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise ConfigError(f"app.py exited with code {self.proc.returncode} before it answered "
                                  f"(log: {self.log_path}: {self.log_tail(1)})")
            if answers(self.url, timeout=2.0):
                self.started_s = time.monotonic() - t0
                return self
            time.sleep(0.25)
        self.stop()
        raise ConfigError(f"app.py did not answer on {self.url} within {timeout_s:.0f} s (log: {self.log_path})")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 5) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ============================================================================================
# the /generate endpoint, by its parameter labels
# ============================================================================================
def make_client(url: str, **kwargs):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key in ("NO_PROXY", "no_proxy"):
        hosts = {h for h in os.environ.get(key, "").split(",") if h}
        os.environ[key] = ",".join(sorted(hosts | {"127.0.0.1", "localhost"}))
    from gradio_client import Client

    return Client(check_loopback(url), verbose=False, download_files=False, **kwargs)


class GenerateApi:
    """Positional arguments for ``/generate`` built from the app's API description: the prompt is
    the first parameter; the others are found by their labels and default to the app's defaults."""

    ENDPOINT = "/generate"
    KEYS = {"family": "model family", "stack": "stack", "temperature": "temperature", "top_p": "top-p",
            "top_k": "top-k", "seed": "seed", "max_new_tokens": "max new tokens"}

    def __init__(self, client):
        info = client.view_api(print_info=False, return_format="dict")
        try:
            self.params = info["named_endpoints"][self.ENDPOINT]["parameters"]
        except KeyError:
            raise ConfigError(f"the app has no {self.ENDPOINT} endpoint") from None
        labels = [str(p.get("label") or "").lower() for p in self.params]
        self.index: dict[str, int] = {"prompt": 0}
        for key, words in self.KEYS.items():
            hit = [i for i, lab in enumerate(labels) if lab.startswith(words)]
            if not hit:
                raise ConfigError(f"the app's {self.ENDPOINT} endpoint has no {words!r} parameter")
            self.index[key] = hit[0]
        self.buffer_idx = [i for i, lab in enumerate(labels) if "buffer" in lab]
        self.rule_idx = [i for i, lab in enumerate(labels) if lab.startswith("rule")]
        self.defaults = [p.get("parameter_default") for p in self.params]

    @property
    def family(self) -> str:
        return self.defaults[self.index["family"]]

    @property
    def names(self) -> list[str]:
        """The family's model names (the stack's choices), smallest first."""
        t = self.params[self.index["stack"]].get("type") or {}
        return list((t.get("items") or {}).get("enum") or self.defaults[self.index["stack"]] or [])

    def maximum(self, key: str, fallback: int) -> int:
        desc = str((self.params[self.index[key]].get("type") or {}).get("description", ""))
        m = re.search(r"between\s+\S+\s+and\s+(\d+)", desc)
        return int(m.group(1)) if m else fallback

    def args(self, buffers=None, rules=None, **values) -> list:
        out = list(self.defaults)
        for key, value in values.items():
            out[self.index[key]] = value
        if buffers is not None:
            for j, i in enumerate(self.buffer_idx):
                out[i] = buffers[j] if j < len(buffers) else out[i]
        if rules is not None:
            for j, i in enumerate(self.rule_idx):
                out[i] = rules[j] if j < len(rules) else out[i]
        return out


def _raw_nan(value):
    """NaN cannot travel in gradio_client's JSON (httpx refuses it); the app receives it as text."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def call(client, args: list, timeout_s: float = 300.0, endpoint: str = GenerateApi.ENDPOINT) -> Outcome:
    """Run one request to the end; classify how it ended."""
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    t0 = time.monotonic()
    try:
        job = client.submit(*[_raw_nan(a) for a in args], api_name=endpoint)
        final = job.result(timeout=timeout_s)
        return Outcome("ok", final=final, seconds=time.monotonic() - t0)
    except AppError as e:
        msg = str(getattr(e, "message", "") or e)
        kind = "refused" if "queue" in msg.lower() and "full" in msg.lower() else "error"
        return Outcome(kind, msg, seconds=time.monotonic() - t0)
    except QueueError as e:
        return Outcome("refused", str(e), seconds=time.monotonic() - t0)
    except Exception as e:                      # timeouts, connection errors, protocol errors
        return Outcome("failed", f"{type(e).__name__}: {str(e)[:200]}", seconds=time.monotonic() - t0)


def rest_call(url: str, args: list | None = None, raw_body: bytes | None = None, timeout_s: float = 300.0,
              endpoint: str = GenerateApi.ENDPOINT) -> Outcome:
    """One request through the app's plain REST API (``POST /gradio_api/call/<name>``, then read
    its event stream): for values gradio_client cannot send at all (a lone surrogate, NaN, bytes
    that are not UTF-8).  The body is ASCII JSON (surrogates as \\u escapes, NaN as the literal
    Python's json writes) unless ``raw_body`` is given."""
    base = check_loopback(url) + "gradio_api/call/" + endpoint.strip("/")
    body = raw_body if raw_body is not None else json.dumps({"data": args}, ensure_ascii=True).encode("ascii")
    t0 = time.monotonic()
    req = urllib.request.Request(base, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with _no_proxy_open_req(req, 60) as r:
            event_id = json.loads(r.read().decode("utf-8"))["event_id"]
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:300]
        kind = "refused" if e.code == 503 else "error" if 400 <= e.code < 500 else "failed"
        return Outcome(kind, f"HTTP {e.code}: {detail}", seconds=time.monotonic() - t0)
    except Exception as e:
        return Outcome("failed", f"{type(e).__name__}: {str(e)[:200]}", seconds=time.monotonic() - t0)
    try:
        with _no_proxy_open(f"{base}/{event_id}", timeout_s) as r:
            event, last = None, None
            for raw in r:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1].strip() or "null")
                    if event == "complete":
                        return Outcome("ok", final=data, seconds=time.monotonic() - t0)
                    if event == "error":
                        msg = data.get("error") if isinstance(data, dict) else data
                        return Outcome("error", str(msg if msg is not None else NO_MESSAGE),
                                       seconds=time.monotonic() - t0)
                    last = data
        return Outcome("failed", f"the event stream ended without a result ({str(last)[:80]})",
                       seconds=time.monotonic() - t0)
    except Exception as e:
        return Outcome("failed", f"{type(e).__name__}: {str(e)[:200]}", seconds=time.monotonic() - t0)


# ============================================================================================
# (1) the bad-input matrix
# ============================================================================================
@dataclass
class BadCase:
    name: str
    values: dict                        # GenerateApi.args keyword arguments
    words: tuple[str, ...]              # the error must mention one of these (case-insensitive)
    via: str = "client"                 # "client" (gradio_client), "rest" (plain REST API: values
                                        # gradio_client cannot encode), "raw" (a raw request body)
    raw_body: bytes | None = None
    sentence: bool = True               # the answer must be one sentence for a person


RANGE = ("minimum value", "maximum value")   # gradio's own slider bounds: "Value 0 is less than minimum value 1."


def family_folders(spec: str) -> list[str]:
    """The family's model folders (for the same-model-twice and incompatible-family cases): the
    spec itself when it lists folders, else what ``hsd.models`` resolves a family name to."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if parts and all(os.path.isabs(p) for p in parts):
        return parts
    try:
        from hsd.models import resolve_spec

        return [p for p in resolve_spec(spec) if os.path.isabs(p)]
    except Exception:
        return []


def bad_cases(api: GenerateApi, scratch: Path | None = None) -> list[BadCase]:
    """The issue's matrix.  Family-level cases accept either the load error or the app's refusal
    to load other models (a Space without HSD_ALLOW_CUSTOM_MODELS)."""
    names = api.names
    refused = "can be used here"
    first = names[0] if names else "x"
    stack = [first]
    fam_paths = family_folders(str(api.family))
    same_twice = ",".join([fam_paths[0]] * 2) if len(fam_paths) > 1 and os.path.isabs(fam_paths[0]) else None
    cases = [
        BadCase("empty prompt", {"prompt": ""}, ("empty",)),
        BadCase("whitespace-only prompt", {"prompt": "  \n\t  "}, ("empty",)),
        BadCase("100k-character prompt", {"prompt": "x" * 100_000}, ("at most",)),
        BadCase("prompt longer than the models' context", {"prompt": "x = 1\n" * 600}, ("at most", "tokens")),
        BadCase("control characters in the prompt", {"prompt": "def f():\x00\x07\x1b"}, ("control character",)),
        BadCase("lone surrogate in the prompt (REST: gradio_client cannot encode it)", {"prompt": "def f(\ud800):"},
                ("surrogate", "unicode"), via="rest"),
        BadCase("bytes that are not UTF-8 (raw request body)", {}, ("json", "utf", "decode", "parsing"), via="raw",
                raw_body=b'{"data": ["def f(\xff\xfe):"]}', sentence=False),
        BadCase("max new tokens 0", {"max_new_tokens": 0}, ("max new tokens",) + RANGE),
        BadCase("max new tokens negative", {"max_new_tokens": -5}, ("max new tokens",) + RANGE),
        BadCase("max new tokens huge", {"max_new_tokens": 10**9}, ("max new tokens",) + RANGE),
        BadCase("temperature negative", {"temperature": -1.0}, ("temperature",) + RANGE),
        BadCase("temperature NaN (REST: gradio_client refuses NaN)", {"temperature": float("nan")},
                ("temperature",), via="rest"),
        BadCase("temperature null (what a JavaScript client sends for NaN)", {"temperature": None},
                ("temperature",), via="rest"),
        BadCase("top-p 0", {"top_p": 0.0}, ("top-p",) + RANGE),
        BadCase("top-p 1.5", {"top_p": 1.5}, ("top-p",) + RANGE),
        BadCase("buffers empty (null)", {"stack": stack, "buffers": [None] * 8}, ("buffer",)),
        BadCase("buffer zero", {"stack": stack, "buffers": [0] * 8}, ("buffer",) + RANGE),
        BadCase("buffer 10^6", {"stack": stack, "buffers": [10**6] * 8}, ("buffer",) + RANGE),
        BadCase("more levels than models", {"stack": list(names) + ["no-such-model-1", "no-such-model-2"]},
                ("not a model of this family", "at most", "not in the list of choices")),
        BadCase("unknown rule", {"stack": stack, "rules": ["no-such-rule"] * 8}, ("unknown verification rule",)),
        BadCase("hub id while offline", {"family": "Qwen/Qwen2.5-0.5B", "stack": []}, ("offline", refused)),
        BadCase("local path outside the allowed folders", {"family": "/etc", "stack": []},
                ("config.json", "model folder", refused)),
        BadCase("a file as a model folder", {"family": "/etc/hostname", "stack": []},
                ("not a model folder", "no model folder", "could not be found", refused)),
    ]
    cases += [   # beyond the issue's list: other values a script (or a JavaScript client) may send
        BadCase("stack null", {"stack": None}, ("stack", "model")),
        BadCase("seed as text", {"seed": "abc"}, ("seed",)),
    ]
    if same_twice:
        cases.append(BadCase("the same model twice (family spec)", {"family": same_twice, "stack": []},
                             ("distinct", refused)))
    if scratch is not None and fam_paths and os.path.isabs(fam_paths[-1]):
        odd = make_odd_model(scratch / "odd-tokenizer")
        cases.append(BadCase("an incompatible family (other tokenizer)",
                             {"family": f"{odd},{fam_paths[-1]}", "stack": []}, ("tokenizer", refused)))
    return cases


def try_bad_case(url: str, client, api: GenerateApi, case: BadCase) -> Outcome:
    if case.via == "raw":
        return rest_call(url, raw_body=case.raw_body, timeout_s=120)
    if case.via == "rest":
        return rest_call(url, api.args(**case.values), timeout_s=120)
    return call(client, api.args(**case.values), timeout_s=120)


def judge_bad_case(case: BadCase, out: Outcome) -> tuple[bool, str]:
    """(held, why not) for the answer to one bad input (the next request is judged apart)."""
    if out.kind != "error":
        return False, f"expected an error, got {out.kind}"
    if not any(w.lower() in out.message.lower() for w in case.words):
        return False, f"expected an error mentioning {' / '.join(case.words)}"
    if case.sentence and not one_sentence(out.message):
        return False, f"not one clear sentence ({len(out.message)} characters)"
    return True, ""


def normal_args(api: GenerateApi, new_tokens: int, seed: int = 0, prompt: str | None = None) -> list:
    return api.args(prompt=prompt or NORMAL_PROMPTS[seed % len(NORMAL_PROMPTS)], seed=seed,
                    max_new_tokens=new_tokens)


def check_bad_inputs(url: str, client, api: GenerateApi, new_tokens: int, scratch: Path | None = None,
                     log: Callable[[str], None] = print) -> list[Check]:
    checks = []
    for case in bad_cases(api, scratch):
        out = try_bad_case(url, client, api, case)
        after = call(client, normal_args(api, new_tokens, seed=len(checks)), timeout_s=300)
        held, why = judge_bad_case(case, out)
        if held and not (after.kind == "ok" and after.tokens):
            held, why = False, f"the next request: {after.kind} {after.message[:80]}"
        checks.append(Check("bad input", case.name, held, (out.message or out.kind)[:200] + (f" [{why}]" if why else ""),
                            {"answer": out.kind, "message": out.message, "error_s": round(out.seconds, 2),
                             "next_request": after.kind, "next_tokens": len(after.tokens)}))
        log(f"  bad input: {case.name}: {'held' if held else 'FAILED'}")
    return checks


def make_odd_model(folder: Path) -> str:
    """A tiny random Llama with its own 5-character tokenizer: shares no vocabulary with any real
    family (the 'incompatible family' case).  Safetensors, saved once."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    from hsd.family.tiny import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer(list("abcd"))
    model = tiny_llama(7, vocab_size=len(tok), layers=2, max_positions=512)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# ============================================================================================
# (2) sessions at once, (3) a burst
# ============================================================================================
def _intervals_max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def follow(job, timeout_s: float) -> tuple[float | None, object]:
    """Wait for a submitted job to end, polling ``job.done()`` (the future), never iterating the
    job: gradio_client's iterator waits for a FINISHED status that never comes when the job's
    future fails (a dropped event stream, say), so ``for _ in job`` can spin forever.  Returns
    (when the first streamed update arrived, or None; the final value); raises what the job
    raised, or TimeoutError (after cancelling the job) past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.monotonic()
        if time.monotonic() > deadline:
            status = job.status()
            job.cancel()
            raise TimeoutError(f"no end after {timeout_s:.0f} s (client status {status.code}, "
                               f"{len(job.outputs())} updates streamed)")
        time.sleep(0.002)
    if first is None and job.outputs():
        first = time.monotonic()
    return first, job.result(timeout=30)


def check_sessions(url: str, api: GenerateApi, n: int, new_tokens: int, log=print,
                   timeout_s: float = 600.0) -> list[Check]:
    """n clients (n sessions) submit at once with different seeds; then each request alone."""
    clients = [make_client(url) for _ in range(n)]
    reqs = [normal_args(api, new_tokens, seed=100 + i, prompt=NORMAL_PROMPTS[0]) for i in range(n)]
    results: list[Outcome | None] = [None] * n
    spans: list[tuple[float, float] | None] = [None] * n
    barrier = threading.Barrier(n)

    def work(i):
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        barrier.wait()
        t0 = time.monotonic()
        try:
            job = clients[i].submit(*reqs[i], api_name=GenerateApi.ENDPOINT)
            first, final = follow(job, timeout_s)
            end = time.monotonic()
            results[i] = Outcome("ok", final=final, seconds=end - t0)
            spans[i] = (first or end, end)
        except AppError as e:
            results[i] = Outcome("error", str(e), seconds=time.monotonic() - t0)
        except QueueError as e:             # more sessions at once than the queue holds
            results[i] = Outcome("refused", str(e), seconds=time.monotonic() - t0)
        except Exception as e:
            results[i] = Outcome("failed", f"{type(e).__name__}: {e}"[:200], seconds=time.monotonic() - t0)

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 60)
    together_s = time.monotonic() - t0
    finished = sum(1 for r in results if r is not None and r.kind == "ok")
    alone = [call(clients[0], r, timeout_s=timeout_s) for r in reqs]
    equal = sum(1 for r, a in zip(results, alone) if r is not None and r.kind == "ok" and a.kind == "ok"
                and r.tokens == a.tokens and r.tokens)
    distinct = len({tuple(r.tokens) for r in results if r is not None and r.kind == "ok"})
    overlap = _intervals_max_overlap([s for s in spans if s])
    problems = [f"{r.kind}: {r.message}" for r in results if r is not None and r.kind != "ok"]
    held = finished == n and equal == n
    log(f"  sessions: {finished}/{n} finished, {equal}/{n} equal to solo runs, at most {overlap} streaming at once")
    return [Check("concurrency", f"{n} sessions at once, different seeds", held,
                  f"{finished}/{n} finished; {equal}/{n} equal the same request run alone (tokens and levels); "
                  f"{distinct} distinct texts; up to {overlap} streaming at once"
                  + (f"; errors: {problems[:2]}" if problems else ""),
                  {"sessions": n, "finished": finished, "equal_to_solo": equal, "distinct_texts": distinct,
                   "max_streaming_at_once": overlap, "together_s": round(together_s, 2),
                   "solo_total_s": round(sum(a.seconds for a in alone), 2)})]


def check_burst(url: str, api: GenerateApi, n: int, new_tokens: int, server: "AppServer | None",
                log=print) -> list[Check]:
    """n submits at once from one client: each finishes or is refused (queue full); nothing else."""
    client = make_client(url, max_workers=n + 4)
    reqs = [normal_args(api, new_tokens, seed=i) for i in range(n)]
    t0 = time.monotonic()
    outcomes: list[Outcome | None] = [None] * n

    def work(i):
        outcomes[i] = call(client, reqs[i], timeout_s=900)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1200)
    burst_s = time.monotonic() - t0
    kinds = {k: sum(1 for o in outcomes if o is not None and o.kind == k) for k in ("ok", "refused", "error", "failed")}
    lost = sum(1 for o in outcomes if o is None)
    still = answers(url) and (server is None or server.alive())
    after = call(make_client(url), normal_args(api, new_tokens, seed=7), timeout_s=300)
    others = [o.message for o in outcomes if o is not None and o.kind in ("error", "failed")]
    held = kinds["error"] == 0 and kinds["failed"] == 0 and lost == 0 and kinds["ok"] >= 1 and still \
        and after.kind == "ok"
    log(f"  burst: {kinds['ok']} finished, {kinds['refused']} refused (queue full), "
        f"{kinds['error'] + kinds['failed'] + lost} other; server answers after: {still and after.kind == 'ok'}")
    return [Check("concurrency", f"burst of {n} submits", held,
                  f"{kinds['ok']} finished, {kinds['refused']} refused cleanly (queue full), "
                  f"{kinds['error'] + kinds['failed'] + lost} other; the server answered afterwards: "
                  f"{'yes' if still and after.kind == 'ok' else 'NO'}" + (f"; e.g. {others[0][:120]}" if others else ""),
                  {"submitted": n, "finished": kinds["ok"], "refused_queue_full": kinds["refused"],
                   "other_errors": kinds["error"] + kinds["failed"] + lost, "burst_s": round(burst_s, 2),
                   "server_answers_after": bool(still and after.kind == "ok")})]


# ============================================================================================
# (4) cancellation and a client that disconnects
# ============================================================================================
_DISCONNECT_SCRIPT = r"""
import json, os, sys, time
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from gradio_client import Client
url, args = sys.argv[1], json.loads(sys.argv[2])
job = Client(url, verbose=False, download_files=False).submit(*args, api_name="/generate")
deadline = time.time() + 300
while not job.outputs() and not job.done() and time.time() < deadline:
    time.sleep(0.05)
print("streaming", len(job.outputs()), flush=True)
time.sleep(600)
"""


def _long_args(api: GenerateApi, seed: int, n: int) -> list:
    return api.args(prompt=NORMAL_PROMPTS[0], seed=seed, max_new_tokens=n, buffers=[1] * 8)


def long_request(client, api: GenerateApi, seed: int, n: int | None = None):
    """Start the longest request the app accepts (the slider's maximum, halved while the app
    refuses it, e.g. when prompt + tokens exceed the model's context) and wait for its first
    streamed update: (job, max new tokens asked, tokens already streamed)."""
    n = n or api.maximum("max_new_tokens", 256)
    while True:
        job = client.submit(*_long_args(api, seed, n), api_name=GenerateApi.ENDPOINT)
        deadline = time.monotonic() + 300
        while not job.outputs() and not job.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if job.outputs() or n <= 8:
            return job, n, len(token_list(job.outputs()[-1])) if job.outputs() else 0
        n //= 2


def check_cancel(url: str, api: GenerateApi, new_tokens: int, pid: int | None, log=print) -> list[Check]:
    """1) ``job.cancel()`` mid-stream, 2) a client process killed mid-stream, 3) the server's
    memory back to its level afterwards."""
    client = make_client(url)
    warm = call(client, normal_args(api, new_tokens, seed=1))           # memory level after a warm request
    wait_idle(pid, 10)
    level = rss_mb(pid)
    cancelled, n_max = _cancel_mid_stream(client, api, new_tokens, pid, log)          # 1) job.cancel()
    checks = [cancelled, _disconnect_mid_stream(url, client, api, new_tokens, n_max, pid, log)]   # 2) killed client

    # 3) memory back to its level
    call(client, normal_args(api, new_tokens, seed=4))
    wait_idle(pid, 10)
    final = rss_mb(pid)
    held = None if level is None or final is None else final <= level * (1 + MEMORY_TOLERANCE) + MEMORY_SLACK_MB
    checks.append(Check("cancellation", "server memory returns to its level", held,
                        f"VmRSS {_fmt(level, '.0f', ' MB')} before the cancellations, {_fmt(final, '.0f', ' MB')} after"
                        + ("" if held is not None else " (not measured: no server pid)"),
                        {"rss_before_mb": _r(level, 1), "rss_after_mb": _r(final, 1),
                         "warm_request": warm.kind}))
    return checks


def _cancel_mid_stream(client, api: GenerateApi, new_tokens: int, pid: int | None, log) -> tuple[Check, int]:
    """``job.cancel()`` mid-stream: the decode stops, the server idles, the next request works."""
    job, n_max, streamed_before = long_request(client, api, seed=11)
    t_cancel = time.monotonic()
    job.cancel()
    deadline = time.monotonic() + 30
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_s = time.monotonic() - t_cancel
    busy = wait_idle(pid, 10)
    n_tokens = len(token_list(job.outputs()[-1])) if job.outputs() else 0
    after = call(client, normal_args(api, new_tokens, seed=2))
    held = (streamed_before >= 1 and job.done() and n_tokens < n_max and after.kind == "ok"
            and (busy is None or busy < IDLE_CPU))
    check = Check("cancellation", "cancel mid-stream (job.cancel)", held,
                        ("" if streamed_before else "NEVER STREAMED; ") + f"stopped {stop_s:.2f} s after cancel with {n_tokens} of {n_max} tokens streamed; "
                        f"server CPU afterwards {_fmt(busy, '.2f', ' cores')}; next request: {after.kind}",
                        {"tokens_streamed": n_tokens, "tokens_asked": n_max, "tokens_at_cancel": streamed_before,
                         "stop_s": round(stop_s, 2), "server_cpu_after_cores": _r(busy, 3),
                         "next_request": after.kind, "next_request_s": round(after.seconds, 2)})
    log(f"  cancel: {'held' if held else 'FAILED'} ({n_tokens}/{n_max} tokens, CPU after {_fmt(busy, '.2f')})")

    return check, n_max


def _disconnect_mid_stream(url: str, client, api: GenerateApi, new_tokens: int, n_max: int, pid: int | None,
                           log) -> Check:
    """A client whose process is killed mid-stream (a closed tab): the decode stops too."""
    args = _long_args(api, seed=12, n=n_max)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.Popen([sys.executable, "-c", _DISCONNECT_SCRIPT, url, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    streaming = False
    try:
        line = _readline(proc, 300)
        streaming = line.startswith("streaming") and int((line.split() + ["0"])[1]) >= 1
    finally:
        proc.kill()
        proc.wait(10)
    t_kill = time.monotonic()
    busy = wait_idle(pid, 15)
    idle_s = time.monotonic() - t_kill
    after = call(client, normal_args(api, new_tokens, seed=3))
    held = streaming and after.kind == "ok" and (busy is None or busy < IDLE_CPU)
    check = Check("cancellation", "client disconnects mid-stream (process killed)", held,
                        f"{'was streaming' if streaming else 'never streamed'} when killed; server CPU "
                        f"{_fmt(busy, '.2f', ' cores')} {idle_s:.1f} s later; next request: {after.kind}",
                        {"was_streaming": streaming, "server_cpu_after_cores": _r(busy, 3),
                         "idle_after_s": round(idle_s, 2), "next_request": after.kind})
    log(f"  disconnect: {'held' if held else 'FAILED'} (CPU after {_fmt(busy, '.2f')})")

    return check


def _readline(proc: subprocess.Popen, timeout_s: float) -> str:
    box = [""]

    def read():
        box[0] = proc.stdout.readline() if proc.stdout else ""

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    return box[0]


# ============================================================================================
# (5) sequential generations and memory
# ============================================================================================
def check_sequential(url: str, api: GenerateApi, n: int, new_tokens: int, pid: int | None, log=print) -> list[Check]:
    client = make_client(url)
    samples, kinds, times = [], [], []
    level = None
    for i in range(n):
        out = call(client, normal_args(api, new_tokens, seed=1000 + i))
        kinds.append(out.kind)
        times.append(out.seconds)
        mb = rss_mb(pid)
        samples.append(mb)
        if i == 0:
            level = mb
    ok = kinds.count("ok")
    final = samples[-1] if samples else None
    peak = max((s for s in samples if s is not None), default=None)
    mem_held = None if level is None or final is None else final <= level * (1 + MEMORY_TOLERANCE)
    held = ok == n and mem_held is not False
    growth = None if level is None or final is None else 100.0 * (final - level) / level
    log(f"  sequential: {ok}/{n} ok, VmRSS {_fmt(level, '.0f')} -> {_fmt(final, '.0f')} MB")
    return [Check("resources", f"{n} sequential generations", held,
                  f"{ok}/{n} finished; server VmRSS {_fmt(level, '.0f', ' MB')} after the first, "
                  f"{_fmt(final, '.0f', ' MB')} after the last ({_fmt(growth, '+.1f', '%')}; limit +10%), "
                  f"peak {_fmt(peak, '.0f', ' MB')}" + ("" if level is not None else " (memory not measured: no pid)"),
                  {"generations": n, "finished": ok, "rss_after_first_mb": _r(level, 1),
                   "rss_after_last_mb": _r(final, 1), "rss_peak_mb": _r(peak, 1), "rss_growth_pct": _r(growth, 2),
                   "median_s": round(sorted(times)[len(times) // 2], 3) if times else None,
                   "rss_samples_mb": [_r(s, 1) for s in samples]})]


# ============================================================================================
# the whole run
# ============================================================================================
def _r(x, nd):
    return None if x is None else round(x, nd)


def _fmt(x, spec: str, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def run_stress(url: str | None = None, family: str = "bundled", sessions: int = 8, burst: int = 50,
               sequential: int = 50, new_tokens: int = 24, queue_size: int = 8, concurrency: int = 4,
               pid: int | None = None, parts: tuple[str, ...] = PARTS,
               log: Callable[[str], None] = print) -> dict:
    """1) launch the app (unless ``url``), 2) a first request that loads the models, 3) each part
    asked for, in order, 4) whether the server still answers, then stop it; the report (plain
    dict, ``held`` overall)."""
    scratch = Path(tempfile.mkdtemp(prefix="hsd-stress-"))
    server = None
    t0 = time.monotonic()
    if family == "tiny" and url is None:
        family = make_tiny_family(scratch / "tiny")
    if url is None:                                                              # 1)
        log(f"launching app.py (HSD_FAMILY={family}, HSD_QUEUE_SIZE={queue_size}, HSD_CONCURRENCY={concurrency}) ...")
        server = AppServer(family, queue_size=queue_size, concurrency=concurrency).start()
        url, pid = server.url, server.pid
        log(f"  answering on {url} after {server.started_s:.1f} s (pid {pid})")
    url = check_loopback(url)
    checks: list[Check] = []
    TALLY.clear()
    try:
        client = make_client(url)
        api = GenerateApi(client)
        if server is None:
            family = str(api.family)
        warm = call(client, normal_args(api, new_tokens), timeout_s=600)                # 2)
        checks.append(Check("setup", "first request (loads the models)", warm.kind == "ok",
                            f"{warm.kind} in {warm.seconds:.1f} s, {len(warm.tokens)} tokens"
                            + (f": {warm.message[:120]}" if warm.kind != "ok" else ""),
                            {"seconds": round(warm.seconds, 2), "tokens": len(warm.tokens), "rss_mb": _r(rss_mb(pid), 1)}))
        if warm.kind == "ok":                                                    # 3)
            if "bad" in parts:
                log("bad-input matrix ...")
                checks += check_bad_inputs(url, client, api, new_tokens, scratch, log)
            if "sessions" in parts and sessions > 0:
                log(f"{sessions} sessions at once ...")
                checks += check_sessions(url, api, sessions, new_tokens, log)
            if "burst" in parts and burst > 0:
                log(f"burst of {burst} ...")
                checks += check_burst(url, api, burst, new_tokens, server, log)
            if "cancel" in parts:
                log("cancellation ...")
                checks += check_cancel(url, api, new_tokens, pid, log)
            if "sequential" in parts and sequential > 0:
                log(f"{sequential} sequential generations ...")
                checks += check_sequential(url, api, sequential, new_tokens, pid, log)
        alive = answers(url) and (server is None or server.alive())                     # 4)
        checks.append(Check("setup", "server still answers at the end", alive,
                            "yes" if alive else "NO: the server stopped answering",
                            {"rss_mb": _r(rss_mb(pid), 1)}))
    finally:
        log_text = server.log_text() if server is not None else ""
        if server is not None:
            server.stop()
    exceptions = classify_log(log_text)
    held = all(c.held is not False for c in checks)
    return {"format": FORMAT, "url": url, "family": family, "launched": server is not None,
            "settings": {"sessions": sessions, "burst": burst, "sequential": sequential, "new_tokens": new_tokens,
                         "queue_size": queue_size if server is not None else None,
                         "concurrency": concurrency if server is not None else None},
            "held": held, "seconds": round(time.monotonic() - t0, 1),
            "requests": _count_requests(checks, sessions, burst, sequential),
            "server_log_exceptions": exceptions if server is not None else None,
            "checks": [asdict(c) for c in checks]}


def classify_log(text: str) -> dict[str, int]:
    """Exception types that ended a traceback in the server log, counted.  Gradio prints one for
    every ``gr.Error`` too (``gradio.exceptions.Error``: a handled mistake shown to the user)."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^([A-Za-z_][\w.]*(?:Error|Exception))(?::|$)", text, flags=re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _count_requests(checks: list[Check], sessions: int, burst: int, sequential: int) -> dict:
    bad = [c for c in checks if c.group == "bad input"]
    return {"by_outcome": dict(TALLY), "total": sum(TALLY.values()),
            "bad_inputs": len(bad), "bad_inputs_held": sum(1 for c in bad if c.held),
            "failures": [f"{c.group}: {c.name}" for c in checks if c.held is False]}


def print_report(report: dict, out=sys.stdout) -> None:
    rows = [(c["group"], c["name"], {True: "held", False: "FAILED", None: "n/a"}[c["held"]], c["detail"])
            for c in report["checks"]]
    w0 = max([len(r[0]) for r in rows] + [5])
    w1 = max([len(r[1]) for r in rows] + [4])
    print(f"\n{'group':<{w0}}  {'what was tried':<{w1}}  result  details", file=out)
    print("-" * (w0 + w1 + 60), file=out)
    for g, n, h, d in rows:
        print(f"{g:<{w0}}  {n:<{w1}}  {h:<6}  {d}", file=out)
    req = report["requests"]
    exc = report.get("server_log_exceptions")
    shown = "n/a" if exc is None else (", ".join(f"{k} x{v}" for k, v in exc.items()) or "none")
    print(f"\n{req['total']} requests: " + ", ".join(f"{v} {k}" for k, v in sorted(req["by_outcome"].items()))
          + " (ok: finished; error: refused with a message; refused: queue full; failed: no answer)", file=out)
    print(f"{req['bad_inputs_held']}/{req['bad_inputs']} bad inputs held; exceptions in the server log: {shown}; "
          f"{report['seconds']:.0f} s in all", file=out)
    print("EVERYTHING HELD" if report["held"] else "FAILURES: " + "; ".join(req["failures"]), file=out)


# ============================================================================================
# CLI
# ============================================================================================
def build_parser():
    from hsd.tools.cli import Parser

    p = Parser(
        prog="python -m ui.stress",
        description="Launch app.py on a free loopback port (or use --url) and drive it over HTTP with "
                    "gradio_client: the bad-input matrix, concurrent sessions, a burst, cancellation and a "
                    "disconnecting client, and sequential generations with the server's memory watched. "
                    "Exit code 0 only if everything held.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="an app already running on this machine (loopback only)")
    where.add_argument("--family", default="bundled",
                       help="HSD_FAMILY for the launched app: 'bundled' (default), a preset, 'path1,path2,...', "
                            "or 'tiny' (three tiny random models built in a temporary folder)")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's process id (memory and CPU figures)")
    p.add_argument("--sessions", type=int, default=None, help=f"clients at once (default {FULL['sessions']})")
    p.add_argument("--burst", type=int, default=None, help=f"submits at once (default {FULL['burst']})")
    p.add_argument("--sequential", type=int, default=None, help=f"generations one after another (default {FULL['sequential']})")
    p.add_argument("--new-tokens", type=int, default=None, help=f"tokens per normal request (default {FULL['new_tokens']})")
    p.add_argument("--queue-size", type=int, default=8, help="HSD_QUEUE_SIZE of the launched app (default 8)")
    p.add_argument("--concurrency", type=int, default=4, help="HSD_CONCURRENCY of the launched app (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="small figures: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated parts to run, in this order: {','.join(PARTS)} (default: all)")
    p.add_argument("--json", default=None, help="write the report as JSON to this path")
    return p


def check_where(args) -> None:
    """Before anything runs: the report's path can be written, and ``--url`` is this machine."""
    if args.json:
        from hsd.tools.cli import check_output

        problem = check_output(args.json, "--json")
        if problem:
            raise ConfigError(problem)
    if args.url:
        check_loopback(args.url)


def run(args) -> int:
    check_where(args)
    base = QUICK if args.quick else FULL
    pick = lambda v, k: base[k] if v is None else v  # noqa: E731
    for name in ("sessions", "burst", "sequential", "new_tokens"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "new_tokens" else 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative whole number, got {value}")
    if args.url:
        check_loopback(args.url)
    parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        raise ConfigError(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    report = run_stress(url=args.url, family=args.family, sessions=pick(args.sessions, "sessions"),
                        burst=pick(args.burst, "burst"), sequential=pick(args.sequential, "sequential"),
                        new_tokens=pick(args.new_tokens, "new_tokens"), queue_size=args.queue_size,
                        concurrency=args.concurrency, pid=args.pid, parts=parts,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0 if report["held"] else 1


def make_tiny_family(folder: Path) -> str:
    """``--family tiny``: three tiny random Llamas sharing a character tokenizer (code-like
    alphabet), saved as safetensors folders; the spec."""
    from hsd.family.tiny import WIDE_ALPHABET, save_tiny_family

    return save_tiny_family(folder, scale=8.0, alphabet=WIDE_ALPHABET, max_positions=512)


def main(argv=None, parser=None, runner=None) -> int:
    """Parse (``parser``, default this module's), run (``runner``, default ``run``); a user's
    mistake is one ``error:`` line and exit code 2."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return (runner or run)(args)
    except ConfigError as e:
        from hsd.tools.cli import error_line

        sys.stderr.write(error_line(str(e)))
        return 2


if __name__ == "__main__":
    sys.exit(main())
