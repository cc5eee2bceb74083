"""Claims about hsd/profile.py: JSON round trip, clear validation errors, and a measured profile
of tiny real models (costs positive, α = Σ min(p_i, p_j) matches a direct computation)."""
from __future__ import annotations

import json
import types

import pytest
import torch

from hsd.errors import ConfigError
from hsd.plan.profile import Profile
from hsd.tools.measure import measure_profile
from tests._profiles import random_profile
from hsd.family.tiny import tiny_family


@pytest.mark.parametrize("overhead", [False, True])
def test_profile_json_round_trip(tmp_path, overhead):
    prof = random_profile(4, seed=3, overhead=overhead, positions=overhead, first_call=overhead, engine=overhead)
    path = tmp_path / "p.json"
    prof.save(path)
    back = Profile.load(path)
    assert back == prof
    assert json.loads(path.read_text())["format"] == "hsd-profile/1"
    assert back.target == 3 and back.max_n == 17


def _good() -> dict:
    return {"models": ["a", "b"], "cost_ms": {"a": [1.0, 1.2], "b": [3.0, 3.5]},
            "acceptance": [[1.0, 0.7], [0.7, 1.0]], "meta": {}}


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(models=[]), "non-empty list"),
    (lambda d: d.update(models=["a", "a"]), "distinct"),
    (lambda d: d["cost_ms"].pop("b"), r"cost_ms\['b'\] is missing"),
    (lambda d: d["cost_ms"].update(b=[3.0, -1.0]), "positive finite"),
    (lambda d: d["cost_ms"].update(c=[1.0]), "not in 'models'"),
    (lambda d: d.update(acceptance=[[1.0, 0.7]]), "2×2 matrix"),
    (lambda d: d["acceptance"][0].__setitem__(1, 1.5), r"acceptance\[0\]\[1\] \(a under b\) must be in \[0, 1\]"),
    (lambda d: d.pop("acceptance"), "missing field"),
    (lambda d: d.update(format="other/9"), "unknown format"),
    (lambda d: d.update(overhead_ms={"verify": [0.1, -0.2]}), "verify"),
    (lambda d: d.update(overhead_ms={"draft_token": "x"}), "draft_token"),
    (lambda d: d.update(overhead_ms={"other": 1}), "may only hold"),
    (lambda d: d.update(overhead_ms={"round": -0.1}), r"overhead_ms\['round'\] must be a finite number ≥ 0"),
    (lambda d: d.update(accept_lengths=[[None]]), r"'accept_lengths' must be a 2×2 matrix"),
    (lambda d: d.update(accept_lengths=[[None, [[0.3, 0.6]]], [None, None]]), r"\(a under b\) for block 1 sums to 0.9"),
    (lambda d: d.update(accept_lengths=[[None, [[0.3, 0.3, 0.4]]], [None, None]]), "for block 1 must hold 2"),
    (lambda d: d.update(accept_lengths=[[None, [[-0.1, 1.1]]], [None, None]]), "probabilities ≥ 0"),
    (lambda d: d.update(accept_lengths=[[None, None], [[[0.5, 0.5]], None]]), "must be null"),
])
def test_invalid_profiles_raise_config_error_naming_the_problem(mutate, message):
    d = _good()
    Profile.from_dict(d)
    mutate(d)
    with pytest.raises(ConfigError, match=message):
        Profile.from_dict(d)


def test_loading_a_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Profile.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Profile.load(bad)


# --------------------------------------------------------------------------------------------
# measuring on tiny real models
# --------------------------------------------------------------------------------------------


def _family(n=3):
    models, tok = tiny_family(n)
    return types.SimpleNamespace(names=[f"tiny{i}" for i in range(n)], models=models, tokenizer=tok,
                                 vocab_size=len(tok), device=torch.device("cpu"))


