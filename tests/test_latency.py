"""Claims about the latency model (OUR derivation, hsd/latency.py): closed forms, and agreement
with a Monte Carlo simulation of the exact-buffer policy."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from hsd.errors import ConfigError
from hsd.plan.latency import (
    expected_ms_per_token, expected_output, expected_rounds, output_distribution, simulate,
    cost_at, level_costs_ms, expected_tokens_per_target_call,
)
from tests._profiles import random_profile


def test_expected_output_matches_closed_form_and_distribution():
    for gamma, alpha in itertools.product([1, 2, 5, 16], [0.0, 0.3, 0.8, 0.999, 1.0]):
        probs = output_distribution(gamma, alpha)
        assert math.isclose(sum(probs), 1.0, rel_tol=1e-12)
        mean = sum(o * p for o, p in enumerate(probs, start=1))
        assert math.isclose(expected_output(gamma, alpha), mean, rel_tol=1e-12)
    assert expected_output(4, 1.0) == 5.0
    assert expected_output(4, 0.0) == 1.0


def test_expected_rounds_edge_cases():
    # α = 0: every round yields exactly one token
    assert expected_rounds(7, 3, 0.0) == pytest.approx(7.0)
    # α = 1: every round yields γ+1 tokens
    assert expected_rounds(7, 3, 1.0) == pytest.approx(2.0)
    assert expected_rounds(8, 3, 1.0) == pytest.approx(2.0)
    assert expected_rounds(9, 3, 1.0) == pytest.approx(3.0)
    # one token needed: always one round
    assert expected_rounds(1, 5, 0.42) == pytest.approx(1.0)


def test_expected_rounds_matches_exact_enumeration():
    """E[N] by the renewal recursion equals E[N] by enumerating every acceptance sequence."""
    def enumerate_rounds(tokens, gamma, alpha):
        probs = output_distribution(gamma, alpha)
        total = 0.0
        frontier = [(0, 0, 1.0)]            # (held, rounds, probability)
        while frontier:
            held, rounds, p = frontier.pop()
            if held >= tokens:
                total += rounds * p
                continue
            for o, po in enumerate(probs, start=1):
                if po:
                    frontier.append((held + o, rounds + 1, p * po))
        return total
    for tokens, gamma, alpha in [(5, 2, 0.6), (6, 3, 0.35), (4, 1, 0.9), (7, 4, 0.75)]:
        assert expected_rounds(tokens, gamma, alpha) == pytest.approx(
            enumerate_rounds(tokens, gamma, alpha), rel=1e-12)


def test_autoregressive_costs_one_target_forward_per_token():
    prof = random_profile(4, seed=1)
    assert expected_ms_per_token(prof, [3], []) == prof.cost_ms["m3"][0]
    assert expected_tokens_per_target_call(prof, [3], []) == 1.0


def test_single_draft_reduces_to_design_closed_form():
    """(γ·c_0(1) + c_1(γ+1))·(1-α)/(1-α^{γ+1})  — DESIGN §4."""
    prof = random_profile(5, seed=2)
    for drafter, gamma in itertools.product(range(4), range(1, 17)):
        a = prof.alpha(drafter, 4)
        c0 = prof.cost_ms[f"m{drafter}"]
        c1 = prof.cost_ms["m4"]
        expected = (gamma * c0[0] + c1[gamma]) * (1 - a) / (1 - a ** (gamma + 1))
        assert expected_ms_per_token(prof, [drafter, 4], [gamma]) == pytest.approx(expected, rel=1e-12)


def test_two_level_draft_composes_with_walds_identity():
    prof = random_profile(3, seed=3)
    t0, t1 = 3, 5
    a01, a12 = prof.alpha(0, 1), prof.alpha(1, 2)
    c = [prof.cost_ms[m] for m in prof.models]
    level0 = t0 * c[0][0]
    level1 = expected_rounds(t1, t0, a01) * (level0 + c[1][t0])
    assert level_costs_ms(prof, [0, 1, 2], [t0, t1]) == pytest.approx([level0, level1])
    expected = (level1 + c[2][t1]) / expected_output(t1, a12)
    assert expected_ms_per_token(prof, [0, 1, 2], [t0, t1]) == pytest.approx(expected, rel=1e-12)


def test_costs_beyond_the_profile_extrapolate_linearly_from_last_two_points():
    assert cost_at([1.0, 1.5, 2.0], 3) == 2.0
    assert cost_at([1.0, 1.5, 2.0], 5) == pytest.approx(3.0)
    assert cost_at([1.0, 2.0, 1.8], 6) == 1.8       # never below the last measured value
    assert cost_at([4.0], 9) == 4.0


@pytest.mark.parametrize("seed", range(8))
def test_simulator_agrees_with_expression_within_two_percent(seed):
    rng = random.Random(100 + seed)
    n = rng.randint(3, 5)
    prof = random_profile(n, seed=200 + seed, style="deep" if seed % 2 else "mixed", overhead=seed >= 4)
    drafts = sorted(rng.sample(range(n - 1), rng.randint(1, n - 1)))
    chain = drafts + [n - 1]
    buffers = [rng.randint(1, 8) for _ in drafts]
    predicted = expected_ms_per_token(prof, chain, buffers)
    simulated = simulate(prof, chain, buffers, n_tokens=60000, seed=seed)
    assert simulated == pytest.approx(predicted, rel=0.02), (chain, buffers)


def test_simulator_negative_control_detects_a_wrong_expression():
    """The 2% tolerance is tight enough to reject a plausible but wrong formula ("at least"
    accounting: one round per ceil(T/E[O]) instead of the renewal count)."""
    prof = random_profile(3, seed=7)
    chain, buffers = [0, 1, 2], [4, 6]
    a01 = prof.alpha(0, 1)
    c = [prof.cost_ms[m] for m in prof.models]
    wrong_rounds = buffers[1] / expected_output(buffers[0], a01)
    wrong = (wrong_rounds * (buffers[0] * c[0][0] + c[1][buffers[0]]) + c[2][buffers[1]]) \
        / expected_output(buffers[1], prof.alpha(1, 2))
    simulated = simulate(prof, chain, buffers, n_tokens=60000, seed=1)
    assert simulated == pytest.approx(expected_ms_per_token(prof, chain, buffers), rel=0.02)
    assert abs(simulated - wrong) / simulated > 0.02


def test_bad_hierarchies_raise_config_errors():
    prof = random_profile(3, seed=4)
    with pytest.raises(ConfigError, match="increasing"):
        expected_ms_per_token(prof, [1, 0, 2], [2, 2])
    with pytest.raises(ConfigError, match="buffer"):
        expected_ms_per_token(prof, [0, 2], [2, 2])
    with pytest.raises(ConfigError, match="≥ 1"):
        expected_ms_per_token(prof, [0, 2], [0])
    with pytest.raises(ConfigError, match="outside"):
        expected_ms_per_token(prof, [0, 5], [2])


def test_forwards_per_token_compose_to_the_expected_latency():
    """Σ_levels forwards/token × cost per forward = ms/token (each level has one block length)."""
    from hsd.plan.latency import expected_forwards_per_token, model_cost
    prof = random_profile(5, seed=31)           # no overheads: every forward is one c(n)
    for chain, buffers in [([4], []), ([1, 4], [5]), ([0, 2, 4], [3, 6]), ([0, 1, 2, 3, 4], [2, 3, 4, 7])]:
        fw = expected_forwards_per_token(prof, chain, buffers)
        blocks = [1] + [b + 1 for b in buffers]
        ms = sum(f * model_cost(prof, m, n) for f, m, n in zip(fw, chain, blocks))
        assert ms == pytest.approx(expected_ms_per_token(prof, chain, buffers), rel=1e-12)


def test_engine_overheads_enter_as_sampling_and_rule_time():
    """With overheads s (per sampled token) and v(γ) (per verification) the single-draft closed
    form becomes (γ·(c_0(1)+s) + c_1(γ+1) + v(γ))·(1-α)/(1-α^{γ+1}); AR costs c_K(1) + s."""
    prof = random_profile(3, seed=9, overhead=True)
    s_ms = prof.overhead_ms["draft_token"]
    assert s_ms > 0
    assert expected_ms_per_token(prof, [2], []) == pytest.approx(prof.cost_ms["m2"][0] + s_ms)
    for gamma in (1, 5, 16, 20):
        a = prof.alpha(0, 2)
        v = cost_at(prof.overhead_ms["verify"], gamma)
        expected = (gamma * (prof.cost_ms["m0"][0] + s_ms) + cost_at(prof.cost_ms["m2"], gamma + 1) + v) \
            * (1 - a) / (1 - a ** (gamma + 1))
        assert expected_ms_per_token(prof, [0, 2], [gamma]) == pytest.approx(expected, rel=1e-12)
