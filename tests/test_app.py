"""app.py: request validation, the event functions called directly, and the launched app through
gradio_client (streaming, equality with the CLI, Stop, errors that leave the app serving).

Runs on a family of tiny real Llama models saved to a temporary folder (``HSD_FAMILY``-style
spec), so it does not depend on the trained bundled family; one test uses the bundled family
when it exists."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ui import registry, session, settings  # noqa: E402
from ui import inputs as ui_inputs  # noqa: E402
from ui.demo import build_demo  # noqa: E402
from ui.tabs import learn  # noqa: E402
from visual import text as visual_text  # noqa: E402
from hsd.errors import ConfigError, HSDError, ModelLoadError, PromptError  # noqa: E402
from hsd.trace import Trace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["tiny-s", "tiny-m", "tiny-l"]


def save_tiny_family(root: Path) -> str:
    """Three tiny real Llamas sharing the character tokenizer, saved as safetensors folders;
    returns the comma-separated spec (smallest first)."""
    from hsd.family import tiny

    return tiny.save_tiny_family(root, names=NAMES, scale=8.0)


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> str:
    return save_tiny_family(tmp_path_factory.mktemp("tiny-family"))


@pytest.fixture(scope="session")
def limits(tiny_spec) -> settings.Limits:
    return settings.Limits(family=tiny_spec, max_new_tokens=100, max_buffer=6, max_levels=3, max_prompt_chars=500,
                      panel_interval_s=0.0, ui_share=1.0, token_interval_s=0.0,
                      allow_custom_models=False, shapes_scale=0.06)


@pytest.fixture(scope="session")
def families(limits) -> registry.Families:
    return registry.Families(limits)


@pytest.fixture(scope="session")
def demo(limits, families):
    return build_demo(limits, families)


def endpoint(demo, name):
    """The event function behind ``name``, called as Gradio calls it, with its update dicts laid
    out in the event's output order (what the page and the API receive; absent = unchanged)."""
    import inspect

    import gradio as gr

    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    block = next(f for f in fns if f.api_name == name)

    def positional(out):
        if isinstance(out, dict):
            return tuple(out.get(c, gr.skip()) for c in block.outputs)
        return out

    def call(*args):
        out = block.fn(*args)
        return (positional(o) for o in out) if inspect.isgenerator(out) else positional(out)
    return call


def cli_json(argv: list[str]) -> dict:
    from hsd.tools.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


# --------------------------------------------------------------------------------------------
# limits and validation
# --------------------------------------------------------------------------------------------
def test_limits_come_from_environment_variables_and_custom_models_are_off_on_a_space():
    lim = settings.Limits.from_env({"HSD_MAX_NEW_TOKENS": "32", "HSD_MAX_BUFFER": "5", "HSD_MAX_LEVELS": "3",
                               "HSD_MAX_PROMPT_CHARS": "99", "HSD_FAMILY": "a,b", "HSD_QUEUE_SIZE": "7"})
    assert (lim.max_new_tokens, lim.max_buffer, lim.max_levels, lim.max_prompt_chars, lim.family,
            lim.queue_size) == (32, 5, 3, 99, "a,b", 7)
    assert lim.allow_custom_models                                    # locally: on
    assert not settings.Limits.from_env({"SPACE_ID": "user/space"}).allow_custom_models
    assert settings.Limits.from_env({"SPACE_ID": "user/space", "HSD_ALLOW_CUSTOM_MODELS": "1"}).allow_custom_models
    with pytest.raises(ConfigError, match="HSD_MAX_NEW_TOKENS"):
        settings.Limits.from_env({"HSD_MAX_NEW_TOKENS": "many"})


def test_a_valid_request_picks_the_chain_and_always_includes_the_target(families, tiny_spec):
    req = ui_inputs.make_request(families, "def f(x):", tiny_spec, ["tiny-s"], [3, 9], ["hsd-uncapped (LOSSY)"],
                           0.7, 0.9, 5, 11, 20)
    assert req.chain == (0, 2) and req.buffers == (3,) and req.rules == ("hsd-uncapped",)
    assert (req.temperature, req.top_p, req.top_k, req.seed, req.max_new_tokens) == (0.7, 0.9, 5, 11, 20)


BAD = [
    (dict(prompt=""), PromptError, "empty"),
    (dict(prompt="   \n"), PromptError, "empty"),
    (dict(prompt="x" * 501), PromptError, "at most 500"),
    (dict(prompt="ab\x00c"), PromptError, "control characters"),
    (dict(prompt="ab\ud800c"), PromptError, "surrogate"),
    (dict(max_new_tokens=0), ConfigError, "between 1 and 100"),
    (dict(max_new_tokens=-3), ConfigError, "between 1 and 100"),
    (dict(max_new_tokens=10**9), ConfigError, "between 1 and 100"),
    (dict(temperature=-1), ConfigError, "Temperature"),
    (dict(temperature=float("nan")), ConfigError, "Temperature"),
    (dict(top_p=0), ConfigError, "Top-p"),
    (dict(top_p=1.5), ConfigError, "Top-p"),
    (dict(buffers=[]), ConfigError, "buffer size"),
    (dict(buffers=[0, 1]), ConfigError, "between 1 and 6"),
    (dict(buffers=[10**6, 1]), ConfigError, "between 1 and 6"),
    (dict(rules=["nope"]), ConfigError, "Unknown verification rule"),
    (dict(models=["tiny-s", "tiny-m", "not-a-model"]), ConfigError, "not a model of this family"),
    (dict(family="Qwen/Qwen2.5-0.5B"), ModelLoadError, "can be used here"),
    (dict(family="/etc"), ModelLoadError, "can be used here"),
]


@pytest.mark.parametrize("change,error,words", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_input_raises_one_clear_sentence(families, tiny_spec, change, error, words):
    args = dict(prompt="def f(x):", family=tiny_spec, models=["tiny-s", "tiny-m"], buffers=[2, 2],
                rules=["hsd"], temperature=1.0, top_p=1.0, top_k=0, seed=0, max_new_tokens=10) | change
    with pytest.raises(error) as info:
        ui_inputs.make_request(families, **args)
    message = str(info.value)
    assert words in message and message.count(". ") == 0 and len(message) < 200


def test_more_levels_than_allowed_is_refused(tiny_spec):
    fam = registry.Families(settings.Limits(family=tiny_spec, max_levels=2))
    with pytest.raises(ConfigError, match="At most 2 models"):
        ui_inputs.make_request(fam, "def f(x):", tiny_spec, NAMES, [2, 2], "hsd")


# --------------------------------------------------------------------------------------------
# event functions, called directly
# --------------------------------------------------------------------------------------------
def run_generate(demo, tiny_spec, prompt="def f(x):\n", models=("tiny-s", "tiny-m"), buffers=(3, 2),
                 rules=("hsd", "block"), temperature=1.0, seed=3, max_new=30, time_ar=False):
    gen = endpoint(demo, "generate")
    return list(gen(prompt, tiny_spec, list(models), *buffers, *rules, temperature, 1.0, 0, seed, max_new,
                    time_ar, False))


def test_generate_streams_tokens_every_round_then_panels_trace_and_download(demo, tiny_spec):
    outs = run_generate(demo, tiny_spec)
    assert len(outs) >= 3
    lengths = [len(o[0]["value"] if isinstance(o[0], dict) else o[0]) for o in outs]
    final = outs[-1]
    trace = Trace.from_dict(final[6])
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1] == trace.summary().n_tokens
    assert trace.meta["request"]["buffers"] == [3, 2]
    assert Path(final[7]["value"]).exists()
    for fig in final[2:5]:                           # ready Plotly JSON (session.fast_plot) with data and a template
        assert fig.type == "plotly"
        d = json.loads(fig.plot)
        assert len(d["data"]) > 0 and d["layout"]["template"]["layout"]["paper_bgcolor"]
    colours = {cat for _, cat in (final[0] if isinstance(final[0], list) else final[0]["value"])}
    assert any(c.startswith("L0 draft") for c in colours)


