"""``hsd stress`` (``python -m tools.stress``): the app's load and fault tests, one command.

Without a mode flag it runs the fixed matrix (``checks``: the bad-input matrix, sessions, a burst,
cancellation, sequential generations).  With ``--faults``, ``--fuzz N`` or ``--soak MINUTES`` it
runs those instead, in that order (``faults``, ``fuzz``, ``soak``), against ``--url`` or an app
it launches on a free loopback port.  docs/reliability.md says what each one judges.

A user's mistake is one ``error:`` line and exit code 2; exit code 0 only if everything held."""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from hsd.errors import ConfigError
from tools.stress import faults, fuzz, soak
from tools.stress.cases import make_tiny_family
from tools.stress.checks import PARTS, run_stress
from tools.stress.report import FORMAT, classify_log, print_report
from tools.stress.server import AppServer, answers, check_loopback

QUICK = {"sessions": 4, "burst": 20, "sequential": 10, "new_tokens": 12}
FULL = {"sessions": 8, "burst": 50, "sequential": 50, "new_tokens": 24}


def build_parser():
    """The fixed matrix's options, then the modes'."""
    from hsd.tools.cli import Parser

    p = Parser(
        prog="hsd stress",
        description="Launch app.py on a free loopback port (or use --url) and drive it over HTTP with "
                    "gradio_client: the bad-input matrix, concurrent sessions, a burst, cancellation and a "
                    "disconnecting client, and sequential generations with the server's memory watched. "
                    "Exit code 0 only if everything held.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="an app already running on this machine (loopback only)")
    where.add_argument("--family", default="bundled",
                       help="HSD_FAMILY for the launched app: 'bundled' (default), a preset, 'path1,path2,...', "
                            "or 'tiny' (three tiny random models built in a temporary folder)")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's process id (memory and CPU figures)")
    p.add_argument("--sessions", type=int, default=None, help=f"clients at once (default {FULL['sessions']})")
    p.add_argument("--burst", type=int, default=None, help=f"submits at once (default {FULL['burst']})")
    p.add_argument("--sequential", type=int, default=None, help=f"generations one after another (default {FULL['sequential']})")
    p.add_argument("--new-tokens", type=int, default=None, help=f"tokens per normal request (default {FULL['new_tokens']})")
    p.add_argument("--queue-size", type=int, default=8, help="HSD_QUEUE_SIZE of the launched app (default 8)")
    p.add_argument("--concurrency", type=int, default=4, help="HSD_CONCURRENCY of the launched app (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="small figures: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated parts to run, in this order: {','.join(PARTS)} (default: all)")
    p.add_argument("--json", default=None, help="write the report as JSON to this path")
    modes = p.add_argument_group("other modes (each runs instead of the parts above; several run in this order)")
    modes.add_argument("--faults", action="store_true",
                       help="fault injection: corrupt and truncated weights, a missing tokenizer file, bad profile "
                            "uploads, an unwritable download folder, a client gone mid-stream, 8 what-if editors at "
                            "once, a cancel while panels draw; each beside another user's decode")
    modes.add_argument("--fuzz", type=whole_number, default=None, metavar="N",
                       help="N random payloads (hypothesis) against every public endpoint of the app")
    modes.add_argument("--fuzz-seed", type=whole_number, default=0, help="seed of the fuzz payloads (default 0)")
    modes.add_argument("--fuzz-workers", type=whole_number, default=4, help="fuzz payloads in flight (default 4)")
    modes.add_argument("--soak", type=positive_number, default=None, metavar="MINUTES",
                       help="a bounded mix of generate / compare / what-if / cancel traffic for MINUTES, with the "
                            "server's memory, descriptors, threads and p50/p95 latency per minute")
    modes.add_argument("--soak-workers", type=whole_number, default=3, help="soak clients at once (default 3)")
    modes.add_argument("--warmup", type=positive_number, default=None, metavar="MINUTES",
                       help="soak minutes not judged (default: a sixth of the soak, 1 to 5)")
    return p


def whole_number(text: str) -> int:
    from hsd.tools.cli import whole

    return whole(0)(text)


def positive_number(text: str) -> float:
    from hsd.tools.cli import number

    return number(0.0, lo_open=True)(text)


def check_where(args) -> None:
    """Before anything runs: the report's path can be written, and ``--url`` is this machine."""
    if args.json:
        from hsd.tools.cli import check_output

        problem = check_output(args.json, "--json")
        if problem:
            raise ConfigError(problem)
    if args.url:
        check_loopback(args.url)


def run_matrix(args) -> int:
    """The fixed matrix (``checks.run_stress``) with the figures asked for; its table and JSON."""
    check_where(args)
    base = QUICK if args.quick else FULL
    pick = lambda v, k: base[k] if v is None else v  # noqa: E731
    for name in ("sessions", "burst", "sequential", "new_tokens"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "new_tokens" else 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative whole number, got {value}")
    if args.url:
        check_loopback(args.url)
    parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        raise ConfigError(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    report = run_stress(url=args.url, family=args.family, sessions=pick(args.sessions, "sessions"),
                        burst=pick(args.burst, "burst"), sequential=pick(args.sequential, "sequential"),
                        new_tokens=pick(args.new_tokens, "new_tokens"), queue_size=args.queue_size,
                        concurrency=args.concurrency, pid=args.pid, parts=parts,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0 if report["held"] else 1


# the faults' app draws every panel at every token, so a cancel lands while a panel is drawing
DRAWING_ENV = {"HSD_PANEL_INTERVAL_S": "0", "HSD_TOKEN_INTERVAL_S": "0", "HSD_UI_SHARE": "1.0"}


def run_modes(args) -> int:
    """``--faults`` / ``--fuzz N`` / ``--soak MINUTES``: each mode in turn against the app at
    ``--url``, or against an app launched here (the faults get one of their own, which draws
    every panel at every token; fuzz and soak share one with the app's defaults); one report
    each, exit code 0 only if every one held."""
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    scratch = Path(tempfile.mkdtemp(prefix="hsd-stress-"))
    family = args.family
    if family == "tiny" and args.url is None:
        family = make_tiny_family(scratch / "tiny")
    report: dict = {"format": FORMAT, "modes": {}, "server_log_exceptions": {}}
    held = True

    def serve(mode: str, extra_env: dict):
        if args.url is not None:
            return contextlib.nullcontext((None, check_loopback(args.url), args.pid))
        log(f"{mode}: launching app.py (HSD_FAMILY={family}) ...")
        return _served(AppServer(family, queue_size=args.queue_size, concurrency=args.concurrency,
                                        extra_env={"TMPDIR": str(scratch), **extra_env}), report, mode)

    if args.faults:
        with serve("faults", DRAWING_ENV) as (server, url, pid):
            r = faults.run_faults(url, pid, scratch=scratch, family=family if server else None,
                                  alive=_alive(server, url), server_log=server.log_text if server else None, log=log)
        faults.print_faults_report(r)
        report["modes"]["faults"] = r
        held &= r["held"]
    if args.fuzz is not None or args.soak is not None:
        with serve("fuzz and soak", {}) as (server, url, pid):
            if args.fuzz is not None:
                r = fuzz.fuzz(url, args.fuzz, seed=args.fuzz_seed, workers=max(1, args.fuzz_workers),
                              alive=_alive(server, url), log=log)
                fuzz.print_fuzz_report(r)
                report["modes"]["fuzz"] = asdict(r) | {"held": r.held}
                held &= r.held
            if args.soak is not None:
                r = soak.soak(url, pid, args.soak, warmup_minutes=args.warmup, workers=max(1, args.soak_workers),
                              alive=_alive(server, url), log=log)
                soak.print_soak_report(r)
                report["modes"]["soak"] = soak.as_json(r)
                held &= r.held
    report["held"] = bool(held)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0 if held else 1


def _alive(server: "AppServer | None", url: str):
    return (lambda: server.alive()) if server is not None else (lambda: answers(url))


@contextlib.contextmanager
def _served(server: "AppServer", report: dict, mode: str):
    """(server, url, pid) of a started app; stopped after, its log's exceptions in the report."""
    server.start()
    try:
        yield server, server.url, server.pid
    finally:
        report["server_log_exceptions"][mode] = classify_log(server.log_text())
        server.stop()


def run(args) -> int:
    if args.faults or args.fuzz is not None or args.soak is not None:
        check_where(args)
        return run_modes(args)
    return run_matrix(args)


def main(argv=None) -> int:
    """Parse, run; a user's mistake is one ``error:`` line and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as e:
        from hsd.tools.cli import error_line

        sys.stderr.write(error_line(str(e)))
        return 2
