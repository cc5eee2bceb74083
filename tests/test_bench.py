"""Claims about hsd/bench.py: which contenders it races, that one quick run on tiny REAL models
(saved to folders, loaded as a family spec like a user's) prints the table, writes the JSON and the
figure, and that every contender's greedy output equals transformers' own greedy ``generate``.
No timing asserts: wall-clock numbers are only checked to exist."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from hsd.tools import bench
from hsd.tools.cli import main
from hsd.plan.profile import Profile
from tests._profiles import random_profile
from hsd.family.tiny import tiny_family

NAMES = ["t0", "t1", "t2"]
ASSETS = Path(__file__).resolve().parents[1] / "assets"
PROMPTS = "def f(x):\\n    return (x\n# a comment line\n\nclass a:\\n\\tb = (c)\n"


def _deep_profile() -> Profile:
    """Hand-made profile where a 3-level stack beats the best single draft (model-predicted)."""
    cost = {"t0": [0.2 + 0.01 * n for n in range(8)], "t1": [1.0 + 0.05 * n for n in range(8)],
            "t2": [6.0 + 0.2 * n for n in range(8)]}
    acc = [[1.0, 0.9, 0.8], [0.9, 1.0, 0.9], [0.8, 0.9, 1.0]]
    return Profile(models=NAMES, cost_ms=cost, acceptance=acc, meta={"temperature": 1.0})


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``python -m hsd bench --quick`` on three tiny Llamas saved to folders."""
    root = tmp_path_factory.mktemp("bench")
    models, tok = tiny_family(3)
    dirs = []
    for name, model in zip(NAMES, models):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs.append(str(root / name))
    _deep_profile().save(root / "profile.json")
    (root / "prompts.txt").write_text(PROMPTS, encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["bench", "--family", ",".join(dirs), "--profile", str(root / "profile.json"),
                   "--prompts", str(root / "prompts.txt"), "--quick", "--max-new-tokens", "10",
                   "--threads", "1", "--max-buffer", "4", "--json", str(root / "bench.json"),
                   "--html", str(root / "bench.html"), "--markdown", str(root / "bench.md")])
    report = json.loads((root / "bench.json").read_text())
    return {"rc": rc, "stdout": out.getvalue(), "report": report, "root": root}


def test_quick_run_prints_a_table_labelled_wall_clock_and_model_predicted(quick):
    assert quick["rc"] == 0
    text = quick["stdout"]
    assert "== greedy (T=0) ==" in text and "== sampled (T=1) ==" in text
    header = next(line for line in text.splitlines() if line.startswith("contender"))
    assert "tok/s wall clock" in header and "model-pred." in header and "ms/tok wall clock" in header
    assert "(c)/(b) = " in text and "(d)/(c) = " in text
    for label in ("(a) transformers generate", "(b) transformers assisted", "(c) engine, best single draft",
                  "(d) engine, optimiser's hierarchy", "(e) (d) with rule token", "(e) (d) with rule block",
                  "(f) engine, target alone"):
        assert label in text


def test_json_has_one_section_per_temperature_with_a_row_and_every_run_per_contender(quick):
    report = quick["report"]
    assert report["format"] == "hsd-bench/1"
    assert [s["temperature"] for s in report["sections"]] == [0.0, 1.0]
    keys = [c["key"] for c in report["contenders"]]
    assert keys[:6] == ["a", "b", "c", "d", "e-token", "e-block"] and "f-ar" in keys
    assert report["meta"]["max_new_tokens"] == 10 and report["meta"]["repeats"] == 1
    assert report["meta"]["n_prompts"] == 2 == len(report["prompts"])                   # --quick: 2 prompts
    assert report["prompts"][1] == "class a:\n\tb = (c)"                               # escapes, comment skipped
    for section in report["sections"]:
        assert [r["key"] for r in section["rows"]] == keys
        assert len(section["runs"]) == len(keys) * 2
        for r in section["rows"]:
            assert r["n_runs"] == 2 and r["n_tokens"] == 20                            # eos ignored: exact length
            tps = sorted(1000.0 * x["n_tokens"] / x["wall_ms"] for x in section["runs"] if x["contender"] == r["key"])
            assert r["tokens_per_s"]["median"] == pytest.approx((tps[0] + tps[1]) / 2)      # wall clock, from its runs
            assert r["speedup_vs_a"]["n"] == 2
            assert 0.0 <= r["outside_forward_share"]["median"] <= 1.0
        a = section["rows"][0]
        assert a["tokens_per_target_call"] == 1.0 and a["speedup_vs_a"]["median"] == 1.0
        assert a["predicted_ms_per_token"] == pytest.approx(6.0)                      # c_K(1) of the profile
        assert section["ratios"]["c/b"]["n"] == 2 and section["ratios"]["d/c"]["n"] == 2