def test_generated_text_equals_the_cli_for_the_same_settings_and_seed(demo, tiny_spec):
    final = run_generate(demo, tiny_spec, seed=5, max_new=25)[-1]
    ui_text = Trace.from_dict(final[6]).text
    cli = cli_json(["generate", "--models", tiny_spec, "--chain", "0,1,2", "--buffers", "3,2",
                    "--rule", "hsd,block", "--prompt", "def f(x):\n", "--max-new-tokens", "25", "--seed", "5",
                    "--device", "cpu", "--json"])
    assert ui_text == cli["text"]


def test_timing_the_target_alone_reports_a_wall_clock_speedup(demo, tiny_spec):
    outs = run_generate(demo, tiny_spec, max_new=12, time_ar=True)
    assert "vs the target alone" in outs[-1][1] and "wall clock" in outs[-1][1]


def test_generate_turns_engine_errors_into_gr_errors(demo, tiny_spec):
    import gradio as gr

    with pytest.raises(gr.Error, match="empty"):
        run_generate(demo, tiny_spec, prompt=" ")


def test_learn_explains_every_step_in_one_sentence_tied_to_a_panel(demo, tiny_spec):
    d = run_generate(demo, tiny_spec, max_new=10)[-1][6]
    trace = Trace.from_dict(d)
    names = list(trace.started.models)
    for i in visual_text.learn_steps(trace):
        text = visual_text.explain(trace.events[i], names)
        assert any(p in text for p in ("timeline", "accept map", "token strip")), text
    load = endpoint(demo, "learn_load_fn")
    state, slider, md, spans, tl, am, mb, code = load(learn.LAST_RUN, d, False)
    assert state is d and "Step 1 /" in md and "Prefill" in md
    view = endpoint(demo, "learn_view")
    md, spans, tl, am, mb, code = view(d, 10**6, False)        # clamps to the last step
    assert "Commit" in md and "".join(t for t, _ in spans["value"]) == trace.text
    assert code.startswith('<pre class="hsd-code">')


def test_exactness_lab_endpoint_returns_figure_and_table(demo):
    fig, rows = endpoint(demo, "lab_fn")("toy", 3, 2, 0, False)
    assert len(fig.data) == 5 and [r[0] for r in rows] == ["token", "block", "hsd", "hsd-uncapped"]
    assert rows[3][2] > 0.01 and all(r[2] < 1e-12 for r in rows[:3])


def test_redraw_of_a_chosen_verification_uses_the_stored_trace(demo, tiny_spec):
    d = run_generate(demo, tiny_spec, max_new=15)[-1][6]
    am, mb, _ = endpoint(demo, "redraw_views")(d, 1, 0, False)
    assert "round 0" in mb.layout.title.text and "L0" in am.layout.title.text


# --------------------------------------------------------------------------------------------
# the launched app through gradio_client
# --------------------------------------------------------------------------------------------
from tools.stress.server import AppServer, free_port  # noqa: E402  (the one app launcher and port finder)


