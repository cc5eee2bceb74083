"""Claims about hsd/validate.py: the contenders it compares, how it reads acceptance from traces,
and that it runs end to end on tiny real models through the engine."""
from __future__ import annotations

import dataclasses
import statistics
import types

import pytest
import torch

from hsd.errors import ConfigError
from hsd.plan.latency import expected_ms_per_token, horizon_counts
from hsd.tools.measure import measure_profile
from hsd.trace import Trace, Verified
from hsd.tools.validate import edge_acceptance, format_report, pick_contenders, validate
from tests._profiles import random_profile
from hsd.family.tiny import tiny_family


def test_contenders_are_optimum_single_draft_ar_and_two_deeper_distinct_hierarchies():
    prof = random_profile(4, seed=5)
    cs = pick_contenders(prof, max_buffer=6)
    roles = [c.role for c in cs]
    assert roles[0] == "optimum"
    assert any(c.plan.chain == (3,) for c in cs)                      # AR, whatever its role
    assert any(len(c.plan.chain) == 2 for c in cs)                    # a single draft
    assert roles.count("deeper alternative") == 2
    assert len({(c.plan.chain, c.plan.buffers) for c in cs}) == len(cs)
    assert all(len(c.plan.chain) >= 3 for c in cs if c.role == "deeper alternative")
    assert any(len(c.plan.chain) == 4 for c in cs)                    # the full stack is shown


def _verified(level, gamma, accepted):
    return Verified(round=0, level=level, context_len=1, proposed=(1,) * gamma, proposed_texts=("a",) * gamma,
                    proposed_origins=(0,) * gamma, n_accepted=accepted, next_token=2, next_text="b",
                    next_kind="bonus" if accepted == gamma else "replacement", handed_up=accepted + 1,
                    rule="token", diagnostics={}, t_ms=0.0, dur_ms=0.0)


def test_edge_acceptance_counts_only_examined_positions():
    trace = Trace(events=[_verified(1, 3, 0), _verified(1, 3, 2), _verified(1, 3, 3), _verified(2, 3, 1)])
    stats = edge_acceptance([trace], 1)
    # examined positions: 1 (rejected at 1st) + 3 (2 accepted, 3rd rejected) + 3 (all accepted)
    assert stats["alpha_iid"] == pytest.approx(5 / 7)
    assert stats["per_position"] == pytest.approx([2 / 3, 2 / 2, 1 / 2])
    assert stats["per_position_n"] == [3, 2, 2]