def test_b_uses_the_drafter_and_draft_length_of_c_and_d_is_the_optimisers_stack(quick):
    rows = {r["key"]: r for r in quick["report"]["sections"][0]["rows"]}
    assert rows["b"]["chain"] == rows["c"]["chain"] and rows["b"]["buffers"] == rows["c"]["buffers"]
    assert rows["b"]["predicted_ms_per_token"] is None and rows["c"]["predicted_ms_per_token"] > 0
    assert len(rows["d"]["chain"]) == 3                                                # deep profile: a stack
    assert rows["e-token"]["chain"] == rows["d"]["chain"] and rows["e-token"]["rule"] == "token"


def test_every_contender_reproduces_transformers_greedy_output_token_for_token(quick):
    greedy = quick["report"]["sections"][0]
    assert greedy["greedy"]
    for r in greedy["rows"]:
        assert r["greedy_equal_to_a"] is True, (r["label"], r["greedy_mismatches"])
    by_prompt = {}
    for run in greedy["runs"]:
        by_prompt.setdefault(run["prompt"], set()).add(tuple(run["token_ids"]))
    assert all(len(outputs) == 1 for outputs in by_prompt.values())
    assert all(r["greedy_equal_to_a"] is None for r in quick["report"]["sections"][1]["rows"])


def test_markdown_tables_say_wall_clock_and_model_predicted_in_their_headers(quick):
    md = (quick["root"] / "bench.md").read_text(encoding="utf-8")
    headers = [line for line in md.splitlines() if line.startswith("| contender")]
    assert len(headers) == 2
    cells = headers[0].strip("|").split("|")[2:]
    timed = [c for c in cells if "tokens/s" in c or "ms/token" in c or "speedup" in c or "outside" in c]
    assert len(timed) == 5 and all("wall clock" in c or "model-predicted" in c for c in timed)
    assert "| (c) engine, best single draft |" in md and "**(c)/(b) = " in md


def test_figure_is_written_as_html_with_every_contender(quick):
    html = (quick["root"] / "bench.html").read_text(encoding="utf-8")
    assert "(c) engine, best single draft" in html and "plotly" in html.lower()
    from visual.bench import figure_bench

    fig = figure_bench(quick["report"])
    assert len(fig.data) == 2 * 3                                                      # per temperature: bars + 2 ratio boxes


def test_contenders_cover_a_to_f_and_b_races_c_with_the_same_draft():
    prof = random_profile(4, seed=3, style="deep")
    cs = bench.pick_bench_contenders(prof, max_buffer=6)
    assert [c.group for c in cs[:6]] == ["a", "b", "c", "d", "e", "e"]
    a, b, c = cs[0], cs[1], cs[2]
    assert a.runner == "hf-generate" and a.chain == (3,)
    assert b.runner == "hf-assisted" and (b.chain, b.buffers) == (c.chain, c.buffers) and len(c.chain) == 2
    assert {x.rule for x in cs if x.group == "e"} == {"token", "block"}
    assert any(x.key == "f-ar" and x.chain == (3,) for x in cs)
    hierarchies = [(x.chain, x.buffers) for x in cs if x.group in "cdf"]
    assert len(set(hierarchies)) == len(hierarchies) or cs[3].chain == cs[2].chain   # (f) adds no duplicates
    assert max(len(x.chain) for x in cs) == 4                                         # the full stack is raced


