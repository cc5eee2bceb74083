"""``hsd stress --soak MINUTES``: a long, bounded mix of real traffic against a running app, with
the server's resources and latency watched minute by minute.

Traffic (loopback only, from ``--soak-workers`` threads, each waiting 0.1-0.5 s between
requests, until the time is up): short generations (``/generate``), what-if edits
(``/what_if``, one of its numbers changed each time), comparisons (``/compare``) and cancelled
generations (a long ``/generate`` whose client closes the stream after its first tokens: what a
closed tab or the Stop button does to the server).  Requests go through the app's plain REST API
and every body is built from the app's own API description, so nothing here knows the app's code.

Figures: every ``SAMPLE_S`` seconds the server's resident memory (VmRSS), open file descriptors
(``/proc/PID/fd``) and threads; every request's latency and how it ended.  Per minute: medians
of the samples, p50 / p95 latency per kind of request, errors.

The verdict (after ``warmup`` minutes, which are reported but not judged):
- memory and descriptors: the median of the LAST minute within ``DRIFT`` (5 %) of the median of
  the first minute after warm-up (plus ``MEMORY_SLACK_MB`` of allocator noise for memory);
- latency: for each kind with at least ``MIN_LATENCIES`` answers in both, p95 of the last
  window (the last fifth of the judged time, at least a minute) at most ``P95_GROWTH`` (20 %)
  above p95 of the first window;
- every request answered (cancelled ones by design), none crashed, the server alive at the end.
"""
from __future__ import annotations

import json
import random
import statistics
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field

from hsd.errors import ConfigError
from tools.stress import fuzz
from tools.stress.cases import NORMAL_PROMPTS
from tools.stress.client import rest_call
from tools.stress.report import ModeReport, fmt
from tools.stress.server import answers, check_loopback, no_proxy_open, open_fds, rss_mb, thread_count

FORMAT = "hsd-soak/1"
SAMPLE_S = 5.0
DRIFT = 0.05
P95_GROWTH = 0.20
MEMORY_SLACK_MB = 5.0
MIN_LATENCIES = 8
MIX = (("generate", 5), ("what_if", 3), ("compare", 1), ("cancel", 1))
GENERATE_TOKENS = 16
CANCEL_TOKENS = 400


@dataclass
class Sample:
    t_s: float
    rss_mb: float | None
    fds: int | None
    threads: int | None


@dataclass
class Answered:
    t_s: float                  # when it ended, from the start of the soak
    kind: str
    seconds: float
    verdict: str                # result | sentence | cancelled | crash | unanswered


# -- the requests -------------------------------------------------------------------------------
def current_alphas(url: str, params) -> dict | None:
    """The what-if acceptance table the page shows for the app's family (``/measured_profile``'s
    answer), so that a what-if body edits the family's own profile; None when it has none yet."""
    ps = params.get("/measured_profile")
    if not ps:
        return None
    out = rest_call(url, raw_body=fuzz._encode({"data": [p.default for p in ps]}), timeout_s=120,
                           endpoint="/measured_profile")
    tables = [x.get("value", x) for x in (out.final or []) if isinstance(x, dict)]
    return next((t for t in tables if isinstance(t, dict) and "drafter" in str((t.get("headers") or [""])[0])), None)


class Traffic:
    """Well-formed request bodies built from the app's API description (``fuzz.endpoints``)."""

    def __init__(self, params: dict[str, list[fuzz.Param]], alphas: dict | None = None):
        missing = [e for e in ("/generate", "/what_if", "/compare") if e not in params]
        if missing:
            raise ConfigError(f"the app has no {', '.join(missing)} endpoint to soak")
        self.params, self.alphas = params, alphas

    def generate(self, rng: random.Random, tokens: int) -> dict:
        return fuzz.request_body(self.params["/generate"], prompt=rng.choice(NORMAL_PROMPTS),
                                 max_new_tokens=tokens, seed=rng.randrange(1000))

    def what_if(self, rng: random.Random) -> dict:
        """The defaults with one bounded number moved within its range (a what-if edit)."""
        ps = self.params["/what_if"]
        edit = {} if self.alphas is None else {"alphas": self.alphas}
        costs = [p for p in ps if p.name.startswith("cost_") and p.low is not None and p.high is not None]
        if costs:                                        # a cost multiplier moved, as a user drags one
            p = rng.choice(costs)
            edit[p.name] = round(rng.uniform(p.low, p.high), 1)
        return fuzz.request_body(ps, **edit)

    def compare(self, rng: random.Random) -> dict:
        return fuzz.request_body(self.params["/compare"], max_new_tokens=8, prompt=rng.choice(NORMAL_PROMPTS),
                                 repeats=1)


