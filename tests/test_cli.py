"""The ``python -m hsd generate`` command: JSON output, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hsd.tools.cli import main
from hsd.family.tiny import tiny_family, tiny_tokenizer, tiny_llama

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


def _run_hsd(args, cwd=ROOT, exe=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [exe] if exe else [sys.executable, "-m", "hsd"]
    return subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_help_and_argument_mistakes_are_answered_before_torch_is_imported():
    probe = ("import sys\nfrom hsd.tools.cli import main\n"
             "for argv in (['--help'], ['generate', '--chain', '0,a', '--prompt', 'x'],\n"
             "             ['generate', '--prompt', ' '], ['bench', '--repeats', '0']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "print('torch' in sys.modules, 'transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False False", proc.stdout + proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["generate", "--chain", "0,a", "--prompt", "x"], "--chain"),
    (["generate", "--chain", "2,1", "--prompt", "x"], "--chain"),
    (["generate", "--prompt", "x", "--max-new-tokens", "lots"], "--max-new-tokens"),
    (["generate"], "--prompt"),
    (["optimise", "p.json"], "invalid choice"),
    (["bench", "--temperature", "-1"], "--temperature"),
    (["profile", "--out", "p.json", "--rule", "nope"], "--rule"),
    (["profile", "--out", "p.json", "--trace-blocks", "0,2"], "--trace-blocks"),
    (["validate", "--trace-blocks", ","], "--trace-blocks"),
    (["validate", "--prompts-file", "/nonexistent/prompts.txt"], "cannot read the prompts file"),
    (["validate", "--profile-prompts", "x.txt"], "needs --fresh-profile"),
    (["profile", "--out", "p.json", "--profile-prompts", "/nonexistent/p.txt"], "cannot read the prompts file"),
])
def test_every_argument_mistake_is_one_error_line_with_exit_code_2(args, needle):
    proc = _run_hsd(args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0] and "usage" not in proc.stderr


def test_the_cli_knows_exactly_the_engines_rules_before_importing_it():
    from hsd.tools.cli import RULE_NAMES
    from hsd.verify import RULES

    assert RULE_NAMES == tuple(RULES)


def test_the_installed_hsd_command_and_import_hsd_work_from_any_folder(tmp_path, folders):
    exe = Path(sys.executable).with_name("hsd")
    if not exe.exists():
        pytest.skip("the project is not installed in this environment (make test installs it: pip install -e .)")
    proc = _run_hsd(["generate", "--models", ",".join(folders), "--buffers", "2,2", "--prompt", "a = b",
                     "--max-new-tokens", "6", "--seed", "2", "--json"], cwd=tmp_path, exe=str(exe))
    assert proc.returncode == 0, proc.stderr
    via_module = _run_hsd(["generate", "--models", ",".join(folders), "--buffers", "2,2", "--prompt", "a = b",
                           "--max-new-tokens", "6", "--seed", "2", "--json"])
    assert json.loads(proc.stdout)["token_ids"] == json.loads(via_module.stdout)["token_ids"]
    snippet = "from hsd import Hierarchy, load_family, Trace\nprint(Hierarchy.__module__, Trace.__module__)"
    api = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert api.returncode == 0 and api.stdout.split() == ["hsd.engine", "hsd.trace"], api.stderr


def test_the_cli_forward_paths_are_the_engines():
    from hsd.plan.profile import ACCEPTANCE_MODELS
    from hsd.tools.cli import ACCEPTANCE_MODELS as CLI_ACCEPTANCE
    assert CLI_ACCEPTANCE == ACCEPTANCE_MODELS
    from hsd.levels import FORWARDS
    from hsd.tools.cli import FORWARDS as CLI_FORWARDS

    assert CLI_FORWARDS == FORWARDS


def test_forward_lean_on_an_unsupported_architecture_is_one_line_naming_the_supported_ones(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    with torch.random.fork_rng():
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64))
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    lean = _run_hsd(["generate", "--models", str(tmp_path / "gpt2"), "--forward", "lean", "--prompt", "ab"])
    lines = [ln for ln in lean.stderr.splitlines() if ln.strip()]
    assert lean.returncode == 2 and len(lines) == 1 and "llama, qwen2" in lines[0], lean.stderr
    auto = _run_hsd(["generate", "--models", str(tmp_path / "gpt2"), "--prompt", "ab", "--max-new-tokens", "3"])
    assert auto.returncode == 0, auto.stderr                      # auto: the transformers level


def test_profile_measures_acceptance_after_the_prompts_file_at_the_trace_blocks_asked(folders, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\na = b\\n\ndef f(x):\\n    return\n", encoding="utf-8")
    out = tmp_path / "p.json"
    code = main(["profile", "--family", ",".join(folders), "--out", str(out), "--max-n", "4", "--repeats", "1",
                 "--context-tokens", "4", "--profile-prompts", str(prompts), "--trace-blocks", "1"])
    assert code == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["contexts"] == 2 and meta["trace_blocks"] == [1, 3]           # the longest block added
    assert "between the acceptance decodes" in meta["cost"] and "c(1) ms" in capsys.readouterr().out


# -- nothing a user asked for is lost: paths and arguments checked before any work -------------
OUTPUT_CASES = [
    (["generate", "--prompt", "x", "--trace", "{missing}/t.json"], "--trace"),
    (["profile", "--out", "{missing}/p.json"], "--out"),
    (["shapes", "--family", "smollm2", "--out", "{missing}/p.json"], "--out"),
    (["validate", "--json", "{missing}/v.json"], "--json"),
    (["validate", "--fresh-profile", "--save-profile", "{missing}/p.json"], "--save-profile"),
    (["bench", "--json", "{missing}/b.json"], "--json"),
    (["bench", "--markdown", "{missing}/b.md"], "--markdown"),
    (["bench", "--html", "{folder}"], "--html"),
    (["profile", "--out", "{folder}"], "--out"),
]


def _probe(argv: list[str]) -> tuple[int, str, bool]:
    """main(argv) in a fresh interpreter: (exit code, stderr, whether any model was loaded)."""
    probe = ("import json, sys\nfrom hsd.tools.cli import main\n"
             f"rc = main({argv!r})\n"
             "m = sys.modules.get('hsd.models')\n"
             "print(json.dumps([rc, bool(m and m.STORE.families)]))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rc, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return rc, proc.stderr, loaded


@pytest.mark.parametrize("args,option", OUTPUT_CASES)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(args, option, tmp_path):
    argv = [a.format(missing=tmp_path / "no" / "such", folder=tmp_path) for a in args]
    rc, err, loaded = _probe(argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], err
    assert ("does not exist" in lines[0]) or ("is a folder" in lines[0])
    assert not loaded


@pytest.mark.parametrize("args,needle", [
    (["validate", "--profile", "{tmp}/missing.json"], "no such file"),
    (["validate", "--profile", "{tmp}/bad.json"], "is not JSON"),
    (["bench", "--profile", "{tmp}"], "is a folder"),
    (["optimize", "{tmp}/missing.json"], "no such file"),
    (["generate", "--prompt", "x", "--chain", "0,5"], "has 4 models"),
    (["generate", "--prompt", "x", "--models", "bundled", "--chain", "1,2,3,4"], "indices 0 to 3"),
    (["validate", "--fresh-profile", "--profile", "{tmp}/bad.json"], "exclude each other"),
    (["validate", "--save-profile", "{tmp}/p.json"], "needs --fresh-profile"),
])
def test_a_bad_argument_is_answered_before_any_model_loads(args, needle, tmp_path):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    rc, err, loaded = _probe([a.format(tmp=tmp_path) for a in args])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err
    assert not loaded


@pytest.mark.parametrize("args", [
    ["generate", "--prompt", "x", "--buffer", "4"],          # not --buffers
    ["generate", "--prompt", "x", "--temp", "0"],            # not --temperature
    ["generate", "--prompt", "x", "--max-new", "3"],         # not --max-new-tokens
    ["bench", "--rep", "2"],
])
def test_abbreviated_options_are_refused_not_guessed(args):
    proc = _run_hsd(args)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1


def test_a_trace_that_cannot_be_written_at_the_end_still_prints_the_text_first(folders, tmp_path, capsys,
                                                                                   monkeypatch):
    """The folder is checked first; if it vanishes during the decode, the text is printed anyway."""
    from hsd.trace import Trace

    def vanish(self, path):
        raise FileNotFoundError(2, "No such file or directory")
    monkeypatch.setattr(Trace, "save", vanish)
    code = main(["generate", "--models", ",".join(folders), "--prompt", "def f(x):", "--max-new-tokens", "5",
                 "--trace", str(tmp_path / "t.json"), "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out.startswith("def f(x):") and "could not write the trace" in err


def test_a_report_that_cannot_be_written_at_the_end_is_rescued_to_a_temporary_file(tmp_path, capsys):
    from hsd.tools.paths import save_or_rescue

    target = tmp_path / "gone" / "r.json"
    ok = save_or_rescue(target, lambda p: Path(p).write_text("{}", encoding="utf-8"), "report")
    err = capsys.readouterr().err
    assert not ok and "could not write the report" in err
    rescued = Path(err.rsplit("saved in ", 1)[1].strip())
    assert rescued.read_text(encoding="utf-8") == "{}"
    rescued.unlink()


# -- threads: the app's policy on every entry point ---------------------------------------------
def test_every_decoding_command_takes_threads_defaulting_to_all_cores_but_one(monkeypatch):
    from hsd.threads import default_threads
    from hsd.tools.cli import build_parser

    parser = build_parser()
    for command in (["generate", "--prompt", "x"], ["profile", "--out", "p.json"], ["validate"], ["bench"],
                    ["shapes", "--family", "smollm2", "--out", "p.json"]):
        assert parser.parse_args(command).threads == default_threads()
        assert parser.parse_args(command + ["--threads", "3"]).threads == 3
    assert [default_threads(n, env={}) for n in (1, 2, 16)] == [1, 1, 15]
    assert default_threads(16, env={"HSD_TORCH_THREADS": "4"}) == 4
    assert default_threads(16, env={"HSD_TORCH_THREADS": "zero"}) == 15


def test_the_api_decodes_on_its_threads_and_gives_torch_its_count_back(folders):
    from hsd.engine import Hierarchy
    from hsd.errors import ConfigError
    from hsd.models import load_family
    from hsd.threads import default_threads

    family = load_family(",".join(folders))
    before = torch.get_num_threads()
    other = 2 if before != 2 else 1
    events = Hierarchy.from_family(family, buffers=[2, 2], threads=other).stream("def f(x):", max_new_tokens=8)
    next(events)
    assert torch.get_num_threads() == other                   # inside the decode
    events.close()
    assert torch.get_num_threads() == before                  # and back after it
    list(Hierarchy.from_family(family, buffers=[2, 2], threads=other).stream("def f(x):", max_new_tokens=4))
    assert torch.get_num_threads() == before                  # a decode run to its end, too
    assert Hierarchy.from_family(family, buffers=[2, 2]).threads == default_threads()
    assert Hierarchy.from_family(family, buffers=[2, 2], threads=None).threads is None
    with pytest.raises(ConfigError, match="threads"):
        Hierarchy.from_family(family, buffers=[2, 2], threads=0)


def test_hsd_stress_without_the_repositorys_tools_folder_is_one_line_and_exit_code_2(monkeypatch, capsys):
    """``hsd stress`` runs ``python -m tools.stress`` from the repository; an installed wheel has
    no ``tools/`` folder, and says so in one line instead of a traceback."""
    from hsd.tools import cli

    monkeypatch.setattr(cli, "STRESS_MODULE", "tools.no_such_tool")
    assert cli.main(["stress", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "tools/stress" in err
