"""``hsd stress --fuzz N``: N random payloads against every public endpoint of a running app.

The endpoints and their parameters come from the app's own API description
(``/gradio_api/info``); ``hypothesis`` draws each payload: for every parameter either a value of
its declared kind (a choice of a dropdown, a number in a slider's range, text with any unicode)
or junk (None, booleans, huge and negative numbers, NaN and ±inf, 100k-character text, lists,
objects), then, sometimes, fields missing, extra fields, or a body of the wrong shape.  The
payloads go through the plain REST API (``POST /gradio_api/call/<name>`` and its event stream),
which carries what a browser never sends (NaN, lone surrogates), from a few threads at once.

The property: every call ends in a result or ONE sentence for a person (``one_sentence``);
a malformed body may be refused at the door (HTTP 4xx, before any app code runs); the server keeps
serving; and a well-formed ``/generate`` request succeeds after every ``check_every`` payloads and
at the end.  Anything else is a crash (a generic crash message, a traceback, several sentences, an
HTTP 5xx, the server gone) or unanswered (no answer within the timeout).
"""
from __future__ import annotations

import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from tools.stress.checks import one_sentence
from tools.stress.client import NO_MESSAGE, Outcome, rest_call
from tools.stress.report import ModeReport
from tools.stress.server import answers, check_loopback, no_proxy_open

