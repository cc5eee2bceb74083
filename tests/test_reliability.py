"""Reliability and safety of the public app (issue 7), fast versions: the bad-input matrix, many
sessions at once, a burst against a small queue, cancellation and a disconnecting client, a quick
``hsd stress`` run, Space restrictions on which models load, and no remote code or
pickled weights anywhere.

The app runs in this process (``build_demo(...).launch(prevent_thread_lock=True)``) on a family
of three tiny real Llamas saved to a temporary folder; the checks themselves are ``tools.stress``'s,
which drive the app over HTTP with ``gradio_client`` exactly as the long command does.

Known app defects (KNOWN_APP_DEFECTS) are expected failures here (xfail, not strict: they pass
once fixed) so CI stays green; the stress command reports them as failures.  Whatever the answer
to a bad input, the next normal request must work -- that part is asserted for every case."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from ui import registry, session, settings  # noqa: E402
from ui import inputs as ui_inputs  # noqa: E402
from ui.demo import build_demo  # noqa: E402
from hsd.errors import ConfigError, ModelLoadError  # noqa: E402
from tools.stress.cases import bad_cases, normal_args  # noqa: E402
from tools.stress.checks import (check_burst, check_cancel, check_sessions, judge_bad_case, one_sentence,  # noqa: E402
                                 try_bad_case)
from tools.stress.client import GenerateApi, call, make_client, rest_call  # noqa: E402
from tools.stress.server import check_loopback  # noqa: E402
from tests.test_app import free_port, save_tiny_family  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Cases of the matrix that the app did not answer with one clear sentence when this file was
# written (reported to app.py's owner; expected failures until fixed):
KNOWN_APP_DEFECTS = {
    # (null / text values that Gradio's preprocess turned into a generic error are fixed: the
    # app's /generate and /compare take raw values and answer them with a sentence)
    # (hsd.models.load_tokenizer no longer wraps its own ModelLoadError in a second one)
}


# --------------------------------------------------------------------------------------------
# fixtures: a tiny family, the app launched in this process
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> str:
    return save_tiny_family(tmp_path_factory.mktemp("rel-family"))


def _launch(limits: settings.Limits, queue_size: int):
    demo = build_demo(limits, registry.Families(limits))
    demo.queue(max_size=queue_size, default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def server(tiny_spec):
    """The app with custom models allowed (the loader is exercised), 4 decodes at once, a queue of 6."""
    lim = settings.Limits(family=tiny_spec, max_new_tokens=48, max_buffer=6, max_levels=3, max_prompt_chars=500,
                     panel_interval_s=0.0, ui_share=1.0, token_interval_s=0.0, allow_custom_models=True,
                     concurrency=4, queue_size=6)
    demo, url = _launch(lim, queue_size=6)
    try:
        client = make_client(url)
        api = GenerateApi(client)
        assert call(client, normal_args(api, 6)).kind == "ok"       # loads the models
        yield url, client, api
    finally:
        demo.close()


MATRIX_NAMES = [
    "empty prompt", "whitespace-only prompt", "100k-character prompt", "prompt longer than the models' context",
    "control characters in the prompt",
    "lone surrogate in the prompt (REST: gradio_client cannot encode it)",
    "bytes that are not UTF-8 (raw request body)", "max new tokens 0", "max new tokens negative",
    "max new tokens huge", "temperature negative", "temperature NaN (REST: gradio_client refuses NaN)",
    "temperature null (what a JavaScript client sends for NaN)", "top-p 0", "top-p 1.5", "buffers empty (null)",
    "buffer zero", "buffer 10^6", "more levels than models", "unknown rule", "hub id while offline",
    "local path outside the allowed folders", "a file as a model folder", "stack null", "seed as text",
    "the same model twice (family spec)", "an incompatible family (other tokenizer)",
]


def test_the_matrix_covers_every_field_of_the_issue_and_each_case_differs_from_a_normal_request(server, tmp_path):
    """Every field the issue lists is broken by some case, every case sends something a normal
    request does not, and each name is used once (a case that silently became a normal request,
    or a field nobody tries, fails here; that each case is refused is the next test's claim)."""
    _, _, api = server
    cases = bad_cases(api, tmp_path)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)) and set(names) == set(MATRIX_NAMES)
    fields = {key for c in cases for key in c.values}
    assert {"prompt", "max_new_tokens", "temperature", "top_p", "buffers", "stack", "rules", "family",
            "seed"} <= fields
    normal = api.args()
    for c in cases:
        if c.via == "raw":
            with pytest.raises(UnicodeDecodeError):          # the raw case really is not UTF-8
                c.raw_body.decode("utf-8")
            continue
        assert api.args(**c.values) != normal, f"{c.name} sends the app's own defaults"


