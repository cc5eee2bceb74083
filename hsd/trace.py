"""The trace: frozen plain-data events emitted by the decoder, and the summaries derived from them.

This is the one seam between the engine and the pictures (docs/design.md §5): no tensors, only ints,
floats, strings, tuples/lists and dicts of those, so a trace serialises to JSON and back.

Levels are numbered 0..K, 0 = the smallest drafter, K = the target.  Times are milliseconds since
the decode started (``t_ms``) and durations (``dur_ms``) are wall clock.  Events are built by
keyword only (``kw_only`` dataclasses), so reordering fields here cannot swap values anywhere.

Events, in the order the decoder emits them:
- ``Started``    the configuration (model names, buffers, rules, sampling, seed, prompt length).
- ``Prefill``    one level processed the prompt.
- ``Drafted``    level 0 generated ``tokens`` one at a time (``forward_passes`` one-token passes);
                 ``dur_ms`` is the whole step (sampling included), ``forward_ms`` its passes alone.
- ``Verified``   level ``level`` scored the block ``proposed`` from level ``level-1`` in one forward
                 pass and kept ``n_accepted`` of them, then ``next_token`` (a replacement or a bonus).
                 ``handed_up`` is how many tokens the level then passes upward (after truncation to
                 its buffer); for the target it is what it commits.
- ``Committed``  the target appended ``tokens`` to the output; ``origins[i]`` is the level that
                 produced token i (a level-0 draft accepted all the way up, or a replacement/bonus
                 token sampled by that level).
- ``Finished``   why decoding stopped: ``eos``, ``max_new_tokens`` or ``cancelled`` (the consumer
                 threw ``hsd.engine.DecodeCancelled`` into the stream, e.g. Ctrl-C in the CLI).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable


@dataclass(frozen=True, kw_only=True)
class Started:
    models: tuple[str, ...]
    buffers: tuple[int, ...]
    rules: tuple[str, ...]          # rule used by level 1..K (len K)
    temperature: float
    top_k: int
    top_p: float
    seed: int
    max_new_tokens: int
    prompt_tokens: int
    prompt_text: str = ""
    kind: str = "started"


@dataclass(frozen=True, kw_only=True)
class _Timed:
    """When a step began (ms since the decode started) and how long it took (wall clock)."""

    t_ms: float
    dur_ms: float


@dataclass(frozen=True, kw_only=True)
class Prefill(_Timed):
    level: int
    n_tokens: int
    kind: str = "prefill"


@dataclass(frozen=True, kw_only=True)
class _Step(_Timed):
    """One step of a target round at one level, on a context of ``context_len`` tokens."""

    round: int
    level: int
    context_len: int


@dataclass(frozen=True, kw_only=True)
class Drafted(_Step):
    tokens: tuple[int, ...]
    texts: tuple[str, ...]
    forward_passes: int
    forward_ms: float | None = None     # inside the passes (None in traces saved before it existed)
    kind: str = "drafted"


@dataclass(frozen=True, kw_only=True)
class Verified(_Step):
    """``level`` is the verifier; the drafter is ``level - 1``.  ``dur_ms``: its forward pass."""

    proposed: tuple[int, ...]
    proposed_texts: tuple[str, ...]
    proposed_origins: tuple[int, ...]
    n_accepted: int
    next_token: int
    next_text: str
    next_kind: str                  # "replacement" | "bonus"
    handed_up: int
    rule: str
    diagnostics: dict
    kind: str = "verified"


@dataclass(frozen=True, kw_only=True)
class Committed:
    round: int
    tokens: tuple[int, ...]
    texts: tuple[str, ...]          # each token's text ("" for a special token)
    origins: tuple[int, ...]
    text: str                       # decoded delta appended to the output (no special tokens)
    total_tokens: int
    t_ms: float
    kind: str = "committed"


@dataclass(frozen=True, kw_only=True)
class Finished:
    reason: str                     # "eos" | "max_new_tokens" | "cancelled"
    n_tokens: int
    t_ms: float
    kind: str = "finished"


Event = Started | Prefill | Drafted | Verified | Committed | Finished

EVENT_TYPES = {f.default: cls for cls in (Started, Prefill, Drafted, Verified, Committed, Finished)
               for f in fields(cls) if f.name == "kind"}


def _plain(v):
    """JSON-ready copy: tuples become lists, dicts and lists are copied (what ``asdict`` gives,
    at a fraction of its cost: it deep-copies every leaf)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def event_to_dict(event) -> dict:
    names = _FIELD_NAMES.get(type(event))
    if names is None:
        names = _FIELD_NAMES[type(event)] = tuple(f.name for f in fields(event))
    return {n: _plain(getattr(event, n)) for n in names}


