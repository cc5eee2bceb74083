"""Hierarchical speculative decoding (Globerson et al., arXiv 2510.19705), any depth.

Levels 0..K: level 0 is the smallest drafter, level K the target; all share one vocabulary.
Buffer targets T_0..T_{K-1} (one per draft level).  The decoder is a generator of plain-data
events (``hsd.trace``); callers (CLI, app, benchmark, tests) consume the same stream.

The recursion ("exact buffer" policy -- it is what ``hsd.latency`` models):
- level 0 samples T_0 tokens one at a time;
- level i (0 < i < K) hands up EXACTLY T_i tokens: it repeatedly asks level i-1 for a block of
  T_{i-1} tokens drafted from its current context, scores the whole block in ONE forward pass of
  its model, keeps what its rule accepts plus one replacement/bonus token, and once it holds at
  least T_i tokens truncates to T_i (the surplus is discarded);
- the target asks level K-1 for a block of T_{K-1}, verifies it in one forward pass and commits
  the accepted tokens plus its replacement/bonus token.
A fixed block size per level keeps each level's expected cost a function of (model, buffer)
alone, which is what makes the latency model Markov and the shortest-path optimiser exact.
Near the end, every block is capped by the remaining ``max_new_tokens`` budget (a function of
the context length only, so exactness is unaffected): no level drafts past the budget.

Exactness (the induction of docs/design.md §2): every level hands up, with each token, ITS OWN sampling
row at that position; the level above uses those rows as ``draft_probs``.  Since a lossless rule
makes each level's output distributed exactly as that model sampling alone, the committed text is
distributed exactly as the target sampling alone (under the shared temperature/top-k/top-p).
Greedy: every rule keeps a draft token iff it is the verifier's argmax, so the output equals the
target's own greedy decoding token for token.

Levels: the engine talks to each level only through the ``hsd.levels.Level`` protocol
(``probs_after``, ``reset``, counters); ``hsd.levels.build_level`` makes one per model per decode.

Text: ``Committed.text`` deltas (and ``GenerationResult.text``) never contain the tokenizer's
special tokens (an end-of-text token ends the decode but adds no text); ``token_ids`` keep every
generated id.  Deltas are decoded incrementally from a short window, never the whole output.

Cancellation: ``stream(..., stop=callable)`` asks ``stop()`` before every target round and ends
with ``Finished("cancelled")`` once it is true (the CLI's Ctrl-C); throwing ``DecodeCancelled`` into
the generator does the same at once.  Closing the generator (``.close()``) stops the decode between
two events with no further event.

Randomness: one ``torch.Generator`` seeded from ``seed``; the global RNG is never touched.
This module knows nothing of gradio or plotly; it decodes text only through ``decode_ids``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generator, Sequence

import torch

from hsd.errors import ConfigError, PromptError
from hsd.threads import resolve as resolve_threads, torch_threads
from hsd.levels import Level, SamplingSettings, build_level, check_forward
from hsd.trace import Committed, Drafted, Event, Finished, Prefill, Started, Trace, Verified
from hsd.verify import get_rule, greedy_verdict_ids

MAX_BUFFER = 1024  # a sanity bound; the app applies its own, smaller caps


@dataclass(frozen=True)
class HierarchySpec:
    """Which buffers and verification rules a stack of K+1 models uses (validated)."""

    n_models: int
    buffers: tuple[int, ...]
    rules: tuple[str, ...]          # rule of level 1..K

    def __post_init__(self):
        k = self.n_models - 1
        if self.n_models < 1:
            raise ConfigError("a hierarchy needs at least one model (the target)")
        if len(self.buffers) != k:
            raise ConfigError(
                f"{self.n_models} models need {k} buffer size(s) (one per draft level), got {len(self.buffers)}")
        for b in self.buffers:
            if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= MAX_BUFFER:
                raise ConfigError(f"every buffer must be a whole number from 1 to {MAX_BUFFER}, got {b!r}")
        if len(self.rules) != k:
            raise ConfigError(f"{self.n_models} models need 1 or {k} verification rule(s), got {len(self.rules)}")
        for r in self.rules:
            get_rule(r)  # raises UnknownRuleError listing the known rules

    @classmethod
    def make(cls, n_models: int, buffers: Sequence[int], rules: str | Sequence[str]) -> "HierarchySpec":
        k = n_models - 1
        if isinstance(rules, str):
            rules = [rules] * k
        return cls(n_models, tuple(buffers), tuple(rules))


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: list[int]
    trace: Trace


@dataclass
class _Block:
    """Tokens a level hands up, with that level's own sampling row for each, and their origins."""

    tokens: list[int]
    rows: list                      # each (V,) tensor; None when greedy (a rule reads no draft row then)
    origins: list[int]