def _direct_alpha(model_i, model_j, seq, temperature):
    """Σ_v min(p_i, p_j) averaged over every position after the first, full forward, no cache."""
    with torch.no_grad():
        ids = torch.tensor([seq[:-1]])
        pi = torch.softmax(model_i(ids).logits[0].double() / temperature, -1)
        pj = torch.softmax(model_j(ids).logits[0].double() / temperature, -1)
    return torch.minimum(pi, pj).sum(-1)                           # (len-1,)


def test_measured_acceptance_is_mean_sum_of_min_over_positions():
    fam = _family(3)
    contexts = [[1, 5, 9, 3, 7, 2, 8, 4, 6, 10, 11], [3, 3, 4, 12, 9, 1, 2]]
    prof = measure_profile(fam, max_n=3, repeats=1, warmup=0, temperature=0.7, contexts=contexts)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        per_pos = torch.cat([_direct_alpha(fam.models[i], fam.models[j], c, 0.7) for c in contexts])
        assert prof.acceptance[i][j] == pytest.approx(float(per_pos.mean()), abs=1e-5)
        assert prof.acceptance[j][i] == prof.acceptance[i][j]
    assert prof.meta["acceptance_positions"] == sum(len(c) - 1 for c in contexts)


def test_identical_drafter_has_acceptance_one_and_greedy_counts_argmax_agreement():
    fam = _family(2)
    fam.models = [fam.models[1], fam.models[1]]
    prof = measure_profile(fam, max_n=2, repeats=1, warmup=0, temperature=1.0, contexts=[[1, 2, 3, 4, 5]])
    assert prof.acceptance[0][1] == pytest.approx(1.0, abs=1e-6)
    fam = _family(2)
    seq = [1, 2, 3, 4, 5, 6, 7, 8]
    prof = measure_profile(fam, max_n=2, repeats=1, warmup=0, temperature=0.0, contexts=[seq])
    with torch.no_grad():
        ids = torch.tensor([seq[:-1]])
        agree = (fam.models[0](ids).logits[0].argmax(-1) == fam.models[1](ids).logits[0].argmax(-1))
    assert prof.acceptance[0][1] == pytest.approx(float(agree.double().mean()))


def test_measured_profile_has_positive_costs_for_every_block_length_and_round_trips(tmp_path):
    fam = _family(3)
    calls = []
    prof = measure_profile(fam, max_n=5, repeats=2, warmup=1, temperature=1.0, context_tokens=6,
                           prompts=["abc def", "x = (y)"], progress=lambda d, t, w: calls.append((d, t)))
    assert prof.models == fam.names
    assert all(len(prof.cost_ms[m]) == 5 and min(prof.cost_ms[m]) > 0 for m in prof.models)
    assert 0.0 <= prof.acceptance[0][2] <= 1.0 and prof.meta["contexts"] == 2
    assert set(prof.first_call_ms) == set(fam.names) and min(prof.first_call_ms.values()) >= 0.0
    assert calls and calls[-1][0] == calls[-1][1]
    prof.save(tmp_path / "p.json")
    assert Profile.load(tmp_path / "p.json") == prof


def test_profile_measurement_leaves_the_global_rng_alone():
    fam = _family(2)
    state = torch.random.get_rng_state()
    measure_profile(fam, max_n=2, repeats=1, warmup=0, context_tokens=4, prompts=["ab"])
    assert torch.equal(state, torch.random.get_rng_state())


def test_profile_measures_sampling_and_rule_overhead_for_every_block_length():
    fam = _family(2)
    prof = measure_profile(fam, max_n=5, repeats=2, warmup=0, context_tokens=8, prompts=["abc"], rule="token")
    assert prof.meta["rule"] == "token"
    assert len(prof.overhead_ms["verify"]) == 4 and min(prof.overhead_ms["verify"]) > 0
    assert prof.overhead_ms["draft_token"] > 0
    bare = measure_profile(fam, max_n=3, repeats=1, warmup=0, context_tokens=4, prompts=["abc"], rule=None)
    assert bare.overhead_ms == {} and bare.verify_overhead_ms(3) == 0.0


