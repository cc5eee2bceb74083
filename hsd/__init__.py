"""HSD Explorer engine: hierarchical speculative decoding with exact verification rules.

    from hsd import Hierarchy, load_family
    family = load_family("bundled")
    h = Hierarchy.from_family(family, chain=[0, 2, 3], buffers=[4, 8], rules="hsd")
    result = h.generate("def fibonacci(n):", max_new_tokens=64, temperature=0.8, seed=0)

Nothing here imports gradio or plotly, and ``import hsd`` imports nothing heavy: the names below
load their module (and torch) on first use, so the CLI answers ``--help`` at once.

The core, readable in an hour: ``engine`` (the hierarchy decoder), ``levels`` (the level seam and
the transformers level), ``verify`` (rules), ``trace`` (events and summaries), ``errors``,
``models`` (loading).  Beside it: ``hsd.plan`` (profile data, latency model, optimiser, exactness
lab, contenders), ``hsd.tools`` (CLI, measuring, validation, benchmark, examples) and
``hsd.family`` (building the bundled family).  The core imports neither of the last two.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Hierarchy": "hsd.engine", "HierarchySpec": "hsd.engine", "GenerationResult": "hsd.engine",
    "DecodeCancelled": "hsd.engine", "SamplingSettings": "hsd.levels", "Level": "hsd.levels",
    "Trace": "hsd.trace", "RULES": "hsd.verify", "LOSSLESS_RULES": "hsd.verify", "Verdict": "hsd.verify",
    "load_family": "hsd.models",
    "HSDError": "hsd.errors", "ConfigError": "hsd.errors", "PromptError": "hsd.errors",
    "UnknownRuleError": "hsd.errors", "ModelLoadError": "hsd.errors", "IncompatibleModelsError": "hsd.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hsd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value                     # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