Events = Generator[Event, None, None]          # what ``Hierarchy.stream`` returns
Producing = Generator[Event, None, _Block]      # a step of the recursion: yields events, returns a block


class TextStream:
    """Incremental detokenisation: each ``push`` decodes only the tokens since the previous
    emission plus that emission as context (a few tokens), never the whole output.  Special
    tokens add no text.  A byte-level BPE token can end inside a UTF-8 character (decoded as
    U+FFFD); such a tail is held back until it completes or the stream is final."""

    def __init__(self, decode_ids: Callable[[list[int]], str], special_ids: Sequence[int] = ()):
        self.decode_ids = decode_ids
        self.special = frozenset(int(i) for i in special_ids)
        self.ids: list[int] = []        # the text-bearing ids so far
        self.prefix = 0                 # ids[prefix:read] were emitted last: decoding context
        self.read = 0                   # ids[:read] are emitted
        self.emitted = ""               # all text emitted (always a prefix of decode(ids))

    def push(self, new_ids: Sequence[int], *, final: bool) -> str:
        """The text that ``new_ids`` add (possibly "" while a character is incomplete)."""
        self.ids += [i for i in new_ids if i not in self.special]
        if self.read == len(self.ids):
            return ""
        context = self.decode_ids(self.ids[self.prefix:self.read])
        full = self.decode_ids(self.ids[self.prefix:])
        if full.startswith(context) and (final or not full.endswith("\ufffd")):
            delta = full[len(context):]
        elif final:                     # the window disagreed with itself: decode everything once
            whole = self.decode_ids(self.ids)
            delta = whole[len(self.emitted):] if whole.startswith(self.emitted) else ""
        else:
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        self.emitted += delta
        return delta


