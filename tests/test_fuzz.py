"""Fuzzing (issue 25): random payloads against every public endpoint of the app, the Learn tab's
step-through handlers, and the command line.  The property everywhere: every call ends in a
result or ONE sentence for a person, nothing crashes, and the next well-formed request works.

The app runs in this process on three tiny real Llamas (``tests.test_app.save_tiny_family``);
the payloads are a seeded sample of ``hsd stress --fuzz`` (``tools.stress.fuzz``), the same code the long
command runs against a real app.  The hypothesis tests are seeded (derandomized) so CI is
reproducible; ``HSD_FUZZ_EXAMPLES=N`` runs N random examples of each instead (a hunt, not a gate)."""
from __future__ import annotations

import io
import os
import shlex
from contextlib import redirect_stderr, redirect_stdout

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import gradio as gr  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from tools.stress import fuzz  # noqa: E402
from tools.stress.checks import one_sentence  # noqa: E402
from tools.stress.client import Outcome  # noqa: E402
from ui import registry, settings as ui_settings  # noqa: E402
from ui.demo import build_demo  # noqa: E402
from tests.test_app import endpoint, free_port, save_tiny_family  # noqa: E402

SAMPLE = 120            # payloads in the suite's sample (hsd stress --fuzz 2000 is the long run)
PUBLIC = {"/generate", "/compare", "/optimize", "/what_if", "/regime_map", "/upload_profile", "/measure_shapes"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    spec = save_tiny_family(tmp_path_factory.mktemp("fuzz-family"))
    lim = ui_settings.Limits(family=spec, max_new_tokens=24, max_buffer=6, max_levels=3, max_prompt_chars=500,
                             concurrency=2, queue_size=16, shapes_scale=0.02)
    families = registry.Families(lim)
    demo = build_demo(lim, families)
    demo.queue(max_size=16, default_concurrency_limit=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield demo, url, families
    finally:
        demo.close()


def test_a_seeded_sample_of_random_payloads_gets_results_or_one_sentence_and_the_app_keeps_serving(app):
    _, url, _ = app
    report = fuzz.fuzz(url, SAMPLE, seed=0, workers=2, timeout_s=120, check_every=40, log=lambda m: None)
    assert report.payloads == SAMPLE
    assert PUBLIC <= set(report.by_endpoint), sorted(report.by_endpoint)          # every endpoint was tried
    assert report.crashes == [] and report.unanswered == [], (report.crashes + report.unanswered)[:3]
    assert report.well_formed_failed == [] and report.server_alive
    assert report.by_verdict.get("sentence", 0) > 0 and report.by_verdict.get("result", 0) > 0
    assert report.held


def test_the_judge_calls_a_traceback_a_generic_message_or_a_server_error_a_crash():
    ok = Outcome("ok", final=[1])
    assert fuzz.judge("/x", ok).verdict == "result"
    assert fuzz.judge("/x", Outcome("error", "The prompt is empty: type some text.")).verdict == "sentence"
    assert fuzz.judge("/x", Outcome("error", "HTTP 422: missing data")).verdict == "refused at the door"
    for bad in (Outcome("error", "Traceback (most recent call last):\n  File ..."),
                Outcome("error", "Something went wrong inside the app (KeyError: 'x')."),
                Outcome("failed", "HTTP 500: internal"),
                Outcome("error", "First sentence. Second sentence.")):
        assert fuzz.judge("/x", bad).verdict == "crash", bad
    assert fuzz.judge("/x", Outcome("failed", "TimeoutError: timed out")).verdict == "unanswered"


def test_fuzz_payloads_are_reproducible_from_their_seed_and_take_the_endpoints_in_turn():
    params = {"/a": [fuzz.Param("x", "number", low=0, high=1, default=0.5)],
              "/b": [fuzz.Param("s", "string", default="hi")]}
    one, two = fuzz.draw(params, 10, seed=3), fuzz.draw(params, 10, seed=3)
    assert repr(one) == repr(two) and len(one) == 10
    assert [name for name, _ in one] == ["/a", "/b"] * 5


# -- the step-through (private handlers: not on the API, so driven directly) ---------------------
junk = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True),
                 st.text(max_size=30), st.lists(st.integers(), max_size=4),
                 st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.text(max_size=4)),
                                 max_size=4),
                 st.just({"format": "hsd-trace/1", "events": "x", "meta": None}))


