"""hsd.family: the build pipeline end to end on a tiny corpus slice and tiny models (seconds)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from hsd import family as hf  # noqa: E402
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
    assert not any("site-packages" in p.parts or "test" in p.parts for p in hf.corpus_files())


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
    monkeypatch.setattr(hf, "CHECKPOINT_EVERY_S", 0.0)          # checkpoint after every step
    real_loss, calls = hf.stage_loss, []

    def interrupting_loss(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(hf, "stage_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        hf.train_family(hf.TINY_PLAN, tmp_path / "out", work, "cpu", lambda _: None)
    assert (work / "tiny-b" / "ckpt.pt").exists()
    monkeypatch.setattr(hf, "stage_loss", real_loss)
    logs: list[str] = []
    hf.train_family(hf.TINY_PLAN, tmp_path / "out", work, "cpu", logs.append)
    assert any("resumed at step 3" in line for line in logs)
    for name in ("tiny-a", "tiny-b"):
        resumed = AutoModelForCausalLM.from_pretrained(work / name / "final").state_dict()
        straight = AutoModelForCausalLM.from_pretrained(root / "work" / name / "final").state_dict()
        assert all(torch.equal(resumed[k], straight[k]) for k in straight), name


def test_an_early_exit_draft_is_exactly_the_first_layers_of_its_source():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    big = hf.ModelSpec("big", hidden=32, layers=3, heads=2, ffn=64)
    src = LlamaForCausalLM(hf.make_config(big, hf.TINY_PLAN, eos_id=0)).eval()
    cut = hf.truncated(src, hf.ModelSpec("cut", hidden=32, layers=1, heads=2, ffn=64), hf.TINY_PLAN).eval()
    assert cut.config.num_hidden_layers == 1
    ids = torch.randint(0, hf.TINY_PLAN.vocab_size, (2, 9))
    src.model.layers = src.model.layers[:1]                  # the same network, by hand
    src.config.num_hidden_layers = 1
    with torch.no_grad():
        assert torch.equal(cut(input_ids=ids).logits, src(input_ids=ids).logits)
    with pytest.raises(ValueError, match="cannot be cut"):
        hf.truncated(cut, hf.ModelSpec("wide", hidden=64, layers=1, heads=2, ffn=64), hf.TINY_PLAN)