def event_from_dict(d: dict):
    cls = EVENT_TYPES[d["kind"]]
    kwargs = {}
    for f in fields(cls):
        if f.name in d:
            v = d[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) and f.name != "diagnostics" else v
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------
# summaries
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeStats:
    """Drafts of level ``drafter`` checked by level ``verifier``."""

    drafter: int
    verifier: int
    proposed: int
    accepted: int
    verifications: int
    per_position: tuple[float, ...]     # acceptance rate of draft position 1, 2, ...
    per_position_n: tuple[int, ...]     # how many drafts reached that position

    @property
    def rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def mean_accepted(self) -> float:
        return self.accepted / self.verifications if self.verifications else 0.0


@dataclass(frozen=True)
class LevelStats:
    level: int
    name: str
    forward_passes: int
    forward_ms: float


@dataclass(frozen=True)
class TraceSummary:
    models: tuple[str, ...]
    n_tokens: int
    target_calls: int
    tokens_per_target_call: float       # a.k.a. mean acceptance length / block efficiency; 1.0 for AR
    wall_ms: float                      # start to finish, prefill included (wall clock)
    tokens_per_s: float                 # n_tokens / wall (wall clock)
    ms_per_token: float
    edges: tuple[EdgeStats, ...]
    levels: tuple[LevelStats, ...]
    finish_reason: str
    rounds: int

    def to_dict(self) -> dict:
        d = asdict(self)
        for e, edge in zip(d["edges"], self.edges):
            e["rate"] = edge.rate
            e["mean_accepted"] = edge.mean_accepted
        return d


@dataclass
class Trace:
    """An ordered list of events plus free-form ``meta`` (e.g. what produced it)."""

    events: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def add(self, event) -> None:
        self.events.append(event)

    def extend(self, events: Iterable) -> None:
        for e in events:
            self.add(e)

    def of_kind(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    @property
    def started(self) -> Started | None:
        s = self.of_kind("started")
        return s[0] if s else None

    @property
    def token_ids(self) -> list[int]:
        return [t for e in self.of_kind("committed") for t in e.tokens]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.of_kind("committed"))

    def decode_ms(self) -> float:
        """Wall ms of the decode alone: from the end of the prompt prefill to the finish (nan when
        the decode did not finish)."""
        finished = self.of_kind("finished")
        if not finished:
            return float("nan")
        return finished[-1].t_ms - max((e.t_ms + e.dur_ms for e in self.of_kind("prefill")), default=0.0)

    def summary(self) -> TraceSummary:
        start = self.started
        models = tuple(start.models) if start else ()
        k = len(models) - 1
        verified = self.of_kind("verified")
        drafted = self.of_kind("drafted")
        committed = self.of_kind("committed")
        finished = self.of_kind("finished")
        n_tokens = sum(len(e.tokens) for e in committed)
        if k <= 0:
            target_calls = sum(e.forward_passes for e in drafted)
        else:
            target_calls = sum(1 for e in verified if e.level == k)
        edges = []
        for j in range(1, k + 1):
            vs = [e for e in verified if e.level == j]
            width = max((len(e.proposed) for e in vs), default=0)
            reached = [0] * width
            kept = [0] * width
            for e in vs:
                for pos in range(len(e.proposed)):
                    reached[pos] += 1
                    kept[pos] += pos < e.n_accepted
            edges.append(EdgeStats(
                drafter=j - 1, verifier=j,
                proposed=sum(len(e.proposed) for e in vs),
                accepted=sum(e.n_accepted for e in vs),
                verifications=len(vs),
                per_position=tuple(a / r if r else 0.0 for a, r in zip(kept, reached)),
                per_position_n=tuple(reached)))
        levels = []
        for lv in range(k + 1):
            passes = sum(1 for e in self.of_kind("prefill") if e.level == lv)
            ms = sum(e.dur_ms for e in self.of_kind("prefill") if e.level == lv)
            passes += sum(e.forward_passes for e in drafted if e.level == lv)
            ms += sum(e.dur_ms if e.forward_ms is None else e.forward_ms for e in drafted if e.level == lv)
            passes += sum(1 for e in verified if e.level == lv)
            ms += sum(e.dur_ms for e in verified if e.level == lv)
            levels.append(LevelStats(lv, models[lv] if lv < len(models) else str(lv), passes, ms))
        wall_ms = finished[-1].t_ms if finished else max((getattr(e, "t_ms", 0.0) for e in self.events), default=0.0)
        return TraceSummary(
            models=models,
            n_tokens=n_tokens,
            target_calls=target_calls,
            tokens_per_target_call=n_tokens / target_calls if target_calls else 0.0,
            wall_ms=wall_ms,
            tokens_per_s=1000.0 * n_tokens / wall_ms if wall_ms > 0 else 0.0,
            ms_per_token=wall_ms / n_tokens if n_tokens else 0.0,
            edges=tuple(edges),
            levels=tuple(levels),
            finish_reason=finished[-1].reason if finished else "running",
            rounds=len(committed),
        )

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "hsd-trace/1", "meta": self.meta, "events": [event_to_dict(e) for e in self.events]}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Trace":
        return cls(events=[event_from_dict(e) for e in d["events"]], meta=dict(d.get("meta", {})))

    @classmethod
    def from_json(cls, s: str) -> "Trace":
        return cls.from_dict(json.loads(s))

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path) -> "Trace":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())
