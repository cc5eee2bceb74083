"""``hsd bench``: run the benchmark and print (and write) its report.  ``--quick`` is a smoke
test (one repeat): the report says so, and shows the spread it has."""
from __future__ import annotations

import sys
from pathlib import Path

from hsd.plan.profile import Profile
from hsd.tools import paths
from hsd.tools.bench.core import _loadavg, bench
from hsd.tools.bench.report import format_markdown, format_report, write_figure
from hsd.tools.cli import BENCH_QUICK
from hsd.tools.progress import progress_bar


def command_line(args) -> str:
    """The ``hsd bench …`` line that reproduces this run (for the report)."""
    parts = ["hsd bench", f"--family {args.family}"]
    for flag in ("profile", "prompts", "max_new_tokens", "repeats", "max_prompts", "device", "json", "html",
                 "markdown"):
        value = getattr(args, flag)
        if value is not None:
            parts.append(f"--{flag.replace('_', '-')} {value}")
    parts.append("--temperature " + ",".join(f"{t:g}" for t in args.temperature))
    if args.max_buffer != 16:
        parts.append(f"--max-buffer {args.max_buffer}")
    if args.html and args.plotlyjs != "embed":
        parts.append(f"--plotlyjs {args.plotlyjs}")
    if args.forward != "auto":
        parts.append(f"--forward {args.forward}")
    parts += ["--stop-at-eos"] * bool(args.stop_at_eos) + ["--quick"] * bool(args.quick)
    return " ".join(parts)


def run(args) -> int:
    import torch
    from hsd.models import load_family

    if args.threads:
        torch.set_num_threads(args.threads)
    profile_path = paths.profile_path(args.family, args.profile, "bench")
    profile = Profile.load(profile_path)
    prompts_path = Path(args.prompts) if args.prompts else paths.default_prompts_path(args.family)
    prompts = paths.load_prompts(prompts_path)
    max_prompts = BENCH_QUICK["prompts"] if args.quick and args.max_prompts is None else args.max_prompts
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    repeats = args.repeats or (BENCH_QUICK["repeats"] if args.quick else 3)
    max_new = args.max_new_tokens or (BENCH_QUICK["max_new_tokens"] if args.quick else 128)
    family = load_family(args.family, device=args.device)
    report = bench(family, profile, prompts, max_new_tokens=max_new, temperatures=args.temperature,
                   repeats=repeats, seed=args.seed, max_buffer=args.max_buffer, stop_at_eos=args.stop_at_eos,
                   progress=progress_bar(), forward=args.forward)
    report["meta"].update(profile=str(profile_path), prompts_file=str(prompts_path),
                          command=command_line(args),
                          load_avg_end=_loadavg())
    print(file=sys.stderr)
    print(format_report(report))
    saved = True
    if args.json:
        saved &= paths.save_or_rescue(args.json, lambda p: paths.write_json(report, p), "report")
    if args.markdown:
        saved &= paths.save_or_rescue(
            args.markdown, lambda p: Path(p).write_text(format_markdown(report) + "\n", encoding="utf-8"), "tables")
    if args.html:
        for path in write_figure(report, args.html, args.plotlyjs):
            print(f"wrote {path}", file=sys.stderr)
    return 0 if saved else 2