def test_assistant_settings_fix_the_draft_length_and_restore_the_config():
    models, _ = tiny_family(2)
    draft = models[0]
    before = draft.generation_config
    with bench.assistant_settings(draft, 5):
        cfg = draft.generation_config
        assert cfg is not before
        assert (cfg.num_assistant_tokens, cfg.num_assistant_tokens_schedule) == (5, "constant")
        assert not cfg.assistant_confidence_threshold
    assert draft.generation_config is before


def test_prompt_files_parse_and_code_prompts_escape_newlines():
    code = bench.load_prompts(bench.PROMPT_FILES["code"])
    natural = bench.load_prompts(bench.PROMPT_FILES["natural"])
    assert len(code) >= 8 and len(natural) >= 8
    assert all("\\n" not in p for p in code) and sum("\n" in p for p in code) >= 8
    assert bench.parse_prompts("# c\n\na\\\\nb\\n\n") == ["a\\nb\n"]


def test_paired_ratios_and_spread():
    def run(key, p, tps):
        return bench.Run(key, p, 0, 10, 10_000.0 / tps, 1, (1,), (1.0,), ())
    runs = {"c": {(0, 0): run("c", 0, 30.0), (1, 0): run("c", 1, 60.0)},
            "b": {(0, 0): run("b", 0, 20.0), (1, 0): run("b", 1, 20.0)}}
    assert bench.paired_ratios(runs, "c", "b") == pytest.approx([1.5, 3.0])
    assert bench.spread([1.5, 3.0, 2.0]) == {"median": 2.0, "min": 1.5, "max": 3.0, "n": 3}
    assert bench.first_mismatch([1, 2, 3], [1, 2, 4]) == 2 and bench.first_mismatch([1, 2], [1, 2]) is None


def test_a_profile_of_other_models_is_refused_with_exit_code_2(tmp_path, capsys):
    random_profile(3, seed=0).save(tmp_path / "p.json")
    root = tmp_path / "m"
    models, tok = tiny_family(2)
    for name, m in zip(["x", "y"], models):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    rc = main(["bench", "--family", f"{root / 'x'},{root / 'y'}", "--profile", str(tmp_path / "p.json"),
               "--quick", "--threads", "1"])
    assert rc == 2 and "profile is for models" in capsys.readouterr().err


def test_a_quick_run_says_one_repeat_is_a_smoke_test_and_still_prints_the_spread(quick):
    text, md = quick["stdout"], (quick["root"] / "bench.md").read_text(encoding="utf-8")
    assert "smoke test" in text and "smoke test" in md
    row = next(line for line in text.splitlines() if line.startswith("(c) engine"))
    assert "–" in row and "(" in row                          # median (min–max) over the prompts


def test_the_forward_benchmark_times_both_paths_side_by_side_for_every_lean_model():
    import torch

    from hsd.models import LoadedFamily
    from hsd.tools.bench.forwards import measure

    models, tok = tiny_family(2)
    family = LoadedFamily(names=["a", "b"], models=models, tokenizer=tok, vocab_size=len(tok),
                          device=torch.device("cpu"), spec="tiny")
    rows = measure(family, cache_tokens=8, new_tokens=[1, 3], repeats=2)
    assert [(r["model"], r["new_tokens"]) for r in rows] == [("a", 1), ("a", 3), ("b", 1), ("b", 3)]
    assert all(r["hf_ms"] > 0 and r["lean_ms"] > 0 and r["lean_over_hf"] == r["lean_ms"] / r["hf_ms"] for r in rows)


