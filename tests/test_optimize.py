"""Claims about the GSP optimiser (hsd/optimize.py): it returns exactly the brute-force argmin of
the latency model, its k-best ranking is exact, its graph follows the drawing convention, and it
scales polynomially."""
from __future__ import annotations

import math
import time

import networkx as nx
import pytest

from hsd.errors import ConfigError
from hsd.plan.latency import expected_ms_per_token
from hsd.plan.optimize import Plan, best_single_draft, brute_force, optimal_hierarchy, plan_for
from tests._profiles import random_profile

CASES = [(n, seed, style) for n in (3, 4, 5, 6) for seed in range(8)
         for style in ("mixed", "deep", "overhead", "positions")]


def _profile(n_models, seed, style):
    """'overhead': a deep-style profile that also carries engine overheads; 'positions': acceptance
    measured by position (a law per block length, read past the measured blocks too)."""
    if style == "overhead":
        return random_profile(n_models, seed, style="deep", overhead=True, first_call=True, engine=seed % 2 == 1)
    if style == "positions":
        return random_profile(n_models, seed, style="deep" if seed % 2 else "mixed", positions=True, max_n=5)
    return random_profile(n_models, seed, style=style)


def _max_buffer(n_models: int) -> int:
    return {3: 6, 4: 5, 5: 4, 6: 3}[n_models]


@pytest.mark.parametrize("n_models,seed,style", CASES)
def test_optimum_equals_brute_force_argmin(n_models, seed, style):
    prof = _profile(n_models, 1000 * n_models + seed, style)
    b = _max_buffer(n_models)
    plan = optimal_hierarchy(prof, max_buffer=b, top=1, with_graph=False)
    ms, chain, buffers = brute_force(prof, b)[0]
    assert plan.expected_ms_per_token == pytest.approx(ms, rel=1e-12)
    assert expected_ms_per_token(prof, plan.chain, plan.buffers) == pytest.approx(ms, rel=1e-12)
    if not math.isclose(brute_force(prof, b)[1][0], ms, rel_tol=1e-12):   # unique optimum
        assert (plan.chain, plan.buffers) == (chain, buffers)


@pytest.mark.parametrize("n_models,seed,style", [(4, 1, "mixed"), (5, 2, "mixed"), (6, 3, "mixed"),
                                                  (4, 1, "deep"), (5, 2, "deep"), (6, 3, "deep"),
                                                  (5, 4, "overhead")])
def test_k_best_ranking_equals_brute_force_ranking(n_models, seed, style):
    prof = _profile(n_models, seed, style)
    b = _max_buffer(n_models)
    plan = optimal_hierarchy(prof, max_buffer=b, top=10, with_graph=False)
    brute = brute_force(prof, b)
    ranked = [p for p in plan.ranking][:10]
    assert [p.expected_ms_per_token for p in ranked] == pytest.approx([r[0] for r in brute[:10]], rel=1e-12)
    assert len({(p.chain, p.buffers) for p in plan.ranking}) == len(plan.ranking)   # distinct
    for p in plan.ranking:
        assert p.expected_ms_per_token == pytest.approx(expected_ms_per_token(prof, p.chain, p.buffers))


def test_brute_force_cases_cover_deep_optima():
    """Sanity of the test set: in many brute-force cases a stack of ≥ 2 drafts wins, in others a
    single draft or AR."""
    depths = [len(optimal_hierarchy(_profile(n, 1000 * n + s, st), _max_buffer(n),
                                    top=1, with_graph=False).chain) - 1 for n, s, st in CASES]
    assert sum(d >= 2 for d in depths) >= 20
    assert sum(d == 3 for d in depths) >= 5
    assert sum(d <= 1 for d in depths) >= 20


def test_autoregressive_and_best_single_draft_are_always_ranked():
    prof = random_profile(5, seed=11)
    plan = optimal_hierarchy(prof, max_buffer=8, top=2, with_graph=False)
    keys = {(p.chain, p.buffers) for p in plan.ranking}
    single = best_single_draft(prof, 8)
    assert ((4,), ()) in keys
    assert (single.chain, single.buffers) in keys
    assert plan.expected_ms_per_token <= single.expected_ms_per_token
    assert [p.expected_ms_per_token for p in plan.ranking] == sorted(p.expected_ms_per_token for p in plan.ranking)


