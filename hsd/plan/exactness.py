"""The exactness lab: each verification rule's EXACT output distribution on a small example.

One verification round of a γ-token draft block, followed by the verifier (target) sampling
alone until γ+1 tokens exist, is enumerated over every draft block and every outcome of the
rule's (γ+1, V) outcome table (``hsd.verify.outcome_table``).  A lossless rule reproduces the
target's own joint over γ+1 tokens (total-variation distance ≈ 0, float64 rounding only);
``hsd-uncapped`` does not.  Also computed per rule: the expected number of accepted draft tokens.

Examples are next-token tables over a vocabulary of V ≤ 4 tokens ("a", "b", "c", "d"):
- ``"toy"``: docs/design.md §3's counterexample, the same rows at every position, target (1/3, 2/3),
  draft (2/3, 1/3), V = 2, γ = 2 (E[accepted] = 10/9 token-wise, 11/9 block / hsd);
- ``"random"``: context-dependent random rows (a fixed softmax of Gaussian logits per prefix,
  seeded), the draft a noisy copy of the target so that acceptance is realistic.

Output: the plain dict ``visual.figure_exactness`` draws::

    {"sequences": ["aab", ...], "target": [P, ...],
     "rules": {name: {"probs": [...], "tv": float, "lossless": bool, "expected_accepted": float}},
     "example": {...what was computed...}}

This module knows nothing of models, tokenizers or pictures; it is torch + ``hsd.verify`` only.
"""
from __future__ import annotations

import itertools
import random
from typing import Callable, Sequence

import torch

from hsd.errors import ConfigError
from hsd.verify import RULES, outcome_table

MAX_VOCAB = 4
MAX_GAMMA = 3
LETTERS = "abcd"
TOY_TARGET = (1 / 3, 2 / 3)
TOY_DRAFT = (2 / 3, 1 / 3)

RowFn = Callable[[tuple[int, ...]], torch.Tensor]      # prefix -> (V,) float64 distribution


def toy_rows(row: Sequence[float]) -> RowFn:
    """The same next-token distribution after every prefix."""
    fixed = torch.tensor(row, dtype=torch.float64)
    return lambda prefix: fixed


def random_rows(vocab: int, seed: int, sharpness: float = 2.0, noise: float = 0.0, base: int = 0) -> RowFn:
    """A fixed random distribution per prefix: softmax(sharpness·g_base(prefix) + noise·g_seed(prefix))
    with g standard Gaussian vectors seeded by (seed, prefix); ``noise`` > 0 makes a perturbed copy."""
    cache: dict = {}

    def gaussian(s: int, prefix: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(random.Random(repr((s, prefix))).getrandbits(62))
        return torch.randn(vocab, generator=g, dtype=torch.float64)

    def row(prefix: tuple[int, ...]) -> torch.Tensor:
        if prefix not in cache:
            logits = sharpness * gaussian(base, prefix)
            if noise:
                logits = logits + noise * gaussian(seed + 1_000_003, prefix)
            cache[prefix] = torch.softmax(logits, 0)
        return cache[prefix]

    return row


def joint(rows: RowFn, vocab: int, length: int, prefix: tuple[int, ...] = ()) -> dict[tuple, float]:
    """Exact P(x_1..x_length | prefix) of sampling from ``rows``."""
    out = {(): 1.0}
    for _ in range(length):
        nxt = {}
        for seq, pr in out.items():
            r = rows(prefix + seq)
            for v in range(vocab):
                nxt[seq + (v,)] = pr * float(r[v])
        out = nxt
    return out


def round_then_target(rule: str, draft: RowFn, target: RowFn, vocab: int, gamma: int) -> tuple[dict, float]:
    """Exact distribution of the first γ+1 tokens when ONE verification round with ``rule`` is
    followed by the target sampling alone, and the expected number of accepted draft tokens."""
    out: dict[tuple, float] = {}
    expected_accepted = 0.0
    for tokens, q in joint(draft, vocab, gamma).items():
        draft_probs = torch.stack([draft(tokens[:t]) for t in range(gamma)])           # (γ, V)
        verifier_probs = torch.stack([target(tokens[:t]) for t in range(gamma + 1)])   # (γ+1, V)
        table = outcome_table(rule, torch.tensor(tokens), draft_probs, verifier_probs)  # (γ+1, V)
        expected_accepted += q * float((table.sum(1) * torch.arange(gamma + 1)).sum())
        for k in range(gamma + 1):
            for v in range(vocab):
                w = float(table[k, v]) * q
                if w == 0.0:
                    continue
                head = tokens[:k] + (v,)
                for tail, pt in joint(target, vocab, gamma + 1 - len(head), head).items():
                    out[head + tail] = out.get(head + tail, 0.0) + w * pt
    return out, expected_accepted


def total_variation(a: dict, b: dict) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def _check(example: str, vocab: int, gamma: int) -> None:
    if example not in ("toy", "random"):
        raise ConfigError(f"unknown exactness example {example!r}; choose 'toy' or 'random'")
    if not isinstance(vocab, int) or not 2 <= vocab <= MAX_VOCAB:
        raise ConfigError(f"the exactness lab enumerates vocabularies of 2 to {MAX_VOCAB} tokens, got {vocab!r}")
    if not isinstance(gamma, int) or not 1 <= gamma <= MAX_GAMMA:
        raise ConfigError(f"the exactness lab enumerates blocks of 1 to {MAX_GAMMA} draft tokens, got {gamma!r}")


def exactness_lab(example: str = "toy", vocab: int = 2, gamma: int = 2, seed: int = 0,
                  sharpness: float = 2.0, noise: float = 1.5,
                  rules: Sequence[str] = tuple(RULES)) -> dict:
    """The lab dict (module docstring).  ``"toy"`` ignores ``vocab``, ``seed``, ``sharpness`` and
    ``noise`` (V = 2, fixed rows) but honours ``gamma``."""
    if example == "toy":
        vocab = 2
    _check(example, vocab, gamma)
    if example == "toy":
        target, draft = toy_rows(TOY_TARGET), toy_rows(TOY_DRAFT)
    else:
        target = random_rows(vocab, seed, sharpness)
        draft = random_rows(vocab, seed, sharpness, noise=noise)
    reference = joint(target, vocab, gamma + 1)
    sequences = list(itertools.product(range(vocab), repeat=gamma + 1))
    result = {}
    for name in rules:
        dist, ea = round_then_target(name, draft, target, vocab, gamma)
        result[name] = {"probs": [dist.get(s, 0.0) for s in sequences],
                        "tv": total_variation(dist, reference),
                        "lossless": RULES[name].lossless,
                        "expected_accepted": ea}
    return {"sequences": ["".join(LETTERS[v] for v in s) for s in sequences],
            "target": [reference[s] for s in sequences],
            "rules": result,
            "example": {"kind": example, "vocab": vocab, "gamma": gamma, "seed": seed,
                        "sharpness": sharpness, "noise": noise}}


def lab_table(lab: dict) -> list[list]:
    """Rows [rule, lossless?, TV distance, E[accepted draft tokens]] for a table next to the figure."""
    return [[name, "lossless" if r["lossless"] else "LOSSY", float(f"{r['tv']:.3g}"),
             round(r["expected_accepted"], 4)] for name, r in lab["rules"].items()]
