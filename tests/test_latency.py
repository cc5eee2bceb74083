"""Claims about the latency model (OUR derivation, hsd/latency.py): closed forms, and agreement
with a Monte Carlo simulation of the exact-buffer policy."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from hsd.errors import ConfigError
from hsd.plan.latency import (
    cost_at, expected_forwards_per_token, expected_ms_per_token, expected_output, expected_rounds,
    expected_tokens_per_target_call, horizon_counts, level_costs_ms, output_distribution, simulate, simulate_counts,
)
from hsd.plan.profile import Profile
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
    """(γ·c_0(1) + c_1(γ+1))·(1-α)/(1-α^{γ+1})  — docs/design.md §4."""
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


def _iid_lengths(prof, max_block):
    n = len(prof.models)
    return [[None if j <= i else [output_distribution(g, prof.alpha(i, j)) for g in range(1, max_block + 1)]
             for j in range(n)] for i in range(n)]


def test_acceptance_by_position_with_geometric_laws_is_the_iid_model_exactly():
    """Fed the geometric laws of i.i.d. acceptance (for blocks 1..3; longer blocks extend the
    conditional acceptance, which is then α again), the position model reproduces the i.i.d.
    expressions, so the two models differ only through what was measured."""
    prof = random_profile(4, seed=21, style="deep")
    pos = Profile(prof.models, prof.cost_ms, prof.acceptance, accept_lengths=_iid_lengths(prof, 3))
    assert pos.uses_positions and not pos.with_acceptance_model("iid").uses_positions
    for chain, buffers in (([0, 3], [5]), ([0, 1, 3], [2, 6]), ([0, 1, 2, 3], [1, 3, 7]), ([3], [])):
        assert expected_ms_per_token(pos, chain, buffers) == pytest.approx(
            expected_ms_per_token(prof, chain, buffers), rel=1e-12)
    assert pos.output_distribution(0, 3, 7) == pytest.approx(output_distribution(7, prof.alpha(0, 3)), rel=1e-12)


def test_acceptance_rising_along_the_block_changes_the_prediction_and_iid_reads_alpha_only():
    prof = random_profile(3, seed=4, positions=True)
    assert prof.acceptance_label == "acceptance measured by position in the block"
    law = prof.output_distribution(0, 2, 4)
    assert law == prof.accept_lengths[0][2][3] and sum(law) == pytest.approx(1.0)
    iid = prof.with_acceptance_model("iid")
    assert iid.acceptance_label.startswith("i.i.d.")
    assert iid.output_distribution(0, 2, 4) == pytest.approx(output_distribution(4, prof.alpha(0, 2)))
    assert expected_ms_per_token(prof, [0, 2], [4]) != pytest.approx(expected_ms_per_token(iid, [0, 2], [4]), rel=1e-3)
    with pytest.raises(ConfigError, match="acceptance model"):
        prof.with_acceptance_model("markov")


@pytest.mark.parametrize("seed", range(6))
def test_a_decode_simulated_from_the_acceptance_process_matches_calls_and_forwards_within_two_percent(seed):
    """No model forwards: each verification's output is drawn from the profile's law per block
    length; tokens per target call and forwards per token of every level match the expressions."""
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    prof = random_profile(n, seed=300 + seed, style="deep" if seed % 2 else "mixed", positions=True)
    drafts = sorted(rng.sample(range(n - 1), rng.randint(1, n - 1)))
    chain, buffers = drafts + [n - 1], [rng.randint(1, 12) for _ in drafts]
    counted = simulate_counts(prof, chain, buffers, n_tokens=60000, seed=seed)
    assert counted["ms_per_token"] == pytest.approx(expected_ms_per_token(prof, chain, buffers), rel=0.02)
    assert counted["tokens_per_target_call"] == pytest.approx(
        expected_tokens_per_target_call(prof, chain, buffers), rel=0.02)
    assert counted["forwards_per_token"] == pytest.approx(expected_forwards_per_token(prof, chain, buffers), rel=0.02)


def test_the_simulation_catches_a_latency_model_that_ignores_position():
    """Negative control: on a profile whose acceptance rises along the block, the i.i.d. model's
    prediction misses the simulated decode by more than the 2 % tolerance."""
    prof = random_profile(3, seed=9, positions=True)
    simulated = simulate(prof, [0, 2], [8], n_tokens=60000, seed=2)
    assert simulated == pytest.approx(expected_ms_per_token(prof, [0, 2], [8]), rel=0.02)
    iid = expected_ms_per_token(prof.with_acceptance_model("iid"), [0, 2], [8])
    assert abs(iid - simulated) / simulated > 0.02


def test_a_what_if_alpha_reads_that_pair_iid_and_keeps_the_other_pairs_measured():
    prof = random_profile(3, seed=5, positions=True)
    w = prof.what_if(acceptance={("m0", "m2"): 0.5})
    assert w.accept_lengths[0][2] is None and w.accept_lengths[0][1] == prof.accept_lengths[0][1]
    assert w.output_distribution(0, 2, 3) == pytest.approx(output_distribution(3, 0.5))
    assert w.output_distribution(0, 1, 3) == prof.output_distribution(0, 1, 3)


def test_a_draft_level_pays_its_first_call_once_per_call():
    """cost_ms[m][0] is the steady drafting step; the first call after another model pays
    first_call_ms once, so one draft of γ costs γ·c_0(1) + f_0 + c_1(γ+1) per round."""
    prof = random_profile(3, seed=12)
    first = Profile(prof.models, prof.cost_ms, prof.acceptance, first_call_ms={"m0": 0.7, "m1": 0.3})
    gamma, c0, c2 = 4, prof.cost_ms["m0"], prof.cost_ms["m2"]
    expect = (gamma * c0[0] + 0.7 + c2[gamma]) / expected_output(gamma, prof.alpha(0, 2))
    assert expected_ms_per_token(first, [0, 2], [gamma]) == pytest.approx(expect, rel=1e-12)
    assert expected_ms_per_token(first, [2], []) == expected_ms_per_token(prof, [2], [])   # AR: no switch
    assert simulate(first, [0, 1, 2], [2, 5], n_tokens=60000, seed=3) == pytest.approx(
        expected_ms_per_token(first, [0, 1, 2], [2, 5]), rel=0.02)
    assert first.what_if({"m0": 2.0}).first_call_ms["m0"] == pytest.approx(1.4)
    with pytest.raises(ConfigError, match="first_call_ms"):
        Profile(prof.models, prof.cost_ms, prof.acceptance, first_call_ms={"m0": -1.0})


def test_the_engines_own_time_enters_per_drafting_step_per_verification_and_per_token():
    """Fitted engine terms e_step, e_round, e_token: a drafting step costs c(1)+s+e_step, a
    verification c(γ+1)+v(γ)+e_round, and every committed token e_token more; the simulation,
    the optimiser and the AR baseline read the same terms."""
    prof = random_profile(3, seed=9, overhead=True, engine=True)
    o = prof.overhead_ms
    assert min(o["step"], o["round"], o["token"]) > 0
    s_ms = o["draft_token"] + o["step"]
    assert expected_ms_per_token(prof, [2], []) == pytest.approx(prof.cost_ms["m2"][0] + s_ms + o["token"])
    for gamma in (1, 5, 16, 20):
        a = prof.alpha(0, 2)
        v = cost_at(o["verify"], gamma) + o["round"]
        expected = (gamma * (prof.cost_ms["m0"][0] + s_ms) + cost_at(prof.cost_ms["m2"], gamma + 1) + v) \
            * (1 - a) / (1 - a ** (gamma + 1)) + o["token"]
        assert expected_ms_per_token(prof, [0, 2], [gamma]) == pytest.approx(expected, rel=1e-12)
    for chain, buffers in (([2], []), ([0, 2], [4]), ([0, 1, 2], [2, 5])):
        assert simulate(prof, chain, buffers, n_tokens=60000, seed=3) == \
            pytest.approx(expected_ms_per_token(prof, chain, buffers), rel=0.02)
    from hsd.plan.optimize import autoregressive, optimal_hierarchy
    plan = optimal_hierarchy(prof, max_buffer=6, with_graph=False)
    assert autoregressive(prof).expected_ms_per_token == pytest.approx(expected_ms_per_token(prof, [2], []))
    assert plan.speedup_vs_ar == pytest.approx(expected_ms_per_token(prof, [2], []) / plan.expected_ms_per_token)


@pytest.mark.parametrize("seed", range(6))
def test_a_decode_of_a_given_length_matches_its_simulation_with_the_budget_cap(seed):
    """``horizon_counts`` (an exact recursion over the budget left) against whole decodes of the
    same length played with the engine's cap (every block ≤ the budget after its context)."""
    rng = random.Random(40 + seed)
    n = rng.randint(3, 5)
    prof = random_profile(n, seed=500 + seed, style="deep" if seed % 2 else "mixed", positions=seed % 3 != 0,
                          first_call=True, engine=seed >= 3)
    drafts = sorted(rng.sample(range(n - 1), rng.randint(1, n - 1)))
    chain, buffers = drafts + [n - 1], [rng.randint(1, 12) for _ in drafts]
    length = rng.choice([1, 5, 24, 64])
    exact = horizon_counts(prof, chain, buffers, length)
    counted = simulate_counts(prof, chain, buffers, n_tokens=80000, seed=seed, max_new_tokens=length)
    assert counted["ms_per_token"] == pytest.approx(exact["ms_per_token"], rel=0.02), (chain, buffers, length)
    assert counted["tokens_per_target_call"] == pytest.approx(exact["tokens_per_target_call"], rel=0.02)
    assert counted["forwards_per_token"] == pytest.approx(exact["forwards_per_token"], rel=0.02)


