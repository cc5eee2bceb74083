"""Exact references and goodness-of-fit helpers shared by the exactness tests."""
from __future__ import annotations

import itertools

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


class Table:
    """A context-dependent next-token table over a vocabulary of size V: row(prefix) is a fixed
    random distribution for each prefix (like a language model, but enumerable)."""

    def __init__(self, vocab: int, seed: int, sharpness: float = 2.0, fixed=None):
        self.vocab, self.seed, self.sharpness, self.fixed = vocab, seed, sharpness, fixed
        self._rows = {}

    def row(self, prefix) -> torch.Tensor:
        prefix = tuple(prefix)
        if self.fixed is not None:
            return torch.tensor(self.fixed, dtype=torch.float64)
        if prefix not in self._rows:
            g = torch.Generator().manual_seed(hash((self.seed,) + prefix) % (2**62))
            logits = torch.randn(self.vocab, generator=g, dtype=torch.float64) * self.sharpness
            self._rows[prefix] = torch.softmax(logits, 0)
        return self._rows[prefix]

    def joint(self, length: int, prefix=()) -> dict:
        """Exact P(x_1..x_length) of sampling from this table."""
        out = {(): 1.0}
        for _ in range(length):
            nxt = {}
            for s, pr in out.items():
                r = self.row(prefix + s)
                for v in range(self.vocab):
                    nxt[s + (v,)] = pr * float(r[v])
            out = nxt
        return out


def round_rows(draft: Table, verifier: Table, tokens):
    """draft_probs (γ, V) and verifier_probs (γ+1, V) along a draft path."""
    gamma = len(tokens)
    dp = torch.stack([draft.row(tokens[:t]) for t in range(gamma)]) if gamma else torch.zeros(0, draft.vocab)
    vp = torch.stack([verifier.row(tokens[:t]) for t in range(gamma + 1)])
    return dp, vp


def round_then_target(table_fn, draft: Table, verifier: Table, gamma: int) -> dict:
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
