"""The fixed matrix's checks, each a function that drives the app and returns ``Check`` rows:

1. ``check_bad_inputs``: every bad input comes back as ONE clear sentence and the next normal
   request works;
2. ``check_sessions``: sessions at once with different seeds all finish, each equal to the same
   request run alone;
3. ``check_burst``: a burst of submits is queued or refused cleanly, and the server answers after;
4. ``check_cancel``: ``job.cancel()`` and a killed client stop the decode (the server's CPU falls
   idle), the next request works, memory returns to its level;
5. ``check_sequential``: generations one after another keep the server's VmRSS within 10 %.

``run_stress`` runs them in that order against a launched app or ``--url``.  Every request a
check makes is counted in the run's ``Tally`` (passed in, never global)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tools.stress.cases import (NORMAL_PROMPTS, BadCase, bad_cases, long_args, long_request, make_tiny_family,
                                normal_args)
from tools.stress.client import GenerateApi, Outcome, Tally, call, follow, make_client, noted, rest_call, token_list
from tools.stress.report import FORMAT, classify_log, count_requests, fmt, rounded
from tools.stress.server import AppServer, answers, check_loopback, rss_mb, wait_idle

MEMORY_TOLERANCE = 0.10            # "within 10% of its level"
MEMORY_SLACK_MB = 5.0              # allocator noise on a small process (reported, not hidden)
IDLE_CPU = 0.35                    # a server decoding uses ~1 core; idle it uses almost none
GENERIC_CRASH = "something went wrong inside the app"
PARTS = ("bad", "sessions", "burst", "cancel", "sequential")


@dataclass
class Check:
    """One row of the report: what was tried, whether it held, and its figures."""

    group: str
    name: str
    held: bool | None                  # None: not measured (e.g. memory without a pid)
    detail: str = ""
    figures: dict = field(default_factory=dict)


def one_sentence(message: str) -> bool:
    """A message a person can read: one sentence, one line, short, no traceback, not the app's
    generic 'something went wrong' (which means an unexpected exception, not a handled mistake)."""
    msg = (message or "").strip()
    if not msg or "\n" in msg or len(msg) > 300 or "Traceback" in msg:
        return False
    if GENERIC_CRASH in msg.lower():
        return False
    return not re.search(r"[.!?]\s+[A-Z]", msg)


def try_bad_case(url: str, client, api: GenerateApi, case: BadCase, tally: Tally | None = None) -> Outcome:
    if case.via == "raw":
        return rest_call(url, raw_body=case.raw_body, timeout_s=120, tally=tally)
    if case.via == "rest":
        return rest_call(url, api.args(**case.values), timeout_s=120, tally=tally)
    return call(client, api.args(**case.values), timeout_s=120, tally=tally)


def judge_bad_case(case: BadCase, out: Outcome) -> tuple[bool, str]:
    """(held, why not) for the answer to one bad input (the next request is judged apart)."""
    if out.kind != "error":
        return False, f"expected an error, got {out.kind}"
    if not any(w.lower() in out.message.lower() for w in case.words):
        return False, f"expected an error mentioning {' / '.join(case.words)}"
    if case.sentence and not one_sentence(out.message):
        return False, f"not one clear sentence ({len(out.message)} characters)"
    return True, ""


def check_bad_inputs(url: str, client, api: GenerateApi, new_tokens: int, scratch: Path | None = None,
                     log: Callable[[str], None] = print, tally: Tally | None = None) -> list[Check]:
    checks = []
    for case in bad_cases(api, scratch):
        out = try_bad_case(url, client, api, case, tally)
        after = call(client, normal_args(api, new_tokens, seed=len(checks)), timeout_s=300, tally=tally)
        held, why = judge_bad_case(case, out)
        if held and not (after.kind == "ok" and after.tokens):
            held, why = False, f"the next request: {after.kind} {after.message[:80]}"
        checks.append(Check("bad input", case.name, held, (out.message or out.kind)[:200] + (f" [{why}]" if why else ""),
                            {"answer": out.kind, "message": out.message, "error_s": round(out.seconds, 2),
                             "next_request": after.kind, "next_tokens": len(after.tokens)}))
        log(f"  bad input: {case.name}: {'held' if held else 'FAILED'}")
    return checks


def _intervals_max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def check_sessions(url: str, api: GenerateApi, n: int, new_tokens: int, log=print,
                   timeout_s: float = 600.0, tally: Tally | None = None) -> list[Check]:
    """n clients (n sessions) submit at once with different seeds; then each request alone."""
    clients = [make_client(url) for _ in range(n)]
    reqs = [normal_args(api, new_tokens, seed=100 + i, prompt=NORMAL_PROMPTS[0]) for i in range(n)]
    results: list[Outcome | None] = [None] * n
    spans: list[tuple[float, float] | None] = [None] * n
    barrier = threading.Barrier(n)

    def work(i):
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        barrier.wait()
        t0 = time.monotonic()
        try:
            job = clients[i].submit(*reqs[i], api_name=GenerateApi.ENDPOINT)
            first, final = follow(job, timeout_s)
            end = time.monotonic()
            results[i] = noted(tally, Outcome("ok", final=final, seconds=end - t0))
            spans[i] = (first or end, end)
        except AppError as e:
            results[i] = noted(tally, Outcome("error", str(e), seconds=time.monotonic() - t0))
        except QueueError as e:             # more sessions at once than the queue holds
            results[i] = noted(tally, Outcome("refused", str(e), seconds=time.monotonic() - t0))
        except Exception as e:
            results[i] = noted(tally, Outcome("failed", f"{type(e).__name__}: {e}"[:200], seconds=time.monotonic() - t0))

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 60)
    together_s = time.monotonic() - t0
    finished = sum(1 for r in results if r is not None and r.kind == "ok")
    alone = [call(clients[0], r, timeout_s=timeout_s, tally=tally) for r in reqs]
    equal = sum(1 for r, a in zip(results, alone) if r is not None and r.kind == "ok" and a.kind == "ok"
                and r.tokens == a.tokens and r.tokens)
    distinct = len({tuple(r.tokens) for r in results if r is not None and r.kind == "ok"})
    overlap = _intervals_max_overlap([s for s in spans if s])
    problems = [f"{r.kind}: {r.message}" for r in results if r is not None and r.kind != "ok"]
    held = finished == n and equal == n
    log(f"  sessions: {finished}/{n} finished, {equal}/{n} equal to solo runs, at most {overlap} streaming at once")
    return [Check("concurrency", f"{n} sessions at once, different seeds", held,
                  f"{finished}/{n} finished; {equal}/{n} equal the same request run alone (tokens and levels); "
                  f"{distinct} distinct texts; up to {overlap} streaming at once"
                  + (f"; errors: {problems[:2]}" if problems else ""),
                  {"sessions": n, "finished": finished, "equal_to_solo": equal, "distinct_texts": distinct,
                   "max_streaming_at_once": overlap, "together_s": round(together_s, 2),
                   "solo_total_s": round(sum(a.seconds for a in alone), 2)})]


def check_burst(url: str, api: GenerateApi, n: int, new_tokens: int, server: "AppServer | None",
                log=print, tally: Tally | None = None) -> list[Check]:
    """n submits at once from one client: each finishes or is refused (queue full); nothing else."""
    client = make_client(url, max_workers=n + 4)
    reqs = [normal_args(api, new_tokens, seed=i) for i in range(n)]
    t0 = time.monotonic()
    outcomes: list[Outcome | None] = [None] * n

    def work(i):
        outcomes[i] = call(client, reqs[i], timeout_s=900, tally=tally)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1200)
    burst_s = time.monotonic() - t0
    kinds = {k: sum(1 for o in outcomes if o is not None and o.kind == k) for k in ("ok", "refused", "error", "failed")}
    lost = sum(1 for o in outcomes if o is None)
    still = answers(url) and (server is None or server.alive())
    after = call(make_client(url), normal_args(api, new_tokens, seed=7), timeout_s=300, tally=tally)
    others = [o.message for o in outcomes if o is not None and o.kind in ("error", "failed")]
    held = kinds["error"] == 0 and kinds["failed"] == 0 and lost == 0 and kinds["ok"] >= 1 and still \
        and after.kind == "ok"
    log(f"  burst: {kinds['ok']} finished, {kinds['refused']} refused (queue full), "
        f"{kinds['error'] + kinds['failed'] + lost} other; server answers after: {still and after.kind == 'ok'}")
    return [Check("concurrency", f"burst of {n} submits", held,
                  f"{kinds['ok']} finished, {kinds['refused']} refused cleanly (queue full), "
                  f"{kinds['error'] + kinds['failed'] + lost} other; the server answered afterwards: "
                  f"{'yes' if still and after.kind == 'ok' else 'NO'}" + (f"; e.g. {others[0][:120]}" if others else ""),
                  {"submitted": n, "finished": kinds["ok"], "refused_queue_full": kinds["refused"],
                   "other_errors": kinds["error"] + kinds["failed"] + lost, "burst_s": round(burst_s, 2),
                   "server_answers_after": bool(still and after.kind == "ok")})]


_DISCONNECT_SCRIPT = r"""
import json, sys, time
from gradio_client import Client
url, args = sys.argv[1], json.loads(sys.argv[2])
client = Client(url, verbose=False, download_files=False, analytics_enabled=False, httpx_kwargs={"trust_env": False})
job = client.submit(*args, api_name="/generate")
deadline = time.time() + 300
while not job.outputs() and not job.done() and time.time() < deadline:
    time.sleep(0.05)
