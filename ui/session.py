"""Engine events -> page updates: the GPU boundary, the pacing budget, errors, trace files.

1) ``decode_events`` is the GPU boundary (the ``spaces.GPU`` function under ZeroGPU, a plain
   generator elsewhere): it decodes a validated ``Request`` and yields its events;
2) ``stream_trace`` / ``run_to_end`` collect them into a ``Trace``; ``StopSignals`` is how Stop
   ends a decode (after the round it is in, with a last update that says stopped); closing the
   generator (a closed tab) stops the decode between two events;
3) ``UiBudget`` keeps the page updates within a small share of the decode's wall time;
4) ``as_gr_error`` turns any exception into a ``gr.Error``: a user's mistake keeps its one
   sentence and is logged as ONE line; anything else keeps its traceback in the log;
5) ``fast_plot`` sends a figure as ready Plotly JSON; ``save_trace`` writes the download.
"""
from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
from gradio.components.plot import PlotData

import visual
from hsd.errors import HSDError
from hsd.trace import Event, Finished, Trace, event_from_dict, event_to_dict
from ui.registry import load_models
from ui.inputs import Request

try:                                    # ZeroGPU on a Space; a no-op decorator everywhere else
    import spaces

    GPU = spaces.GPU
    ZERO_GPU = True
except ImportError:                     # pragma: no cover - depends on the environment
    ZERO_GPU = False

    def GPU(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)


class ActiveDecodes:
    """How many decodes run in this process (Stop and a closed tab must bring it back down)."""

    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "ActiveDecodes":
        with self._lock:
            self._n += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._n -= 1

    @property
    def count(self) -> int:
        return self._n


ACTIVE = ActiveDecodes()


def active_decodes() -> int:
    return ACTIVE.count


# --------------------------------------------------------------------------------------------
# 1) the GPU boundary
# --------------------------------------------------------------------------------------------
@GPU(duration=120)
def decode_events(req: Request) -> Iterator[Event | dict]:
    """Decode ``req`` (already validated and allowed) and yield its events.  Under ZeroGPU (this
    function runs in a forked worker) they cross as plain dicts (``hsd.trace.event_to_dict``);
    everywhere else the frozen events pass as they are.  Consumers accept both (``as_event``)."""
    family = load_models(req.family)            # imports the engine first (ui.registry.import_engine)
    from hsd.engine import Hierarchy

    h = Hierarchy.from_family(family, chain=list(req.chain), buffers=list(req.buffers), rules=list(req.rules),
                              forward=req.forward, threads=None)   # the server set torch's threads (app.py)
    events = h.stream(req.prompt, max_new_tokens=req.max_new_tokens, temperature=req.temperature,
                      top_k=req.top_k, top_p=req.top_p, seed=req.seed)
    with ACTIVE:
        try:
            if ZERO_GPU:
                for event in events:
                    yield event_to_dict(event)
            else:
                yield from events
        finally:
            events.close()


def as_event(e) -> Event:
    """An event from ``decode_events``: a plain dict under ZeroGPU, the event itself elsewhere."""
    return event_from_dict(e) if isinstance(e, dict) else e


# --------------------------------------------------------------------------------------------
# 2) traces
# --------------------------------------------------------------------------------------------
def new_trace(req: Request) -> Trace:
    return Trace(meta={"app": "hsd-explorer", "family": req.family, "chain": list(req.chain)})


def stream_trace(req: Request, stop: Callable[[], bool] | None = None) -> Iterator[Trace]:
    """Decode ``req``, yielding the growing trace after every target round (commit) and at the
    end.  ``stop()`` is asked after every commit: once true, the decode is closed and the trace
    ends there with ``Finished("cancelled")`` (the Stop button).  Closing this generator stops
    the decode between two events."""
    trace = new_trace(req)
    events = decode_events(req)
    try:
        for e in events:
            event = as_event(e)
            trace.add(event)
            if event.kind == "committed" and stop is not None and stop():
                trace.add(Finished(reason="cancelled", n_tokens=event.total_tokens, t_ms=event.t_ms))
                yield trace
                return
            if event.kind in ("committed", "finished"):
                yield trace
    finally:
        events.close()