class _Decode:
    """One decode: the levels, the settings and the generator.  ``run()`` yields events."""

    def __init__(self, levels: list[Level], spec: HierarchySpec, settings: SamplingSettings,
                 prompt_ids: list[int], *, max_new_tokens: int, seed: int, eos_token_id: int | None,
                 decode_ids: Callable[[list[int]], str], special_ids: Sequence[int], prompt_text: str,
                 stop: Callable[[], bool] | None = None, token_texts: dict[int, str] | None = None):
        self.levels = levels
        self.spec = spec
        self.settings = settings
        self.k = len(levels) - 1
        self.prompt = list(prompt_ids)
        self.max_new = max_new_tokens
        self.eos = eos_token_id
        self.decode_ids = decode_ids
        self.text = TextStream(decode_ids, special_ids)     # it also knows which ids are special
        self.token_texts = {} if token_texts is None else token_texts   # one decode per distinct token
        self.generator = torch.Generator().manual_seed(int(seed))
        self.seed = int(seed)
        self.prompt_text = prompt_text
        self.rules = [None] + [get_rule(r) for r in spec.rules]      # rule of level j at index j
        self.t0 = time.perf_counter()
        self.round = 0
        self.end = len(self.prompt) + max_new_tokens                # no level drafts past this
        self.stop = stop or (lambda: False)

    def _now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    # -- the recursion ---------------------------------------------------------------------
    def _produce(self, level: int, context: list[int], n: int) -> Producing:
        """Yield events; return a ``_Block`` of exactly n tokens from ``level`` after ``context``."""
        if level == 0:
            return (yield from self._draft(context, n))
        held = _Block([], [], [])
        while len(held.tokens) < n:
            kept = yield from self._round(level, context + held.tokens, limit=n - len(held.tokens))
            held.tokens += kept.tokens
            held.rows += kept.rows
            held.origins += kept.origins
        return held

    def _round(self, level: int, ctx: list[int], limit: int | None) -> Producing:
        """One verification by ``level``: draft below, score in one pass, apply the rule.
        Returns the kept tokens (accepted + next token), truncated to ``limit`` if given."""
        lm, rule = self.levels[level], self.rules[level]
        gamma = min(self.spec.buffers[level - 1], self.end - len(ctx))
        # 1) ask the level below for a block of γ tokens (with its own rows)
        below = yield from self._produce(level - 1, ctx, gamma)
        # 2) score the whole block in ONE forward pass: rows after ctx, ctx+x1, ..., ctx+x_γ
        t, ms0 = self._now(), lm.forward_ms
        if self.settings.greedy:        # greedy rows are one-hot: their argmaxes are all a rule reads
            best = _argmax_after(lm, ctx + below.tokens, gamma + 1)              # γ+1 ids
        else:
            verifier_probs = lm.probs_after(ctx + below.tokens, gamma + 1)       # (γ+1, V)
        dur = lm.forward_ms - ms0
        # 3) the rule decides (float64 inside, one random draw); greedy: keep the draft while it
        #    is the verifier's argmax, no rows built, stacked or converted
        if self.settings.greedy:
            verdict = greedy_verdict_ids(rule, below.tokens, best)
            rows = [None] * (verdict.n_accepted + 1)
        else:
            verdict = rule(torch.tensor(below.tokens, dtype=torch.long), torch.stack(below.rows),
                           verifier_probs, self.generator, greedy=False)
            rows = list(verifier_probs[: verdict.n_accepted + 1])                 # this level's OWN rows
        a = verdict.n_accepted
        kept = _Block(below.tokens[:a] + [verdict.next_token], rows, below.origins[:a] + [level])
        if limit is not None:                                                     # exact-buffer truncation
            kept = _Block(kept.tokens[:limit], kept.rows[:limit], kept.origins[:limit])
        # 4) tell the consumers
        yield Verified(
            round=self.round, level=level, context_len=len(ctx),
            proposed=tuple(below.tokens), proposed_texts=self.texts(below.tokens),
            proposed_origins=tuple(below.origins), n_accepted=a,
            next_token=verdict.next_token, next_text=self.token_text(verdict.next_token),
            next_kind=verdict.next_kind, handed_up=len(kept.tokens), rule=verdict.rule,
            diagnostics=verdict.diagnostics, t_ms=t, dur_ms=dur)
        return kept

    def _draft(self, context: list[int], n: int) -> Producing:
        """Level 0: n tokens, one forward pass each."""
        lm = self.levels[0]
        t, passes0, ms0 = self._now(), lm.forward_passes, lm.forward_ms
        tokens, rows = [], []
        if self.settings.greedy:                                                  # argmaxes only, no rows
            for _ in range(n):
                tokens.append(_argmax_after(lm, context + tokens, 1)[0])
            rows = [None] * n
        else:
            for _ in range(n):
                row = lm.probs_after(context + tokens, 1)[0]                      # (V,)
                tokens.append(self.settings.sample(row, self.generator))
                rows.append(row)
        yield Drafted(round=self.round, level=0, context_len=len(context), tokens=tuple(tokens),
                      texts=self.texts(tokens), forward_passes=lm.forward_passes - passes0,
                      forward_ms=lm.forward_ms - ms0, t_ms=t, dur_ms=self._now() - t)
        return _Block(tokens, rows, [0] * n)

    def token_text(self, token: int) -> str:
        """One token's own text, special tokens included (what the draft panels show)."""
        text = self.token_texts.get(token)
        if text is None:
            text = self.token_texts[token] = self.decode_ids([token])
        return text

    def texts(self, tokens: Sequence[int]) -> tuple[str, ...]:
        return tuple(self.token_text(t) for t in tokens)

    # -- the target loop ---------------------------------------------------------------------
    def run(self) -> Events:
        """1) started, 2) every level reads the prompt, 3) target rounds until the budget, the
        end-of-text token or ``stop()``, each ending in a commit, 4) finished (see the module
        docstring for cancellation)."""
        self.t0 = time.perf_counter()                             # the clock starts with the decode
        s = self.settings
        out: list[int] = []
        try:
            # 1) the configuration
            yield Started(models=tuple(lv.name for lv in self.levels), buffers=self.spec.buffers,
                          rules=self.spec.rules, temperature=float(s.temperature), top_k=int(s.top_k),
                          top_p=float(s.top_p), seed=self.seed, max_new_tokens=self.max_new,
                          prompt_tokens=len(self.prompt), prompt_text=self.prompt_text)
            # 2) prefill: every level reads the prompt once
            for i, lm in enumerate(self.levels):
                lm.reset()
                t, ms0 = self._now(), lm.forward_ms
                _argmax_after(lm, self.prompt, 1) if s.greedy else lm.probs_after(self.prompt, 1)
                yield Prefill(level=i, n_tokens=len(self.prompt), t_ms=t, dur_ms=lm.forward_ms - ms0)
            # 3) target rounds
            reason = "max_new_tokens"
            while len(out) < self.max_new:
                if self.stop():
                    raise DecodeCancelled
                block = yield from self._target_round(self.prompt + out)
                new, origins = block.tokens[: self.max_new - len(out)], block.origins[: self.max_new - len(out)]
                if self.eos is not None and self.eos in new:
                    cut = new.index(self.eos) + 1
                    new, origins, reason = new[:cut], origins[:cut], "eos"
                out += new
                last = reason == "eos" or len(out) >= self.max_new
                yield Committed(round=self.round, tokens=tuple(new), texts=self.committed_texts(new),
                                origins=tuple(origins), text=self.text.push(new, final=last),
                                total_tokens=len(out), t_ms=self._now())
                self.round += 1
                if reason == "eos":
                    break
        except DecodeCancelled:
            reason = "cancelled"
        # 4) why it stopped
        yield Finished(reason=reason, n_tokens=len(out), t_ms=self._now())

    def _target_round(self, context: list[int]) -> Producing:
        if self.k == 0:                                        # plain autoregressive target
            return (yield from self._draft(context, 1))
        return (yield from self._round(self.k, context, limit=None))

    def committed_texts(self, tokens: Sequence[int]) -> tuple[str, ...]:
        """Per committed token, the text it adds to the output ("" for a special token)."""
        return tuple("" if t in self.text.special else self.token_text(t) for t in tokens)