def test_acceptance_by_position_is_the_rules_law_averaged_over_drafted_blocks():
    """An identical drafter keeps every block whole; under greedy decoding the law is the
    distribution of the argmax match length, computed here directly from full forwards."""
    fam = _family(2)
    fam.models = [fam.models[1], fam.models[1]]
    prof = measure_profile(fam, max_n=4, repeats=1, warmup=0, temperature=1.0, context_tokens=6, prompts=["ab c"],
                           accept_source="blocks")
    for gamma, law in enumerate(prof.accept_lengths[0][1], start=1):
        assert law == pytest.approx([0.0] * gamma + [1.0], abs=1e-6)
    fam = _family(2)
    prof = measure_profile(fam, max_n=4, repeats=1, warmup=0, temperature=0.0, context_tokens=9, prompts=["x = (y)"],
                           block_every=3, accept_source="blocks")
    from hsd.tools.measure import block_starts, sample_contexts
    from hsd.levels import SamplingSettings, build_level
    target = build_level(fam.models[1], name="t", vocab_size=fam.vocab_size, settings=SamplingSettings(0.0))
    prompt = list(fam.tokenizer("x = (y)", add_special_tokens=False)["input_ids"])
    starts = block_starts(sample_contexts(target, [prompt], 9), 3)
    assert prof.meta["block_starts"] == len(starts) == 3
    counts = [[0] * (g + 1) for g in range(1, 4)]
    with torch.no_grad():
        for prefix in starts:
            block = list(prefix)
            for _ in range(3):
                block.append(int(fam.models[0](torch.tensor([block])).logits[0, -1].argmax()))
            best = fam.models[1](torch.tensor([block])).logits[0, len(prefix) - 1:].argmax(-1).tolist()
            for gamma in range(1, 4):
                match = next((t for t in range(gamma) if best[t] != block[len(prefix) + t]), gamma)
                counts[gamma - 1][match] += 1
    assert prof.accept_lengths[0][1] == [[c / len(starts) for c in row] for row in counts]
    assert prof.uses_positions and Profile.from_json(prof.to_json()) == prof
    assert measure_profile(fam, max_n=3, repeats=1, warmup=0, context_tokens=4, prompts=["ab"],
                           block_every=0).accept_lengths is None


# --------------------------------------------------------------------------------------------
# real model shapes with random weights (hsd shapes)
# --------------------------------------------------------------------------------------------
def test_the_shipped_shapes_have_the_published_parameter_counts():
    from hsd.tools.shapes import load_shapes, param_count, shape_families

    assert shape_families() == ["qwen2.5", "smollm2"]
    counts = {m["name"]: param_count(m["config"]) for f in shape_families() for m in load_shapes(f)["models"]}
    assert round(counts["SmolLM2-135M"] / 1e6, 1) == 134.5 and round(counts["SmolLM2-360M"] / 1e6, 1) == 361.8
    assert round(counts["SmolLM2-1.7B"] / 1e9, 2) == 1.71 and round(counts["Qwen2.5-0.5B"] / 1e6) == 494
    assert round(counts["Qwen2.5-1.5B"] / 1e9, 2) == 1.54 and round(counts["Qwen2.5-3B"] / 1e9, 2) == 3.09


@pytest.mark.parametrize("family", ["smollm2", "qwen2.5"])
def test_random_weight_models_of_scaled_down_shapes_are_timed_and_labelled_assumed(family):
    from hsd.tools.shapes import build_random, load_shapes, measure_shapes, param_count, scaled

    config = scaled(load_shapes(family)["models"][0]["config"], 0.06)
    model = build_random(config, "fp32")
    assert sum(p.numel() for p in model.parameters()) == param_count(config)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    calls = []
    prof = measure_shapes(family, scale=0.06, max_n=3, repeats=1, context_tokens=6,
                          progress=lambda d, t, w: calls.append(w))
    assert len(prof.models) == 3 and all(len(c) == 3 and min(c) > 0 for c in prof.cost_ms.values())
    assert prof.meta["costs"].startswith("measured with random weights") and prof.meta["acceptance"].startswith("assumed")
    assert prof.acceptance[0][1] == 0.85 and prof.acceptance[0][2] == 0.75 and calls[-1] == "done"


