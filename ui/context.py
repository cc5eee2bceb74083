"""What every tab shares: the settings, the family registry, the few components that cross tabs,
and ``bind``, which turns a module-level callback ``fn(ctx, tab, *inputs)`` into the function an
event listener calls (same name, so the API keeps its endpoint names; same signature minus the
bound arguments, so the API docs name every input; a generator stays a generator, so Gradio
streams it)."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import gradio as gr

from ui.registry import Families
from ui.settings import Limits


@dataclass
class Context:
    limits: Limits
    families: Families
    dark: gr.Checkbox = None                 # the page's theme (read once by the browser)
    trace_state: gr.State = None             # the latest Generate trace, a plain dict
    tabs: gr.Tabs = None
    generate: Any = None                     # ui.tabs.generate.GenerateTab: the stack widgets live there
    shapes: Any = None                       # ui.tabs.shapes.ShapesTab (on the Optimise tab)
    placeholders: list = field(default_factory=list)    # (plot, message) redrawn in the dark theme
    prompts: list = field(default_factory=list)         # (label, prompt) examples, read once

    @property
    def slots(self) -> int:
        """Draft levels the page has widgets for (``max_levels - 1``)."""
        return max(self.limits.max_levels - 1, 0)

    def placeholder(self, plot: gr.Plot, message: str) -> gr.Plot:
        self.placeholders.append((plot, message))
        return plot


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
            yield from fn(*bound, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            return fn(*bound, *args, **kwargs)
    call.__signature__ = inspect.Signature(params)
    del call.__wrapped__                     # inspect must read the signature set here, not fn's
    return call
