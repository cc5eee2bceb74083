"""Typed exceptions for user mistakes.  Each message is one clear sentence meant for a person;
the CLI prints it as one line and exits with code 2, the app shows it as a ``gr.Error``."""


class HSDError(ValueError):
    """Base class: a problem with what the user asked for (not a bug)."""


class ConfigError(HSDError):
    """Invalid decoding settings: buffers, temperature, top-p, budgets, rules per level."""


class UnknownRuleError(ConfigError):
    """A verification rule name that is not in ``hsd.verify.RULES``."""


class PromptError(HSDError):
    """An empty prompt, or one longer than a model's context window."""


class ModelLoadError(HSDError):
    """A model spec that cannot be loaded (missing folder, offline hub id, unsafe weights)."""


class IncompatibleModelsError(HSDError):
    """Models whose tokenizers do not share one vocabulary mapping."""
