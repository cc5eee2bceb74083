"""The GGUF export and the ggml level (hsd/levels/gguf_export.py, hsd/levels/ggml.py): llama.cpp
runs the same weights to the same logits, its cache crops like ours, and its level keeps every
decode exact (the engine's χ² tests run on it too: tests/test_engine.py, forward ``llamacpp``)."""
import gc
import json
import threading

import pytest
import torch

from hsd.errors import ConfigError
from hsd.levels import SamplingSettings, build_level, check_forward
from hsd.levels.ggml import llamacpp_missing
from hsd.family.tiny import tiny_family
from tests.test_engine import ROOT
from tests.test_levels import _llama, _max_logit_gap, _qwen2

pytestmark = pytest.mark.skipif(llamacpp_missing() is not None, reason=llamacpp_missing() or "")

F32_GAP = 1e-4          # |llama.cpp − transformers| logits, f32 weights, f32 KV cache, no flash attention


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HSD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hsd-cache"))


@pytest.mark.parametrize("build", [lambda: _llama(True), lambda: _llama(False), lambda: _qwen2(True),
                                   lambda: _qwen2(False), lambda: (tiny_family(1)[0][0], 33)],
                         ids=["llama-gqa-tied", "llama-gqa-untied", "qwen2-bias-tied", "qwen2-bias-untied", "tiny-llama"])
def test_llama_cpp_runs_an_exported_model_to_the_transformers_logits(build):
    model, vocab = build()
    assert _max_logit_gap(model, vocab, "llamacpp") < F32_GAP


@pytest.fixture(scope="module")
def bundled():
    from hsd.models import load_family

    if not (ROOT / "assets" / "family" / "family.json").exists():
        pytest.skip("bundled family not built")
    return load_family("bundled", device="cpu")


def test_the_bundled_family_runs_on_llama_cpp_to_the_same_logits(bundled):
    for model in bundled.models:
        assert _max_logit_gap(model, bundled.vocab_size, "llamacpp") < F32_GAP


def test_export_writes_f32_f16_and_q8_0_files_llama_cpp_loads_and_tokenizes_like_ours(bundled, tmp_path):
    from hsd.levels.ggml import GGUFModel
    from hsd.levels.gguf_export import export_gguf

    model, tok = bundled.models[1], bundled.tokenizer
    from hsd.tools.paths import load_prompts

    prompts = load_prompts(ROOT / "assets" / "prompts" / "validate.txt") + ["héllo wörld 你好 🙂  tabs\tand 12345"]
    seq = tok(prompts[0], add_special_tokens=False).input_ids[:40]
    with torch.inference_mode():
        ref = model(torch.tensor([seq])).logits[0, -5:, : bundled.vocab_size]
    sizes, gaps = {}, {}
    for dtype in ("f32", "f16", "q8_0"):
        path = export_gguf(model, tok, tmp_path / f"s-{dtype}.gguf", dtype=dtype)
        sizes[dtype] = path.stat().st_size
        twin = GGUFModel(path)
        level = twin.make_level(name="s", vocab_size=bundled.vocab_size, settings=SamplingSettings())
        got = level.logits_after(seq, 5)
        gaps[dtype] = float((got - ref).abs().max())
        for text in prompts:
            assert twin.tokenize(text) == tok(text, add_special_tokens=False).input_ids, (dtype, text[:30])
    assert gaps["f32"] < F32_GAP and gaps["f16"] < 0.05 and gaps["q8_0"] < 0.5, gaps
    assert sizes["q8_0"] < sizes["f16"] < sizes["f32"]


def test_greedy_on_the_ggml_level_equals_llama_cpps_own_greedy_decode_of_the_target(bundled, tmp_path):
    import llama_cpp

    from hsd.engine import Hierarchy
    from hsd.levels.gguf_export import export_gguf

    tok = bundled.tokenizer
    path = export_gguf(bundled.models[-1], tok, tmp_path / "l.gguf")
    own = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, verbose=False, flash_attn=False)
    prompt = "def add(a, b):\n"
    ids = tok(prompt, add_special_tokens=False).input_ids
    theirs = []
    for token in own.generate(ids, top_k=1, temp=0.0, reset=True):
        theirs.append(token)
        if len(theirs) == 40:
            break
    for chain, buffers in (([3], ()), ([1, 3], (4,)), ([0, 2, 3], (3, 6))):
        h = Hierarchy.from_family(bundled, chain=chain, buffers=buffers, forward="llamacpp")
        got = h.generate(prompt, max_new_tokens=40, temperature=0, stop_at_eos=False).token_ids
        assert got == theirs, chain