def _matrix_param(name: str):
    if name in KNOWN_APP_DEFECTS:
        return pytest.param(name, marks=pytest.mark.xfail(reason="known app defect (see KNOWN_APP_DEFECTS)",
                                                          strict=False))
    return name


@pytest.mark.parametrize("name", [_matrix_param(n) for n in MATRIX_NAMES])
def test_bad_input_gives_one_clear_sentence_and_the_next_request_works(server, tmp_path_factory, name):
    url, client, api = server
    case = next(c for c in bad_cases(api, tmp_path_factory.getbasetemp() / "odd") if c.name == name)
    out = try_bad_case(url, client, api, case)
    after = call(client, normal_args(api, 6, seed=3))
    assert after.kind == "ok" and after.tokens, f"the request after {name!r}: {after.message}"
    held, why = judge_bad_case(case, out)
    assert held, f"{name}: {why}: {out.kind} {out.message!r}"


# --------------------------------------------------------------------------------------------
# many users at once
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def roomy_server(tiny_spec):
    """The same app with the default queue (32): eight sessions that submit within a few
    milliseconds of each other may all be waiting at once before four start, and a queue of six
    would refuse two of them (that is the burst test's business; the CI run that hung here had
    a refused job: gradio_client's job iterator never ends when the job fails)."""
    lim = settings.Limits(family=tiny_spec, max_new_tokens=48, max_buffer=6, max_levels=3, max_prompt_chars=500,
                     panel_interval_s=0.0, ui_share=1.0, token_interval_s=0.0, concurrency=4)
    demo, url = _launch(lim, queue_size=lim.queue_size)
    try:
        client = make_client(url)
        api = GenerateApi(client)
        assert call(client, normal_args(api, 6)).kind == "ok"
        yield url, client, api
    finally:
        demo.close()


def test_eight_sessions_at_once_finish_and_each_equals_the_same_request_run_alone(roomy_server):
    url, _, api = roomy_server
    check, = check_sessions(url, api, 8, 8, log=lambda m: None, timeout_s=180)
    f = check.figures
    assert check.held, check.detail
    assert f["finished"] == f["equal_to_solo"] == 8
    assert f["distinct_texts"] > 1                       # different seeds really gave different texts
    assert f["max_streaming_at_once"] >= 2               # they really ran at the same time


def test_a_burst_of_thirty_against_a_queue_of_six_is_queued_or_refused_cleanly_and_the_app_answers(server):
    url, _, api = server
    check, = check_burst(url, api, 30, 6, None, log=lambda m: None)
    f = check.figures
    assert check.held, check.detail
    assert f["finished"] >= 1 and f["refused_queue_full"] >= 1 and f["other_errors"] == 0
    assert f["finished"] + f["refused_queue_full"] == 30 and f["server_answers_after"]


# --------------------------------------------------------------------------------------------
# cancellation
# --------------------------------------------------------------------------------------------
def test_cancel_and_a_disconnecting_client_stop_the_decode_and_the_next_request_works(server):
    url, _, api = server
    # the app serves from this process, so its CPU and memory are this process's: measured, not skipped
    checks = check_cancel(url, api, 6, pid=os.getpid(), log=lambda m: None)
    cancel, disconnect, memory = checks
    assert cancel.figures["server_cpu_after_cores"] is not None
    assert disconnect.figures["server_cpu_after_cores"] is not None
    assert memory.held is not None and memory.figures["rss_before_mb"] > 0
    assert cancel.held, cancel.detail
    assert cancel.figures["tokens_streamed"] < cancel.figures["tokens_asked"]
    assert disconnect.held and disconnect.figures["was_streaming"], disconnect.detail
    deadline = time.time() + 20
    while session.active_decodes() and time.time() < deadline:
        time.sleep(0.1)
    assert session.active_decodes() == 0, "a cancelled or abandoned decode kept running"


