"""The benchmark's contenders (a)–(f): which runner, which hierarchy, what the model predicts.
Picked from ``hsd.plan.contenders`` (the one picker); plain data."""
from __future__ import annotations

from dataclasses import dataclass

from hsd.errors import ConfigError
from hsd.plan.contenders import ROLES
from hsd.plan.contenders import pick_contenders as pick
from hsd.plan.latency import expected_tokens_per_target_call
from hsd.levels.ngram import NGRAM_NAME
from hsd.plan.optimize import Plan, best_for_chain
from hsd.plan.profile import Profile
from hsd.verify import LOSSLESS_RULES

ENGINE_RULE = "hsd"                  # (d) and the other engine contenders


@dataclass(frozen=True)
class BenchContender:
    key: str                        # "a", "b", "c", "d", "e-token", "f-ar", …
    group: str                      # "a".."f"
    label: str                      # what the table shows
    runner: str                     # "hf-generate" | "hf-assisted" | "hf-prompt-lookup" | "engine" |
                                    # "llamacpp-generate" | "llamacpp-speculative" | "llamacpp-lookup"
    chain: tuple[int, ...]          # model indices, target last
    names: tuple[str, ...]
    buffers: tuple[int, ...]        # draft length(s); for (b) num_assistant_tokens
    rule: str | None                # engine verification rule (None for transformers)
    predicted_ms_per_token: float | None          # model-predicted (hsd.latency); None for (b)
    predicted_tokens_per_target_call: float | None

    @property
    def hierarchy(self) -> str:
        parts = [f"{n}[{b}]" for n, b in zip(self.names, self.buffers)]
        return " → ".join(parts + [self.names[-1]])


def _engine(key: str, group: str, label: str, profile: Profile, plan: Plan, rule: str = ENGINE_RULE) -> BenchContender:
    return BenchContender(key, group, label, "engine", plan.chain, plan.names, plan.buffers, rule,
                     plan.expected_ms_per_token,
                     expected_tokens_per_target_call(profile, plan.chain, plan.buffers))


def pick_bench_contenders(profile: Profile, max_buffer: int = 16, llamacpp: bool = False) -> list[BenchContender]:
    """(a)–(f) of ``hsd.tools.bench``'s docstring for ``profile``'s family (at least two models),
    and with ``llamacpp`` llama.cpp's own (g), (h), (h′) (``hsd.tools.bench.llamacpp``)."""
    if profile.target < 1:
        raise ConfigError("bench needs a family of at least two models (a drafter and a target)")
    picks = pick(profile, max_buffer, roles=ROLES, distinct=False)
    plans = {c.role: c.plan for c in picks}
    ar, single, optimum = plans["autoregressive"], plans["best single draft"], plans["optimum"]
    k, ngram = profile.target, [i for i, m in enumerate(profile.models) if m == NGRAM_NAME]
    models = [d for d in range(k) if d not in ngram]
    assisted = single if single.chain[0] not in ngram else (    # transformers' assistant must be a model
        min((best_for_chain(profile, (d, k), max_buffer) for d in models), key=lambda p: p.expected_ms_per_token)
        if models else None)
    out = [BenchContender("a", "a", "(a) transformers generate, target alone", "hf-generate", ar.chain, ar.names, (),
                          None, ar.expected_ms_per_token, 1.0)]
    if assisted is not None:
        out.append(BenchContender("b", "b", "(b) transformers assisted generation", "hf-assisted", assisted.chain,
                                  assisted.names, assisted.buffers, None, None,
                                  expected_tokens_per_target_call(profile, assisted.chain, assisted.buffers)))
    if ngram:                                        # transformers' own prompt lookup, as long a block as ngram's best
        lookup = best_for_chain(profile, (ngram[0], k), max_buffer)
        out.append(BenchContender("b-lookup", "b", "(b) transformers prompt lookup", "hf-prompt-lookup", lookup.chain,
                                  lookup.names, lookup.buffers, None, None,
                                  expected_tokens_per_target_call(profile, lookup.chain, lookup.buffers)))
    out += [
        _engine("c", "c", "(c) engine, best single draft", profile, single),
        _engine("d", "d", f"(d) engine, optimiser's hierarchy ({ENGINE_RULE})", profile, optimum),
    ]
    if len(optimum.chain) > 1:                      # rules only differ where something is verified
        out += [_engine(f"e-{r}", "e", f"(e) (d) with rule {r}", profile, optimum, rule=r)
                for r in LOSSLESS_RULES if r != ENGINE_RULE]
    seen = {(single.chain, single.buffers), (optimum.chain, optimum.buffers)}
    hand = [("f-ar", "(f) engine, target alone", ar),
            ("f-xs", "(f) engine, smallest draft alone", plans["smallest draft alone"])]
    deeper = [c.plan for c in picks if c.role == "deeper alternative"]
    hand += [(f"f-deep{i}", f"(f) engine, {p.kind}", p) for i, p in enumerate(deeper, start=1)]
    for key, label, plan in hand:
        if (plan.chain, plan.buffers) not in seen:
            seen.add((plan.chain, plan.buffers))
            out.append(_engine(key, "f", label, profile, plan))
    if llamacpp:
        out.append(BenchContender("g", "g", "(g) llama.cpp, target alone", "llamacpp-generate", ar.chain, ar.names,
                                  (), None, None, 1.0))
        if assisted is not None:                    # llama.cpp's draft must be a model, as transformers'
            out.append(BenchContender("h", "h", "(h) llama.cpp speculative decoding", "llamacpp-speculative",
                                      assisted.chain, assisted.names, assisted.buffers, None, None,
                                      expected_tokens_per_target_call(profile, assisted.chain, assisted.buffers)))
        if ngram:
            out.append(BenchContender("h-lookup", "h", "(h′) llama.cpp prompt lookup", "llamacpp-lookup",
                                      lookup.chain, lookup.names, lookup.buffers, None, None,
                                      expected_tokens_per_target_call(profile, lookup.chain, lookup.buffers)))
    return out
