"""Exactness under every sampling setting, end to end.

The engine decodes a 3-level stack of REAL transformers models (bigram tables set by hand, so
that each row is known) under temperature with top-k and with top-p, where a draft's row and its
verifier's row have different supports: the case where verification rules most often go wrong.
The committed tokens are checked, by χ², against the target's exact law over the first
``LENGTH`` tokens, enumerated from the target's own logits through warpers written in the test
(``tests.stats.warp``, not ``SamplingSettings``).  Five tokens cross blocks at both levels (the
buffers are 2 and 3): the joint of the first three positions is tested, and the law of the last
two (their joint, and each marginal).

Every lossless rule passes on every forward path, with a model or the n-gram level at the
bottom; ``hsd-uncapped`` (the lossy variant) is caught by the same checks.

The tables were found by a random search for rows under which ``hsd-uncapped`` loses at least
0.077 (top-p) and 0.086 (top-k) of total variation in ONE round of each verification, s → m and
m → l; rounded to two decimals.  Rows are indexed by the current token (1 = a … 4 = d; the
<eos> id 0 is the start and gets no mass).
"""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from hsd.engine import Hierarchy
from hsd.family.tiny import bigram_llama, tiny_tokenizer
from hsd.levels.ngram import NGramDrafter
from hsd.verify import LOSSLESS_RULES
from tests.stats import LLAMACPP, fit_pvalue, model_law

TOKENIZER = tiny_tokenizer(list("abcd"))
PROMPT = "abca"                      # the n-gram level finds "a" -> b by prompt lookup
LENGTH, BUFFERS, N = 5, (2, 3), 1000
CHECKS = {"joint of tokens 1-3": (0, 1, 2), "joint of tokens 4-5": (3, 4), "token 4": (3,), "token 5": (4,)}
FORWARDS, BOTTOMS = ["lean", "hf", LLAMACPP], ["model", "ngram"]

TOP_K = {   # temperature 0.6, top-k 2
    "s": {0: (.24, .29, .31, .16), 1: (.24, .36, .19, .21), 2: (.31, .17, .29, .23), 3: (.30, .20, .38, .12),
          4: (.25, .15, .21, .39)},
    "m": {0: (.61, .04, .13, .22), 1: (.58, .34, .06, .02), 2: (.47, .21, .20, .12), 3: (.61, .16, .08, .15),
          4: (.40, .18, .22, .20)},
    "l": {0: (.14, .56, .05, .25), 1: (.19, .52, .12, .17), 2: (.17, .61, .16, .06), 3: (.12, .42, .24, .22),
          4: (.24, .67, .03, .06)},
}
TOP_P = {   # temperature 1.4, top-p 0.7
    "s": {0: (.60, .10, .13, .17), 1: (.59, .07, .17, .17), 2: (.52, .15, .22, .11), 3: (.47, .20, .01, .32),
          4: (.55, .18, .22, .05)},
    "m": {0: (.27, .30, .12, .31), 1: (.05, .26, .30, .39), 2: (.17, .33, .03, .47), 3: (.10, .44, .25, .21),
          4: (.27, .28, .15, .30)},
    "l": {0: (.09, .58, .25, .08), 1: (.06, .56, .06, .32), 2: (.05, .40, .27, .28), 3: (.12, .51, .21, .16),
          4: (.05, .69, .20, .06)},
}
SETTINGS = {
    "T=0.6, top-k 2": (dict(temperature=0.6, top_k=2), TOP_K),
    "T=1.4, top-p 0.7": (dict(temperature=1.4, top_p=0.7), TOP_P),
}
# A lossless rule passes when every p-value is above 1 % / (the number of lossless p-values): a
# family-wise false-alarm rate of at most 1 % (Bonferroni) over the whole matrix.  The lossy rule
# must be caught far below it, at p < 1e-6, by the same checks on the same seeds.
LOSSLESS_PVALUES = len(LOSSLESS_RULES) * len(SETTINGS) * len(BOTTOMS) * len(FORWARDS) * len(CHECKS)
PASS_ABOVE, CAUGHT_BELOW = 0.01 / LOSSLESS_PVALUES, 1e-6


def _bigram_model(rows: dict):
    v = len(TOKENIZER)
    log_probs = torch.full((v, v), -40.0)
    for u, row in rows.items():
        log_probs[u, 1:] = torch.log(torch.tensor(row))
    return bigram_llama(log_probs)


@lru_cache(maxsize=None)
def _stack(setting: str):
    """The setting's s, m, l models and the target's exact law of the first LENGTH tokens."""
    warpers, tables = SETTINGS[setting]
    models = [_bigram_model(tables[name]) for name in ("s", "m", "l")]
    prompt_ids = TOKENIZER(PROMPT, add_special_tokens=False)["input_ids"]
    return models, model_law(models[-1], prompt_ids, LENGTH, **warpers)


def _pvalues(setting: str, rule: str, forward: str, bottom: str, n: int = N) -> dict:
    """χ² p-value of each check over n decodes (seeds 0 … n-1)."""
    warpers, _ = SETTINGS[setting]
    models, law = _stack(setting)
    stack = list(models)
    if bottom == "ngram":
        stack[0] = NGramDrafter(len(TOKENIZER), bigram=[2, 2, 3, 4, 1])
    h = Hierarchy(stack, tokenizer=TOKENIZER, vocab_size=len(TOKENIZER), names=[bottom, "m", "l"],
                  buffers=BUFFERS, rules=rule, forward=forward)
    samples = [tuple(h.generate(PROMPT, max_new_tokens=LENGTH, seed=seed, stop_at_eos=False, **warpers).token_ids)
               for seed in range(n)]
    assert all(len(s) == LENGTH for s in samples)
    return {name: fit_pvalue(samples, law, positions) for name, positions in CHECKS.items()}


MATRIX = [pytest.mark.parametrize("setting", list(SETTINGS)),
          pytest.mark.parametrize("bottom", BOTTOMS),
          pytest.mark.parametrize("forward", FORWARDS)]


def _matrix(test):
    for mark in MATRIX:
        test = mark(test)
    return test


@_matrix
@pytest.mark.parametrize("rule", LOSSLESS_RULES)
def test_every_lossless_rule_commits_the_targets_exact_law_under_top_k_and_top_p(rule, forward, bottom, setting):
    pvalues = _pvalues(setting, rule, forward, bottom)
    assert min(pvalues.values()) > PASS_ABOVE, pvalues


@_matrix
def test_the_same_checks_catch_the_lossy_uncapped_rule(forward, bottom, setting):
    pvalues = _pvalues(setting, "hsd-uncapped", forward, bottom)
    assert min(pvalues.values()) < CAUGHT_BELOW, pvalues


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_the_drafts_rows_and_the_verifiers_rows_have_different_supports(setting):
    """The point of these settings: some row of each level keeps a token its verifier drops."""
    from tests.stats import warp

    warpers, tables = SETTINGS[setting]
    support = {name: {u: {v for v, p in enumerate(warp([-40.0] + [float(torch.log(torch.tensor(x))) for x in row],
                                                        **warpers)) if p > 0}
                      for u, row in rows.items()}
               for name, rows in tables.items()}
    for draft, verifier in (("s", "m"), ("m", "l")):
        assert any(support[draft][u] - support[verifier][u] for u in support[draft]), (draft, verifier)