# --------------------------------------------------------------------------------------------
# the stress command itself (a subprocess app, memory of its process)
# --------------------------------------------------------------------------------------------
def test_stress_command_on_a_tiny_family_holds_and_writes_its_report(tmp_path):
    out = tmp_path / "stress.json"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.run([sys.executable, "-m", "hsd", "stress", "--family", "tiny", "--parts",
                           "sessions,burst,cancel,sequential", "--sessions", "2", "--burst", "10", "--sequential", "5",
                           "--new-tokens", "6", "--queue-size", "2", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["held"] and "EVERYTHING HELD" in proc.stdout
    by_name = {c["name"]: c for c in report["checks"]}
    seq = by_name["5 sequential generations"]["figures"]
    assert seq["finished"] == 5 and seq["rss_after_last_mb"] <= seq["rss_after_first_mb"] * 1.10
    mem = by_name["server memory returns to its level"]
    assert mem["held"] is True                                         # measured: the server's pid was known
    assert by_name["burst of 10 submits"]["figures"]["refused_queue_full"] >= 1
    assert report["server_log_exceptions"] is not None


def test_stress_refuses_any_address_but_this_machine():
    from hsd.tools.cli import main

    assert main(["stress", "--url", "http://example.com:7860/"]) == 2
    with pytest.raises(ConfigError, match="this machine"):
        check_loopback("http://10.0.0.5:7860")
    assert check_loopback("http://127.0.0.1:7860") == "http://127.0.0.1:7860/"


def test_one_sentence_rejects_tracebacks_generic_crashes_and_several_sentences():
    assert one_sentence("The prompt is empty: type some text to continue.")
    assert one_sentence("There is no model folder at /tmp/x.y/z; use the bundled family.")
    assert not one_sentence("Bad value. Try again.")
    assert not one_sentence("Traceback (most recent call last): ...")
    assert not one_sentence("Something went wrong inside the app (KeyError: 'x'); the request was abandoned.")
    assert not one_sentence("x" * 301)


# --------------------------------------------------------------------------------------------
# which models may load: Space restrictions, no remote code, safetensors only
# --------------------------------------------------------------------------------------------
def test_on_a_space_no_hub_id_or_local_path_loads_unless_an_environment_variable_allows_it(
        tiny_spec, tmp_path, monkeypatch):
    import hsd.models

    loaded: list[str] = []
    real = hsd.models.load_family

    def recording(spec, *a, **k):
        loaded.append(spec)
        return real(spec, *a, **k)

    monkeypatch.setattr(hsd.models, "load_family", recording)
    env = {"SPACE_ID": "someone/hsd-explorer", "HSD_FAMILY": tiny_spec, "HSD_MAX_NEW_TOKENS": "16"}
    lim = settings.Limits.from_env(env)
    assert not lim.allow_custom_models
    other_folder = tiny_spec.split(",")[-1]                       # a real model folder, not the app's family
    demo, url = _launch(lim, queue_size=8)
    try:
        client = make_client(url)
        api = GenerateApi(client)
        assert api.family == tiny_spec and "smollm2" not in str(api.params[api.index["family"]])
        for spec in ["Qwen/Qwen2.5-0.5B", "smollm2", "/etc", other_folder, f"{tiny_spec},{other_folder}"]:
            out = call(client, api.args(family=spec, stack=[], max_new_tokens=4))
            assert out.kind == "error" and "can be used here" in out.message and one_sentence(out.message), \
                (spec, out.message)
        opt = call(client, ["Qwen/Qwen2.5-0.5B", "measure now", 4, False], endpoint="/optimize")
        assert opt.kind == "error" and "can be used here" in opt.message
        assert call(client, normal_args(api, 4)).kind == "ok"      # its own family works
    finally:
        demo.close()
    assert set(loaded) <= {tiny_spec}, f"loaded on a Space without permission: {loaded}"

    allowed = registry.Families(settings.Limits.from_env(env | {"HSD_ALLOW_CUSTOM_MODELS": "1"}))
    req = ui_inputs.make_request(allowed, "def f(x):\n", other_folder, [], [], "hsd", max_new_tokens=4)
    assert req.family == other_folder and allowed.load(req.family).names == ["tiny-l"]


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _sources():
    return [p for d in ("hsd", "visual", "ui", "scripts", "tools") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]


def test_no_code_path_passes_trust_remote_code_true():
    for path in _sources():
        for node in _calls(path):
            value = _kw(node, "trust_remote_code")
            if value is not None:
                assert isinstance(value, ast.Constant) and value.value is False, \
                    f"{path.relative_to(ROOT)}:{node.lineno} trust_remote_code is not the literal False"
        assert "trust_remote_code=" + "True" not in path.read_text(encoding="utf-8").replace(" ", "")


def test_user_named_models_load_only_through_one_loader_with_safetensors_and_no_remote_code():
    """Every from_pretrained of a user-named model lives in hsd/models.py and passes
    trust_remote_code=False (models also use_safetensors=True); nothing the app or engine runs
    unpickles (torch.load/pickle).  hsd/family/, the offline training pipeline, reads only the
    checkpoints it wrote itself and is not reachable from the app."""
    loader = ROOT / "hsd" / "models.py"
    pre = [c for c in _calls(loader) if isinstance(c.func, ast.Attribute) and c.func.attr == "from_pretrained"]
    assert len(pre) >= 3                                          # config, model, tokenizer
    for c in pre:
        assert isinstance(_kw(c, "trust_remote_code"), ast.Constant) and _kw(c, "trust_remote_code").value is False
        owner = ast.unparse(c.func.value)
        if "Model" in owner:
            assert isinstance(_kw(c, "use_safetensors"), ast.Constant) and _kw(c, "use_safetensors").value is True
    for path in _sources():
        if path.parent == ROOT / "hsd" / "family":
            continue
        for c in _calls(path):
            text = ast.unparse(c.func)
            assert text not in ("torch.load", "pickle.load", "pickle.loads"), f"{path.relative_to(ROOT)}:{c.lineno}"
            if path != loader and text.endswith("from_pretrained"):
                owner = text.rsplit(".", 1)[0]
                assert path.parent.name == "scripts" or "Tokenizer" not in owner and "Model" not in owner, \
                    f"{path.relative_to(ROOT)}:{c.lineno} loads a model outside hsd/models.py"
    app_src = (ROOT / "app.py").read_text(encoding="utf-8")
    assert "from_pretrained" not in app_src and "torch.load" not in app_src


def test_a_folder_with_only_pickled_weights_is_refused(tmp_path):
    import torch

    from hsd.models import clear_cache, load_family
    from hsd.family.tiny import tiny_family

    (m,), tok = tiny_family(1, scale=1.0)
    folder = tmp_path / "pickled"
    m.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(m.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_family(str(folder), device="cpu")
    clear_cache()


def test_custom_code_shipped_in_a_model_folder_never_runs(tmp_path):
    from hsd.models import clear_cache, load_family
    from hsd.family.tiny import tiny_family

    (m,), tok = tiny_family(1, scale=1.0)
    folder = tmp_path / "with-code"
    m.save_pretrained(folder)
    tok.save_pretrained(folder)
    marker = tmp_path / "custom-code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import LlamaForCausalLM as EvilModel\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    try:
        load_family(str(folder), device="cpu")
    except ModelLoadError:
        pass                                                      # refusing is fine too
    finally:
        clear_cache()
    assert not marker.exists(), "code shipped with the model folder was executed"


# --------------------------------------------------------------------------------------------
# a real fault: the user reads one sentence, the server log keeps the whole traceback
# --------------------------------------------------------------------------------------------
def test_a_model_forward_that_raises_shows_one_sentence_and_its_full_traceback_in_the_log(server, tiny_spec, capfd):
    import torch

    from hsd.models import load_family

    url, client, api = server
    target = load_family(tiny_spec).models[-1]          # the very model the app serves (one load per process)
    weight = target.model.layers[0].mlp.down_proj.weight
    good = weight.data
    capfd.readouterr()
    try:
        weight.data = torch.zeros(3, 5)                  # a damaged layer: its matmul raises in the forward
        out = call(client, normal_args(api, 6, seed=5))
    finally:
        weight.data = good
    log = capfd.readouterr().err
    assert out.kind == "error" and "\n" not in out.message and out.message.startswith("Something went wrong")
    assert "RuntimeError" in out.message and "Traceback (most recent call last)" not in out.message
    assert "Traceback (most recent call last)" in log and "RuntimeError" in log
    assert "hsd/levels/" in log and "hsd/engine.py" in log           # every frame, down to the forward
    after = call(client, normal_args(api, 6, seed=5))
    assert after.kind == "ok" and after.tokens                       # the app still serves


# --------------------------------------------------------------------------------------------
# soak: the verdict, and a soak on a shrunk clock; faults: the command on a tiny family
# --------------------------------------------------------------------------------------------
def _synthetic(rss_last: float, fds_last: int, late_s: float):
    from tools.stress.soak import Answered, Sample

    samples = [Sample(t, 500.0 if t < 420 else rss_last, 20 if t < 420 else fds_last, 8 + (t > 300))
               for t in range(0, 600, 5)]
    answered = [Answered(t, "generate", 1.0 if t < 420 else late_s, "result") for t in range(0, 600, 2)]
    return samples, answered


@pytest.mark.parametrize("rss_last,fds_last,late_s,failures", [
    (520.0, 20, 1.1, []),                                       # +4 % memory (+5 MB slack), p95 +10 %: flat
    (560.0, 20, 1.0, ["rss_mb drifted"]),                       # +12 % memory
    (500.0, 22, 1.0, ["fds drifted"]),                          # +10 % descriptors
    (500.0, 20, 1.3, ["generate p95 grew"]),                    # p95 +30 %
])
def test_the_soak_fails_on_more_than_5_percent_drift_or_a_20_percent_p95_growth(rss_last, fds_last, late_s,
                                                                                 failures):
    from tools.stress.soak import SoakReport, judge

    report = SoakReport()
    samples, answered = _synthetic(rss_last, fds_last, late_s)
    judge(report, samples, answered, total_s=600.0, warmup_s=120.0)
    assert len(report.failures) == len(failures), report.failures
    assert all(any(f in g for g in report.failures) for f in failures), report.failures
    assert report.drift["threads"]["change"] > 0 and report.held == (not failures)   # threads: reported, not judged


def test_a_soak_without_the_servers_pid_is_not_judged_held():
    from tools.stress.soak import Answered, Sample, SoakReport, judge

    report = SoakReport()
    judge(report, [Sample(t, None, None, None) for t in range(0, 300, 5)],
          [Answered(t, "generate", 1.0, "result") for t in range(0, 300, 3)], total_s=300.0, warmup_s=60.0)
    assert not report.held and any("not measured" in f for f in report.failures)


def test_a_soak_on_a_shrunk_clock_drives_every_kind_of_traffic_and_watches_the_server(server):
    from tools.stress import soak

    url, _, _ = server
    report = soak.soak(url, os.getpid(), 4, warmup_minutes=1, workers=2, minute_s=4.0, sample_s=0.5,
                       log=lambda m: None)
    kinds = set(report.requests)
    assert {"generate", "what_if", "compare", "cancel"} & kinds >= {"generate", "what_if"}, report.requests
    assert report.crashes == [] and report.server_alive
    assert len(report.per_minute) == 4 and all(r["rss_mb"] for r in report.per_minute)
    assert report.drift["fds"]["first_minute"] is not None


def test_the_faults_command_holds_every_case_on_a_tiny_family(tmp_path):
    out = tmp_path / "faults.json"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.run([sys.executable, "-m", "hsd", "stress", "--faults", "--family", "tiny", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())["modes"]["faults"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = {c["case"]: c for c in report["cases"]}
    assert len(cases) == 10 and all(c["held"] is True for c in cases.values()), \
        [c for c in cases.values() if c["held"] is not True]
    for name in ("corrupt weights", "truncated weights", "missing tokenizer"):
        assert cases[name]["answer"].startswith("error:") and "equal the same request alone" in cases[name]["bystander"]
    assert cases["unwritable download folder"]["answer"] == "a complete result"
    assert "8 of 8" in cases["8 what-if edits at once"]["answer"]


def test_the_app_keeps_at_most_its_limit_of_sessions(tiny_spec):
    lim = settings.Limits(family=tiny_spec, max_new_tokens=8, max_sessions=3)
    demo, url = _launch(lim, queue_size=8)
    try:
        client = make_client(url)
        api = GenerateApi(client)
        for seed in range(6):                                     # six API calls: six sessions
            assert rest_call(url, normal_args(api, 2, seed=seed)).kind == "ok"
        assert demo.state_session_capacity == 3 and len(demo.state_holder.session_data) <= 3
    finally:
        demo.close()


def test_each_stress_run_counts_its_own_requests_and_leaves_the_environment_alone(server):
    """No module-global tally: two runs in one process never mix their counts; a client for the
    app ignores proxy variables instead of rewriting ``os.environ``."""
    from tools.stress.client import Outcome, Tally

    url, _, api = server
    before = dict(os.environ)
    fresh = make_client(url)
    assert dict(os.environ) == before
    one, two = Tally(), Tally()
    assert call(fresh, normal_args(api, 4, seed=1), tally=one).kind == "ok"
    assert rest_call(url, normal_args(api, 4, seed=2), tally=one).kind == "ok"
    assert call(fresh, normal_args(api, 0), tally=two).kind == "error"
    two.record(Outcome("refused", "queue full"))
    assert dict(one.by_kind) == {"ok": 2} and one.total == 2
    assert dict(two.by_kind) == {"error": 1, "refused": 1} and two.total == 2