def test_the_overhead_benchmark_reports_the_share_outside_forwards_and_both_verification_draws(tmp_path, capsys):
    import torch

    from hsd.models import LoadedFamily
    from hsd.tools.bench.overhead import decode_shares, parse_hierarchy, rule_times

    models, tok = tiny_family(3)
    family = LoadedFamily(names=["a", "b", "c"], models=models, tokenizer=tok, vocab_size=len(tok),
                          device=torch.device("cpu"), spec="tiny")
    hierarchies = [parse_hierarchy("0,2:3"), parse_hierarchy("0,1,2:1,2")]
    assert hierarchies == [([0, 2], [3]), ([0, 1, 2], [1, 2])]
    rows = decode_shares(family, hierarchies, [0.0, 1.0], ["hello world", "a b c"], max_new_tokens=6)
    assert [(r["hierarchy"], r["temperature"]) for r in rows] == [
        ("a[3] → c", 0.0), ("a[3] → c", 1.0), ("a[1] → b[2] → c", 0.0), ("a[1] → b[2] → c", 1.0)]
    assert all(0.0 < r["outside_share"] < 1.0 and r["outside_ms_per_token"] > 0 for r in rows)
    verification = rule_times(len(tok), (1, 3), ("token", "hsd"), repeats=3)
    assert [(r["rule"], r["gamma"]) for r in verification] == [("token", 1), ("hsd", 1), ("token", 3), ("hsd", 3)]
    assert all(r["factored_us"] > 0 and r["whole_table_us"] > 0 for r in verification)
    from hsd.tools.bench.overhead import main as overhead_main
    assert overhead_main(["--family", "bundled", "--hierarchy", "0,x:1"]) == 2
    assert capsys.readouterr().err.startswith("error: --hierarchy is chain:buffers")
    from hsd.levels import FORWARDS
    from hsd.tools.bench.overhead import FORWARDS as OVERHEAD_FORWARDS
    assert OVERHEAD_FORWARDS == FORWARDS                   # --forward offers every forward path
    from hsd.levels.ggml import llamacpp_missing
    if llamacpp_missing() is None:                         # the share on llama.cpp's level, greedy and T = 1
        rows = decode_shares(family, hierarchies[:1], [0.0, 1.0], ["hello world"], max_new_tokens=6,
                            forward_path="llamacpp")
        assert len(rows) == 2 and all(0.0 < r["outside_share"] < 1.0 for r in rows)


def test_with_the_ngram_level_transformers_prompt_lookup_races_too_and_every_greedy_output_matches(tmp_path):
    """A family spec with the n-gram level: (b) stays transformers' assisted generation with the best
    MODEL drafter, transformers' own prompt lookup joins as (b) with the n-gram level's best block,
    (c) may be the n-gram level, and every greedy output still equals (a)'s."""
    from hsd.family.tiny import save_tiny_family

    spec = save_tiny_family(tmp_path / "tiny", names=tuple(NAMES), scale=8.0)
    cost = {"ngram": [0.05] * 8, **_deep_profile().cost_ms}
    acc = [[1.0, 0.5, 0.5, 0.6], [0.5, 1.0, 0.9, 0.8], [0.5, 0.9, 1.0, 0.9], [0.6, 0.8, 0.9, 1.0]]
    Profile(models=["ngram"] + NAMES, cost_ms=cost, acceptance=acc, meta={"temperature": 0.0}).save(tmp_path / "p.json")
    (tmp_path / "prompts.txt").write_text(PROMPTS, encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["bench", "--family", f"ngram,{spec}", "--profile", str(tmp_path / "p.json"), "--prompts",
                   str(tmp_path / "prompts.txt"), "--quick", "--max-new-tokens", "10", "--threads", "1",
                   "--max-buffer", "4", "--temperature", "0", "--json", str(tmp_path / "b.json")])
    assert rc == 0
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {r["key"]: r for r in report["sections"][0]["rows"]}
    assert rows["b"]["runner"] == "hf-assisted" and rows["b"]["names"][0] != "ngram"
    assert rows["b-lookup"]["runner"] == "hf-prompt-lookup" and rows["b-lookup"]["names"][0] == "ngram"
    assert all(r["greedy_equal_to_a"] is True for r in rows.values()), {k: r["greedy_mismatches"] for k, r in rows.items()}
    assert report["sections"][0]["ratios"]["c/b-lookup"]["n"] == 2


@pytest.mark.skipif(__import__("hsd.levels.ggml", fromlist=["x"]).llamacpp_missing() is not None,
                    reason="llama-cpp-python is not installed")