def test_optimum_is_autoregressive_when_drafts_are_useless():
    prof = random_profile(3, seed=5)
    for i in range(3):
        for j in range(3):
            if i != j:
                prof.acceptance[i][j] = 0.0
    plan = optimal_hierarchy(prof, max_buffer=6)
    assert plan.chain == (2,) and plan.buffers == ()
    assert plan.speedup_vs_ar == pytest.approx(1.0)
    assert plan.path == (("target", 2),)


@pytest.mark.parametrize("overhead", [False, True])
def test_graph_follows_the_drawing_convention(overhead):
    prof = random_profile(4, seed=21, style="deep", overhead=overhead)
    b = 5
    plan = optimal_hierarchy(prof, max_buffer=b)
    g = plan.graph
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == 3 * b + 1
    # arcs: every lower draft node into every higher draft node, and every draft node into the target
    assert g.number_of_edges() == 3 * b * b + 3 * b
    for node, attrs in g.nodes(data=True):
        assert set(attrs) >= {"model", "name", "buffer", "best_cost_ms", "on_optimal"}
        assert attrs["name"] == prof.models[attrs["model"]]
        if node[0] == "draft":
            assert node == ("draft", attrs["model"], attrs["buffer"])
    assert g.nodes[("target", 3)]["best_cost_ms"] == pytest.approx(plan.expected_ms_per_token)
    # the path is the plan's hierarchy, bottom-up, and exactly its arcs are flagged
    assert plan.path[-1] == ("target", 3)
    assert [n[1] for n in plan.path] == list(plan.chain)
    assert [n[2] for n in plan.path[:-1]] == list(plan.buffers)
    flagged = {(u, v) for u, v, d in g.edges(data=True) if d["on_optimal"]}
    assert flagged == set(zip(plan.path, plan.path[1:]))
    # cost·gain composition along the path reproduces the plan's ms/token
    c = g.nodes[plan.path[0]]["leaf_cost_ms"]
    for u, v in zip(plan.path, plan.path[1:]):
        c = g.edges[u, v]["gain"] * (c + g.edges[u, v]["cost_ms"])
    assert c == pytest.approx(plan.expected_ms_per_token, rel=1e-12)
    # best_cost_ms of each draft node is the best over its in-arcs (or its leaf cost)
    for node in g.nodes:
        if node[0] != "draft":
            continue
        options = [g.nodes[node]["leaf_cost_ms"]] + [
            d["gain"] * (g.nodes[u]["best_cost_ms"] + d["cost_ms"]) for u, _, d in g.in_edges(node, data=True)]
        assert g.nodes[node]["best_cost_ms"] == pytest.approx(min(options), rel=1e-12)


def test_plan_json_is_plain_data():
    import json
    plan = optimal_hierarchy(random_profile(4, seed=3), max_buffer=6)
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["chain"] == list(plan.chain) and len(d["runners_up"]) == len(plan.runners_up)


def test_plan_for_single_draft_reports_model_predicted_speedup():
    prof = random_profile(3, seed=8)
    p = plan_for(prof, [0, 2], [4])
    assert isinstance(p, Plan) and p.kind == "single draft"
    assert p.speedup_vs_ar == pytest.approx(prof.cost_ms["m2"][0] / p.expected_ms_per_token)
    assert p.label == "m0[4] → m2"


def test_twelve_models_with_buffers_up_to_16_solve_in_polynomial_time():
    prof = random_profile(12, seed=12, style="deep")
    t0 = time.perf_counter()
    plan = optimal_hierarchy(prof, max_buffer=16, top=8)
    elapsed = time.perf_counter() - t0
    print(f"12 models × max_buffer 16: {elapsed:.3f} s, {plan.graph.number_of_edges()} arcs, "
          f"optimum {plan.label}")
    assert elapsed < 5.0           # brute force would enumerate Σ_d C(11,d)·16^d = 17^11 ≈ 3.4e13
    assert plan.graph.number_of_nodes() == 11 * 16 + 1


def test_bad_settings_raise_config_errors():
    prof = random_profile(3, seed=1)
    with pytest.raises(ConfigError):
        optimal_hierarchy(prof, max_buffer=0)
    with pytest.raises(ConfigError):
        optimal_hierarchy(prof, top=0)