def _answered(call) -> None:
    """``call()`` returns, or raises a gr.Error whose message is one sentence."""
    try:
        out = call()
        if hasattr(out, "__next__"):
            list(out)
    except gr.Error as e:
        assert one_sentence(str(e.message)), e.message


@settings(max_examples=int(os.environ.get("HSD_FUZZ_EXAMPLES", 60)), deadline=None, derandomize=not os.environ.get("HSD_FUZZ_EXAMPLES"),
          suppress_health_check=list(HealthCheck), database=None)
@given(state=junk, step=junk, dark=junk)
def test_random_step_through_inputs_get_a_view_or_one_sentence(app, state, step, dark):
    demo, _, _ = app
    _answered(lambda: endpoint(demo, "learn_view")(state, step, dark))
    _answered(lambda: endpoint(demo, "step_forward")(state, step))
    _answered(lambda: endpoint(demo, "step_back")(state, step))


# -- the command line ----------------------------------------------------------------------------
WORDS = ["generate", "profile", "optimize", "validate", "bench", "shapes", "export-gguf", "--prompt", "--chain",
         "--buffers", "--rule", "--temperature", "--top-k", "--top-p", "--threads", "--max-new-tokens", "--out",
         "--json", "--trace", "--profile", "--family", "--repeats", "--forward", "--seed", "--help", "0,5", "-1",
         "nan", "inf", "1e309", "hsd", "é", "\x00", "", " ", "/nonexistent/x.json", "4", "0"]


@settings(max_examples=int(os.environ.get("HSD_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=not os.environ.get("HSD_FUZZ_EXAMPLES"),
          suppress_health_check=list(HealthCheck), database=None)
@given(argv=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=7))
def test_random_command_lines_end_in_exit_code_0_or_2_with_at_most_one_error_line(argv, monkeypatch_module):
    from hsd.tools import cli

    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = cli.main(list(argv))
    except SystemExit as e:                              # --help, and argparse's own exits
        code = e.code
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert code in (0, 2), (shlex.join(argv), code, err.getvalue()[-500:])
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), (shlex.join(argv), err.getvalue())


@pytest.fixture(scope="module")
def monkeypatch_module():
    """Commands that get past every check do not run here (a decode or a profile is not the
    point): they answer 0 at dispatch.  Everything before dispatch -- parsing, the checks, the
    path and chain checks -- is the real code."""
    from hsd.tools import cli

    mp = pytest.MonkeyPatch()
    mp.setattr(cli, "COMMANDS", {name: "tests.test_fuzz:_dispatched" for name in cli.COMMANDS})
    yield mp
    mp.undo()


def _dispatched(args) -> int:
    return 0


# -- the request parser every decoding endpoint shares -------------------------------------------
@settings(max_examples=int(os.environ.get("HSD_FUZZ_EXAMPLES", 400)), deadline=None,
          derandomize=not os.environ.get("HSD_FUZZ_EXAMPLES"), suppress_health_check=list(HealthCheck),
          database=None)
@given(values=st.lists(st.one_of(junk, st.just(["tiny-s"]), st.just("hsd"), st.just(4)), min_size=10, max_size=10))
def test_random_widget_values_make_a_request_or_one_sentence(app, values):
    """/generate and /compare parse their values with ``make_request``: anything at all in any
    field gives a Request or an HSDError whose message is one sentence (2,000 payloads of
    `hsd stress --fuzz` found a stack sent as one number crashing it)."""
    from hsd.errors import HSDError
    from ui.inputs import make_request
    from ui.session import tidy_message

    _, _, families = app
    try:
        make_request(families, *values)
    except HSDError as e:
        assert one_sentence(tidy_message(str(e))), str(e)