def test_on_llama_cpp_its_own_contenders_race_in_the_same_run_and_greedy_text_matches_a(tmp_path):
    """``--forward llamacpp`` on the bundled family with the n-gram level: (g) llama.cpp's target
    alone beside (a)-(f), (h) and (h′) where llama.cpp's programs are built (else each is named in
    meta.skipped with the script that builds it); every greedy output equals (a)'s, (g), (h), (h′)
    by the text they print; the ratios d/g (and d/h) are paired over the prompts."""
    from hsd.tools.bench.llamacpp import missing_programs

    (tmp_path / "prompts.txt").write_text("def add(a, b):\\n    return\nclass Stack:\\n    def push(self, x):\n",
                                          encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["bench", "--family", "ngram,bundled", "--profile", str(ASSETS / "profile-ngram-bundled.json"),
                   "--forward", "llamacpp", "--prompts",
                   str(tmp_path / "prompts.txt"), "--quick", "--max-new-tokens", "16", "--threads", "1",
                   "--temperature", "0", "--json", str(tmp_path / "b.json")])
    assert rc == 0
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {r["key"]: r for r in report["sections"][0]["rows"]}
    assert rows["g"]["runner"] == "llamacpp-generate" and rows["g"]["names"] == [rows["a"]["names"][-1]]
    missing = missing_programs(["llamacpp-speculative", "llamacpp-lookup"])
    assert report["meta"]["skipped"] == missing
    for key, runner in (("h", "llamacpp-speculative"), ("h-lookup", "llamacpp-lookup")):
        if runner in missing:
            assert key not in rows and "scripts/build_llama_cpp.sh" in missing[runner]
        else:
            assert rows[key]["runner"] == runner
    if "llamacpp-speculative" not in missing:        # the same draft and length as the engine's best single draft
        assert rows["h"]["names"][0] != "ngram" and rows["h"]["buffers"][0] >= 1
    assert all(r["greedy_equal_to_a"] is True for r in rows.values()), {k: r["greedy_mismatches"] for k, r in rows.items()}
    ratios = report["sections"][0]["ratios"]
    assert ratios["f-ar/g"]["n"] == 2 and ratios["d/best-llamacpp"]["n"] == 2
    runs = {(r["contender"], r["prompt"], r["repeat"]): r["n_tokens"] / r["wall_ms"]
            for r in report["sections"][0]["runs"]}
    d_over_g = sorted(runs["d", p, 0] / runs["g", p, 0] for p in range(2))     # paired by prompt
    assert ratios["d/g"]["n"] == 2 and ratios["d/g"]["median"] == pytest.approx(sum(d_over_g) / 2)
    keys = [k for k in ("g", "h", "h-lookup") if k in rows]
    best = sorted(runs["d", p, 0] / max(runs[k, p, 0] for k in keys) for p in range(2))
    assert ratios["d/best-llamacpp"]["min"] == pytest.approx(best[0])   # against the fastest, prompt by prompt


def test_llama_cpp_programs_logs_give_their_time_tokens_and_accepted_drafts():
    """What ``llama-lookup`` / ``llama-speculative-simple`` print on stderr (a real log's lines):
    the encode and decode seconds, tokens decoded, drafted and accepted; no timing is an error."""
    from hsd.tools.bench.llamacpp import parse_program_output

    log = ("0.00.119.1 I encoded   22 tokens in    0.072 seconds, speed:  305.5 t/s\n"
           "0.00.191.600 I decoded  133 tokens in    0.121 seconds, speed: 1094.984 t/s\n"
           "0.00.191.601 I n_draft      = 15\n0.00.191.601 I n_predict    = 133\n"
           "0.00.191.601 I n_drafted    = 120\n0.00.191.604 I n_accept     = 105\n")
    stats = parse_program_output("", log)
    assert stats == {"encode_s": 0.072, "decoded": 133, "decode_s": 0.121, "accepted": 105, "drafted": 120}
    assert stats["decoded"] - stats["accepted"] == 28          # target calls: each commits its accepted drafts + 1
    with pytest.raises(RuntimeError, match="printed no timing"):
        parse_program_output("", "main: error: failed to load model\n")