def _argmax_after(lm: Level, sequence: list[int], n_rows: int) -> list[int]:
    """The argmaxes of ``lm``'s next ``n_rows`` rows: its ``argmax_after`` shortcut where it has
    one (no rows built), else read off ``probs_after``'s one-hot rows."""
    fast = getattr(lm, "argmax_after", None)
    if fast is not None:
        return fast(sequence, n_rows)
    return lm.probs_after(sequence, n_rows).argmax(-1).tolist()


def _with_threads(events: Events, threads: int) -> Events:
    """``events`` run with torch on ``threads`` threads; the count before is back once they end
    or the generator is closed (``yield from`` passes a thrown ``DecodeCancelled`` through)."""
    with torch_threads(threads):
        return (yield from events)


class DecodeCancelled(Exception):
    """Thrown into a running decode (``events.throw(DecodeCancelled)``) to stop it at once; the
    decode then yields ``Finished("cancelled")`` and ends."""


def _check_prompt(prompt_ids: list[int], levels: list[Level], max_new_tokens: int) -> None:
    if not prompt_ids:
        raise PromptError("the prompt is empty: type some text to continue")
    for lm in levels:
        if lm.max_positions and len(prompt_ids) >= lm.max_positions:
            raise PromptError(
                f"the prompt is {len(prompt_ids)} tokens but {lm.name} reads at most {lm.max_positions}: shorten it")
        if lm.max_positions and len(prompt_ids) + max_new_tokens > lm.max_positions:
            raise ConfigError(
                f"prompt ({len(prompt_ids)} tokens) + max new tokens ({max_new_tokens}) exceeds the "
                f"{lm.max_positions}-token context of {lm.name}: ask for at most "
                f"{lm.max_positions - len(prompt_ids)} new tokens")


