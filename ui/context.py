"""What every tab shares: the settings, the family registry, the few components that cross tabs,
and ``bind``, which turns a module-level callback ``fn(ctx, tab, *inputs)`` into the function an
event listener calls (same name, so the API keeps its endpoint names; same signature minus the
bound arguments, so the API docs name every input; a generator stays a generator, so Gradio
streams it).  Every bound callback draws its figures in the look its page session asked for
(``PRESENTER``: the presenter view's larger fonts, ``visual.theme.presenting``)."""
from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import gradio as gr

from ui.registry import Families
from ui.session import StopSignals
from visual import theme
from ui.settings import Limits


@dataclass
class Context:
    limits: Limits
    families: Families
    dark: gr.Checkbox = None                 # the page's theme (read once by the browser)
    presenter: gr.Checkbox = None            # the presenter view (toggle, or ?presenter=1)
    trace_state: gr.State = None             # the latest Generate trace, a plain dict
    tabs: gr.Tabs = None
    generate: Any = None                     # ui.tabs.generate.GenerateTab: the stack widgets live there
    shapes: Any = None                       # ui.tabs.shapes.ShapesTab (on the Optimise tab)
    placeholders: list = field(default_factory=list)    # (plot, message) redrawn in the dark theme
    prompts: list = field(default_factory=list)         # (label, prompt) examples, read once
    stops: StopSignals = field(default_factory=StopSignals)   # Stop's signal to the running decodes

    @property
    def slots(self) -> int:
        """Draft levels the page has widgets for (``max_levels - 1``)."""
        return max(self.limits.max_levels - 1, 0)

    def placeholder(self, plot: gr.Plot, message: str) -> gr.Plot:
        self.placeholders.append((plot, message))
        return plot


class PresenterSessions:
    """Which page sessions asked for the presenter view, by Gradio session hash.  Bounded (the
    oldest sessions are forgotten first); a session that never asked, or an API client, gets the
    normal view."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._on: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()

    def set(self, session: str | None, on: bool) -> None:
        if not session:
            return
        with self._lock:
            self._on[session] = bool(on)
            self._on.move_to_end(session)
            while len(self._on) > self.capacity:
                self._on.popitem(last=False)

    def get(self, session: str | None) -> bool:
        with self._lock:
            return bool(session) and self._on.get(session, False)


PRESENTER = PresenterSessions()


def current_session() -> str | None:
    """The Gradio session hash of the event being handled (None outside an event)."""
    from gradio.context import LocalContext

    return getattr(LocalContext.request.get(None), "session_hash", None)


def unchanged(components) -> dict:
    """Updates that change nothing (``gr.skip()`` for each).  A callback must never return an
    empty dict: Gradio reads ``{}`` as ONE value and fails ("didn't return enough output values")."""
    return {c: gr.skip() for c in components}


def bind(fn, *bound, names: Sequence[str] | None = None):
    """``fn`` with its first arguments fixed to ``bound`` (see the module docstring).  ``names``:
    the parameter names of a ``*values`` callback, for the API docs."""
    if names is not None:
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    else:
        params = list(inspect.signature(fn).parameters.values())[len(bound):]
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            look = PRESENTER.get(current_session())
            steps = fn(*bound, *args, **kwargs)
            try:
                while True:
                    with theme.presenting(look):            # each step may run in another thread
                        try:
                            update = next(steps)
                        except StopIteration:
                            return
                    yield update
            finally:
                steps.close()
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with theme.presenting(PRESENTER.get(current_session())):
                return fn(*bound, *args, **kwargs)
    call.__signature__ = inspect.Signature(params)
    del call.__wrapped__                     # inspect must read the signature set here, not fn's
    return call