@pytest.mark.skipif(__import__("hsd.levels.ggml", fromlist=["x"]).llamacpp_missing() is not None,
                    reason="llama-cpp-python is not installed")
def test_shapes_are_timed_on_both_runtimes_from_the_same_random_weights_and_the_gguf_copy_goes(monkeypatch, tmp_path):
    """``measure_shapes_on(…, ["auto", "llamacpp"])``: one profile per runtime, the same models and
    block lengths, each labelled with its runtime and weights; llama.cpp's copy is a temporary
    file removed after timing (nothing is left in the GGUF cache either)."""
    import tempfile

    from hsd.tools.shapes import measure_shapes_on, runtime_table

    monkeypatch.setenv("HSD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    torch_prof, ggml_prof = measure_shapes_on("smollm2", ["auto", "llamacpp"], scale=0.06, max_n=3, repeats=1,
                                              context_tokens=6, dtype="bf16")
    assert torch_prof.models == ggml_prof.models and len(ggml_prof.models) == 3
    for prof in (torch_prof, ggml_prof):
        assert all(len(c) == 3 and min(c) > 0 for c in prof.cost_ms.values())
    assert torch_prof.meta["forward"] == "auto" and torch_prof.meta["runtime"].startswith("PyTorch")
    assert ggml_prof.meta["forward"] == "llamacpp" and ggml_prof.meta["runtime"] == "llama.cpp, f16 GGUF weights"
    assert torch_prof.acceptance == ggml_prof.acceptance
    assert not any(tmp_path.rglob("*.gguf"))                          # the copies went with their timing
    table = runtime_table([torch_prof, ggml_prof])
    assert "SmolLM2-1.7B" in table and "llama.cpp" in table and "cheaper" in table


def test_a_shape_that_does_not_fit_in_memory_is_refused_before_it_is_built():
    from hsd.tools.shapes import check_fits

    huge = {"model_type": "llama", "vocab_size": 10 ** 6, "hidden_size": 65536, "intermediate_size": 262144,
            "num_hidden_layers": 200, "num_attention_heads": 512, "num_key_value_heads": 512}
    with pytest.raises(ConfigError, match=r"needs about .* GiB in bf16 with random weights, but .* GiB is available"):
        check_fits("huge", huge, "bf16")
    with pytest.raises(ConfigError, match=r"with random weights and its llama.cpp copy, but"):
        check_fits("huge", huge, "bf16", ["auto", "llamacpp"])