class Hierarchy:
    """A stack of causal LMs, smallest first (last = target), with buffers and rules.

    Holds only references to the (shared, read-only) models; every ``stream``/``generate`` call
    builds fresh levels (``hsd.levels.build_level``: caches and counters), so one Hierarchy -- or
    many over the same models -- can serve concurrent requests without cross-talk as long as each
    call runs in its own thread.  A model may also be any object with a ``make_level`` method
    (see ``hsd.levels``).  ``forward``: ``"auto"`` (the lean forward where it covers a model, the
    transformers forward elsewhere), ``"lean"`` or ``"hf"`` (the reference).

    ``threads``: torch CPU threads while a decode runs (``hsd.threads``): ``"auto"`` (default)
    uses all cores but one, as the app does (``HSD_TORCH_THREADS`` overrides it), a number sets
    it, and ``None`` leaves torch's own setting alone (callers that manage threads themselves:
    the app's server, the measuring commands).  torch's previous count is restored when the
    decode's generator ends or is closed.
    """

    def __init__(self, models: Sequence, *, tokenizer, names: Sequence[str] | None = None,
                 vocab_size: int | None = None, buffers: Sequence[int] = (), rules: str | Sequence[str] = "hsd",
                 forward: str = "auto", threads: int | str | None = "auto"):
        if not models:
            raise ConfigError("a hierarchy needs at least one model (the target)")
        check_forward(forward, models)
        self.forward = forward
        self.threads = resolve_threads(threads)
        self.models = list(models)
        self.tokenizer = tokenizer
        self.names = list(names) if names is not None else [
            getattr(getattr(m, "config", None), "name_or_path", "") or f"model{i}"
            for i, m in enumerate(self.models)]
        self.vocab_size = int(vocab_size or min(m.config.vocab_size for m in self.models))
        for level, (m, name) in enumerate(zip(self.models, self.names)):
            if level > 0 and getattr(m, "drafter_only", False):
                role = "the target" if level == len(self.models) - 1 else f"level {level}"
                raise ConfigError(f"{name} drafts but cannot verify, so it can only be the bottom level (first), "
                                  f"not {role}")
        self.spec = HierarchySpec.make(len(self.models), list(buffers), rules)
        self._token_texts: dict[int, str] = {}     # one token's text, shared by every decode (same tokenizer)

    @classmethod
    def from_family(cls, family, chain: Sequence[int] | None = None, buffers: Sequence[int] = (),
                    rules: str | Sequence[str] = "hsd", forward: str = "auto",
                    threads: int | str | None = "auto") -> "Hierarchy":
        """``family`` is a ``hsd.models.LoadedFamily``; ``chain`` picks model indices (increasing,
        default: all); the last index is the target."""
        chain = list(range(len(family.models))) if chain is None else list(chain)
        if not chain or any(i < 0 or i >= len(family.models) for i in chain):
            raise ConfigError(f"chain must pick model indices from 0 to {len(family.models) - 1}, got {chain}")
        if any(b <= a for a, b in zip(chain, chain[1:])):
            raise ConfigError(f"chain must list each model at most once, smallest first, got {chain}")
        return cls([family.models[i] for i in chain], tokenizer=family.tokenizer,
                   names=[family.names[i] for i in chain], vocab_size=family.vocab_size,
                   buffers=buffers, rules=rules, forward=forward, threads=threads)

    @property
    def depth(self) -> int:
        """K, the number of draft levels."""
        return len(self.models) - 1

    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError("the prompt is empty: type some text to continue")
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def stream(self, prompt: str, *, max_new_tokens: int = 64, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True,
               stop: Callable[[], bool] | None = None) -> Events:
        """A generator of trace events while decoding ``prompt`` (see ``hsd.trace``); arguments
        are checked before it is returned.  ``stop()`` is asked before every target round: once
        true, the decode ends with ``Finished("cancelled")``.  Closing the generator stops it at
        once, with no further event."""
        settings = SamplingSettings(temperature, top_k, top_p)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ConfigError(f"max new tokens must be a whole number ≥ 1, got {max_new_tokens!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be a whole number, got {seed!r}")
        prompt_ids = self.encode(prompt)
        with torch_threads(self.threads):       # a llama.cpp level takes its thread count when built
            levels = [build_level(m, name=n, vocab_size=self.vocab_size, settings=settings, forward=self.forward)
                      for m, n in zip(self.models, self.names)]
        _check_prompt(prompt_ids, levels, max_new_tokens)
        eos = self.tokenizer.eos_token_id if stop_at_eos else None
        special = list(getattr(self.tokenizer, "all_special_ids", None) or [])
        decode = _Decode(levels, self.spec, settings, prompt_ids, max_new_tokens=max_new_tokens, seed=seed,
                         eos_token_id=eos, decode_ids=self._decode_ids, special_ids=special,
                         prompt_text=prompt, stop=stop, token_texts=self._token_texts)
        return decode.run() if self.threads is None else _with_threads(decode.run(), self.threads)

    def _decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(self, prompt: str, **kwargs) -> GenerationResult:
        """Decode to the end (``stream``'s keyword arguments); returns the text (no special
        tokens), the generated ids (all of them) and the full trace."""
        trace = Trace()
        trace.extend(self.stream(prompt, **kwargs))
        return GenerationResult(trace.text, trace.token_ids, trace)
