"""The fixed matrix's report: the counts of a run, the printed table, the exceptions in the
server's log, and the small number formatting the modes share."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

FORMAT = "hsd-stress/1"


@dataclass
class ModeReport:
    """What every mode's report holds (``fuzz.FuzzReport``, ``soak.SoakReport``): its format, the
    app it drove, the crashes, whether the server still answered at the end, how long it took."""

    format: str = FORMAT
    url: str = ""
    crashes: list = field(default_factory=list)
    server_alive: bool = True
    seconds: float = 0.0


def rounded(x, nd):
    return None if x is None else round(x, nd)


def fmt(x, spec: str, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def classify_log(text: str) -> dict[str, int]:
    """Exception types that ended a traceback in the server log, counted.  Gradio prints one for
    every ``gr.Error`` too (``gradio.exceptions.Error``: a handled mistake shown to the user)."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^([A-Za-z_][\w.]*(?:Error|Exception))(?::|$)", text, flags=re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def count_requests(checks: list, tally) -> dict:
    """The report's ``requests``: every request of the run by how it ended (``tally``, a
    ``client.Tally``), the bad inputs that held, and the checks that failed."""
    bad = [c for c in checks if c.group == "bad input"]
    return {"by_outcome": dict(tally.by_kind), "total": tally.total,
            "bad_inputs": len(bad), "bad_inputs_held": sum(1 for c in bad if c.held),
            "failures": [f"{c.group}: {c.name}" for c in checks if c.held is False]}


def print_report(report: dict, out=sys.stdout) -> None:
    rows = [(c["group"], c["name"], {True: "held", False: "FAILED", None: "n/a"}[c["held"]], c["detail"])
            for c in report["checks"]]
    w0 = max([len(r[0]) for r in rows] + [5])
    w1 = max([len(r[1]) for r in rows] + [4])
    print(f"\n{'group':<{w0}}  {'what was tried':<{w1}}  result  details", file=out)
    print("-" * (w0 + w1 + 60), file=out)
    for g, n, h, d in rows:
        print(f"{g:<{w0}}  {n:<{w1}}  {h:<6}  {d}", file=out)
    req = report["requests"]
    exc = report.get("server_log_exceptions")
    shown = "n/a" if exc is None else (", ".join(f"{k} x{v}" for k, v in exc.items()) or "none")
    print(f"\n{req['total']} requests: " + ", ".join(f"{v} {k}" for k, v in sorted(req["by_outcome"].items()))
          + " (ok: finished; error: refused with a message; refused: queue full; failed: no answer)", file=out)
    print(f"{req['bad_inputs_held']}/{req['bad_inputs']} bad inputs held; exceptions in the server log: {shown}; "
          f"{report['seconds']:.0f} s in all", file=out)
    print("EVERYTHING HELD" if report["held"] else "FAILURES: " + "; ".join(req["failures"]), file=out)