def run_to_end(req: Request, stop: Callable[[], bool] | None = None) -> Trace:
    """Decode ``req`` to the end, or until ``stop()`` (no page updates); the trace."""
    trace = new_trace(req)
    for trace in stream_trace(req, stop):
        pass
    return trace


class StopSignals:
    """The Stop button's line to the decodes of one page session (by Gradio session hash).

    A decode holds a ``Run`` while it streams (``running``) and its stream asks ``run.requested``
    after every target round; ``stop(session)`` raises the signal of every decode the session has
    running and waits until they have sent their last update, so that the stopped status is the
    last thing the page gets from them.  Stopping by signal and not by cancelling the Gradio
    event: an update a cancelled event had already produced (a round ending just then) could land
    after the stopped status and leave the page saying "decoding…" for good."""

    @dataclass
    class Run:
        requested: threading.Event = field(default_factory=threading.Event)
        ended: threading.Event = field(default_factory=threading.Event)

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, list[StopSignals.Run]] = {}

    @contextmanager
    def running(self, session: str | None) -> Iterator["StopSignals.Run"]:
        run = StopSignals.Run()
        if session:
            with self._lock:
                self._runs.setdefault(session, []).append(run)
        try:
            yield run
        finally:
            run.ended.set()
            if session:
                with self._lock:
                    left = [r for r in self._runs.get(session, []) if r is not run]
                    if left:
                        self._runs[session] = left
                    else:
                        self._runs.pop(session, None)

    def stop(self, session: str | None, wait_s: float) -> tuple[int, bool]:
        """Signal ``session``'s running decodes; (how many, whether all ended within ``wait_s``)."""
        with self._lock:
            runs = list(self._runs.get(session, [])) if session else []
        for run in runs:
            run.requested.set()
        deadline = time.monotonic() + wait_s
        ended = all(run.ended.wait(max(deadline - time.monotonic(), 0.0)) for run in runs)
        return len(runs), ended

    def running_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._runs.values())


# --------------------------------------------------------------------------------------------
# 3) pacing
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# 4) errors
# --------------------------------------------------------------------------------------------
MAX_MESSAGE = 280           # characters of a message a person reads in a toast


def brief(value, limit: int = 40) -> str:
    """``repr(value)`` short enough to quote in a sentence (a 100k-character value is not echoed)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def tidy_message(msg: str) -> str:
    """One line, at most ``MAX_MESSAGE`` characters: a quoted value longer than 40 characters is
    cut, and a quoted value never reads as the end of a sentence (``. `` inside it is shown as
    ``.␣``).  Our own sentences are short; this guards the values they echo."""
    msg = " ".join(str(msg).split())

    def quoted(m):
        inner = m.group(0)
        inner = inner if len(inner) <= 42 else inner[:40] + "…" + inner[0]
        return re.sub(r"([.!?])\s", "\\1␣", inner)
    msg = re.sub(r"(?<!\w)'[^']*'(?!\w)|(?<!\w)\"[^\"]*\"(?!\w)", quoted, msg)
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE - 1] + "…"


def as_gr_error(exc: BaseException, log=None) -> gr.Error:
    """A user's mistake keeps its one sentence and is logged as one line (no traceback: it is
    not a fault).  Anything else is a fault: its FULL traceback (every frame down to where it was
    raised, and its causes) goes to the server log here, and the user gets one short sentence."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, HSDError):
        msg = tidy_message(str(exc))
        msg = msg[:1].upper() + msg[1:]
        log(f"[hsd-explorer] refused: {msg}")
        return gr.Error(msg, print_exception=False)
    log(f"[hsd-explorer] fault: {type(exc).__name__}: {str(exc)[:200]}\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    return gr.Error(f"Something went wrong inside the app ({type(exc).__name__}: {tidy_message(str(exc))[:160]}); "
                    "the request was abandoned, and the app is still running.", print_exception=False)


