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

Exactness (the induction of DESIGN §2): every level hands up, with each token, ITS OWN sampling
row at that position; the level above uses those rows as ``draft_probs``.  Since a lossless rule
makes each level's output distributed exactly as that model sampling alone, the committed text is
distributed exactly as the target sampling alone (under the shared temperature/top-k/top-p).
Greedy: every rule keeps a draft token iff it is the verifier's argmax, so the output equals the
target's own greedy decoding token for token.

Randomness: one ``torch.Generator`` seeded from ``seed``; the global RNG is never touched.
This module knows nothing of gradio or plotly; it decodes text only through ``decode_token``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from hsd.errors import ConfigError, PromptError
from hsd.lm import LevelModel, SamplingSettings
from hsd.trace import Committed, Drafted, Finished, Prefill, Started, Trace, Verified
from hsd.verify import categorical, get_rule

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
    rows: list[torch.Tensor]        # each (V,)
    origins: list[int]


class _Decode:
    """One decode: the levels, the settings and the generator.  ``run()`` yields events."""

    def __init__(self, levels: list[LevelModel], spec: HierarchySpec, prompt_ids: list[int], *,
                 max_new_tokens: int, seed: int, eos_token_id: int | None,
                 decode_ids: Callable[[list[int]], str], prompt_text: str):
        self.levels = levels
        self.spec = spec
        self.k = len(levels) - 1
        self.prompt = list(prompt_ids)
        self.max_new = max_new_tokens
        self.eos = eos_token_id
        self.decode_ids = decode_ids
        self.token_texts: dict[int, str] = {}                      # one decode per distinct token
        self.generator = torch.Generator().manual_seed(int(seed))
        self.seed = int(seed)
        self.prompt_text = prompt_text
        self.rules = [None] + [get_rule(r) for r in spec.rules]      # rule of level j at index j
        self.t0 = time.perf_counter()
        self.round = 0
        self.end = len(self.prompt) + max_new_tokens                # no level drafts past this

    def _now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    def _sample(self, row: torch.Tensor) -> int:
        if self.levels[0].settings.greedy:
            return int(row.argmax())
        return categorical(row.double(), self.generator)

    # -- the recursion ---------------------------------------------------------------------
    def _produce(self, level: int, context: list[int], n: int) -> Iterator:
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

    def _round(self, level: int, ctx: list[int], limit: int | None) -> Iterator:
        """One verification by ``level``: draft below, score in one pass, apply the rule.
        Returns the kept tokens (accepted + next token), truncated to ``limit`` if given."""
        lm, rule = self.levels[level], self.rules[level]
        gamma = min(self.spec.buffers[level - 1], self.end - len(ctx))
        # 1) ask the level below for a block of γ tokens (with its own rows)
        below = yield from self._produce(level - 1, ctx, gamma)
        # 2) score the whole block in ONE forward pass: rows after ctx, ctx+x1, ..., ctx+x_γ
        t, ms0 = self._now(), lm.forward_ms
        verifier_probs = lm.probs_after(ctx + below.tokens, gamma + 1)           # (γ+1, V)
        dur = lm.forward_ms - ms0
        # 3) the rule decides (float64 inside, one random draw)
        verdict = rule(torch.tensor(below.tokens, dtype=torch.long), torch.stack(below.rows),
                       verifier_probs, self.generator)
        a = verdict.n_accepted
        kept = _Block(below.tokens[:a] + [verdict.next_token],
                      list(verifier_probs[: a + 1]),                             # this level's OWN rows
                      below.origins[:a] + [level])
        if limit is not None:                                                     # exact-buffer truncation
            kept = _Block(kept.tokens[:limit], kept.rows[:limit], kept.origins[:limit])
        # 4) tell the consumers
        yield Verified(
            round=self.round, level=level, context_len=len(ctx),
            proposed=tuple(below.tokens), proposed_texts=tuple(map(self.token_text, below.tokens)),
            proposed_origins=tuple(below.origins), n_accepted=a,
            next_token=verdict.next_token, next_text=self.token_text(verdict.next_token),
            next_kind=verdict.next_kind, handed_up=len(kept.tokens), rule=verdict.rule,
            diagnostics=verdict.diagnostics, t_ms=t, dur_ms=dur)
        return kept

    def _draft(self, context: list[int], n: int) -> Iterator:
        """Level 0: n tokens, one forward pass each."""
        lm = self.levels[0]
        t, passes0 = self._now(), lm.forward_passes
        tokens, rows = [], []
        for _ in range(n):
            row = lm.probs_after(context + tokens, 1)[0]                          # (V,)
            tokens.append(self._sample(row))
            rows.append(row)
        yield Drafted(self.round, 0, len(context), tuple(tokens), tuple(map(self.token_text, tokens)),
                      lm.forward_passes - passes0, t, self._now() - t)
        return _Block(tokens, rows, [0] * n)

    def token_text(self, token: int) -> str:
        text = self.token_texts.get(token)
        if text is None:
            text = self.token_texts[token] = self.decode_ids([token])
        return text

    # -- the target loop ---------------------------------------------------------------------
    def run(self) -> Iterator:
        self.t0 = time.perf_counter()                             # the clock starts with the decode
        s = self.levels[0].settings
        yield Started(tuple(lv.name for lv in self.levels), self.spec.buffers, self.spec.rules,
                      float(s.temperature), int(s.top_k), float(s.top_p), self.seed, self.max_new,
                      len(self.prompt), self.prompt_text)
        for i, lm in enumerate(self.levels):
            lm.reset()
            t, ms0 = self._now(), lm.forward_ms
            lm.logits_after(self.prompt, 1)
            yield Prefill(i, len(self.prompt), t, lm.forward_ms - ms0)
        out: list[int] = []
        text = ""                                              # emitted so far (always a prefix)
        reason = "max_new_tokens"
        while len(out) < self.max_new:
            context = self.prompt + out
            if self.k == 0:                                    # plain autoregressive target
                block = yield from self._draft(context, 1)
            else:                                              # one target round
                block = yield from self._round(self.k, context, limit=None)
            room = self.max_new - len(out)
            new, origins = block.tokens[:room], block.origins[:room]
            if self.eos is not None and self.eos in new:
                cut = new.index(self.eos) + 1
                new, origins, reason = new[:cut], origins[:cut], "eos"
            out += new
            last = reason == "eos" or len(out) >= self.max_new
            delta = self._text_delta(out, text, final=last)
            text += delta
            yield Committed(self.round, tuple(new), tuple(map(self.token_text, new)), tuple(origins),
                            delta, len(out), self._now())
            self.round += 1
            if reason == "eos":
                break
        yield Finished(reason, len(out), self._now())

    def _text_delta(self, out: list[int], emitted: str, *, final: bool) -> str:
        """New text since ``emitted``.  A byte-level BPE token can end inside a UTF-8 character
        (decoded as U+FFFD); such a tail is held back until it completes or decoding ends."""
        full = self.decode_ids(out)
        stable = full if final else full.rstrip("\ufffd")
        return stable[len(emitted):] if stable.startswith(emitted) else ""


