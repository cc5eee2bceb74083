"""Exact references and goodness-of-fit helpers shared by the exactness tests."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from hsd.levels.ggml import llamacpp_missing

# the llama.cpp forward path, as a parameter: skipped (with the reason) where llama-cpp-python is not installed
LLAMACPP = pytest.param("llamacpp", marks=pytest.mark.skipif(llamacpp_missing() is not None,
                                                             reason=llamacpp_missing() or ""))


def chi2_pvalue(observed, expected) -> float:
    """Pearson χ² test p-value (cells with expected < 1e-12 must have no observations)."""
    observed = torch.as_tensor(observed, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    expected = expected * observed.sum() / expected.sum()
    live = expected > 1e-12
    if bool((observed[~live] > 0).any()):
        return 0.0
    stat = ((observed[live] - expected[live]) ** 2 / expected[live]).sum()
    df = int(live.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))


# -- THE reference: every exactness test in this suite compares against exact_law ---------------
def exact_law(row, length: int, prefix=()) -> dict:
    """Exact P(x_1..x_length | prefix) of sampling token by token from ``row(prefix) -> (V,)``
    probabilities (a tensor or a list), enumerated in float64.  Zero-probability tokens are left
    out of the law (so supports can be compared)."""
    prefix = tuple(prefix)
    out = {(): 1.0}
    for _ in range(length):
        nxt = {}
        for s, pr in out.items():
            for v, pv in enumerate(float(x) for x in row(prefix + s)):
                if pv > 0.0:
                    nxt[s + (v,)] = pr * pv
        out = nxt
    return out


class Rows:
    """A next-token law over a vocabulary of size V, ``row(prefix) -> (V,)`` float64."""

    def __init__(self, vocab: int, row):
        self.vocab, self._row = vocab, row

    def row(self, prefix) -> torch.Tensor:
        return torch.as_tensor(self._row(tuple(prefix)), dtype=torch.float64)

    def joint(self, length: int, prefix=()) -> dict:
        """Exact P(x_1..x_length | prefix) of sampling from this law (``exact_law``)."""
        return exact_law(self.row, length, prefix)


class Table(Rows):
    """A context-dependent next-token table over a vocabulary of size V: row(prefix) is a fixed
    random distribution for each prefix (like a language model, but enumerable)."""

    def __init__(self, vocab: int, seed: int, sharpness: float = 2.0, fixed=None):
        super().__init__(vocab, self._make)
        self.seed, self.sharpness, self.fixed = seed, sharpness, fixed
        self._rows = {}

    def _make(self, prefix) -> torch.Tensor:
        if self.fixed is not None:
            return torch.tensor(self.fixed, dtype=torch.float64)
        if prefix not in self._rows:
            g = torch.Generator().manual_seed(hash((self.seed,) + prefix) % (2**62))
            logits = torch.randn(self.vocab, generator=g, dtype=torch.float64) * self.sharpness
            self._rows[prefix] = torch.softmax(logits, 0)
        return self._rows[prefix]


def round_rows(draft: Rows, verifier: Rows, tokens):
    """draft_probs (γ, V) and verifier_probs (γ+1, V) along a draft path."""
    gamma = len(tokens)
    dp = torch.stack([draft.row(tokens[:t]) for t in range(gamma)]) if gamma else torch.zeros(0, draft.vocab)
    vp = torch.stack([verifier.row(tokens[:t]) for t in range(gamma + 1)])
    return dp, vp


def round_then_target(table_fn, draft: Rows, verifier: Rows, gamma: int) -> dict:
    """Exact distribution of the first γ+1 tokens when ONE verification round (outcome table from
    ``table_fn(tokens, draft_probs, verifier_probs)``) is followed by the verifier sampling alone.
    A lossless rule gives exactly the verifier's own joint over γ+1 tokens."""
    length = gamma + 1
    out: dict = {}
    for tokens, q in draft.joint(gamma).items():
        dp, vp = round_rows(draft, verifier, tokens)
        table = table_fn(torch.tensor(tokens, dtype=torch.long), dp, vp)          # (γ+1, V)
        for k in range(gamma + 1):
            for v in range(draft.vocab):
                w = float(table[k, v]) * q
                if w == 0.0:
                    continue
                head = tokens[:k] + (v,)
                for tail, pt in verifier.joint(length - len(head), head).items():
                    out[head + tail] = out.get(head + tail, 0.0) + w * pt
    return out


def total_variation(a: dict, b: dict) -> float:
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys)


def all_sequences(vocab: int, length: int):
    return list(itertools.product(range(vocab), repeat=length))


# -- the sampling law of a real model, enumerated from its own logits ---------------------------
# Written here, not taken from hsd.levels.sampling, so that the engine is checked against an
# independent reading of transformers' warpers (temperature, then top-k, then top-p).

def warp(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> list[float]:
    """The sampling distribution of one row of raw logits, in float64: divide by the
    temperature; keep the tokens whose logit is at least the k-th largest (ties kept); then keep
    the most probable tokens, in order, while the mass ranked strictly above a token is below
    top_p (the smallest such set whose mass reaches top_p); renormalise."""
    z = [float(x) / temperature for x in logits]
    keep = [True] * len(z)
    if top_k:
        kth = sorted(z, reverse=True)[min(top_k, len(z)) - 1]
        keep = [k and x >= kth for k, x in zip(keep, z)]
    def softmax(mask):
        top = max(x for x, k in zip(z, mask) if k)
        e = [math.exp(x - top) if k else 0.0 for x, k in zip(z, mask)]
        s = sum(e)
        return [x / s for x in e]
    p = softmax(keep)
    if top_p < 1.0:
        above, nucleus = 0.0, [False] * len(z)
        for i in sorted(range(len(z)), key=lambda i: -p[i]):
            if p[i] == 0.0 or above >= top_p:
                break
            nucleus[i], above = True, above + p[i]
        p = softmax(nucleus)
    return p


def model_law(model, prompt_ids, length: int, **warpers) -> dict:
    """Exact P(x_1..x_length | prompt) of sampling ``length`` tokens from ``model`` (a
    transformers causal LM) with the given warpers (``exact_law`` over rows that come from the
    model's own forward over prompt + prefix)."""
    def row(prefix):
        with torch.no_grad():
            logits = model(torch.tensor([list(prompt_ids) + list(prefix)])).logits[0, -1].double()
        return warp(logits.tolist(), **warpers)

    return exact_law(row, length)


def law_of(law: dict, positions) -> dict:
    """The law of the tokens at ``positions`` (0-based) under a joint law of sequences."""
    out: dict = {}
    for s, p in law.items():
        key = tuple(s[i] for i in positions)
        out[key] = out.get(key, 0.0) + p
    return out


def fit_pvalue(samples, law: dict, positions) -> float:
    """χ² p-value of the sampled sequences' tokens at ``positions`` against ``law``'s."""
    ref = law_of(law, positions)
    counts: dict = {}
    for s in samples:
        key = tuple(s[i] for i in positions)
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(set(ref) | set(counts))
    return chi2_pvalue([counts.get(k, 0) for k in keys], [ref.get(k, 0.0) for k in keys])