@pytest.fixture(scope="module")
def client(limits, families):
    from gradio_client import Client

    demo = build_demo(limits, families)
    demo.queue(max_size=16, default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield Client(url, verbose=False, download_files=False)
    finally:
        demo.close()


def test_api_generate_needs_only_the_prompt_and_streams_several_updates(client):
    job = client.submit("def f(x):\n", api_name="/generate")
    updates = list(job)
    assert len(updates) >= 3
    final = job.result(timeout=300)
    tokens = final[0]
    assert len(tokens) > 0 and all({"token", "class_or_confidence"} <= set(t) for t in tokens)
    assert final[2]["type"] == "plotly"


def test_api_generate_final_text_equals_the_cli(client, tiny_spec):
    final = client.predict("def f(x):\n", tiny_spec, ["tiny-s", "tiny-l"], 4, 4, "token", "hsd", 0.8, 1.0, 0, 9,
                           20, False, False, api_name="/generate")
    download = final[6]                     # the State output is not part of the API
    path = download.get("path") or download.get("value", {}).get("path")
    trace = Trace.load(path)
    cli = cli_json(["generate", "--models", tiny_spec, "--chain", "0,2", "--buffers", "4", "--rule", "token",
                    "--prompt", "def f(x):\n", "--max-new-tokens", "20", "--seed", "9", "--temperature", "0.8",
                    "--device", "cpu", "--json"])
    assert trace.text == cli["text"]
    assert "".join(t["token"] for t in final[0]) == cli["text"]   # one character per token here


def test_stop_cancels_the_generation_and_the_next_request_works(client, tiny_spec):
    job = client.submit("def f(x):\n", tiny_spec, [], 1, 1, "hsd", "hsd", 1.0, 1.0, 0, 0, 100, False, False,
                        api_name="/generate")
    deadline = time.time() + 60
    while len(job.outputs()) < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert job.outputs(), "no streamed update arrived"
    job.cancel()
    deadline = time.time() + 20
    while (session.active_decodes() or not job.done()) and time.time() < deadline:
        time.sleep(0.1)
    assert session.active_decodes() == 0, "the decode kept running after Stop"
    n_tokens = len(job.outputs()[-1][0])
    assert n_tokens < 100
    final = client.predict("def g(y):\n", api_name="/generate")
    assert len(final[0]) > 0


def _status_of(update) -> str:
    """The stats line of one positional /generate update (the output that carries the status)."""
    return next(o for o in update if isinstance(o, str) and "*Status:" in o)


def test_stop_ends_the_running_decode_with_its_own_last_update_that_says_stopped(demo, tiny_spec, monkeypatch):
    """Stop signals the page's running decode and waits for its last update: that update (the
    decode's own, with the trace and its download) says stopped, nothing comes after it, and Stop
    then changes nothing -- so no update of the decode can land after the stopped status."""
    import threading

    import gradio as gr

    from ui.tabs import generate as generate_tab

    runs = []

    class Recorded(session.StopSignals.Run):
        def __init__(self):
            super().__init__()
            runs.append(self)

    monkeypatch.setattr(session.StopSignals, "Run", Recorded)
    monkeypatch.setattr(generate_tab, "current_session", lambda: "stop-test-page")
    updates = endpoint(demo, "generate")("def f(x):\n", tiny_spec, ["tiny-s", "tiny-m"], 2, 2, "hsd", "hsd",
                                         1.0, 1.0, 0, 3, 100, False, False)
    first = next(updates)
    assert "decoding" in _status_of(first) and len(runs) == 1
    answer = []
    stopper = threading.Thread(target=lambda: answer.append(endpoint(demo, "request_stop")("*Status: decoding…*")))
    stopper.start()
    deadline = time.time() + 20
    while not runs[0].requested.is_set() and time.time() < deadline:
        time.sleep(0.01)
    assert runs[0].requested.is_set() and stopper.is_alive()      # Stop waits for the decode's last update
    rest = list(updates)
    stopper.join(timeout=20)
    assert len(rest) == 1 and runs[0].ended.is_set()              # one more round, then the last update
    status = _status_of(rest[0])
    assert "*Status: stopped*" in status and "Page updates paused the decode" in status
    assert any(isinstance(o, dict) and o.get("interactive") is True for o in rest[0])   # the trace's download
    assert 0 < len(rest[0][0]) < 100                               # the tokens so far, far short of 100
    assert answer == [(gr.skip(),)]                                # and Stop itself changes nothing
    # with no decode running (one still queued, which the next step cancels) Stop says stopped
    # itself, and it leaves a finished decode's status alone
    assert endpoint(demo, "request_stop")("**3 tokens**  \n*Status: decoding…*").endswith("*Status: stopped*")
    assert endpoint(demo, "request_stop")("*Status: finished (end of text)*") == "*Status: finished (end of text)*"


def test_stop_signals_reach_only_their_page_and_a_stopped_stream_ends_in_a_cancelled_trace(families, tiny_spec):
    import threading

    signals = session.StopSignals()
    assert signals.stop("nobody", 1.0) == (0, True)
    with signals.running("page-a") as run:
        assert signals.running_count() == 1
        assert signals.stop("page-b", 0.05) == (0, True) and not run.requested.is_set()
        assert signals.stop("page-a", 0.05) == (1, False)          # still running: did not end in time
        assert run.requested.is_set()
    assert signals.running_count() == 0 and run.ended.is_set()
    with signals.running("page-a") as run:                          # a new decode starts unsignalled
        assert not run.requested.is_set()
        later = threading.Timer(0.2, lambda: signals.stop("page-a", 5.0))
        later.start()
        while not run.requested.is_set():                           # what a decode's stream asks
            time.sleep(0.01)
    later.join()
    req = ui_inputs.make_request(families, "def f(x):", tiny_spec, NAMES, [2, 2], ["hsd", "hsd"], 1.0, 1.0, 0, 4, 40)
    full = session.run_to_end(req)
    asked = iter(range(1000))
    stopped = session.run_to_end(req, stop=lambda: next(asked) >= 2)   # true at the third commit
    summary = stopped.summary()
    assert summary.finish_reason == "cancelled" and 0 < summary.n_tokens < 40
    assert stopped.token_ids == full.token_ids[:summary.n_tokens]  # the same decode, cut after round 3
    assert stopped.events[-1].n_tokens == summary.n_tokens and stopped.events[-2].kind == "committed"
    traces = list(session.stream_trace(req, stop=lambda: True))
    assert len(traces) == 1 and traces[0].summary().finish_reason == "cancelled"


def test_bad_input_is_an_error_and_the_app_keeps_serving(client, tiny_spec):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        client.predict("   ", api_name="/generate")
    with pytest.raises(AppError, match="Unknown verification rule"):
        client.predict("def f(x):\n", tiny_spec, ["tiny-s"], 2, 2, "nope", "hsd", api_name="/generate")
    assert len(client.predict("def f(x):\n", api_name="/generate")[0]) > 0


def test_api_optimize_then_compare_runs_every_hierarchy(client, tiny_spec):
    status, fig, table, pick, = client.predict(tiny_spec, "measure now", 4, False, api_name="/optimize")[:4]
    assert "model-predicted" in status and table["data"][0][0] == 1
    assert "acceptance measured by position in the block" in status    # "measure now" measures it
    out = client.predict("def f(x):\n", list(ui_inputs.CONTENDERS), tiny_spec, ["tiny-s", "tiny-l"], 3, 3, "hsd", "hsd",
                         1.0, 1.0, 0, 1, 12, False, api_name="/compare")
    status, fig, table = out[:3]
    assert status.startswith("**Done:**") and 2 <= len(table["data"]) <= 4       # identical stacks run once
    assert "Model-predicted numbers: acceptance measured by position in the block, for decodes of 12 tokens, from" in status
    assert sorted(n for row in table["data"] for n in row[0].split(" = ")) == sorted(ui_inputs.CONTENDERS)
    assert all(row[5] is not None for row in table["data"])          # model-predicted for all


# --------------------------------------------------------------------------------------------
# the bundled family (skipped until it is trained)
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (ROOT / "assets" / "family" / "family.json").exists(), reason="bundled family not built yet")
def test_bundled_family_generation_equals_the_cli():
    lim = settings.Limits(max_new_tokens=40, panel_interval_s=0.0, ui_share=1.0, token_interval_s=0.0)
    demo = build_demo(lim, registry.Families(lim))
    names = registry.Families(lim).names("bundled")
    gen = endpoint(demo, "generate")
    outs = list(gen("def parse_args(argv):\n", "bundled", [names[0], names[-1]], 4, 4, 4, "hsd", "hsd", "hsd",
                    1.0, 1.0, 0, 2, 24, False, False))
    text = Trace.from_dict(outs[-1][6]).text
    cli = cli_json(["generate", "--models", "bundled", "--chain", f"0,{len(names) - 1}", "--buffers", "4",
                    "--prompt", "def parse_args(argv):\n", "--max-new-tokens", "24", "--seed", "2", "--json"])
    assert text == cli["text"] and len(outs) >= 2


def test_no_error_type_escapes_as_a_traceback():
    err = session.as_gr_error(HSDError("the thing is wrong"))
    assert str(err.message) == "The thing is wrong"
    err = session.as_gr_error(RuntimeError("boom"))
    assert "still running" in err.message


# --------------------------------------------------------------------------------------------
# UI budget and canned examples
# --------------------------------------------------------------------------------------------
def test_ui_budget_shows_the_first_commit_at_once_and_keeps_every_pause_within_its_share():
    b = session.UiBudget(share=0.1, panel_interval_s=0.0, token_interval_s=0.0)
    assert b.decide(False) == (True, False)                   # first commit: tokens only, at once
    b.record(time.monotonic() - 0.001, panels=False)
    b.t0 -= 1.0                                               # 1 s of decoding so far: 0.1 s allowed
    assert b.decide(False) == (True, True)
    b.record(time.monotonic() - 0.5, panels=True)             # a panel update that cost 0.5 s
    assert b.decide(False) == (False, False)                  # 0.5 s spent > 10 % of ~1 s: not even tokens
    b.t0 -= 5.0                                               # 6 s: 0.6 s allowed
    assert b.decide(False) == (True, False)                   # room for tokens, not for another 0.5 s panel
    assert b.decide(True) == (True, True)                     # the end always shows everything
    paced = session.UiBudget(share=1.0, panel_interval_s=10.0, token_interval_s=0.2)
    paced.decide(False)
    paced.record(time.monotonic(), panels=False)
    paced.t0 -= 100.0
    assert paced.decide(False) == (False, False)              # 0.2 s between updates at least


def test_examples_script_writes_labelled_traces_the_learn_tab_can_step_through(tmp_path, demo, families,
                                                                             monkeypatch):
    from hsd.tools.examples import make_examples

    fam = families.load(families.limits.family)
    paths = make_examples(fam, tmp_path, max_new_tokens=12)
    assert len(paths) == 3
    for p in paths:
        t = Trace.load(p)
        s = t.summary()
        assert t.meta["label"]
        if s.finish_reason == "eos":                   # ended early, at the family's end-of-text token
            assert 1 <= s.n_tokens <= 12 and t.token_ids[-1] == fam.tokenizer.eos_token_id
        else:
            assert s.n_tokens == 12 and s.finish_reason == "max_new_tokens", (s.n_tokens, s.finish_reason)
    monkeypatch.setattr(registry, "EXAMPLES_DIR", tmp_path)
    label = next(iter(registry.example_traces()))
    state, slider, md, *_ = endpoint(demo, "learn_load_fn")(label, None, False)
    assert "Step 1 /" in md and state["meta"]["label"] == label


