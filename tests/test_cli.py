"""The ``python -m hsd generate`` command: JSON output, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.cli import main
from tests.tiny import tiny_family, tiny_tokenizer, tiny_llama

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("family")
    models, tok = tiny_family(3, scale=3.0)
    paths = []
    for i, m in enumerate(models):
        p = base / f"m{i}"
        m.save_pretrained(p)
        tok.save_pretrained(p)
        paths.append(str(p))
    return paths


def test_generate_json_has_text_generated_ids_and_summary(folders, capsys):
    code = main(["generate", "--models", ",".join(folders), "--buffers", "2,3", "--rule", "hsd",
                 "--prompt", "def f(x):", "--max-new-tokens", "12", "--temperature", "0.9",
                 "--seed", "3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["token_ids"]) == out["summary"]["n_tokens"] <= 12
    assert isinstance(out["text"], str)
    assert out["summary"]["tokens_per_target_call"] >= 1.0
    assert [e["verifier"] for e in out["summary"]["edges"]] == [1, 2]


def test_generate_is_reproducible_and_equals_the_python_api(folders, capsys):
    from hsd.engine import Hierarchy
    from hsd.models import load_family

    args = ["generate", "--models", ",".join(folders), "--buffers", "3,2", "--rule", "token,block",
            "--prompt", "a = b", "--max-new-tokens", "10", "--seed", "11", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    family = load_family(",".join(folders))
    api = Hierarchy.from_family(family, buffers=[3, 2], rules=["token", "block"]).generate(
        "a = b", max_new_tokens=10, seed=11)
    assert api.token_ids == first["token_ids"]


@pytest.mark.parametrize("extra,needle", [
    (["--buffers", "2"], "need 2 buffer"),
    (["--buffers", "0,3"], "buffer must be a whole number"),
    (["--rule", "nope"], "known rules: token, block, hsd, hsd-uncapped"),
    (["--temperature", "-1"], "temperature"),
    (["--top-p", "1.5"], "top-p"),
    (["--prompt", ""], "prompt is empty"),
])
def test_user_mistakes_print_one_line_and_exit_2(folders, extra, needle):
    args = ["generate", "--models", ",".join(folders), "--prompt", "x", "--max-new-tokens", "4"] + extra
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "hsd", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_models_that_do_not_share_a_vocabulary_are_refused(tmp_path, folders):
    other = tmp_path / "other"
    tok = tiny_tokenizer(list("zyxwvutsrqponmlkjihgfedcba ():=\n"))
    m = tiny_llama(1, vocab_size=len(tok))
    m.save_pretrained(other)
    tok.save_pretrained(other)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "hsd", "generate", "--models", f"{other},{folders[2]}",
                           "--buffers", "2", "--prompt", "x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_optimize_what_if_prints_what_changed_and_bad_flags_exit_2(tmp_path, capsys):
    from tests._profiles import random_profile

    path = tmp_path / "profile.json"
    random_profile(3, seed=5).save(path)
    assert main(["optimize", str(path), "--scale-cost", "m2=3", "--alpha", "m0:m2=0.95"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "what-if (not measured): cost(m2) ×3; α(m0, m2) = 0.95"
    assert "optimal hierarchy (model-predicted)" in out
    for flags in (["--scale-cost", "m9=2"], ["--alpha", "m0=0.5"], ["--alpha", "m0:m1=7"]):
        assert main(["optimize", str(path), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