def _check_prompt(prompt_ids: list[int], levels: list[LevelModel], max_new_tokens: int) -> None:
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
    builds fresh per-level caches, so one Hierarchy -- or many over the same models -- can serve
    concurrent requests without cross-talk as long as each call runs in its own thread.
    """

    def __init__(self, models: Sequence, *, tokenizer, names: Sequence[str] | None = None,
                 vocab_size: int | None = None, buffers: Sequence[int] = (), rules: str | Sequence[str] = "hsd"):
        if not models:
            raise ConfigError("a hierarchy needs at least one model (the target)")
        self.models = list(models)
        self.tokenizer = tokenizer
        self.names = list(names) if names is not None else [
            getattr(m.config, "name_or_path", "") or f"model{i}" for i, m in enumerate(self.models)]
        self.vocab_size = int(vocab_size or min(m.config.vocab_size for m in self.models))
        self.spec = HierarchySpec.make(len(self.models), list(buffers), rules)

    @classmethod
    def from_family(cls, family, chain: Sequence[int] | None = None, buffers: Sequence[int] = (),
                    rules: str | Sequence[str] = "hsd") -> "Hierarchy":
        """``family`` is a ``hsd.models.LoadedFamily``; ``chain`` picks model indices (increasing,
        default: all); the last index is the target."""
        chain = list(range(len(family.models))) if chain is None else list(chain)
        if not chain or any(i < 0 or i >= len(family.models) for i in chain):
            raise ConfigError(f"chain must pick model indices from 0 to {len(family.models) - 1}, got {chain}")
        if any(b <= a for a, b in zip(chain, chain[1:])):
            raise ConfigError(f"chain must list each model at most once, smallest first, got {chain}")
        return cls([family.models[i] for i in chain], tokenizer=family.tokenizer,
                   names=[family.names[i] for i in chain], vocab_size=family.vocab_size,
                   buffers=buffers, rules=rules)

    @property
    def depth(self) -> int:
        """K, the number of draft levels."""
        return len(self.models) - 1

    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError("the prompt is empty: type some text to continue")
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def stream(self, prompt: str, *, max_new_tokens: int = 64, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True) -> Iterator:
        """Yield trace events while decoding ``prompt`` (see ``hsd.trace``)."""
        settings = SamplingSettings(temperature, top_k, top_p)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ConfigError(f"max new tokens must be a whole number ≥ 1, got {max_new_tokens!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be a whole number, got {seed!r}")
        prompt_ids = self.encode(prompt)
        levels = [LevelModel(m, name=n, vocab_size=self.vocab_size, settings=settings)
                  for m, n in zip(self.models, self.names)]
        _check_prompt(prompt_ids, levels, max_new_tokens)
        eos = self.tokenizer.eos_token_id if stop_at_eos else None
        decode = _Decode(levels, self.spec, prompt_ids, max_new_tokens=max_new_tokens, seed=seed,
                         eos_token_id=eos, decode_ids=self._decode_ids, prompt_text=prompt)
        return decode.run()

    def _decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(self, prompt: str, **kwargs) -> GenerationResult:
        """Decode to the end; returns the text, the generated ids and the full trace."""
        trace = Trace()
        trace.extend(self.stream(prompt, **kwargs))
        return GenerationResult(trace.text, trace.token_ids, trace)
