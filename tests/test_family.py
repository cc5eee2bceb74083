"""hsd.family: the build pipeline end to end on a tiny corpus slice and tiny models (seconds)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import sys  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from hsd import family as hf  # noqa: E402
from hsd.family import distill as hf_distill, train as hf_train  # noqa: E402
from hsd.models import clear_cache, load_family  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    logs: list[str] = []
    meta = hf.train_family(hf.TINY_PLAN, root / "out", root / "work", "cpu", logs.append)
    return root, meta, logs


def test_corpus_split_is_deterministic_and_disjoint():
    files = hf.corpus_files(max_files=60)
    train, held = hf.split_files(files)
    assert files == sorted(files, key=lambda p: p.relative_to(hf.stdlib_dir()).as_posix())
    assert len(held) == 3 and not set(train) & set(held) and len(train) + len(held) == 60
    assert hf.split_files(hf.corpus_files(max_files=60)) == (train, held)
    everything = hf.corpus_files()
    assert not any("site-packages" in p.parts or "__pycache__" in p.parts for p in everything)
    # the test suite is corpus (without it a 12M target overfits the 3.3M tokens left)
    suite = hf.stdlib_dir() / "test"
    assert any(p.parent == suite for p in everything) == suite.is_dir()


def test_each_exported_folder_loads_alone_with_its_tokenizer(built):
    root, meta, _ = built
    assert meta["names"] == ["tiny-a", "tiny-b"] == json.loads(
        (root / "out" / "family.json").read_text())["names"]
    for name in meta["names"]:
        folder = root / "out" / name
        model = AutoModelForCausalLM.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        assert model.dtype == torch.float32                    # config asks for fp32 on load
        with safe_open(folder / "model.safetensors", "pt") as f:   # but bytes are stored fp16
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        assert tok.eos_token == hf.EOS and tok.eos_token_id == 0 == tok.pad_token_id
        assert model.generation_config.eos_token_id == 0 == model.generation_config.pad_token_id
        text = "def f(x):\n    return x\n"
        assert tok.decode(tok(text)["input_ids"]) == text


def test_exported_family_loads_through_hsd_models(built):
    root, meta, _ = built
    clear_cache()
    family = load_family([str(root / "out" / n) for n in meta["names"]], device="cpu")
    assert family.names == meta["names"] and family.vocab_size == hf.TINY_PLAN.vocab_size
    clear_cache()


def test_drafts_are_distilled_from_the_next_larger_model(built):
    _, meta, _ = built
    stats = {m["name"]: m for m in meta["models"]}
    assert stats["tiny-b"]["teacher"] is None and stats["tiny-a"]["teacher"] == "tiny-b"
    assert stats["tiny-a"]["params"] < stats["tiny-b"]["params"]
    assert [stats[n]["steps"] for n in ("tiny-b", "tiny-a")] == [6, 4]


def test_rerun_skips_finished_stages(built):
    root, _, _ = built
    logs: list[str] = []
    hf.train_family(hf.TINY_PLAN, root / "out", root / "work", "cpu", logs.append)
    assert sum("skipped" in line for line in logs) == 2


def test_interrupted_stage_resumes_to_the_same_weights(built, tmp_path, monkeypatch):
    root, _, _ = built
    work = tmp_path / "work"
    work.mkdir()
    for item in ("tokenizer", "tokens.pt"):                    # reuse the corpus, not the stages
        src = root / "work" / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    monkeypatch.setattr(hf_train, "CHECKPOINT_EVERY_S", 0.0)          # checkpoint after every step
    real_loss, calls = hf.stage_loss, []

    def interrupting_loss(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(hf_train, "stage_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        hf.train_family(hf.TINY_PLAN, tmp_path / "out", work, "cpu", lambda _: None)
    assert (work / "tiny-b" / "ckpt.pt").exists()
    monkeypatch.setattr(hf_train, "stage_loss", real_loss)
    logs: list[str] = []
    hf.train_family(hf.TINY_PLAN, tmp_path / "out", work, "cpu", logs.append)
    assert any("resumed at step 3" in line for line in logs)
    for name in ("tiny-a", "tiny-b"):
        resumed = AutoModelForCausalLM.from_pretrained(work / name / "final").state_dict()
        straight = AutoModelForCausalLM.from_pretrained(root / "work" / name / "final").state_dict()
        assert all(torch.equal(resumed[k], straight[k]) for k in straight), name


def _source(layers=3, hidden=32, heads=2, ffn=64):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    spec = hf.ModelSpec("big", hidden=hidden, layers=layers, heads=heads, ffn=ffn)
    return LlamaForCausalLM(hf.make_config(spec, hf.TINY_PLAN, eos_id=0)).eval()


def test_an_early_exit_draft_is_exactly_the_first_layers_of_its_source():
    src = _source()
    cut = hf.pruned(src, hf.ModelSpec("cut", hidden=32, layers=1, heads=2, ffn=64), hf.TINY_PLAN).eval()
    assert cut.config.num_hidden_layers == 1
    ids = torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 9))
    src.model.layers = src.model.layers[:1]                  # the same network, by hand
    src.config.num_hidden_layers = 1
    with torch.no_grad():
        assert torch.equal(cut(input_ids=ids).logits, src(input_ids=ids).logits)


def test_a_layer_skipping_cut_is_exactly_the_chosen_layers():
    src = _source(layers=4)
    cut = hf.pruned(src, hf.ModelSpec("cut", hidden=32, layers=2, heads=2, ffn=64), hf.TINY_PLAN,
                    layers=(0, 3)).eval()
    ids = torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 9))
    src.model.layers = torch.nn.ModuleList([src.model.layers[0], src.model.layers[3]])
    src.config.num_hidden_layers = 2
    for i, layer in enumerate(src.model.layers):           # attention looks up its cache slot
        layer.self_attn.layer_idx = i
    with torch.no_grad():
        assert torch.equal(cut(input_ids=ids).logits, src(input_ids=ids).logits)


def test_width_pruning_keeps_the_most_active_channels_heads_and_neurons():
    src = _source(layers=2, hidden=32, heads=4, ffn=64)         # head size 8
    batches = [torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 12)) for _ in range(3)]
    imp = hf.activation_importance(src, batches)
    spec = hf.ModelSpec("narrow", hidden=16, layers=1, heads=2, ffn=24)
    cut = hf.pruned(src, spec, hf.TINY_PLAN, layers=(1,), batches=batches)
    h = imp["hidden"].topk(16).indices.sort().values
    heads = imp["heads"][1].topk(2).indices.sort().values
    cols = (heads[:, None] * 8 + torch.arange(8)).flatten()
    n = imp["ffn"][1].topk(24).indices.sort().values
    big, small = src.state_dict(), cut.state_dict()
    assert torch.equal(small["model.embed_tokens.weight"], big["model.embed_tokens.weight"][:, h])
    assert torch.equal(small["model.norm.weight"], big["model.norm.weight"][h])
    layer, src_layer = "model.layers.0.", "model.layers.1."
    assert torch.equal(small[layer + "self_attn.q_proj.weight"],
                       big[src_layer + "self_attn.q_proj.weight"][cols][:, h])
    assert torch.equal(small[layer + "self_attn.o_proj.weight"],
                       big[src_layer + "self_attn.o_proj.weight"][h][:, cols])
    assert torch.equal(small[layer + "mlp.down_proj.weight"], big[src_layer + "mlp.down_proj.weight"][h][:, n])
    assert torch.equal(small[layer + "mlp.up_proj.weight"], big[src_layer + "mlp.up_proj.weight"][n][:, h])
    assert cut.config.hidden_size == 16 and cut.config.num_attention_heads == 2
    assert sum(p.numel() for p in cut.parameters()) < sum(p.numel() for p in src.parameters()) / 2
    with torch.no_grad():                                      # a working model, tied head
        assert torch.isfinite(cut(input_ids=batches[0]).logits).all()
    assert cut.lm_head.weight.data_ptr() == cut.model.embed_tokens.weight.data_ptr()
    # importance is what ranks: the least active neuron of layer 1 is never kept
    assert imp["ffn"][1].argmin() not in n


def test_pruning_refuses_what_it_cannot_cut():
    src = _source()
    with pytest.raises(ValueError, match="cannot be cut.*must not exceed"):
        hf.pruned(src, hf.ModelSpec("wide", hidden=64, layers=1, heads=4, ffn=64), hf.TINY_PLAN)
    with pytest.raises(ValueError, match="head size must stay 16"):
        hf.pruned(src, hf.ModelSpec("odd", hidden=16, layers=1, heads=2, ffn=64), hf.TINY_PLAN,
                  batches=[torch.zeros(1, 4, dtype=torch.long)])
    with pytest.raises(ValueError, match="increasing indices below 3"):
        hf.pruned(src, hf.ModelSpec("deep", hidden=32, layers=2, heads=2, ffn=64), hf.TINY_PLAN,
                  layers=(2, 1))
    with pytest.raises(ValueError, match="needs batches"):
        hf.pruned(src, hf.ModelSpec("thin", hidden=32, layers=1, heads=2, ffn=32), hf.TINY_PLAN)


def test_the_distillation_loss_includes_total_variation_which_is_one_minus_acceptance():
    teacher, student = _source(layers=1), _source(layers=1)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 10))
    loss = hf.stage_loss(student, teacher, batch, torch.device("cpu")).item()
    x, y = batch[:, :-1], batch[:, 1:]
    with torch.no_grad(), hf.autocast(torch.device("cpu")):
        ls = student(input_ids=x).logits.float().log_softmax(-1).flatten(0, 1)
        lt = teacher(input_ids=x).logits.float().log_softmax(-1).flatten(0, 1)
    kl = torch.nn.functional.kl_div(ls, lt, log_target=True, reduction="batchmean")
    ce = torch.nn.functional.cross_entropy(ls, y.flatten())
    acceptance = torch.minimum(ls.exp(), lt.exp()).sum(-1).mean()
    expected = hf.KD_WEIGHT * kl + (1 - hf.KD_WEIGHT) * ce + hf.TV_WEIGHT * (1 - acceptance)
    assert loss == pytest.approx(expected.item(), rel=1e-4)
    assert hf.stage_loss(student, student, batch, torch.device("cpu")).item() == pytest.approx(
        (1 - hf.KD_WEIGHT) * hf.stage_loss(student, None, batch, torch.device("cpu")).item(), rel=1e-4)


def test_the_tiny_build_records_how_each_draft_was_cut(built):
    _, meta, _ = built
    stats = {m["name"]: m for m in meta["models"]}
    assert stats["tiny-a"]["init_from"] == "tiny-b"
    assert stats["tiny-a"]["init"] == "layers 1 of 2; width 32→16; heads 2→1; FFN 64→32"
    assert stats["tiny-b"]["init"] is None


def test_a_rebuild_can_reuse_finished_models_from_an_exported_family(built, tmp_path):
    root, meta, _ = built
    work, logs = tmp_path / "work", []
    shutil.copy(root / "work" / "tokens.pt", work.mkdir() or work / "tokens.pt")
    hf.reuse_stages(hf.TINY_PLAN, work, root / "out", ["tiny-b"], logs.append)
    hf.train_family(hf.TINY_PLAN, tmp_path / "out", work, "cpu", logs.append)
    assert any("[tiny-b] reused from" in line for line in logs)
    assert any("[tiny-b] finished earlier" in line for line in logs)
    assert any("[tiny-a] done in" in line for line in logs)       # the rest is trained
    with safe_open(root / "out" / "tiny-b" / "model.safetensors", "pt") as a, \
            safe_open(tmp_path / "out" / "tiny-b" / "model.safetensors", "pt") as b:
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    again = {m["name"]: m for m in json.loads((tmp_path / "out" / "family.json").read_text())["models"]}
    first = {m["name"]: m for m in meta["models"]}
    assert again["tiny-b"]["stages"][0]["reused_from"] == str(root / "out")
    assert again["tiny-b"]["train_seconds"] == first["tiny-b"]["train_seconds"]


def test_reuse_refuses_a_model_whose_shape_is_not_the_plans(built, tmp_path):
    root, _, _ = built
    wider = hf.replace(hf.TINY_PLAN, stages=(
        hf.replace(hf.TINY_PLAN.stages[0], spec=hf.ModelSpec("tiny-b", hidden=64, layers=2,
                                                             heads=2, ffn=64)),
        *hf.TINY_PLAN.stages[1:]))
    with pytest.raises(ValueError, match=r"tiny-b is 2×32 .* 2×64"):
        hf.reuse_stages(wider, tmp_path / "work", root / "out", ["tiny-b"])
    with pytest.raises(ValueError, match="nope is not in the plan"):
        hf.reuse_stages(hf.TINY_PLAN, tmp_path / "work", root / "out", ["nope"])


def test_exported_tokenizer_file_is_compact(built):
    root, meta, _ = built
    text = (root / "out" / meta["names"][0] / "tokenizer.json").read_text()
    assert "\n" not in text.strip() and json.loads(text)["model"]["type"] == "BPE"
    config = json.loads((root / "out" / meta["names"][0] / "tokenizer_config.json").read_text())
    assert "local_files_only" not in config                 # the builder's setting, not the tokenizer's


def test_a_reused_model_can_be_distilled_further_in_a_later_stage(built, tmp_path):
    root, _, _ = built
    longer = hf.replace(hf.TINY_PLAN, stages=hf.TINY_PLAN.stages + (
        hf.Stage(hf.TINY_PLAN.stages[1].spec, steps=3, lr=1e-3, teacher="tiny-b",
                 init_from="tiny-a", key="tiny-a-2"),))
    work, logs = tmp_path / "work", []
    shutil.copy(root / "work" / "tokens.pt", work.mkdir() or work / "tokens.pt")
    hf.reuse_stages(longer, work, root / "out", ["tiny-b", "tiny-a"], logs.append)
    meta = hf.train_family(longer, tmp_path / "out", work, "cpu", logs.append)
    assert any("[tiny-a-2] 0." in line and "continuing tiny-a" in line for line in logs)
    a = {m["name"]: m for m in meta["models"]}["tiny-a"]
    assert [st["work_key"] for st in a["stages"]] == ["tiny-a", "tiny-a-2"]
    assert a["steps"] == 4 + 3 and a["init_from"] == "tiny-b"       # the origin, not the resume
    longest = hf.replace(longer, stages=longer.stages + (        # a teacher named by its work key
        hf.Stage(hf.ModelSpec("tiny-z", hidden=16, layers=1, heads=1, ffn=16), steps=2, lr=1e-3,
                 teacher="tiny-a-2", init_from="tiny-a-2"),))
    meta = hf.train_family(longest, tmp_path / "out", work, "cpu", logs.append)
    z = {m["name"]: m for m in meta["models"]}["tiny-z"]
    assert z["teacher"] == z["init_from"] == "tiny-a" and z["stages"][0]["teacher"] == "tiny-a-2"
    assert a["init"] == "layers 1 of 2; width 32→16; heads 2→1; FFN 64→32"
    shorter = hf.replace(hf.TINY_PLAN, stages=hf.TINY_PLAN.stages[:1] + (
        hf.replace(hf.TINY_PLAN.stages[1], key="tiny-a-other"),))
    with pytest.raises(ValueError, match="recorded its stages"):
        hf.reuse_stages(shorter, tmp_path / "w2", tmp_path / "out", ["tiny-a"])


def test_training_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(hf_distill, "PRECISION", "fp32")
    assert hf.precision(cpu) == "fp32" and not torch.is_autocast_enabled("cpu")
    with hf.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(hf_distill, "PRECISION", "bf16")
    with hf.autocast(cpu):
        assert torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(hf_distill, "PRECISION", "auto")
    assert hf.precision(cpu) == ("bf16" if hf.native_bf16(cpu) else "fp32")
    assert hf.precision(torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        hf.train_family(hf.TINY_PLAN, Path("/nonexistent"), Path("/nonexistent"), "cpu",
                        lambda _: None, "fp8")


def test_the_fused_distillation_loss_matches_autograd_value_and_gradient(monkeypatch):
    monkeypatch.setattr(hf.DistillLoss, "CHUNK_ROWS", 24)     # 64 rows: blocks of 24, 24, 16
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(64, 50, generator=g, dtype=torch.float64)).requires_grad_()
    t = 3 * torch.randn(64, 50, generator=g, dtype=torch.float64)
    t[:8] = z.detach()[:8]                                   # rows where student = teacher (σ = 0)
    y = torch.randint(0, 50, (64,), generator=g)
    fused = hf.DistillLoss.apply(z, t, y, 0.9, 0.1, 1.0)
    (grad_fused,) = torch.autograd.grad(2.5 * fused, z)
    log_s, log_t = z.log_softmax(-1), t.log_softmax(-1)
    traced = (0.9 * torch.nn.functional.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
              + 0.1 * torch.nn.functional.cross_entropy(z, y)
              + 1.0 * 0.5 * (log_s.exp() - log_t.exp()).abs().sum(-1).mean())
    (grad_traced,) = torch.autograd.grad(2.5 * traced, z)
    assert fused.item() == pytest.approx(traced.item(), rel=1e-12)
    assert torch.allclose(grad_fused, grad_traced, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: hf.DistillLoss.apply(x, t, y, 0.3, 0.2, 0.7), (z,))


def test_the_card_says_which_stages_were_reused_and_in_what_precision(built, tmp_path):
    from hsd.family.card import measure, render_card

    root, meta, _ = built
    card = measure(root / "out")
    assert card["names"] == meta["names"] and len(card["acceptance"]) == 2
    plain = render_card(meta, card)
    assert "stages reused" not in plain
    assert f"Training ran in {'bf16 autocast' if hf.native_bf16(torch.device('cpu')) else 'fp32'}," in plain
    mixed = json.loads(json.dumps(meta))
    target = {m["name"]: m for m in mixed["models"]}["tiny-b"]
    target["stages"][0].update(reused_from="assets/family", precision="bf16")
    {m["name"]: m for m in mixed["models"]}["tiny-a"]["stages"][0]["precision"] = "fp32"
    text = render_card(mixed, card)
    assert f"of which {target['train_seconds'] / 60:.0f} min are stages reused" in text
    assert "(`--reuse`: tiny-b)" in text
    assert "fp32 (tiny-a) and bf16 autocast (tiny-b)" in text


def test_a_grown_model_computes_exactly_what_its_source_does_and_cuts_back_to_it():
    src = _source(layers=2)
    deep = hf.grown(src, hf.ModelSpec("deep", hidden=32, layers=6, heads=2, ffn=64), hf.TINY_PLAN,
                    at=(0, 3)).eval()
    ids = torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.equal(deep(ids).logits, src(ids).logits)
        back = hf.pruned(deep, hf.ModelSpec("back", hidden=32, layers=2, heads=2, ffn=64), hf.TINY_PLAN,
                         layers=(0, 3)).eval()
        assert torch.equal(back(ids).logits, src(ids).logits)
    inserted = deep.model.layers[1]                   # a copy of layer 0 whose outputs are zeroed
    assert torch.equal(inserted.self_attn.q_proj.weight, src.model.layers[0].self_attn.q_proj.weight)
    assert not inserted.self_attn.o_proj.weight.any() and not inserted.mlp.down_proj.weight.any()
    assert deep.model.layers[3].mlp.down_proj.weight.any()             # source layer 1, intact


def test_growing_refuses_what_it_cannot_grow():
    src = _source(layers=2)
    with pytest.raises(ValueError, match=r"positions \[0, 9\] must be 2 increasing indices from 0, below 6"):
        hf.grown(src, hf.ModelSpec("deep", hidden=32, layers=6, heads=2, ffn=64), hf.TINY_PLAN, at=(0, 9))
    with pytest.raises(ValueError, match="width, heads and FFN must be the source's"):
        hf.grown(src, hf.ModelSpec("deep", hidden=64, layers=6, heads=2, ffn=64), hf.TINY_PLAN, at=(0, 3))


def test_a_grown_target_build_exports_each_model_once_with_its_phases_summed(tmp_path):
    big = hf.ModelSpec("tiny-b", hidden=32, layers=4, heads=2, ffn=64)
    base = hf.ModelSpec("tiny-mid", hidden=32, layers=2, heads=2, ffn=64)
    plan = hf.replace(hf.TINY_PLAN, stages=(
        hf.Stage(base, steps=3, lr=3e-3, key="tiny-b-base", part_of="tiny-b"),
        hf.Stage(big, steps=2, lr=1e-3, init_from="tiny-b-base", grow_at=(0, 2)),
        hf.Stage(base, steps=2, lr=1e-3, teacher="tiny-b", init_from="tiny-b", init_layers=(0, 2)),
    ))
    assert plan.names == ["tiny-mid", "tiny-b"]
    logs: list[str] = []
    meta = hf.train_family(plan, tmp_path / "out", tmp_path / "work", "cpu", logs.append)
    stats = {m["name"]: m for m in meta["models"]}
    assert meta["names"] == ["tiny-mid", "tiny-b"] and sorted(p.name for p in (tmp_path / "out").iterdir()
                                                               if p.is_dir()) == ["tiny-b", "tiny-mid"]
    assert stats["tiny-b"]["steps"] == 5 and [s["work_key"] for s in stats["tiny-b"]["stages"]] == \
        ["tiny-b-base", "tiny-b"]
    assert stats["tiny-b"]["stages"][1]["init"].startswith("grown from 2 to 4 layers: its layers at 0, 2")
    assert stats["tiny-mid"]["steps"] == 2 and stats["tiny-mid"]["teacher"] == "tiny-b"
    assert stats["tiny-mid"]["init"] == "layers 0, 2 of 4"
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "tiny-b")
    assert exported.config.num_hidden_layers == 4


def test_the_design_study_times_shapes_and_solves_each_candidate():
    from hsd.family.design import Candidate, format_study, study

    specs = tuple(hf.ModelSpec(n, hidden=32, layers=k, heads=2, ffn=64) for n, k in (("a", 1), ("b", 2), ("c", 6)))
    cand = Candidate("1 → 2 → 6", specs, {(0, 1): 0.9, (0, 2): 0.6, (1, 2): 0.95}, "assumed")
    result = study(hf.TINY_PLAN, [cand], max_n=3, repeats=1, train_steps=1, log=lambda m: None)
    assert [s["layers"] for s in result["shapes"]] == [1, 2, 6]
    assert all(len(s["cost_ms"]) == 3 and min(s["cost_ms"]) > 0 and s["train_step_s"] > 0 for s in result["shapes"])
    row = result["candidates"][0]
    assert row["optimum"].endswith("c") and row["vs_best_single"] >= 1.0 and row["speedup_vs_ar"] > 0
    table = format_study(result)
    assert "| 6 × 32 |" in table and f"| 1 → 2 → 6 | assumed | {row['optimum']} |" in table


def test_prompt_windows_are_whole_lines_of_one_file_and_deterministic(tmp_path):
    from hsd.family.corpus import escape_prompt, prompt_windows
    from hsd.tools.paths import parse_prompts

    files = []
    for i in range(6):
        f = tmp_path / f"m{i}.py"
        f.write_text("".join(f"x{i}_{k} = {k}  # \\ back\n\nif x{i}_{k}:\n    pass\n" for k in range(20)))
        files.append(f)
    (tmp_path / "u.py").write_text("caf\u00e9 = 1\n" * 40)                      # not ASCII: skipped
    files.append(tmp_path / "u.py")
    prompts = prompt_windows(files, 5, seed=3)
    assert prompts == prompt_windows(files, 5, seed=3) and prompts != prompt_windows(files, 5, seed=4)
    for p in prompts:
        lines = p[:-1].split("\n")
        assert p.endswith("\n") and 3 <= len(lines) <= 8 and len(p) <= 240 and p.isascii()
        assert lines[-1].strip() and not lines[-1].lstrip().startswith("#")
        assert sum(p in f.read_text() for f in files) >= 1                      # a run of one file's lines
    assert len({next(f for f in files if p in f.read_text()) for p in prompts}) == 5      # one per file
    assert parse_prompts("\n".join(escape_prompt(p) for p in prompts)) == prompts    # file round trip
    assert parse_prompts(escape_prompt("a\\nb\tc\n")) == ["a\\nb\tc\n"]
    with pytest.raises(ValueError, match="only 6 of 9"):
        prompt_windows(files, 9)


def test_the_latency_models_prompt_sets_are_held_out_code_and_share_no_prompt():
    from hsd.family.corpus import corpus_files, split_files
    from hsd.tools.paths import PROMPT_FILES, load_prompts

    profile, validate = load_prompts(PROMPT_FILES["profile"]), load_prompts(PROMPT_FILES["validate"])
    assert len(profile) == 24 and len(validate) == 32 and not set(profile) & set(validate)
    header = PROMPT_FILES["profile"].read_text(encoding="utf-8").splitlines()[0]
    if header.split("Python ")[-1].split()[0] != sys.version.split()[0]:
        pytest.skip(f"the sets were cut from another Python's standard library ({header})")
    _, held = split_files(corpus_files())
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in held]
    source = lambda p: {i for i, t in enumerate(texts) if p in t}               # noqa: E731
    assert all(source(p) & set(range(0, len(held), 2)) for p in profile)       # every other held-out file
    assert all(source(p) & set(range(1, len(held), 2)) for p in validate)      # the rest