def test_every_decode_gets_a_context_of_its_own_and_a_finished_one_is_reused(bundled):
    from hsd.levels.ggml import ggml_model_for

    model = bundled.models[0]
    twin = ggml_model_for(model)
    settings = SamplingSettings()
    made = twin.contexts_made
    a = build_level(model, name="a", vocab_size=bundled.vocab_size, settings=settings, forward="llamacpp")
    b = build_level(model, name="b", vocab_size=bundled.vocab_size, settings=settings, forward="llamacpp")
    assert a._slot.ctx != b._slot.ctx
    seq = list(range(10, 30))
    out = {}

    def run(level, key):
        out[key] = level.logits_after(seq, 3)

    threads = [threading.Thread(target=run, args=(lv, k)) for lv, k in ((a, "a"), (b, "b"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert torch.equal(out["a"], out["b"])
    del a, b, threads
    gc.collect()
    c = build_level(model, name="c", vocab_size=bundled.vocab_size, settings=settings, forward="llamacpp")
    assert twin.contexts_made == max(made, 2)                 # c took a released context
    assert c.cached_ids == [] and torch.equal(c.logits_after(seq, 3), out["a"])   # and its memory was cleared


def test_the_llamacpp_forward_refuses_what_it_does_not_cover_in_one_sentence():
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng():
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    with pytest.raises(ConfigError, match="--forward llamacpp: the GGUF export covers the llama, qwen2") as info:
        check_forward("llamacpp", [gpt2])
    assert "use --forward auto, lean or hf" in str(info.value) and str(info.value).count(". ") == 0


def test_a_damaged_gguf_file_is_refused_with_llama_cpps_reason(tmp_path):
    from hsd.levels.ggml import GGUFModel
    from hsd.levels.gguf_export import export_gguf

    model, _ = _llama(True)
    path = export_gguf(model, None, tmp_path / "x.gguf")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])       # cut in half
    with pytest.raises(ConfigError, match="could not load .* damaged or unsupported GGUF file: .*error"):
        GGUFModel(path)
    with pytest.raises(ConfigError, match="There is no GGUF file at"):
        GGUFModel(tmp_path / "missing.gguf")


def test_the_cli_gguf_types_are_the_exporters():
    from hsd.levels.gguf_export import GGUF_TYPES
    from hsd.tools.cli import GGUF_TYPES as CLI_TYPES

    assert CLI_TYPES == GGUF_TYPES


def test_hsd_export_gguf_writes_checked_files_for_every_model_and_generate_runs_on_llama_cpp(tmp_path, capsys):
    from hsd.tools.cli import main
    from hsd.family.tiny import tiny_family

    models, tok = tiny_family(2, scale=3.0)
    paths = []
    for i, m in enumerate(models):
        m.save_pretrained(tmp_path / f"m{i}")
        tok.save_pretrained(tmp_path / f"m{i}")
        paths.append(str(tmp_path / f"m{i}"))
    spec = ",".join(paths)
    assert main(["export-gguf", spec, str(tmp_path / "out"), "--types", "f32,q8_0"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if "argmax agrees" in ln]
    assert len(rows) == 4 and all("placeholder tokens (llama.cpp holds byte-level BPE vocabularies, not WordLevel)"
                                  in r for r in rows), rows      # the tiny tokenizer is a character table
    gaps = [float(r.split("max |Δlogit| ")[1].split()[0]) for r in rows if "-f32.gguf" in r]
    assert max(gaps) < F32_GAP
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m0-f32.gguf", "m0-q8_0.gguf",
                                                                      "m1-f32.gguf", "m1-q8_0.gguf"]
    args = ["generate", "--models", spec, "--buffers", "3", "--prompt", "def f(x):", "--max-new-tokens", "12",
            "--temperature", "0", "--json"]
    assert main(args + ["--forward", "llamacpp"]) == 0
    on_llama = json.loads(capsys.readouterr().out)["token_ids"]
    assert main(args + ["--forward", "hf"]) == 0
    assert on_llama == json.loads(capsys.readouterr().out)["token_ids"]


@pytest.mark.parametrize("argv,says", [(["--types", "f8"], "--types takes f32, f16, q8_0, got f8"),
                                       (["--types", ""], "--types takes f32, f16, q8_0, got nothing")])
def test_hsd_export_gguf_checks_its_arguments_before_loading_anything(tmp_path, capsys, argv, says):
    from hsd.tools.cli import main

    assert main(["export-gguf", "no-such-family", str(tmp_path / "o"), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"error: {says}"
    (tmp_path / "file").write_text("x")
    assert main(["export-gguf", "no-such-family", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_the_app_takes_every_forward_path_from_hsd_forward():
    from hsd.levels import FORWARDS
    from ui.settings import Limits

    assert [Limits.from_env({"HSD_FORWARD": f}).forward for f in FORWARDS] == list(FORWARDS)
    with pytest.raises(ConfigError, match="HSD_FORWARD must be one of auto, lean, hf, llamacpp"):
        Limits.from_env({"HSD_FORWARD": "fast"})