def test_api_documents_named_parameters_with_defaults(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/compare", "/optimize"} <= set(api)
    params = api["/generate"]["parameters"]
    names = [p["parameter_name"] for p in params]
    assert names[:4] == ["prompt", "family", "models", "buffer_L0"] and "max_new_tokens" in names
    assert all(p["parameter_has_default"] for p in params[1:])


def test_the_page_starts_with_the_optimisers_hierarchy_when_a_profile_exists(tiny_spec):
    lim = settings.Limits()
    fams = registry.Families(lim)
    names = fams.names("bundled")
    stack, bufs = registry.default_plan(fams, "bundled", names, lim)
    plan = fams.plan("bundled", names)                   # the shipped profile of the bundled family
    assert plan is not None and stack == [names[c] for c in plan.chain] and bufs == [int(b) for b in plan.buffers]
    tiny = registry.Families(settings.Limits(family=tiny_spec))
    tiny_names = tiny.names(tiny_spec)                   # no profile: smallest, middle, target with buffers 4
    assert registry.default_plan(tiny, tiny_spec, tiny_names, tiny.limits) == (
        [tiny_names[0], tiny_names[1], tiny_names[2]], [4, 4])


def test_under_zerogpu_events_cross_the_gpu_boundary_as_plain_dicts_and_give_the_same_trace(
        families, tiny_spec, monkeypatch):
    req = ui_inputs.make_request(families, "def f(x):", tiny_spec, NAMES, [2, 2], ["hsd", "hsd"], 1.0, 1.0, 0, 4, 20)
    plain = session.run_to_end(req)
    monkeypatch.setattr(session, "ZERO_GPU", True)
    events = list(session.decode_events(req))
    assert events and all(type(e) is dict for e in events)
    json.dumps(events)                                         # plain data: JSON (and pickle) safe
    zero = session.run_to_end(req)
    assert zero.token_ids == plain.token_ids and zero.summary().n_tokens == 20


def test_the_app_leaves_one_core_to_the_web_server():
    assert [settings.default_torch_threads(n) for n in (1, 2, 16)] == [1, 1, 15]
    assert settings.Limits.from_env({"HSD_TORCH_THREADS": "3"}).torch_threads == 3


def test_a_refused_request_is_logged_as_one_line_and_a_real_fault_keeps_its_traceback():
    logged = []
    err = session.as_gr_error(ConfigError("the buffer must be at least 1"), log=logged.append)
    assert logged == ["[hsd-explorer] refused: The buffer must be at least 1"]
    assert err.print_exception is False                      # Gradio prints no traceback for it
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        fault = session.as_gr_error(exc, log=logged.append)
    assert len(logged) == 2 and logged[1].startswith("[hsd-explorer] fault: RuntimeError: boom")
    assert "Traceback (most recent call last)" in logged[1] and "raise RuntimeError" in logged[1]  # logged here
    assert fault.print_exception is False and "\n" not in fault.message        # ... and not a second time by Gradio


def test_the_served_app_logs_one_line_per_refused_request(tiny_spec, tmp_path):
    """Through the launched app: a refused /generate leaves one line in the server's log, no
    traceback, and the next request works."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    log = tmp_path / "server.log"
    with AppServer(tiny_spec, extra_env={"HSD_PRELOAD": "0"}, log_path=log).start(timeout_s=240) as app:
        client = Client(app.url, verbose=False, download_files=False)
        for bad in ("   ", "ab\x00c"):
            with pytest.raises(AppError):
                client.predict(bad, api_name="/generate")
        assert len(client.predict("def f(x):\n", api_name="/generate")[0]) > 0
    text = log.read_text(encoding="utf-8", errors="replace")
    refused = [ln for ln in text.splitlines() if "[hsd-explorer] refused:" in ln]
    assert len(refused) == 2 and "Traceback" not in text, text[-2000:]


def test_callbacks_that_change_nothing_still_answer_every_output_through_gradio(demo):
    """Run through Gradio's own pre/post-processing (``Blocks.process_api``), as the page does: the
    light-theme placeholder redraw (every empty plot), opening the Learn tab with nothing to load, and
    stepping with no trace.  An empty update dict would fail there ("didn't return enough output
    values") and print a traceback in the server log."""
    import asyncio

    from gradio.state_holder import SessionState

    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else list(demo.fns)
    by_name = {}
    for f in fns:
        by_name.setdefault(getattr(f.fn, "__name__", ""), f)
    placeholders = max((f for f in fns if f.outputs and all(type(o).__name__ == "Plot" for o in f.outputs)),
                       key=lambda f: len(f.outputs))
    assert len(placeholders.outputs) == 13           # every panel drawn empty before its first use
    cases = [(placeholders, [False, False]),
             (by_name["learn_auto"], [None, learn.LAST_RUN, None, False]),
             (by_name["step_forward"], [None, 1])]
    for block_fn, inputs in cases:
        out = asyncio.run(demo.process_api(block_fn=block_fn, inputs=inputs, state=SessionState(demo)))
        assert len(out["data"]) == len(block_fn.outputs)


# --------------------------------------------------------------------------------------------
# the what-if lab on the Optimise tab (costs and acceptances edited live, bring your own profile)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_profile(families, tiny_spec):
    """A plain-data profile of the tiny family (acceptance by position included), kept for the
    spec as 'measure now' would keep one; removed afterwards."""
    from hsd.plan.profile import Profile
    from tests._profiles import random_profile

    base = random_profile(3, seed=7, style="deep", positions=True)
    prof = Profile(models=NAMES, cost_ms={n: base.cost_ms[m] for n, m in zip(NAMES, base.models)},
                   acceptance=base.acceptance, accept_lengths=base.accept_lengths,
                   meta={"temperature": 1.0, "measured_at": "test"})
    families.set_profile(tiny_spec, prof)
    yield prof
    families.set_profile(tiny_spec, None)          # drops the cached plans too
    families._profiles.pop(tiny_spec, None)


def _what_if_args(tiny_spec, rows, factors):
    return (tiny_spec, 6, rows, False, *(list(factors) + [1.0] * (8 - len(factors))))


def test_a_what_if_edit_changes_the_optimum_exactly_as_the_cli_flags_do(demo, tiny_spec, tiny_profile, tmp_path):
    from ui.views import alpha_rows

    rows = alpha_rows(tiny_profile, NAMES)
    rows[0][3] = 0.97                                   # α(tiny-s, tiny-l)
    status, fig, table, pick, plans = endpoint(demo, "what_if")(*_what_if_args(tiny_spec, rows, [1.0, 1.0, 4.0]))
    tiny_profile.save(tmp_path / "p.json")
    cli = cli_json(["optimize", str(tmp_path / "p.json"), "--scale-cost", "tiny-l=4",
                    "--alpha", "tiny-s:tiny-l=0.97", "--max-buffer", "6", "--top", "12", "--json"])
    assert plans[0]["label"] == cli["label"] and [p["label"] for p in plans] == [
        cli["label"]] + [p["label"] for p in cli["runners_up"]]
    assert table[0][3] == round(cli["expected_ms_per_token"], 3)
    assert status.startswith("**What-if (model-predicted, not measured):** cost(tiny-l) ×4; "
                             "α(tiny-s, tiny-l) = 0.97. Optimal:")
    untouched = endpoint(demo, "what_if")(*_what_if_args(tiny_spec, alpha_rows(tiny_profile, NAMES), [1.0] * 3))
    assert untouched[0].startswith("Optimal:") and "What-if" not in untouched[0]


@pytest.mark.parametrize("edit,message", [
    (lambda rows, f: rows[0].__setitem__(2, 1.5), r"The acceptance α\(tiny-s, tiny-m\) must be a number from 0 to 1, got 1.5"),
    (lambda rows, f: rows[1].__setitem__(3, "high"), r"The acceptance α\(tiny-m, tiny-l\) must be a number from 0 to 1, got 'high'"),
    (lambda rows, f: f.__setitem__(1, 0.0), "cost multiplier of tiny-m must be a number from 0.1 to 10"),
    (lambda rows, f: rows.pop(), "acceptance table must have 3 rows"),
])
def test_bad_what_if_edits_get_one_sentence_and_the_next_edit_works(demo, tiny_spec, tiny_profile, edit, message):
    import gradio as gr

    from ui.views import alpha_rows

    rows, factors = alpha_rows(tiny_profile, NAMES), [1.0, 1.0, 1.0]
    edit(rows, factors)
    with pytest.raises(gr.Error, match=message):
        endpoint(demo, "what_if")(*_what_if_args(tiny_spec, rows, factors))
    assert endpoint(demo, "what_if")(*_what_if_args(tiny_spec, alpha_rows(tiny_profile, NAMES), [1.0] * 3))[0].startswith("Optimal")


def test_an_uploaded_profile_round_trips_and_bad_files_get_one_sentence(demo, families, tiny_spec, tiny_profile, tmp_path):
    import gradio as gr

    from hsd.plan.profile import Profile

    other = tiny_profile.what_if({"tiny-l": 3.0})
    other.save(tmp_path / "mine.json")
    out = endpoint(demo, "upload_profile")(tiny_spec, str(tmp_path / "mine.json"), 6, False)
    assert out[0].startswith("Optimal:") and families.profile(tiny_spec, NAMES) == Profile.load(tmp_path / "mine.json")
    path = endpoint(demo, "download_profile")(tiny_spec)
    assert Profile.load(path) == families.profile(tiny_spec, NAMES)
    good = json.loads((tmp_path / "mine.json").read_text())
    bad = {"not-json.json": "{models:", "other-models.json": json.dumps({**good, "models": ["a", "b", "c"],
                                                                        "cost_ms": {k: v for k, v in zip("abc", good["cost_ms"].values())}}),
           "alpha.json": json.dumps({**good, "acceptance": [[1, 1.7, 0.5], [1.7, 1, 0.5], [0.5, 0.5, 1]]}),
           "negative.json": json.dumps({**good, "cost_ms": {**good["cost_ms"], "tiny-s": [-1.0] * 17}})}
    messages = {"not-json.json": "not valid JSON", "other-models.json": "The profile is for models a, b, c",
                "alpha.json": r"acceptance\[0\]\[1\] \(tiny-s under tiny-m\) must be in \[0, 1\]",
                "negative.json": r"cost_ms\['tiny-s'\] must hold positive"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(gr.Error, match=messages[name]):
            endpoint(demo, "upload_profile")(tiny_spec, str(tmp_path / name), 6, False)
        assert families.profile(tiny_spec, NAMES) == Profile.load(tmp_path / "mine.json")   # kept
    back = endpoint(demo, "measured_profile")(tiny_spec, 6, False)
    assert back[0].startswith("Optimal:")


def test_the_regime_map_endpoint_draws_the_optimisers_values_and_refuses_bad_axes(demo, tiny_spec, tiny_profile):
    import gradio as gr

    from hsd.plan.regime import regime_map

    fig = endpoint(demo, "regime_map")(tiny_spec, "draft costs ×", "α to the target", 6, False)
    expect = regime_map(tiny_profile, "draft costs ×", "α to the target", max_buffer=6)
    assert [list(r) for r in fig.data[0].z] == expect.gain
    with pytest.raises(gr.Error, match="two different axes"):
        endpoint(demo, "regime_map")(tiny_spec, "adjacent α", "adjacent α", 6, False)
    assert endpoint(demo, "regime_map")(tiny_spec, "target cost ×", "adjacent α", 6, True).data


def _by_component(demo, name, out):
    """An endpoint's positional outputs keyed by the components' elem_id (where they have one)."""
    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    block = next(f for f in fns if f.api_name == name)
    return {getattr(c, "elem_id", None) or i: v for i, (c, v) in enumerate(zip(block.outputs, out))}


@pytest.mark.parametrize("key,model,factor", [("cheap", "tiny-s", 0.1), ("dear", "tiny-l", 4.0)])
def test_a_cost_scenario_sets_its_what_if_and_answers_with_the_optimisers_numbers(demo, tiny_spec, tiny_profile,
                                                                                  key, model, factor):
    from hsd.plan.optimize import optimal_hierarchy

    out = _by_component(demo, f"scenario_{key}", endpoint(demo, f"scenario_{key}")(tiny_spec, 6, False))
    expect = optimal_hierarchy(tiny_profile.what_if({model: factor}), max_buffer=6, top=1, with_graph=False)
    measured = optimal_hierarchy(tiny_profile, max_buffer=6, top=1, with_graph=False)
    answer = out["opt-scenario"]
    assert f"With {model}'s forward cost ×{factor:g} the optimum" in answer
    assert f"**{expect.label}** ({expect.kind}, {expect.speedup_vs_ar:.2f}×)" in answer
    if expect.label == measured.label:                 # said once, with both speedups
        assert f"stays **{measured.label}**" in answer and f"{measured.speedup_vs_ar:.2f}×" in answer
        assert "from **" not in answer
    else:
        assert f"from **{measured.label}**" in answer
    assert out[f"whatif-cost-{NAMES.index(model)}"]["value"] == factor
    assert out["scenario-answer"].startswith(answer)   # readable where it was asked (the Learn tab)


def test_the_middle_model_scenario_explains_from_the_profile_and_draws_the_regime_map(demo, tiny_spec, tiny_profile):
    out = _by_component(demo, "scenario_middle", endpoint(demo, "scenario_middle")(tiny_spec, 6, False))
    answer = out["opt-scenario"]
    assert f"tiny-m accepts under tiny-l with α = {tiny_profile.alpha(1, 2):.2f}" in answer
    assert f"against {tiny_profile.alpha(0, 2):.2f} for tiny-s" in answer
    from hsd.plan.optimize import optimal_hierarchy

    plan = optimal_hierarchy(tiny_profile, max_buffer=6, top=1, with_graph=False)
    assert ("Yes: the optimum stacks" if len(plan.chain) > 2 else "No: the optimum has no model between") in answer
    assert "When does a stack pay?" in out["opt-regime"].layout.title.text


def test_the_uncapped_scenario_shows_the_exact_toy_enumeration(demo, tiny_spec):
    from hsd.plan.exactness import exactness_lab

    out = endpoint(demo, "scenario_uncapped")(tiny_spec, 6, False)
    answer = next(v for v in out if isinstance(v, str) and v.startswith("**Why is hsd-uncapped wrong?**"))
    lab = exactness_lab("toy", gamma=2)
    assert f"total variation {lab['rules']['hsd-uncapped']['tv']:.4f}" in answer
    bad, target = lab["rules"]["hsd-uncapped"]["probs"], lab["target"]
    worst = max(range(len(target)), key=lambda i: bad[i] - target[i])
    assert f"“{lab['sequences'][worst]}” with probability {bad[worst]:.4f} where the target's is {target[worst]:.4f}" in answer
    assert bad[worst] > target[worst] + 0.05


def test_a_scenario_without_a_profile_says_what_to_do(demo, tiny_spec, families):
    import gradio as gr

    families._profiles.pop(tiny_spec, None)
    with pytest.raises(gr.Error, match="press Optimise with 'measure now' first"):
        endpoint(demo, "scenario_cheap")(tiny_spec, 6, False)



def test_real_shapes_are_timed_with_random_weights_labelled_assumed_and_resolved_with_typed_acceptances(demo):
    import gradio as gr

    from hsd.plan.profile import Profile

    out = _by_component(demo, "measure_shapes", endpoint(demo, "measure_shapes")("smollm2", "close", "fp32", False))
    status = out["shapes-status"]
    assert status.startswith("**costs measured with random weights on this machine; acceptance assumed.**")
    assert "SmolLM2-135M" in status and "Optimal:" in status and "α 0.85 between neighbours" in status
    saved = Profile.load(out["shapes-download"])
    assert saved.models == ["SmolLM2-135M", "SmolLM2-360M", "SmolLM2-1.7B"]
    assert saved.meta["costs"].startswith("measured with random weights") and saved.meta["scale"] == 0.06
    state = out[5]
    rows = [list(r) for r in out["shapes-alpha"]["value"]]
    rows[0][3] = 0.95
    again = _by_component(demo, "shapes_resolve", endpoint(demo, "shapes_resolve")(state, rows, False))
    assert "Acceptance: assumed, not measured: set by the user" in again["shapes-status"]
    assert Profile.from_dict(again[5]).alpha(0, 2) == 0.95 and Profile.from_dict(again[5]).cost_ms == saved.cost_ms
    rows[1][3] = "x"
    with pytest.raises(gr.Error, match=r"The acceptance α\(SmolLM2-360M, SmolLM2-1.7B\) must be a number"):
        endpoint(demo, "shapes_resolve")(state, rows, False)
    with pytest.raises(gr.Error, match="Measure the costs first"):
        endpoint(demo, "shapes_resolve")(None, rows, False)


def test_real_shapes_compare_pytorch_with_llama_cpp_on_the_same_random_weights(demo):
    import gradio as gr

    from hsd.levels.ggml import llamacpp_missing
    from hsd.plan.profile import Profile

    measure = endpoint(demo, "measure_shapes")
    torch_only = _by_component(demo, "measure_shapes", measure("smollm2", "close", "fp32", False, "PyTorch"))
    assert "Both runtimes" not in torch_only["shapes-status"]
    assert Profile.load(torch_only["shapes-download"]).meta["forward"] in ("auto", "lean", "hf")
    with pytest.raises(gr.Error, match="The runtime must be one of PyTorch, llama.cpp, both"):
        measure("smollm2", "close", "fp32", False, "tpu")
    if llamacpp_missing():
        with pytest.raises(gr.Error, match="Llama.cpp is not installed here"):
            measure("smollm2", "close", "fp32", False, "both")
        return
    both = _by_component(demo, "measure_shapes", measure("smollm2", "close", "bf16", False, "both"))
    status = both["shapes-status"]
    assert "One-token forward on llama.cpp, f16 GGUF weights" in status
    assert "Both runtimes, the same random weights, timed in this run (wall clock)" in status
    assert "| SmolLM2-1.7B |" in status and status.count("optimum **") == 2 and "model-predicted" in status
    shown = Profile.load(both["shapes-download"])
    assert shown.meta["forward"] == "llamacpp" and shown.meta["compared"][0]["runtime"].startswith("PyTorch")
    rows = [list(r) for r in both["shapes-alpha"]["value"]]
    rows[0][3] = 0.95                                       # a typed α re-solves both runtimes
    again = _by_component(demo, "shapes_resolve", endpoint(demo, "shapes_resolve")(both[5], rows, False))
    assert "Both runtimes" in again["shapes-status"] and "set by the user" in again["shapes-status"]


# --------------------------------------------------------------------------------------------
# a lecture-ready explorer: honest numbers, controls that answer, the presenter view
# --------------------------------------------------------------------------------------------
def test_the_shipped_families_carry_a_greedy_and_a_sampled_profile_and_predictions_pick_the_decodes():
    fams = registry.Families(settings.Limits())
    for spec in ("bundled", "ngram,bundled"):
        names = fams.names(spec)
        greedy, sampled = fams.profile(spec, names, "greedy"), fams.profile(spec, names, "sampled")
        assert greedy is not None and sampled is not None, spec
        assert greedy.meta["temperature"] == 0.0 and sampled.meta["temperature"] == 1.0
        assert registry.prediction_note(sampled, 1.0) is None and registry.prediction_note(greedy, 0.0) is None
        note = registry.prediction_note(greedy, 1.0)
        assert "measured greedy (T = 0)" in note and "samples T = 1" in note
        assert "top-k 20" in registry.prediction_note(sampled, 1.0, top_k=20)
    # the n-gram drafter is one-hot: its acceptance at T = 1 is far below its greedy acceptance
    names = fams.names("ngram,bundled")
    assert fams.profile("ngram,bundled", names, "sampled").alpha(0, 4) < fams.profile(
        "ngram,bundled", names, "greedy").alpha(0, 4) - 0.1


def test_the_optimise_tab_switches_between_the_pytorch_and_the_llama_cpp_profiles_of_a_family():
    """Each shipped family has profiles measured on both runtimes; the Decoding choice picks one
    (its label names the runtime), and an app running on llama.cpp (HSD_FORWARD=llamacpp) takes
    the llama.cpp profile for a plain 'greedy' / 'sampled'."""
    from ui.tabs.optimise import KINDS, kind_of

    fams = registry.Families(settings.Limits())
    on_ggml = registry.Families(settings.Limits(forward="llamacpp"))
    assert kind_of("greedy (T = 0), llama.cpp") == "greedy-llamacpp" and set(KINDS.values()) == {
        "sampled", "greedy", "sampled-llamacpp", "greedy-llamacpp"}
    for spec in ("bundled", "ngram,bundled"):
        names = fams.names(spec)
        for kind in ("greedy", "sampled"):
            torch_prof, ggml_prof = fams.profile(spec, names, kind), fams.profile(spec, names, kind + "-llamacpp")
            assert torch_prof.meta.get("forward") != "llamacpp" and ggml_prof.meta["forward"] == "llamacpp", (spec, kind)
            assert registry.profile_kind(ggml_prof) == kind + "-llamacpp"
            assert registry.profile_label(ggml_prof).endswith("on llama.cpp")
            assert not registry.profile_label(torch_prof).endswith("on llama.cpp")
            assert on_ggml.profile(spec, names, kind) is not None
            assert on_ggml.profile(spec, names, kind).meta["forward"] == "llamacpp"
            target = names[-1]                                  # llama.cpp's forwards are the cheaper
            assert ggml_prof.cost_ms[target][0] < torch_prof.cost_ms[target][0]
            assert fams.plan(spec, names, 16, kind + "-llamacpp").expected_ms_per_token < fams.plan(
                spec, names, 16, kind).expected_ms_per_token


def test_a_decode_predicted_from_a_profile_of_another_temperature_says_so(demo, families, tiny_spec, tiny_profile):
    import dataclasses

    greedy = dataclasses.replace(tiny_profile, meta={"temperature": 0.0, "measured_at": "2026-12-01T00:00:00Z"})
    families.set_profile(tiny_spec, greedy)
    sampled_stats = run_generate(demo, tiny_spec, temperature=1.0, max_new=8)[-1][1]
    assert "model-predicted vs the target alone (greedy (T = 0) profile measured 2026-12-01)" in sampled_stats
    assert "⚠ **Model-predicted number:** The prediction is for another setting" in sampled_stats
    greedy_stats = run_generate(demo, tiny_spec, temperature=0.0, max_new=8)[-1][1]
    assert "model-predicted" in greedy_stats and "⚠" not in greedy_stats


def test_compare_runs_identical_stacks_once_interleaves_the_repeats_and_reports_medians(demo, tiny_spec,
                                                                                       tiny_profile, monkeypatch):
    from ui.tabs import compare

    order = []
    real = session.run_to_end
    monkeypatch.setattr(session, "run_to_end", lambda req: order.append((req.chain, req.buffers)) or real(req))
    chosen = list(ui_inputs.CONTENDERS)
    outs = list(endpoint(demo, "compare")("def f(x):\n", chosen, tiny_spec, ["tiny-s", "tiny-l"], 3, 3, "hsd", "hsd",
                                          1.0, 1.0, 0, 1, 10, False, 3))
    status, _, table = outs[-1][:3]
    labels = [row[0] for row in table]
    assert sorted(sum((lb.split(" = ") for lb in labels), [])) == sorted(chosen)   # every name, once
    assert len(set(labels)) == len(labels) == len(set(order))                       # each stack once a round
    n = len(labels)
    assert len(order) == 3 * n and order[:n] == order[n:2 * n] == order[2 * n:]    # interleaved rounds
    for row in table:
        lo, hi = (float(x) for x in row[7].split("–"))
        assert lo <= row[4] <= hi and row[8] == 3
    assert status.startswith("**Done:**") and "3 interleaved runs each" in status
    with pytest.raises(Exception, match="Tick at least one hierarchy"):
        list(endpoint(demo, "compare")("def f(x):\n", [], tiny_spec, ["tiny-s"], 3, 3, "hsd", "hsd",
                                       1.0, 1.0, 0, 1, 10, False, 3))
    assert compare.distinct_contenders([], NAMES) == []


def _contender(label, chain, ms, predicted):
    from ui.tabs import compare

    req = ui_inputs.Request(prompt="x", family="f", chain=tuple(chain), buffers=(4,) * (len(chain) - 1),
                              rules=("hsd",) * (len(chain) - 1))
    return compare._Contender([label], req, predicted, label, ms_per_token=list(ms))


def test_the_compare_verdict_says_when_the_spread_hides_the_difference_and_why_a_stack_lost():
    from ui.tabs.compare import verdict

    req = ui_inputs.Request(prompt="x", family="f", chain=(0, 2), buffers=(4,), rules=("hsd",))
    ar = _contender("autoregressive", [2], [9.5, 10.0, 10.5], 10.0)
    busy = _contender("best single draft", [0, 2], [10.4, 12.0, 13.0], 6.0)     # 2x its prediction
    text = verdict([ar, busy], req, None, 3)
    assert "The spread is larger than the difference" in text
    assert "best single draft measured slower than the target alone" in text
    assert "ran 2.0× its prediction while the target alone ran 1.0× its own" in text
    slow_machine = _contender("best single draft", [0, 2], [14.0, 15.0, 16.0], 7.0)
    ar2 = _contender("autoregressive", [2], [12.0, 12.5, 13.0], 6.0)            # the target itself 2x slower
    text = verdict([ar2, slow_machine], req, None, 3)
    assert "The whole machine is slower than when the profile was measured" in text
    apart = verdict([_contender("a", [0, 2], [5.0, 5.1], 5.0), _contender("b", [2], [9.0, 9.2], 9.0)], req, None, 2)
    assert "Fastest: **a**" in apart and "do not overlap" in apart and "slower" not in apart
    assert "One run per hierarchy" in verdict([ar, busy], req, None, 1)


def test_an_alpha_edit_moves_its_pair_and_a_refused_one_is_put_back_with_a_sentence(demo, tiny_spec, tiny_profile):
    from ui.tabs.optimise import reconcile_alpha_table
    from ui.views import alpha_rows

    last = alpha_rows(tiny_profile, NAMES)
    edited = [list(r) for r in last]
    edited[2][1] = 0.5                                   # below the diagonal: α(tiny-s, tiny-l)
    table, refused = reconcile_alpha_table(NAMES, edited, last)
    assert refused is None and table[0][3] == table[2][1] == 0.5
    for bad in (1.5, "abc", -1):
        edited = [list(r) for r in last]
        edited[0][2] = bad
        table, refused = reconcile_alpha_table(NAMES, edited, last)
        assert table == last and f"got {bad!r}; the cell was put back to {last[0][2]}" in refused
    edited = [list(r) for r in last]
    edited[1][2] = 0.3                                   # the diagonal
    assert "cannot be edited" in reconcile_alpha_table(NAMES, edited, last)[1]
    # through the page's callback: the sentence in the status line, the table put back, the next edit works
    page = endpoint(demo, "edit_what_if")
    bad = [list(r) for r in last]
    bad[0][2] = 1.5
    status, fig, ranked, pick, plans, alphas, kept = page(tiny_spec, 6, bad, False, last, 1.0, 1.0, 1.0)
    assert status.startswith("⚠ The acceptance α(tiny-s, tiny-m) must be a number from 0 to 1, got 1.5")
    assert alphas == kept == last
    good = [list(r) for r in last]
    good[0][3] = 0.97
    status, *_, alphas, kept = page(tiny_spec, 6, good, False, kept, 1.0, 1.0, 4.0)
    assert status.startswith("**What-if (model-predicted, not measured):**") and alphas[2][1] == 0.97


def test_stop_says_stopped_and_the_prompt_hint_tells_the_truth():
    from ui.tabs import generate

    assert generate.mark_stopped("**3 tokens**  \n*Status: decoding…*").endswith("*Status: stopped*")
    assert generate.mark_stopped("*Timing the target alone first…*") == "*Status: stopped*"
    assert generate.mark_stopped("**9 tokens**  \n*Status: finished (max new tokens)*").endswith("(max new tokens)*")
    assert "Shift+Enter to generate" in generate.PROMPT_LABEL        # Gradio: Enter types a new line


def test_max_new_tokens_follows_the_context_left_after_the_prompt(demo, families, tiny_spec):
    from ui.tabs import generate

    names = families.names(tiny_spec)
    tok, context = families._context(tiny_spec, "def f(x):\n")
    assert context > 0 and tok == len("def f(x):\n")                 # the tiny family's characters
    long_prompt = "x" * (context - 20)
    assert families.room_for(tiny_spec, long_prompt, 100) == 20
    out = endpoint(demo, "fit_max_new")(tiny_spec, long_prompt, 100)
    assert out[0]["maximum"] == 20 and out[0]["value"] == 20
    assert out[1].startswith("Max new tokens lowered from 100 to 20: this prompt is") and str(context) in out[1]
    out = endpoint(demo, "fit_max_new")(tiny_spec, "def f(x):\n", 50)
    assert out[0]["maximum"] == min(100, context - tok) and out[1] == ""
    # the slider lowered to 20 by a long prompt goes back up to what was asked (96) for a short one,
    # and a value the visitor chose themselves stays
    room = min(100, context - tok)
    out = endpoint(demo, "fit_max_new")(tiny_spec, "def f(x):\n", 20, 96)
    assert out[0]["maximum"] == room and out[0]["value"] == min(96, room) and out[1] == ""
    out = endpoint(demo, "fit_max_new")(tiny_spec, long_prompt, 20, 96)
    assert out[0]["value"] == 20 and out[1].startswith("Max new tokens lowered from 96 to 20")
    out = endpoint(demo, "fit_max_new")(tiny_spec, "def f(x):\n", 12, 12)
    assert "value" not in out[0] and out[1] == ""
    assert generate.keep_wanted(SimpleNamespace(limits=settings.Limits(max_new_tokens=100)), 10**9, 12) == 100
    assert generate.keep_wanted(SimpleNamespace(limits=settings.Limits()), "nan", 12) == 12
    assert names and generate.fit_max_new.__doc__


def test_families_that_cannot_load_here_are_marked_before_they_are_picked(demo):
    import gradio as gr

    fams = registry.Families(settings.Limits())
    labelled = dict((v, lb) for lb, v in fams.labelled_choices())
    assert labelled["bundled"] == "bundled" and labelled["ngram,bundled"] == "ngram,bundled"
    for preset in ("smollm2", "qwen2.5", "pythia"):
        assert "not available here" in labelled[preset]
    with pytest.raises(gr.Error, match="not in the local Hugging Face cache"):
        endpoint(build_demo(settings.Limits(), fams), "on_family")("no-such/family-name")


def test_the_step_through_counts_from_one_on_the_slider_and_keeps_its_timeline_axis(demo, tiny_spec):
    d = run_generate(demo, tiny_spec, max_new=12)[-1][6]
    n = len(visual_text.learn_steps(Trace.from_dict(d)))
    state, slider, md, *_ = endpoint(demo, "learn_load_fn")(learn.LAST_RUN, d, False)
    assert slider["minimum"] == 1 and slider["value"] == 1 and slider["maximum"] == n
    assert md.startswith(f"**Step 1 / {n}**")
    view = endpoint(demo, "learn_view")
    ranges = []
    for step in (1, 2, n):
        md, spans, tl, am, mb, code = view(d, step, False)
        assert md.startswith(f"**Step {step} / {n}**")
        ranges.append(tuple(tl.layout.xaxis.range))
    assert ranges[0] == ranges[1] == ranges[2]
    first = view(d, 1, False)[2]
    title = first.layout.title.text                     # step 1 is a time after the start, not "after 0 ms"
    assert not re.search(r"after 0(\.0+)? ms", title) and "committed after" in title, title
    assert endpoint(demo, "step_forward")(d, n)[0]["value"] == n       # the end: stays, and stops playing
    assert spans["value"] and all(c.split(" (")[0] in {"L0 draft", "L1 replacement", "L1 bonus", "L2 replacement",
                                                          "L2 bonus"} for _, c in spans["value"])
    assert "L3" not in str(spans["color_map"])                           # the legend: this trace's levels only


def test_a_guided_question_answers_where_it_was_asked(demo, tiny_spec, tiny_profile):
    import gradio as gr

    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    block = next(f for f in fns if f.api_name == "scenario_cheap")
    assert not any(isinstance(o, gr.Tabs) for o in block.outputs)          # the page stays on the Learn tab
    out = dict(zip(block.outputs, endpoint(demo, "scenario_cheap")(tiny_spec, 6, False)))
    note = next(v for o, v in out.items() if getattr(o, "elem_id", None) == "scenario-answer")
    assert "What if the smallest draft were ten times cheaper?" in note and "model-predicted" in note
    assert " to **" not in note or "moves from" in note                    # never "stays from X to X"


def test_the_presenter_view_enlarges_the_fonts_of_the_panels_drawn_for_that_session(demo, tiny_spec):
    from ui.context import PRESENTER, PresenterSessions, bind
    from visual import theme

    sessions = PresenterSessions(capacity=2)
    sessions.set("a", True), sessions.set("b", False), sessions.set("c", True)
    assert sessions.get("c") and not sessions.get("b") and not sessions.get("a")   # the oldest forgotten
    from types import SimpleNamespace

    from gradio.context import LocalContext

    d = run_generate(demo, tiny_spec, max_new=8)[-1][6]
    normal = endpoint(demo, "redraw_views")(d, 1, 1, False)[0]
    PRESENTER.set("lecture-hall", True)                  # what the toggle (or ?presenter=1) records
    token = LocalContext.request.set(SimpleNamespace(session_hash="lecture-hall"))   # as Gradio sets it
    try:
        big = endpoint(demo, "redraw_views")(d, 1, 1, False)[0]
    finally:
        LocalContext.request.reset(token)
    assert big.layout.font.size == round(theme.FONT_SIZE * theme.PRESENTER_SCALE) > normal.layout.font.size
    assert big.layout.height > normal.layout.height
    assert not PRESENTER.get(None)                                           # an API client: the normal view
    assert bind(lambda: theme.presenter())() is False


def test_re_timing_the_costs_in_place_keeps_the_acceptances_and_feeds_the_predictions(demo, families, tiny_spec,
                                                                                     tiny_profile):
    out = endpoint(demo, "retime_costs")(tiny_spec, 1.0)
    new = families.profile(tiny_spec, NAMES, "sampled")
    assert new is not tiny_profile and new.acceptance == tiny_profile.acceptance
    assert new.accept_lengths == tiny_profile.accept_lengths and "costs_retimed_at" in new.meta
    assert len(new.cost_ms["tiny-l"]) == len(tiny_profile.cost_ms["tiny-l"])
    assert new.cost_ms != tiny_profile.cost_ms                              # timed now, on these tiny models
    assert out.startswith("**Forward costs re-timed now**") and f"{new.cost_ms['tiny-l'][0]:.2f} ms" in out
    req = ui_inputs.make_request(families, "def f(x):\n", tiny_spec, ["tiny-s"], [3], "hsd", max_new_tokens=8)
    from hsd.plan.latency import expected_ms_per_token_at
    runs, _ = ui_inputs.compare_requests(families, req, NAMES, [ui_inputs.CONTENDERS[0]])
    assert runs[0].predicted_ms_per_token == pytest.approx(expected_ms_per_token_at(new, [2], [], 8))


def test_the_page_still_builds_when_its_family_cannot_load(tmp_path):
    """The max-new-tokens range is fitted to the family's context at build time; a family that
    cannot load then leaves the app's own limit (the first request says what is wrong)."""
    lim = settings.Limits(family=f"{tmp_path}/missing-s,{tmp_path}/missing-l", max_new_tokens=77)
    demo = build_demo(lim, registry.Families(lim))
    slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "max-new")
    assert slider.maximum == 77


def test_faults_keep_their_cause_and_a_skipped_file_says_so_in_the_log(tmp_path, capsys):
    """Every conversion of a fault to the page's one sentence chains the fault (``from exc``: the
    server log keeps its traceback), and an example trace that cannot be read is skipped with
    one log line, not in silence."""
    import re as _re

    ui_dir = Path(__file__).resolve().parents[1] / "ui"
    for path in ui_dir.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not _re.search(r"as_gr_error\([^)]*\)\s+from\s+None", text), path
    (tmp_path / "good.json").write_text(json.dumps({"meta": {"label": "good", "request": {"chain": [0, 1]}}}))
    (tmp_path / "broken.json").write_text("{not json")
    assert list(registry.example_traces(tmp_path)) == ["good"]
    err = capsys.readouterr().err
    assert err.count("[hsd-explorer] example trace broken.json skipped:") == 1
    logged = []
    session.log_skipped("filling the what-if controls", KeyError("tiny-q"), log=logged.append)
    assert logged == ["[hsd-explorer] filling the what-if controls skipped (KeyError: 'tiny-q')"]