def test_validate_runs_every_contender_through_the_engine_on_tiny_models():
    models, tok = tiny_family(3)
    fam = types.SimpleNamespace(names=["t0", "t1", "t2"], models=models, tokenizer=tok,
                                vocab_size=len(tok), device=torch.device("cpu"))
    prof = measure_profile(fam, max_n=5, repeats=1, warmup=0, context_tokens=8, prompts=["abc (x)"])
    report = validate(fam, prof, prompts=["def f(x):", "a = b"], max_new_tokens=6, max_buffer=4)
    assert report["rows"][0]["role"] == "optimum"
    for r in report["rows"]:
        assert r["measured_ms_per_token"] > 0 and len(r["measured_runs_ms_per_token"]) == 2
        assert len(r["edges"]) == len(r["chain"]) - 1
    ar = next(r for r in report["rows"] if len(r["chain"]) == 1)
    assert ar["measured_tokens_per_target_call"] == 1.0
    assert "median |relative error|" in format_report(report)
    report = validate(fam, prof, prompts=["def f(x):", "a = b"], max_new_tokens=6, max_buffer=4, repeats=2)
    assert report["acceptance"] == "position" and set(report["by_model"]) == {"position", "iid"}
    for r in report["rows"]:
        for model in ("position", "iid"):
            assert len(r[f"relative_error_{model}_by_repeat"]) == 2
            assert r[f"relative_error_{model}"] == pytest.approx(
                (r["measured_ms_per_token"] - r[f"predicted_ms_per_token_{model}"]) / r[f"predicted_ms_per_token_{model}"])
        assert r["predicted_ms_per_token_position"] == pytest.approx(r["predicted_ms_per_token"])
        # predicted for decodes of 6 tokens, budget cap included; the long run (the optimiser's) beside it
        assert r["predicted_ms_per_token"] == pytest.approx(
            horizon_counts(prof, r["chain"], r["buffers"], 6)["ms_per_token"])
        assert r["predicted_ms_per_token_long_run"] == pytest.approx(expected_ms_per_token(prof, r["chain"], r["buffers"]))
        # measured: each repeat's Σ ms / Σ tokens over the prompts, median over the repeats
        assert len(r["measured_ms_per_token_by_repeat"]) == 2
        assert r["measured_ms_per_token"] == pytest.approx(statistics.median(r["measured_ms_per_token_by_repeat"]))
    for model in ("position", "iid"):                   # AR's error is the same in both: left out here
        m = report["by_model"][model]
        drafted = [abs(r[f"relative_error_{model}"]) for r in report["rows"] if len(r["chain"]) > 1]
        assert m["median_abs_relative_error_drafted"] == pytest.approx(statistics.median(drafted))
        opt = next(r for r in report["rows"] if r["label"] == m["predicted_optimum"])
        best = next(r for r in report["rows"] if r["label"] == report["measured_best"])
        assert m["predicted_optimum_over_best_by_repeat"] == pytest.approx(
            [a / b for a, b in zip(opt["measured_ms_per_token_by_repeat"], best["measured_ms_per_token_by_repeat"])])
    text = format_report(report)
    assert "both acceptance models side by side" in text and "i.i.d.: median |error|" in text
    assert "over the hierarchies with drafts" in text and "by repeat)" in text
    # the costs timed again between the decodes: the predictions read them, the acceptance stays the profile's
    retimed = validate(fam, prof, prompts=["def f(x):", "a = b"], max_new_tokens=6, max_buffer=4, retime_costs=True)
    costs = retimed["costs"]
    assert costs["source"].startswith("re-timed") and set(costs["cost_ms"]) == set(prof.models)
    assert all(len(v) == 5 and min(v) > 0 for v in costs["cost_ms"].values())
    used = dataclasses.replace(prof, cost_ms=costs["cost_ms"], first_call_ms=costs["first_call_ms"])
    for r in retimed["rows"]:
        assert r["predicted_ms_per_token"] == pytest.approx(
            horizon_counts(used, r["chain"], r["buffers"], 6)["ms_per_token"])
    assert "re-timed" in format_report(retimed) and report["costs"] == {"source": "profile"}
    iid = validate(fam, prof, prompts=["a = b"], max_new_tokens=4, max_buffer=4, acceptance="iid")
    assert iid["rows"][0]["predicted_ms_per_token"] == pytest.approx(iid["rows"][0]["predicted_ms_per_token_iid"])
    with pytest.raises(ConfigError, match="profile is for models"):
        validate(types.SimpleNamespace(**{**vars(fam), "names": ["x", "y", "z"]}), prof)


def test_the_measured_figure_is_the_ratio_of_totals_the_model_predicts():
    """A median of per-prompt ms/token is not what the model predicts: one slow prompt among fast
    ones moves the pooled ratio, not the median."""
    from hsd.tools.validate import pooled_ms_per_token
    from hsd.trace import Committed, Finished

    def trace(ms, tokens):
        return Trace(events=[Committed(round=0, tokens=(1,) * tokens, texts=("a",) * tokens, origins=(1,) * tokens,
                                       t_ms=ms, text="a" * tokens, total_tokens=tokens),
                             Finished(reason="max_new_tokens", n_tokens=tokens, t_ms=ms)])
    fast, slow = trace(10.0, 10), trace(40.0, 10)
    assert pooled_ms_per_token([fast, fast, slow]) == pytest.approx(60.0 / 30)
    assert statistics.median(t.decode_ms() / 10 for t in (fast, fast, slow)) == pytest.approx(1.0)
