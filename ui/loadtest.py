"""``hsd stress`` (``python -m ui.loadtest``): the app's load and fault tests, one command.

Without a mode flag it runs ``ui.stress``'s fixed parts (the bad-input matrix, sessions, a burst,
cancellation, sequential generations).  With ``--faults``, ``--fuzz N`` or ``--soak MINUTES`` it
runs those instead, in that order (``ui.faults``, ``ui.fuzz``, ``ui.soak``), against ``--url``
or an app it launches on a free loopback port.  docs/reliability.md says what each one judges.

This module sits above the four it drives: they import ``ui.stress`` (server control, the REST
client, the judge of a message), and nothing imports this one.
"""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from ui import faults, fuzz, soak, stress


def build_parser():
    """``ui.stress``'s options and the modes'."""
    p = stress.build_parser()
    p.prog = "hsd stress"
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
        family = stress.make_tiny_family(scratch / "tiny")
    report: dict = {"format": stress.FORMAT, "modes": {}, "server_log_exceptions": {}}
    held = True

    def serve(mode: str, extra_env: dict):
        if args.url is not None:
            return contextlib.nullcontext((None, stress.check_loopback(args.url), args.pid))
        log(f"{mode}: launching app.py (HSD_FAMILY={family}) ...")
        return _served(stress.AppServer(family, queue_size=args.queue_size, concurrency=args.concurrency,
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


def _alive(server: "stress.AppServer | None", url: str):
    return (lambda: server.alive()) if server is not None else (lambda: stress.answers(url))


@contextlib.contextmanager
def _served(server: "stress.AppServer", report: dict, mode: str):
    """(server, url, pid) of a started app; stopped after, its log's exceptions in the report."""
    server.start()
    try:
        yield server, server.url, server.pid
    finally:
        report["server_log_exceptions"][mode] = stress.classify_log(server.log_text())
        server.stop()


def run(args) -> int:
    if args.faults or args.fuzz is not None or args.soak is not None:
        stress.check_where(args)
        return run_modes(args)
    return stress.run(args)


def main(argv=None) -> int:
    return stress.main(argv, build_parser(), run)


if __name__ == "__main__":
    sys.exit(main())
