"""Pure text from plain data: the stats line under the output, and the Learn tab's narration of
a trace, one sentence per engine event, tied to the panel it changes.  Markdown strings; no
gradio, no torch (a test enforces it)."""
from __future__ import annotations

import html
from typing import Sequence

from hsd.trace import Trace
from visual.theme import escape_token

STEP_KINDS = ("prefill", "drafted", "verified", "committed")
STATUS = {"running": "decoding…", "eos": "finished (end of text)", "max_new_tokens": "finished (max new tokens)",
          "cancelled": "stopped"}


def stats_markdown(trace: Trace, ar_trace: Trace | None = None, predicted_speedup: float | None = None,
                   predicted_from: str | None = None, prediction_note: str | None = None) -> str:
    """Tokens, tokens/s (wall clock), tokens per target call, the measured speedup over the
    target alone (when ``ar_trace`` is given), the model-predicted one (with the profile it was
    ``predicted_from`` and a warning line when the decode's settings differ from it), per-edge
    acceptance and the status."""
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
        parts.append(f"{predicted_speedup:.2f}× model-predicted vs the target alone "
                     f"({predicted_from or 'profile'})")
    line = " · ".join(p for p in parts if p)
    edges = " · ".join(f"L{e.drafter}→L{e.verifier}: {e.rate:.0%} of {e.proposed} drafts accepted"
                       for e in s.edges)
    status = STATUS.get(s.finish_reason, s.finish_reason)
    warn = (f"  \n⚠ **Model-predicted number:** {prediction_note[:1].upper()}{prediction_note[1:]}."
            if prediction_note and predicted_speedup is not None else "")
    return f"{line}{warn}  \n**Per-edge acceptance:** {edges or 'none (autoregressive)'}  \n*Status: {status}*"


# -- the Learn tab: a trace one event at a time ---------------------------------------------
def learn_steps(trace: Trace) -> list[int]:
    """Indices of the events the Learn tab steps through."""
    return [i for i, e in enumerate(trace.events) if e.kind in STEP_KINDS]


def partial_trace(trace: Trace, upto: int) -> Trace:
    """The trace as it stood after event ``upto``."""
    return Trace(events=trace.events[: upto + 1], meta=trace.meta)


def token_code(text: str) -> str:
    """A token's text as visible plain characters (space → ␣, newline → ↵ …)."""
    return html.unescape(escape_token(text, 14))


def _tok_list(texts) -> str:
    return " ".join(f"`{token_code(t)}`" for t in texts) or "(none)"


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
        return _explain_verified(event, name, k)
    if event.kind == "committed":
        return (f"**Commit** — the target appends {len(event.tokens)} token(s) to the output: "
                f"{_tok_list(event.texts)} (the **output** grows; ▼ on the timeline). "
                f"{event.total_tokens} tokens so far.")
    return ""


def _explain_verified(event, name, k: int) -> str:
    n, g = event.n_accepted, len(event.proposed)
    marks = "✓" * n + ("✗" if n < g else "")
    fate = (f"keeps all {g} and adds a **bonus** token `{token_code(event.next_text)}`" if event.next_kind == "bonus"
            else f"keeps {n} of {g} ({marks}) and **replaces** the first rejected one with "
                 f"`{token_code(event.next_text)}`, sampled from the leftover (deficit) mass")
    crop = (f" **Crop**: the {g - n} rejected draft token(s) are discarded and every lower level's cache "
            f"is cut back to {event.context_len + n} tokens." if n < g else "")
    hands = f" It hands {event.handed_up} token(s) up to {name(event.level + 1)}." if event.level < k else ""
    return (f"**Verify** — {name(event.level)} scores the whole block from {name(event.level - 1)} in ONE "
            f"forward pass with the `{event.rule}` rule and {fate} (**accept map** row, **mass balance** "
            f"panel).{crop}{hands}")