FORMAT = "hsd-fuzz/1"
CHECK_EVERY = 100
HUGE_TEXT = 100_000
# endpoints that measure on the machine for seconds to minutes when every value is valid (a
# profile 'measured now' takes ten minutes on the bundled family): their payloads always carry one
# value no widget could send (a list or an object) in a parameter that is not a checkbox, so a
# fuzz run stays a fuzz run, not a benchmark
HEAVY = {"/measure_shapes", "/retime_costs", "/measured_profile", "/optimize"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                   # string | number | boolean | choice | choices | table | file | any
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    default: object = None


def _param(p: dict) -> Param:
    schema = p.get("type") or {}
    default = p.get("parameter_default")
    if "enum" in schema:
        return Param(p["parameter_name"], "choice", tuple(schema["enum"]), default=default)
    kind = schema.get("type")
    if kind == "array" and "enum" in (schema.get("items") or {}):
        return Param(p["parameter_name"], "choices", tuple(schema["items"]["enum"]), default=default)
    if kind == "number":
        m = re.search(r"between (-?[\d.]+) and (-?[\d.]+)", schema.get("description", ""))
        low, high = (float(m.group(1)), float(m.group(2))) if m else (None, None)
        return Param(p["parameter_name"], "number", low=low, high=high, default=default)
    if kind in ("string", "boolean"):
        return Param(p["parameter_name"], kind, default=default)
    if "headers" in (schema.get("properties") or {}):
        return Param(p["parameter_name"], "table", default=default)
    if p.get("python_type", {}).get("type") == "filepath":
        return Param(p["parameter_name"], "file", default=default)
    return Param(p["parameter_name"], "any", default=default)


def endpoints(url: str) -> dict[str, list[Param]]:
    """Every named endpoint of the app and its parameters, from ``/gradio_api/info``."""
    with no_proxy_open(check_loopback(url) + "gradio_api/info", 30) as r:
        info = json.loads(r.read().decode("utf-8"))
    return {name: [_param(p) for p in ep["parameters"]] for name, ep in sorted(info["named_endpoints"].items())}


# -- payloads (hypothesis strategies) ---------------------------------------------------------
def _strategies():
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
    junk = st.one_of(scalars, st.just(float("nan")), st.sampled_from([float("inf"), -float("inf"), -1, 0, 10**12]),
                     st.text(max_size=3).map(lambda s: (s or "x") * (HUGE_TEXT // max(1, len(s or "x")))),
                     st.lists(scalars, max_size=6), st.dictionaries(st.text(max_size=8), scalars, max_size=4))
    return st, junk


def _valid(st, p: Param):
    if p.kind == "choice":
        return st.sampled_from(p.choices)
    if p.kind == "choices":
        return st.lists(st.sampled_from(p.choices), max_size=len(p.choices) + 1)
    if p.kind == "number":
        low = -1e6 if p.low is None else p.low
        high = 1e6 if p.high is None else p.high
        return st.one_of(st.integers(int(math.ceil(low)), int(math.floor(high))),
                         st.floats(low, high, allow_nan=False))
    if p.kind == "boolean":
        return st.booleans()
    if p.kind == "table":
        cell = st.one_of(st.floats(-2, 2), st.text(max_size=6), st.none())
        return st.fixed_dictionaries({"headers": st.lists(st.text(max_size=6), max_size=5),
                                      "data": st.lists(st.lists(cell, max_size=5), max_size=5),
                                      "metadata": st.none()})
    if p.kind == "file":
        return st.one_of(st.fixed_dictionaries({"path": st.sampled_from(["/etc/passwd", "../../app.py", "x.json", ""]),
                                                "meta": st.just({"_type": "gradio.FileData"})}),
                         st.sampled_from(["/etc/passwd", "/dev/zero", "profile.json"]))
    return st.text()


def bodies(params: dict[str, list[Param]], name: str):
    """A strategy of request bodies for one endpoint."""
    st, junk = _strategies()
    return _body(st, junk, params, name)


def payloads(params: dict[str, list[Param]]):
    """A strategy of (endpoint, request body) pairs."""
    st, junk = _strategies()
    return st.sampled_from(sorted(params)).flatmap(lambda name: _body(st, junk, params, name).map(lambda b: (name, b)))


def _body(st, junk, params: dict[str, list[Param]], name: str):
    """One endpoint's bodies: each value valid, the default or junk; then, sometimes, fields
    missing, extra fields, or a body of the wrong shape."""
    ps = params[name]
    values = st.tuples(*[st.one_of(st.just(p.default), _valid(st, p), junk) for p in ps]) if ps else st.just(())
    checked = [i for i, p in enumerate(ps) if p.kind != "boolean"]
    if name in HEAVY and checked:
        never_valid = st.one_of(st.lists(st.integers(), min_size=1, max_size=3),
                                st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), min_size=1, max_size=3))
        values = st.tuples(values, st.sampled_from(checked), never_valid).map(
            lambda t: t[0][:t[1]] + (t[2],) + t[0][t[1] + 1:])
    shape = st.sampled_from(["as is"] * 6 + ["missing fields", "extra fields", "wrong body"])
    return st.tuples(values, shape, st.integers(0, len(ps)), st.lists(junk, min_size=1, max_size=3), junk).map(
        lambda t: _shaped(list(t[0]), *t[1:]))


def _shaped(data: list, shape: str, cut: int, extra: list, junk) -> object:
    if shape == "missing fields":
        return {"data": data[:cut]}
    if shape == "extra fields":
        return {"data": data + extra}
    if shape == "wrong body":
        return junk if not isinstance(junk, list) else {"data": {"values": junk}}
    return {"data": data}


def draw(params: dict[str, list[Param]], n: int, seed: int = 0) -> list[tuple[str, object]]:
    """n payloads, reproducible from ``seed``, the endpoints taken in turn (so every endpoint gets
    n / endpoints of them); hypothesis' generation phase only: nothing is shrunk or replayed, and
    no example database is written."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    names = sorted(params)
    per = -(-n // max(1, len(names)))
    drawn: dict[str, list] = {}
    for k, name in enumerate(names):
        out: list = []

        @with_seed(seed * 1000 + k)
        @settings(max_examples=per, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(bodies(params, name))
        def collect(body):
            out.append(body)

        collect()
        drawn[name] = out
    mixed = [(name, drawn[name][i]) for i in range(per) for name in names if i < len(drawn[name])]
    return mixed[:n]


# -- sending and judging -----------------------------------------------------------------------
@dataclass
class Answer:
    endpoint: str
    verdict: str                # result | sentence | refused at the door | crash | unanswered
    seconds: float
    message: str = ""


def _encode(body) -> bytes:
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode("ascii")


def judge(endpoint: str, out: Outcome) -> Answer:
    msg = out.message or ""
    if out.kind == "ok":
        verdict = "result"
    elif out.kind == "error" and msg.startswith("HTTP 4"):
        verdict = "refused at the door"
    elif out.kind in ("error", "refused") and one_sentence(msg) and msg != NO_MESSAGE:
        verdict = "sentence"
    elif out.kind == "failed" and ("timed out" in msg.lower() or "timeout" in msg.lower()):
        verdict = "unanswered"
    else:
        verdict = "crash"
    return Answer(endpoint, verdict, round(out.seconds, 3), msg[:200])


def send(url: str, endpoint: str, body, timeout_s: float) -> Answer:
    return judge(endpoint, rest_call(url, raw_body=_encode(body), timeout_s=timeout_s, endpoint=endpoint))


def request_body(params: list[Param], **values) -> dict:
    """A well-formed body: every parameter's default, the named ones replaced by ``values``; a
    number is kept within the range the app declares for it (its limit of max new tokens)."""
    data = []
    for p in params:
        value = values.get(p.name, p.default)
        if p.name in values and p.kind == "number" and p.high is not None and isinstance(value, (int, float)):
            value = min(value, type(value)(p.high))
        data.append(value)
    return {"data": data}


def well_formed(url: str, params: dict[str, list[Param]], timeout_s: float) -> Answer:
    """The app's own defaults for /generate, with a short decode."""
    return send(url, "/generate", request_body(params["/generate"], max_new_tokens=4), timeout_s)


@dataclass
class FuzzReport(ModeReport):
    format: str = FORMAT
    seed: int = 0
    payloads: int = 0
    by_verdict: dict = field(default_factory=dict)
    by_endpoint: dict = field(default_factory=dict)
    unanswered: list = field(default_factory=list)
    well_formed_failed: list = field(default_factory=list)
    slowest: dict = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return (not self.crashes and not self.unanswered and not self.well_formed_failed and self.server_alive
                and self.payloads > 0)


def fuzz(url: str, n: int, *, seed: int = 0, workers: int = 4, timeout_s: float = 120.0,
         check_every: int = CHECK_EVERY, alive=lambda: True, log=print) -> FuzzReport:
    """1) read the endpoints, 2) draw n payloads, 3) send them ``workers`` at a time, a
    well-formed request after every ``check_every``, 4) a last well-formed request; the report."""
    t0 = time.monotonic()
    params = endpoints(url)                                                          # 1)
    drawn = draw(params, n, seed)                                                    # 2)
    report = FuzzReport(url=url, seed=seed, payloads=len(drawn))
    replies: list[Answer] = []
    log(f"fuzz: {len(drawn)} payloads over {len(params)} endpoints, {workers} at a time ...")
    with ThreadPoolExecutor(workers) as pool:                                        # 3)
        for start in range(0, len(drawn), check_every):
            chunk = drawn[start:start + check_every]
            replies += pool.map(lambda p: send(url, p[0], p[1], timeout_s), chunk)
            check = well_formed(url, params, timeout_s)
            if check.verdict != "result":
                report.well_formed_failed.append(asdict(check) | {"after": start + len(chunk)})
            log(f"  {start + len(chunk)}/{len(drawn)}: well-formed request {check.verdict} in {check.seconds:.1f} s")
            if not alive():
                break
    last = well_formed(url, params, timeout_s)                                       # 4)
    if last.verdict != "result":
        report.well_formed_failed.append(asdict(last) | {"after": "the end"})
    for a in replies:
        report.by_verdict[a.verdict] = report.by_verdict.get(a.verdict, 0) + 1
        per = report.by_endpoint.setdefault(a.endpoint, {})
        per[a.verdict] = per.get(a.verdict, 0) + 1
    report.crashes = [asdict(a) for a in replies if a.verdict == "crash"]
    report.unanswered = [asdict(a) for a in replies if a.verdict == "unanswered"]
    if replies:
        worst = max(replies, key=lambda a: a.seconds)
        report.slowest = asdict(worst)
    report.server_alive = bool(alive()) and answers(url)
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def print_fuzz_report(report: FuzzReport, out=None) -> None:
    import sys

    out = out or sys.stdout
    print(f"\n{'endpoint':<20} " + " ".join(f"{v:>10}" for v in ("result", "sentence", "door", "crash", "unanswered")),
          file=out)
    for name, per in sorted(report.by_endpoint.items()):
        print(f"{name:<20} " + " ".join(f"{per.get(v, 0):>10}" for v in
                                        ("result", "sentence", "refused at the door", "crash", "unanswered")), file=out)
    slow = report.slowest
    print(f"\n{report.payloads} payloads (seed {report.seed}): {len(report.crashes)} crashes, "
          f"{len(report.unanswered)} unanswered, {len(report.well_formed_failed)} well-formed requests failed; "
          f"slowest answer {slow.get('seconds', 0):.1f} s ({slow.get('endpoint', '-')}); "
          f"{report.seconds:.0f} s in all", file=out)
    for c in report.crashes[:10]:
        print(f"  crash: {c['endpoint']}: {c['message'][:160]}", file=out)
    print("EVERYTHING HELD" if report.held else "FAILURES", file=out)