def _pooled_conditional(fam, pair, gammas, prompts, new_tokens=16):
    """P(position t kept | positions < t kept), counted over the full verifications of greedy
    single-draft decodes pair[0][γ] → pair[1] at every γ of ``gammas`` after each prompt."""
    from hsd.engine import Hierarchy

    prompt_ids = [list(fam.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    reached, kept = [0] * max(gammas), [0] * max(gammas)
    for gamma in gammas:
        h = Hierarchy([fam.models[pair[0]], fam.models[pair[1]]], tokenizer=fam.tokenizer, buffers=[gamma], rules="hsd")
        for p, ids in enumerate(prompt_ids):
            for e in h.stream(fam.tokenizer.decode(ids), max_new_tokens=new_tokens, temperature=0.0, seed=p,
                              stop_at_eos=False):
                if e.kind == "verified" and len(e.proposed) == gamma:
                    for t in range(min(e.n_accepted + 1, gamma)):
                        reached[t] += 1
                        kept[t] += t < e.n_accepted
    return [k / r if r else 1.0 for k, r in zip(kept, reached)]


def test_greedy_acceptance_by_position_comes_from_real_single_draft_decodes():
    """Rounds start where the previous one failed: the laws come from the engine's own decodes of
    every pair at every block length (full blocks only), the conditional acceptance by position
    pooled over them."""
    fam = _family(3)
    prof = measure_profile(fam, max_n=4, repeats=1, warmup=0, temperature=0.0, context_tokens=10,
                           prompts=["ab c", "x = (y)"])
    assert prof.meta["accept_source"] == "traces" and prof.uses_positions
    a = _pooled_conditional(fam, (0, 2), (1, 2, 3), ["ab c", "x = (y)"])   # pooled over every block length
    expect = [1 - a[0], a[0] * (1 - a[1]), a[0] * a[1] * (1 - a[2]), a[0] * a[1] * a[2]]
    assert prof.accept_lengths[0][2][2] == pytest.approx(expect, abs=1e-12)
    assert prof.accept_lengths[0][2][0] == pytest.approx([1 - a[0], a[0]], abs=1e-12)
    blocks = measure_profile(fam, max_n=3, repeats=1, warmup=0, temperature=0.0, context_tokens=6,
                             prompts=["ab c"], accept_source="blocks")
    assert blocks.meta["accept_source"] == "blocks"
    with pytest.raises(ConfigError, match="accept source"):
        measure_profile(fam, max_n=3, repeats=1, warmup=0, context_tokens=4, prompts=["ab"], accept_source="x")


def test_the_engine_fit_recovers_known_per_step_round_and_token_times():
    """Decodes whose wall clock is what the profile's costs say plus known engine terms (and a
    little noise) give those terms back; terms that would come out negative are held at 0."""
    import random

    from hsd.tools.measure import fit_engine_overhead

    prof = Profile(["a", "b", "c"], {"a": [1.0, 1.2, 1.4, 1.6, 1.8], "b": [3.0, 3.2, 3.5, 3.7, 4.0],
                                     "c": [9.0, 9.3, 9.6, 9.9, 10.2]},
                   [[1, .8, .6], [.8, 1, .85], [.6, .85, 1]], first_call_ms={"a": 0.3, "b": 0.2},
                   overhead_ms={"draft_token": 0.05, "verify": [0.1, 0.12, 0.14, 0.16]})
    rng, records = random.Random(0), []

    def wall(chain, steps, calls, verifies, tokens, step, rnd, tok):
        base = steps * (prof.cost_ms[prof.models[chain[0]]][0] + 0.05)
        base += calls * prof.first_call(chain[0]) if len(chain) > 1 else 0.0
        base += sum(prof.cost_ms[prof.models[m]][g] + prof.verify_overhead_ms(g) for m, g in verifies)
        return base + step * steps + rnd * len(verifies) + tok * tokens + rng.gauss(0, 0.05)

    for step, rnd, tok in ((0.2, 0.4, 0.1), (0.2, 0.0, 0.1)):
        records.clear()
        for drafter, verifier in ((0, 1), (0, 2), (1, 2)):
            for gamma in range(1, 5):
                rounds = rng.randint(10, 30)
                tokens = rounds * rng.randint(1, gamma + 1)
                verifies = [(verifier, gamma)] * rounds
                records.append({"chain": [drafter, verifier], "steps": rounds * gamma, "calls": rounds,
                                "verifies": verifies, "tokens": tokens,
                                "wall_ms": wall([drafter, verifier], rounds * gamma, rounds, verifies, tokens,
                                                step, rnd, tok)})
        for _ in range(4):
            records.append({"chain": [2], "steps": 32, "calls": 32, "verifies": [], "tokens": 32,
                            "wall_ms": wall([2], 32, 32, [], 32, step, rnd, tok)})
        fit = fit_engine_overhead(records, prof)
        assert fit["n"] == 16 and fit["rms_after_ms_per_token"] < fit["rms_before_ms_per_token"]
        assert (fit["step"], fit["round"], fit["token"]) == pytest.approx((step, rnd, tok), abs=0.02)
    assert fit_engine_overhead(records[:2], prof) == {}


def test_a_measured_profile_fits_the_engines_own_time_to_its_decodes():
    fam = _family(3)
    prof = measure_profile(fam, max_n=4, repeats=2, warmup=0, context_tokens=8, prompts=["abc", "de"])
    fit = prof.meta["engine_overhead"]
    assert fit["n"] == 3 * 3 * 2 + 2                # 3 pairs × γ 1..3 × 2 prompts, and the target alone
    assert all(prof.overhead_ms[k] >= 0.0 for k in ("step", "round", "token"))
    # the fit starts from zero terms, so it can only lower the residual; it must lower it exactly
    # when it found a positive term (a fit that reports terms its residual does not use is wrong)
    found = any(prof.overhead_ms[k] > 0.0 for k in ("step", "round", "token"))
    assert (fit["rms_after_ms_per_token"] < fit["rms_before_ms_per_token"]) == found
    assert fit["rms_after_ms_per_token"] >= 0.0
    blocks = measure_profile(fam, max_n=3, repeats=1, warmup=0, context_tokens=4, prompts=["abc"],
                             accept_source="blocks")
    assert "engine_overhead" not in blocks.meta and "step" not in blocks.overhead_ms


def test_traces_at_a_subset_of_block_lengths_pool_the_same_way_and_build_every_law():
    """``trace_blocks``: the single-draft decodes run only at those block lengths (the longest
    added), the conditional acceptance is pooled over them, and a law exists for every γ."""
    from hsd.tools.measure import trace_block_lengths

    assert trace_block_lengths(None, 4) == [1, 2, 3, 4]
    assert trace_block_lengths([1, 2, 8, 16], 5) == [1, 2, 5]
    with pytest.raises(ConfigError, match="whole numbers ≥ 1"):
        trace_block_lengths([0, 2], 4)
    fam = _family(2)
    prof = measure_profile(fam, max_n=5, repeats=1, warmup=0, temperature=0.0, context_tokens=10,
                           prompts=["ab c", "x = (y)"], trace_blocks=[1, 3])
    assert prof.meta["trace_blocks"] == [1, 3, 4]
    assert [len(law) for law in prof.accept_lengths[0][1]] == [2, 3, 4, 5]
    a = _pooled_conditional(fam, (0, 1), (1, 3, 4), ["ab c", "x = (y)"])
    assert prof.accept_lengths[0][1][1] == pytest.approx([1 - a[0], a[0] * (1 - a[1]), a[0] * a[1]], abs=1e-12)
    every = measure_profile(fam, max_n=5, repeats=1, warmup=0, temperature=0.0, context_tokens=10,
                            prompts=["ab c", "x = (y)"])
    assert every.meta["trace_blocks"] == [1, 2, 3, 4]
    assert every.meta["engine_overhead"]["n"] > prof.meta["engine_overhead"]["n"]     # more decodes


def test_forward_costs_are_timed_between_the_decodes_the_engine_fit_reads():
    """With trace decodes, a cost round follows each (pair, γ)'s decodes and the target's, then
    ``repeats`` more; a level another step reset (the rule's timing) is warmed again before a
    round, so no round times a prefill of the whole context."""
    from hsd.levels import SamplingSettings, build_level
    from hsd.tools.measure import CostTimer

    fam = _family(2)
    prof = measure_profile(fam, max_n=4, repeats=2, warmup=1, temperature=1.0, context_tokens=6,
                           prompts=["ab c"], trace_blocks=[1, 3])
    # rounds: 2 block lengths × 1 pair + 1 after the target alone, then 2 repeats
    assert "over 5 rounds, 3 of them between the acceptance decodes" in prof.meta["cost"]
    assert all(len(v) == 4 and min(v) > 0 for v in prof.cost_ms.values())
    lv = build_level(fam.models[0], name="a", vocab_size=fam.vocab_size, settings=SamplingSettings(1.0, 0, 1.0))
    context = list(range(1, 9))
    timer = CostTimer([lv], context, max_n=3)
    lv.reset()
    timer.round()
    assert list(lv.cached_ids[:len(context)]) == context and timer.kept == 1