@pytest.mark.parametrize("seed", range(4))
def test_best_buffers_for_a_fixed_chain_equal_brute_force_over_that_chain(seed):
    from hsd.plan.optimize import best_for_chain
    prof = random_profile(5, seed=300 + seed, style="deep", overhead=seed % 2 == 1)
    brute = brute_force(prof, 4)
    for chain in [(4,), (1, 4), (0, 2, 4), (0, 1, 3, 4), (0, 1, 2, 3, 4)]:
        best_ms = min(ms for ms, c, _ in brute if c == chain)
        plan = best_for_chain(prof, chain, 4)
        assert plan.chain == chain
        assert plan.expected_ms_per_token == pytest.approx(best_ms, rel=1e-12)


def test_what_if_scales_costs_and_sets_acceptance_without_touching_the_original():
    prof = random_profile(4, seed=3, overhead=True)
    w = prof.what_if({"m3": 2.5}, {("m0", "m2"): 0.9})
    assert w.cost_ms["m3"] == [2.5 * c for c in prof.cost_ms["m3"]]
    assert w.cost_ms["m1"] == prof.cost_ms["m1"] and w.overhead_ms == prof.overhead_ms
    assert w.alpha(0, 2) == 0.9 == w.acceptance[2][0] and prof.alpha(0, 2) != 0.9
    assert w.meta["what_if"] == ["cost(m3) ×2.5", "α(m0, m2) = 0.9"]
    # a slower target makes speculation pay more: the optimum's speed-up over AR cannot fall
    base = optimal_hierarchy(prof, max_buffer=8, with_graph=False)
    slow = optimal_hierarchy(prof.what_if({"m3": 3.0}), max_buffer=8, with_graph=False)
    assert slow.speedup_vs_ar >= base.speedup_vs_ar - 1e-12
    for costs, pairs, match in (({"nope": 2.0}, None, "no model named 'nope'"),
                                ({"m3": 0.0}, None, "positive"),
                                (None, {("m1", "m1"): 0.5}, "two different"),
                                (None, {("m0", "m1"): 1.5}, r"\[0, 1\]")):
        with pytest.raises(ConfigError, match=match):
            prof.what_if(costs, pairs)


def test_what_if_flags_parse_and_bad_text_is_a_config_error():
    from hsd.tools.optimize import parse_what_if

    assert parse_what_if(["l=2", "m=0.5"], ["s:m=0.9"]) == ({"l": 2.0, "m": 0.5}, {("s", "m"): 0.9})
    for costs, alphas in ((["l"], []), (["l=x"], []), ([], ["s=0.9"]), ([], ["s:=0.9"])):
        with pytest.raises(ConfigError, match="expects"):
            parse_what_if(costs, alphas)


def test_every_regime_map_cell_is_the_optimiser_on_that_what_if():
    from hsd.plan.optimize import autoregressive
    from hsd.plan.regime import regime_map

    prof = random_profile(4, seed=3, style="deep", positions=True)
    rmap = regime_map(prof, "target cost ×", "adjacent α", max_buffer=5)
    names = prof.models
    for iy, y in enumerate(rmap.ys):
        for ix, x in enumerate(rmap.xs):
            acceptance = {(names[i], names[j]): y if j == i + 1 else min(prof.alpha(i, j), y)
                          for i in range(3) for j in range(i + 1, 4)}
            w = prof.what_if({"m3": x}, acceptance)
            best = optimal_hierarchy(w, max_buffer=5, top=1, with_graph=False)
            flat = min(best_single_draft(w, 5).expected_ms_per_token, autoregressive(w).expected_ms_per_token)
            assert rmap.gain[iy][ix] == pytest.approx(flat / best.expected_ms_per_token, rel=1e-12)
            assert rmap.labels[iy][ix] == best.label and rmap.depth[iy][ix] == len(best.chain) - 1
    gains = [g for row in rmap.gain for g in row]
    assert min(gains) == pytest.approx(1.0) and max(gains) > 1.05          # both regimes on the map
    assert rmap.here == (1.0, pytest.approx(sum(prof.alpha(i, i + 1) for i in range(3)) / 3))


def test_the_regime_map_refuses_bad_axes_and_families_without_a_middle_model():
    from hsd.plan.regime import regime_map

    prof = random_profile(4, seed=3)
    with pytest.raises(ConfigError, match="unknown regime-map axis 'speed'"):
        regime_map(prof, "speed", "adjacent α")
    with pytest.raises(ConfigError, match="two different axes"):
        regime_map(prof, "adjacent α", "adjacent α")
    with pytest.raises(ConfigError, match="at least three models"):
        regime_map(random_profile(2, seed=1), "target cost ×", "adjacent α")