def cancelled_generate(url: str, body: dict, timeout_s: float) -> tuple[str, float]:
    """Open a long /generate's event stream, read until tokens stream (its third data event),
    then close the connection (a client gone mid-stream).  ('cancelled' | 'finished' (it ended
    first, at its end-of-text token) | 'crash' | 'unanswered', seconds)."""
    base = check_loopback(url) + "gradio_api/call/generate"
    t0 = time.monotonic()
    req = urllib.request.Request(base, data=fuzz._encode(body), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with no_proxy_open(req, 60) as r:
            event_id = json.loads(r.read().decode("utf-8"))["event_id"]
        with no_proxy_open(f"{base}/{event_id}", timeout_s) as r:
            seen = 0
            for raw in r:
                seen += raw.startswith(b"data:")
                if seen >= 3:                   # past the first page updates: tokens are streaming
                    return "cancelled", time.monotonic() - t0          # closing `r` drops the client
                if raw.startswith(b"event: complete"):
                    return "finished", time.monotonic() - t0
                if raw.startswith(b"event: error"):
                    return "crash", time.monotonic() - t0
        return "crash", time.monotonic() - t0
    except Exception as e:                                              # noqa: BLE001 - judged, not raised
        verdict = "unanswered" if "timed out" in str(e).lower() else "crash"
        return verdict, time.monotonic() - t0


# -- the report ---------------------------------------------------------------------------------
@dataclass
class SoakReport(ModeReport):
    format: str = FORMAT
    minutes: float = 0.0
    warmup_minutes: float = 0.0
    workers: int = 0
    requests: dict = field(default_factory=dict)        # kind -> {verdict: count}
    per_minute: list = field(default_factory=list)
    drift: dict = field(default_factory=dict)           # rss_mb / fds / threads: first, last, change
    p95: dict = field(default_factory=dict)             # kind -> first window, last window, growth
    failures: list = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.failures


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _p(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def per_minute(samples: list[Sample], answered: list[Answered], minutes: int, minute_s: float = 60.0) -> list[dict]:
    rows = []
    for m in range(minutes):
        ss = [s for s in samples if m * minute_s <= s.t_s < (m + 1) * minute_s]
        aa = [a for a in answered if m * minute_s <= a.t_s < (m + 1) * minute_s]
        row = {"minute": m + 1, "rss_mb": _median([s.rss_mb for s in ss]), "fds": _median([s.fds for s in ss]),
               "threads": _median([s.threads for s in ss]), "requests": len(aa),
               "errors": sum(a.verdict in ("crash", "unanswered") for a in aa)}
        for kind, _ in MIX:
            lat = [a.seconds for a in aa if a.kind == kind and a.verdict in ("result", "cancelled", "finished")]
            row[f"{kind}_p50_s"], row[f"{kind}_p95_s"] = _p(lat, 0.5), _p(lat, 0.95)
        rows.append(row)
    return rows


def judge(report: SoakReport, samples: list[Sample], answered: list[Answered], total_s: float,
          warmup_s: float, minute_s: float = 60.0) -> None:
    """Fill ``report.drift``, ``report.p95`` and ``report.failures`` (module docstring)."""
    first = [s for s in samples if warmup_s <= s.t_s < warmup_s + minute_s]
    last = [s for s in samples if s.t_s >= total_s - minute_s]
    for key, slack in (("rss_mb", MEMORY_SLACK_MB), ("fds", 0.0), ("threads", None)):
        a, b = _median([getattr(s, key) for s in first]), _median([getattr(s, key) for s in last])
        change = None if a in (None, 0) or b is None else (b - a) / a
        report.drift[key] = {"first_minute": a, "last_minute": b, "change": change}
        if slack is None:
            continue                                     # threads: reported (a pool may grow and stay)
        if change is None:
            report.failures.append(f"{key}: not measured (no server pid)")
        elif b > a * (1 + DRIFT) + slack:
            report.failures.append(f"{key} drifted {100 * change:+.1f} % after warm-up ({a:.0f} -> {b:.0f})")
    window = max(minute_s, (total_s - warmup_s) / 5)
    for kind, _ in MIX:
        ok = [a for a in answered if a.kind == kind and a.verdict in ("result", "cancelled", "finished")]
        early = [a.seconds for a in ok if warmup_s <= a.t_s < warmup_s + window]
        late = [a.seconds for a in ok if a.t_s >= total_s - window]
        if len(early) < MIN_LATENCIES or len(late) < MIN_LATENCIES:
            report.p95[kind] = {"first_window_s": _p(early, 0.95), "last_window_s": _p(late, 0.95),
                                "growth": None, "judged": False}
            continue
        a, b = _p(early, 0.95), _p(late, 0.95)
        report.p95[kind] = {"first_window_s": a, "last_window_s": b, "growth": b / a - 1, "judged": True}
        if b > a * (1 + P95_GROWTH):
            report.failures.append(f"{kind} p95 grew {100 * (b / a - 1):+.0f} % ({a:.2f} s -> {b:.2f} s)")
    bad = [a for a in answered if a.verdict in ("crash", "unanswered")]
    if bad:
        report.failures.append(f"{len(bad)} requests crashed or went unanswered")
    if not report.server_alive:
        report.failures.append("the server stopped answering")


def soak(url: str, pid: int | None, minutes: float, *, warmup_minutes: float | None = None, workers: int = 3,
         seed: int = 0, timeout_s: float = 120.0, alive=lambda: True, log=print, minute_s: float = 60.0,
         sample_s: float = SAMPLE_S) -> SoakReport:
    """1) bodies from the app's API, 2) a sampler thread, 3) ``workers`` threads of mixed traffic
    until the time is up, 4) the per-minute table and the verdict.  ``minute_s`` and
    ``sample_s`` shrink the clock for a test (a 'minute' of a few seconds)."""
    url = check_loopback(url)
    total_s = minute_s * minutes
    warmup_s = minute_s * (warmup_minutes if warmup_minutes is not None else min(5.0, max(1.0, minutes / 6)))
    if warmup_s + 2 * minute_s > total_s:
        raise ConfigError(f"a soak needs at least two judged minutes after its {warmup_s / minute_s:.0f}-minute "
                                 f"warm-up; ask for --soak {int(warmup_s / minute_s) + 2} or more")
    params = fuzz.endpoints(url)                                                   # 1)
    traffic = Traffic(params, current_alphas(url, params))
    report = SoakReport(url=url, minutes=minutes, warmup_minutes=warmup_s / minute_s, workers=workers)
    samples: list[Sample] = []
    answered: list[Answered] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    done = threading.Event()

    def sampler():                                                                  # 2)
        while not done.is_set():
            samples.append(Sample(round(time.monotonic() - t0, 2), rss_mb(pid), open_fds(pid),
                                  thread_count(pid)))
            done.wait(sample_s)

    def worker(k: int):                                                             # 3)
        rng = random.Random(seed * 1000 + k)
        kinds, weights = zip(*MIX)
        while time.monotonic() - t0 < total_s and not done.is_set():
            kind = rng.choices(kinds, weights)[0]
            if kind == "cancel":
                verdict, secs = cancelled_generate(url, traffic.generate(rng, CANCEL_TOKENS), timeout_s)
            else:
                body = traffic.generate(rng, GENERATE_TOKENS) if kind == "generate" else getattr(traffic, kind)(rng)
                a = fuzz.send(url, "/" + kind, body, timeout_s)
                verdict, secs = a.verdict, a.seconds
                if verdict not in ("result", "sentence"):
                    with lock:
                        report.crashes.append({"kind": kind, "verdict": verdict, "t_s": round(time.monotonic() - t0)})
            with lock:
                answered.append(Answered(round(time.monotonic() - t0, 2), kind, round(secs, 3), verdict))
            time.sleep(rng.uniform(0.1, 0.5))

    log(f"soak: {minutes:g} minutes ({warmup_s / minute_s:.0f} of warm-up), {workers} clients ...")
    threads = [threading.Thread(target=sampler, daemon=True)] + [
        threading.Thread(target=worker, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    next_log = minute_s
    while any(t.is_alive() for t in threads[1:]):
        time.sleep(1.0)
        if time.monotonic() - t0 >= next_log:
            with lock:
                n, bad = len(answered), sum(a.verdict in ("crash", "unanswered") for a in answered)
            s = samples[-1] if samples else Sample(0, None, None, None)
            log(f"  minute {int(round(next_log / minute_s))}: {n} requests, {bad} failed; RSS {fmt(s.rss_mb, '.0f', ' MB')}, "
                f"{s.fds} fds, {s.threads} threads")
            next_log += minute_s
        if not alive():
            break
    done.set()
    report.server_alive = bool(alive()) and answers(url)                    # 4)
    report.seconds = round(time.monotonic() - t0, 1)
    for a in answered:
        per = report.requests.setdefault(a.kind, {})
        per[a.verdict] = per.get(a.verdict, 0) + 1
    report.per_minute = per_minute(samples, answered, int(round(minutes)), minute_s)
    judge(report, samples, answered, total_s, warmup_s, minute_s)
    return report


def print_soak_report(report: SoakReport, out=None) -> None:
    import sys

    out = out or sys.stdout
    kinds = [k for k, _ in MIX]
    print("\nminute    RSS MB   fds  threads  requests  errors  " + "  ".join(f"{k} p50/p95 s" for k in kinds), file=out)
    for r in report.per_minute:
        lat = "  ".join(f"{fmt(r[f'{k}_p50_s'], '.2f')}/{fmt(r[f'{k}_p95_s'], '.2f')}".rjust(len(k) + 12)
                        for k in kinds)
        print(f"{r['minute']:>6}  {fmt(r['rss_mb'], '8.1f')}  {fmt(r['fds'], '4.0f')}  "
              f"{fmt(r['threads'], '7.0f')}  {r['requests']:>8}  {r['errors']:>6}  {lat}", file=out)
    for key, d in report.drift.items():
        ch = d["change"]
        print(f"{key}: first minute after warm-up {fmt(d['first_minute'], '.1f')}, last minute "
              f"{fmt(d['last_minute'], '.1f')} ({'n/a' if ch is None else f'{100 * ch:+.1f} %'})", file=out)
    for kind, d in report.p95.items():
        g = d["growth"]
        print(f"{kind} p95: {fmt(d['first_window_s'], '.2f', ' s')} -> {fmt(d['last_window_s'], '.2f', ' s')}"
              + ("" if g is None else f" ({100 * g:+.0f} %)") + ("" if d["judged"] else " (too few to judge)"), file=out)
    total = sum(sum(v.values()) for v in report.requests.values())
    print(f"\n{total} requests in {report.seconds:.0f} s: "
          + "; ".join(f"{k} " + ", ".join(f"{n} {v}" for v, n in sorted(per.items()))
                      for k, per in sorted(report.requests.items())), file=out)
    print("EVERYTHING HELD" if report.held else "FAILURES: " + "; ".join(report.failures), file=out)


def as_json(report: SoakReport) -> dict:
    return asdict(report) | {"held": report.held}
