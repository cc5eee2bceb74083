"""HSD Explorer engine: hierarchical speculative decoding with exact verification rules.

    from hsd import Hierarchy, load_family
    family = load_family("bundled")
    h = Hierarchy.from_family(family, chain=[0, 2, 3], buffers=[4, 8], rules="hsd")
    result = h.generate("def fibonacci(n):", max_new_tokens=64, temperature=0.8, seed=0)

Nothing here imports gradio or plotly.  Submodules: ``verify`` (rules), ``lm`` (model wrapper),
``engine`` (the hierarchy decoder), ``trace`` (events and summaries), ``models`` (loading),
``profile`` / ``latency`` / ``optimize`` (the latency model and the GSP optimiser).
"""
from hsd.engine import GenerationResult, Hierarchy, HierarchySpec
from hsd.errors import ConfigError, HSDError, IncompatibleModelsError, ModelLoadError, PromptError, UnknownRuleError
from hsd.lm import SamplingSettings
from hsd.trace import Trace
from hsd.verify import LOSSLESS_RULES, RULES, Verdict


def load_family(*args, **kwargs):
    """See ``hsd.models.load_family`` (imported lazily: it pulls in transformers' auto classes)."""
    from hsd.models import load_family as _load

    return _load(*args, **kwargs)


__all__ = ["Hierarchy", "HierarchySpec", "GenerationResult", "SamplingSettings", "Trace", "RULES",
           "LOSSLESS_RULES", "Verdict", "load_family", "HSDError", "ConfigError", "PromptError",
           "UnknownRuleError", "ModelLoadError", "IncompatibleModelsError"]