def test_a_short_decode_is_worked_out_by_hand_and_a_long_one_is_the_long_run_expression():
    prof = random_profile(3, seed=12)
    a, c = prof.alpha(0, 2), [prof.cost_ms[m] for m in prof.models]
    # one token: a single round with one draft (the block is cut to the budget)
    one = horizon_counts(prof, [0, 2], [6], 1)
    assert one["ms_per_token"] == pytest.approx(c[0][0] + c[2][1], rel=1e-12)
    assert one["forwards_per_token"] == pytest.approx([1.0, 1.0])
    # two tokens: a block of two drafts, then a one-draft round unless its first draft was kept (α)
    two = horizon_counts(prof, [0, 2], [6], 2)
    assert two["ms_per_token"] == pytest.approx((2 * c[0][0] + c[2][2] + (1 - a) * (c[0][0] + c[2][1])) / 2, rel=1e-12)
    assert two["tokens_per_target_call"] == pytest.approx(2 / (2 - a), rel=1e-12)
    assert two["forwards_per_token"] == pytest.approx([(3 - a) / 2, (2 - a) / 2], rel=1e-12)
    for chain, buffers in (([0, 2], [6]), ([0, 1, 2], [3, 7]), ([2], [])):
        long = horizon_counts(prof, chain, buffers, 20000)
        assert long["ms_per_token"] == pytest.approx(expected_ms_per_token(prof, chain, buffers), rel=2e-3)
        assert long["forwards_per_token"] == pytest.approx(expected_forwards_per_token(prof, chain, buffers), rel=2e-3)
    # and a short decode differs from the long run by more than a model error would hide
    short, steady = horizon_counts(prof, [0, 1, 2], [3, 7], 12), expected_tokens_per_target_call(prof, [0, 1, 2], [3, 7])
    assert short["tokens_per_target_call"] < 0.97 * steady
    with pytest.raises(ConfigError, match="length"):
        horizon_counts(prof, [0, 2], [6], 0)