print("streaming", len(job.outputs()), flush=True)
time.sleep(600)
"""
def check_cancel(url: str, api: GenerateApi, new_tokens: int, pid: int | None, log=print,
                 tally: Tally | None = None) -> list[Check]:
    """1) ``job.cancel()`` mid-stream, 2) a client process killed mid-stream, 3) the server's
    memory back to its level afterwards."""
    client = make_client(url)
    warm = call(client, normal_args(api, new_tokens, seed=1), tally=tally)           # memory level after a warm request
    wait_idle(pid, 10)
    level = rss_mb(pid)
    cancelled, n_max = _cancel_mid_stream(client, api, new_tokens, pid, log, tally)          # 1) job.cancel()
    checks = [cancelled, _disconnect_mid_stream(url, client, api, new_tokens, n_max, pid, log,
                                                                              tally)]   # 2) killed client

    # 3) memory back to its level
    call(client, normal_args(api, new_tokens, seed=4), tally=tally)
    wait_idle(pid, 10)
    final = rss_mb(pid)
    held = None if level is None or final is None else final <= level * (1 + MEMORY_TOLERANCE) + MEMORY_SLACK_MB
    checks.append(Check("cancellation", "server memory returns to its level", held,
                        f"VmRSS {fmt(level, '.0f', ' MB')} before the cancellations, {fmt(final, '.0f', ' MB')} after"
                        + ("" if held is not None else " (not measured: no server pid)"),
                        {"rss_before_mb": rounded(level, 1), "rss_after_mb": rounded(final, 1),
                         "warm_request": warm.kind}))
    return checks


def _cancel_mid_stream(client, api: GenerateApi, new_tokens: int, pid: int | None, log,
                       tally: Tally | None) -> tuple[Check, int]:
    """``job.cancel()`` mid-stream: the decode stops, the server idles, the next request works."""
    job, n_max, streamed_before = long_request(client, api, seed=11)
    t_cancel = time.monotonic()
    job.cancel()
    deadline = time.monotonic() + 30
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_s = time.monotonic() - t_cancel
    busy = wait_idle(pid, 10)
    n_tokens = len(token_list(job.outputs()[-1])) if job.outputs() else 0
    after = call(client, normal_args(api, new_tokens, seed=2), tally=tally)
    held = (streamed_before >= 1 and job.done() and n_tokens < n_max and after.kind == "ok"
            and (busy is None or busy < IDLE_CPU))
    check = Check("cancellation", "cancel mid-stream (job.cancel)", held,
                        ("" if streamed_before else "NEVER STREAMED; ") + f"stopped {stop_s:.2f} s after cancel with {n_tokens} of {n_max} tokens streamed; "
                        f"server CPU afterwards {fmt(busy, '.2f', ' cores')}; next request: {after.kind}",
                        {"tokens_streamed": n_tokens, "tokens_asked": n_max, "tokens_at_cancel": streamed_before,
                         "stop_s": round(stop_s, 2), "server_cpu_after_cores": rounded(busy, 3),
                         "next_request": after.kind, "next_request_s": round(after.seconds, 2)})
    log(f"  cancel: {'held' if held else 'FAILED'} ({n_tokens}/{n_max} tokens, CPU after {fmt(busy, '.2f')})")

    return check, n_max


def _disconnect_mid_stream(url: str, client, api: GenerateApi, new_tokens: int, n_max: int, pid: int | None,
                           log, tally: Tally | None) -> Check:
    """A client whose process is killed mid-stream (a closed tab): the decode stops too."""
    args = long_args(api, seed=12, n=n_max)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.Popen([sys.executable, "-c", _DISCONNECT_SCRIPT, url, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    streaming = False
    try:
        line = _readline(proc, 300)
        streaming = line.startswith("streaming") and int((line.split() + ["0"])[1]) >= 1
    finally:
        proc.kill()
        proc.wait(10)
    t_kill = time.monotonic()
    busy = wait_idle(pid, 15)
    idle_s = time.monotonic() - t_kill
    after = call(client, normal_args(api, new_tokens, seed=3), tally=tally)
    held = streaming and after.kind == "ok" and (busy is None or busy < IDLE_CPU)
    check = Check("cancellation", "client disconnects mid-stream (process killed)", held,
                        f"{'was streaming' if streaming else 'never streamed'} when killed; server CPU "
                        f"{fmt(busy, '.2f', ' cores')} {idle_s:.1f} s later; next request: {after.kind}",
                        {"was_streaming": streaming, "server_cpu_after_cores": rounded(busy, 3),
                         "idle_after_s": round(idle_s, 2), "next_request": after.kind})
    log(f"  disconnect: {'held' if held else 'FAILED'} (CPU after {fmt(busy, '.2f')})")

    return check


def _readline(proc: subprocess.Popen, timeout_s: float) -> str:
    box = [""]

    def read():
        box[0] = proc.stdout.readline() if proc.stdout else ""

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    return box[0]


def check_sequential(url: str, api: GenerateApi, n: int, new_tokens: int, pid: int | None, log=print,
                     tally: Tally | None = None) -> list[Check]:
    client = make_client(url)
    samples, kinds, times = [], [], []
    level = None
    for i in range(n):
        out = call(client, normal_args(api, new_tokens, seed=1000 + i), tally=tally)
        kinds.append(out.kind)
        times.append(out.seconds)
        mb = rss_mb(pid)
        samples.append(mb)
        if i == 0:
            level = mb
    ok = kinds.count("ok")
    final = samples[-1] if samples else None
    peak = max((s for s in samples if s is not None), default=None)
    mem_held = None if level is None or final is None else final <= level * (1 + MEMORY_TOLERANCE)
    held = ok == n and mem_held is not False
    growth = None if level is None or final is None else 100.0 * (final - level) / level
    log(f"  sequential: {ok}/{n} ok, VmRSS {fmt(level, '.0f')} -> {fmt(final, '.0f')} MB")
    return [Check("resources", f"{n} sequential generations", held,
                  f"{ok}/{n} finished; server VmRSS {fmt(level, '.0f', ' MB')} after the first, "
                  f"{fmt(final, '.0f', ' MB')} after the last ({fmt(growth, '+.1f', '%')}; limit +10%), "
                  f"peak {fmt(peak, '.0f', ' MB')}" + ("" if level is not None else " (memory not measured: no pid)"),
                  {"generations": n, "finished": ok, "rss_after_first_mb": rounded(level, 1),
                   "rss_after_last_mb": rounded(final, 1), "rss_peak_mb": rounded(peak, 1), "rss_growth_pct": rounded(growth, 2),
                   "median_s": round(sorted(times)[len(times) // 2], 3) if times else None,
                   "rss_samples_mb": [rounded(s, 1) for s in samples]})]


def run_stress(url: str | None = None, family: str = "bundled", sessions: int = 8, burst: int = 50,
               sequential: int = 50, new_tokens: int = 24, queue_size: int = 8, concurrency: int = 4,
               pid: int | None = None, parts: tuple[str, ...] = PARTS,
               log: Callable[[str], None] = print) -> dict:
    """1) launch the app (unless ``url``), 2) a first request that loads the models, 3) each part
    asked for, in order, 4) whether the server still answers, then stop it; the report (plain
    dict, ``held`` overall)."""
    scratch = Path(tempfile.mkdtemp(prefix="hsd-stress-"))
    server = None
    t0 = time.monotonic()
    if family == "tiny" and url is None:
        family = make_tiny_family(scratch / "tiny")
    if url is None:                                                              # 1)
        log(f"launching app.py (HSD_FAMILY={family}, HSD_QUEUE_SIZE={queue_size}, HSD_CONCURRENCY={concurrency}) ...")
        server = AppServer(family, queue_size=queue_size, concurrency=concurrency).start()
        url, pid = server.url, server.pid
        log(f"  answering on {url} after {server.started_s:.1f} s (pid {pid})")
    url = check_loopback(url)
    checks: list[Check] = []
    tally = Tally()
    try:
        client = make_client(url)
        api = GenerateApi(client)
        if server is None:
            family = str(api.family)
        warm = call(client, normal_args(api, new_tokens), timeout_s=600, tally=tally)                # 2)
        checks.append(Check("setup", "first request (loads the models)", warm.kind == "ok",
                            f"{warm.kind} in {warm.seconds:.1f} s, {len(warm.tokens)} tokens"
                            + (f": {warm.message[:120]}" if warm.kind != "ok" else ""),
                            {"seconds": round(warm.seconds, 2), "tokens": len(warm.tokens), "rss_mb": rounded(rss_mb(pid), 1)}))
        if warm.kind == "ok":                                                    # 3)
            if "bad" in parts:
                log("bad-input matrix ...")
                checks += check_bad_inputs(url, client, api, new_tokens, scratch, log, tally=tally)
            if "sessions" in parts and sessions > 0:
                log(f"{sessions} sessions at once ...")
                checks += check_sessions(url, api, sessions, new_tokens, log, tally=tally)
            if "burst" in parts and burst > 0:
                log(f"burst of {burst} ...")
                checks += check_burst(url, api, burst, new_tokens, server, log, tally=tally)
            if "cancel" in parts:
                log("cancellation ...")
                checks += check_cancel(url, api, new_tokens, pid, log, tally=tally)
            if "sequential" in parts and sequential > 0:
                log(f"{sequential} sequential generations ...")
                checks += check_sequential(url, api, sequential, new_tokens, pid, log, tally=tally)
        alive = answers(url) and (server is None or server.alive())                     # 4)
        checks.append(Check("setup", "server still answers at the end", alive,
                            "yes" if alive else "NO: the server stopped answering",
                            {"rss_mb": rounded(rss_mb(pid), 1)}))
    finally:
        log_text = server.log_text() if server is not None else ""
        if server is not None:
            server.stop()
    exceptions = classify_log(log_text)
    held = all(c.held is not False for c in checks)
    return {"format": FORMAT, "url": url, "family": family, "launched": server is not None,
            "settings": {"sessions": sessions, "burst": burst, "sequential": sequential, "new_tokens": new_tokens,
                         "queue_size": queue_size if server is not None else None,
                         "concurrency": concurrency if server is not None else None},
            "held": held, "seconds": round(time.monotonic() - t0, 1),
            "requests": count_requests(checks, tally),
            "server_log_exceptions": exceptions if server is not None else None,
            "checks": [asdict(c) for c in checks]}
