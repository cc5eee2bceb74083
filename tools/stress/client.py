"""Talking to the app over HTTP: a ``gradio_client`` client that bypasses proxies, the
``/generate`` endpoint's arguments found by their labels (``GenerateApi``), one request run to
its end and classified (``call`` through gradio_client, ``rest_call`` through the plain REST API
and its event stream), and a ``Tally`` of how the requests of one run ended.

``gradio_client`` is imported inside the functions that use it."""
from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass

from hsd.errors import ConfigError
from tools.stress.server import check_loopback, no_proxy_open

NO_MESSAGE = "error (no message)"      # what the page shows of an exception that is not a gr.Error: nothing


@dataclass
class Outcome:
    """How one API call ended."""

    kind: str                          # "ok" | "error" (app error) | "refused" (queue full) | "failed"
    message: str = ""
    final: object = None
    seconds: float = 0.0

    @property
    def tokens(self) -> list:
        return token_list(self.final) if self.kind == "ok" else []


class Tally:
    """How the requests of one run ended, by kind (thread-safe): each check records into the
    run's own tally, so two runs in one process never mix their counts."""

    def __init__(self):
        self._lock = threading.Lock()
        self.by_kind: Counter = Counter()

    def record(self, out: Outcome) -> Outcome:
        with self._lock:
            self.by_kind[out.kind] += 1
        return out

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def noted(tally: Tally | None, out: Outcome) -> Outcome:
    return out if tally is None else tally.record(out)


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


def make_client(url: str, **kwargs):
    """A ``gradio_client.Client`` for an app on this machine: no proxy (``trust_env=False``: the
    process's proxy variables are ignored, not rewritten), no downloads, no telemetry."""
    from gradio_client import Client

    return Client(check_loopback(url), verbose=False, download_files=False, analytics_enabled=False,
                  httpx_kwargs={"trust_env": False}, **kwargs)


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


def call(client, args: list, timeout_s: float = 300.0, endpoint: str = GenerateApi.ENDPOINT,
         tally: Tally | None = None) -> Outcome:
    """Run one request to the end; classify how it ended (and record it in ``tally``)."""
    return noted(tally, _call(client, args, timeout_s, endpoint))


def _call(client, args: list, timeout_s: float, endpoint: str) -> Outcome:
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
              endpoint: str = GenerateApi.ENDPOINT, tally: Tally | None = None) -> Outcome:
    """One request through the app's plain REST API (``POST /gradio_api/call/<name>``, then read
    its event stream): for values gradio_client cannot send at all (a lone surrogate, NaN, bytes
    that are not UTF-8).  The body is ASCII JSON (surrogates as \\u escapes, NaN as the literal
    Python's json writes) unless ``raw_body`` is given."""
    return noted(tally, _rest_call(url, args, raw_body, timeout_s, endpoint))


def _rest_call(url: str, args: list | None, raw_body: bytes | None, timeout_s: float, endpoint: str) -> Outcome:
    base = check_loopback(url) + "gradio_api/call/" + endpoint.strip("/")
    body = raw_body if raw_body is not None else json.dumps({"data": args}, ensure_ascii=True).encode("ascii")
    t0 = time.monotonic()
    req = urllib.request.Request(base, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with no_proxy_open(req, 60) as r:
            event_id = json.loads(r.read().decode("utf-8"))["event_id"]
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:300]
        kind = "refused" if e.code == 503 else "error" if 400 <= e.code < 500 else "failed"
        return Outcome(kind, f"HTTP {e.code}: {detail}", seconds=time.monotonic() - t0)
    except Exception as e:
        return Outcome("failed", f"{type(e).__name__}: {str(e)[:200]}", seconds=time.monotonic() - t0)
    try:
        with no_proxy_open(f"{base}/{event_id}", timeout_s) as r:
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