def input_error(endpoint: str, exc: BaseException, log=None) -> gr.Error:
    """A request Gradio could not hand to ``endpoint``'s handler (too few values, a value of the
    wrong shape, a choice not offered): one sentence for the caller, one line in the log."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if isinstance(exc, gr.Error):
        detail = str(exc.message)
    else:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines[1:] if not ln.startswith("For further information")), None) \
            if len(lines) > 1 and "validation error" in lines[0] else (lines[0] if lines else type(exc).__name__)
    msg = tidy_message(f"The request does not fit /{str(endpoint).strip('/')}'s inputs ({detail})")
    msg = msg.rstrip(".") + "." if not msg.endswith("…") else msg
    log(f"[hsd-explorer] refused a malformed request: {msg}")
    return gr.Error(msg, print_exception=False)


async def refused_body(request, exc):
    """FastAPI's answer to a request body of the wrong shape, as HTTP 422 with one sentence (its
    own handler fails with 500 on a body holding NaN, which JSON cannot write back)."""
    from fastapi.responses import JSONResponse

    first = next(iter(getattr(exc, "errors", lambda: [])() or []), {})
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "the body"
    return JSONResponse(status_code=422, content={"detail": tidy_message(
        f"The request body is not what the API takes ({where}: {first.get('msg', 'malformed')})")})


def log_skipped(what: str, exc: BaseException, log=None) -> None:
    """One log line for an error a handler answers by leaving the page as it is (never silence)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    log(f"[hsd-explorer] {what} skipped ({type(exc).__name__}: {str(exc)[:200]})")


def refuse(message: str, log=None) -> gr.Error:
    """A refusal the tabs find themselves (no HSDError): one line in the log, no traceback."""
    return as_gr_error(HSDError(message), log)


# --------------------------------------------------------------------------------------------
# 5) figures and files
# --------------------------------------------------------------------------------------------
def fast_plot(build) -> PlotData:
    """``build()`` (a ``visual`` figure builder call) sent to ``gr.Plot`` as ready JSON: the shared
    look is merged as plain data (``visual.theme.deferred_template``), skipping Plotly's template
    copy + validation, which was most of a streaming panel update (~13 ms a figure, several per
    update, all of it pausing the decode).  The JSON is the same figure (tests/test_visual.py)."""
    with visual.theme.deferred_template():
        fig = build()
    return PlotData(type="plotly", plot=visual.theme.plot_json(fig))


TRACE_FILES_MAX_AGE_S = 3600.0
TRACE_FILES_SWEEP_S = 300.0            # sweep old trace files at most this often
_LAST_SWEEP = [0.0]


def save_trace(trace_dict: dict) -> str:
    """Write a trace for the download button (``save_json``)."""
    return save_json(trace_dict, "trace")


def save_json(data: dict, kind: str) -> str:
    """Write ``data`` as ``hsd-<kind>-<id>.json`` for a download button; files older than an hour
    are removed on the way (a long-running public app must not fill its disk).  A folder that
    cannot be written is an ``HSDError`` with one sentence (the caller decides what it costs)."""
    folder = Path(tempfile.gettempdir()) / "hsd-explorer"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"hsd-{kind}-{uuid.uuid4().hex[:10]}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
    except OSError as exc:
        raise HSDError(f"the server could not write the {kind} file for download into {folder} "
                       f"({exc.strerror or type(exc).__name__})") from exc
    _sweep(folder)
    return str(path)


def _sweep(folder: Path) -> None:
    now = time.time()
    if now - _LAST_SWEEP[0] > TRACE_FILES_SWEEP_S:          # not on every run: it lists the folder
        _LAST_SWEEP[0] = now
        for old in folder.glob("hsd-*.json"):
            try:
                if old.stat().st_mtime < now - TRACE_FILES_MAX_AGE_S:
                    old.unlink()
            except FileNotFoundError:                    # another request swept it first
                pass
            except OSError as exc:
                log_skipped(f"removing the old download {old.name}", exc)
