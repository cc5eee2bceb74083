"""``hsd <command>`` (also ``python -m hsd``): the command-line face of the engine.

Every command's arguments are declared HERE and checked before anything heavy loads: this module
imports only the standard library, so ``hsd --help`` and every argument mistake answer in a
fraction of a second.  A command runs by importing its module on dispatch (``COMMANDS``:
``"module:function"``; ``run(args) -> int`` returns the exit code).

Errors: every argparse mistake, and every user mistake found later (any ``hsd.errors.HSDError``),
is printed as ONE line, ``error: …``, on stderr with exit code 2.  Nothing a user asked for is
lost to a mistake found late: every file a command will write is checked (its folder exists and
is writable, it is not a folder) and every file it reads is checked (it exists, a JSON one
parses) BEFORE any model loads or any measuring starts (``check_paths``); a ``--chain`` is checked
against the family's size from its spec alone.  Abbreviated options are refused (``--buffer``
is not ``--buffers``).

Threads: every command that decodes takes ``--threads`` and defaults to the app's policy, all
cores but one (``hsd.threads``; ``HSD_TORCH_THREADS`` overrides the default).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys

from hsd.threads import default_threads

# the rules of hsd.verify.RULES, by name (checked against it by tests/test_cli.py): the CLI checks
# rule names before torch is imported
RULE_NAMES = ("token", "block", "hsd", "hsd-uncapped")
FORWARDS = ("auto", "lean", "hf", "llamacpp")     # hsd.levels.FORWARDS (tests/test_cli.py checks they agree)
STRESS_MODULE = "tools.stress"        # the app's load and fault tester: a tool in the repository (``python -m tools.stress``)

COMMANDS = {
    "generate": "hsd.tools.generate:run",
    "profile": "hsd.tools.measure:run",
    "optimize": "hsd.tools.optimize:run",
    "validate": "hsd.tools.validate:run",
    "bench": "hsd.tools.bench.command:run",
    "shapes": "hsd.tools.shapes:run",
    "export-gguf": "hsd.tools.export:run",
}
GGUF_TYPES = ("f32", "f16", "q8_0")         # = hsd.levels.gguf_export.GGUF_TYPES (tested)
SHAPE_PRESETS = ("close", "distant")        # = hsd.tools.shapes.ACCEPTANCE_PRESETS (tested)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: …`` and exit code 2 (no usage block)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)      # `--buffer 4` must not be taken as `--buffers 4`
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.split()[-1] if " " in self.prog else ""
        self.exit(2, error_line(f"{command + ': ' if command else ''}{message}"))


def error_line(message: str) -> str:
    """``error: MESSAGE`` as ONE line: a control character a user typed (a newline, a record
    separator) is shown escaped, never printed, so it cannot break the line."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(message))
    return f"error: {shown}\n"


# --------------------------------------------------------------------------------------------
# argument types: each refuses a bad value with one sentence
# --------------------------------------------------------------------------------------------
def csv_ints(text: str) -> list[int]:
    text = text.strip()
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def rule_names(text: str) -> list[str]:
    names = csv(text) or ["hsd"]
    for r in names:
        if r not in RULE_NAMES:
            raise argparse.ArgumentTypeError(f"unknown verification rule {r!r}; known rules: {', '.join(RULE_NAMES)}")
    return names


def whole(lo: int, what: str = "a whole number"):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ {lo}, got {value}")
        return value
    return check


def number(lo: float, hi: float = math.inf, lo_open: bool = False):
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            span = f"({lo:g}, {hi:g}]" if lo_open else (f"≥ {lo:g}" if hi == math.inf else f"[{lo:g}, {hi:g}]")
            raise argparse.ArgumentTypeError(f"expected a number {span}, got {text!r}")
        return value
    return check


def blocks(text: str) -> list[int]:
    values = [whole(1, "a block length")(x.strip()) for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one block length")
    return values


TRACE_BLOCKS_DEFAULT = "1,2,3,4,6,8,12,16"


def add_acceptance_measurement(p) -> None:
    """How a profile measures acceptance: on which prompts, from decodes at which block lengths."""
    p.add_argument("--profile-prompts", default=None, metavar="FILE",
                   help="prompts file the profile's acceptance is measured after (default: "
                        "assets/prompts/profile.txt, 24 windows of held-out stdlib code)")
    p.add_argument("--trace-blocks", type=blocks, default=blocks(TRACE_BLOCKS_DEFAULT), metavar="G,G,…",
                   help=f"block lengths of the single-draft decodes acceptance by position is pooled from "
                        f"(default {TRACE_BLOCKS_DEFAULT}; the longest timed block is always added)")


def floats(text: str) -> list[float]:
    values = [number(0.0)(x) for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one temperature")
    return values


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------
def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="decode a prompt with a hierarchy of models")
    p.add_argument("--models", default="bundled",
                   help="comma-separated local folders or hub ids, smallest first, last = target; "
                        "or a family name: 'bundled' (default) or a preset")
    p.add_argument("--chain", type=csv_ints, default=None,
                   help="with a family name: which of its models to stack, e.g. 0,2,3 (default: all)")
    p.add_argument("--buffers", type=csv_ints, default=None,
                   help="buffer size per draft level, smallest first, e.g. 4,8 (default: 4 per level)")
    p.add_argument("--rule", type=rule_names, default=["hsd"],
                   help="verification rule for every level, or one per verifying level (comma-separated)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=whole(1), default=64)
    p.add_argument("--temperature", type=number(0.0), default=1.0)
    p.add_argument("--top-p", type=number(0.0, 1.0, lo_open=True), default=1.0)
    p.add_argument("--top-k", type=whole(0), default=0)
    p.add_argument("--seed", type=whole(0), default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    add_threads(p)
    add_forward(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.add_argument("--trace", default=None, help="also save the full trace as JSON to this path")


def check_generate(args) -> str | None:
    """Mistakes that need no model: a bad chain, a buffer < 1, a prompt of whitespace."""
    if args.chain is not None:
        if not args.chain or min(args.chain) < 0 or any(b <= a for a, b in zip(args.chain, args.chain[1:])):
            return f"--chain must list model indices ≥ 0, each once, smallest first, got {args.chain}"
    if args.buffers is not None and any(b < 1 for b in args.buffers):
        return f"every buffer must be a whole number ≥ 1, got {args.buffers}"
    if args.chain is not None and args.buffers is not None and len(args.buffers) != len(args.chain) - 1:
        return (f"{len(args.chain)} stacked models need {len(args.chain) - 1} buffer size(s), "
                f"got {len(args.buffers)}")
    if not args.prompt.strip():
        return "the prompt is empty: type some text to continue"
    return None


def add_forward(p) -> None:
    p.add_argument("--forward", default="auto", choices=FORWARDS,
                   help="forward path: lean (a plain Llama/Qwen2 forward over the same weights), hf "
                        "(transformers, the reference), llamacpp (the same weights exported to GGUF and run "
                        "by llama.cpp; needs llama-cpp-python) or auto (lean where it applies; default)")


def add_threads(p) -> None:
    p.add_argument("--threads", type=whole(1), default=default_threads(),
                   help=f"torch CPU threads (default: all cores but one, here {default_threads()}, as the app; "
                        "HSD_TORCH_THREADS sets the default)")


def add_machine(p) -> None:
    """--device, --threads, --seed and --forward: where and how a measuring command runs."""
    add_forward(p)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    add_threads(p)
    p.add_argument("--seed", type=whole(0), default=0)


def add_family(p, what: str = "model family", profile: bool = False) -> None:
    """--family (and --profile): which models a command runs on, and their measured profile."""
    p.add_argument("--family", default="bundled", help=f"{what} (default: bundled)")
    if profile:
        p.add_argument("--profile", default=None, help="profile JSON (default: assets/profile-<family>.json)")


ACCEPTANCE_MODELS = ("position", "iid")        # = hsd.plan.profile.ACCEPTANCE_MODELS (tested)


def add_acceptance(p) -> None:
    p.add_argument("--acceptance", choices=ACCEPTANCE_MODELS, default="position",
                   help="latency model's acceptance: 'position' (measured by position in the block, the "
                        "default where the profile has it) or 'iid' (one α per pair, every token independent)")


def add_profile(sub) -> None:
    p = sub.add_parser("profile", help="measure forward costs and pairwise acceptance of a family",
                       description="Measure a latency profile (cost by block length, pairwise "
                                   "acceptance) of a model family on this machine.")
    add_family(p, "family to profile")
    p.add_argument("--out", required=True, help="where to write the profile JSON")
    p.add_argument("--max-n", type=whole(2), default=17, help="longest forward timed, in new tokens (default 17)")
    p.add_argument("--repeats", type=whole(1), default=15, help="timed repeats per (model, n) (default 15)")
    p.add_argument("--temperature", type=number(0.0), default=1.0, help="serving temperature (default 1.0)")
    p.add_argument("--top-k", type=whole(0), default=0)
    p.add_argument("--top-p", type=number(0.0, 1.0, lo_open=True), default=1.0)
    p.add_argument("--context-tokens", type=whole(1), default=64,
                   help="tokens the target samples per prompt for the acceptance contexts (default 64)")
    p.add_argument("--rule", default="hsd", choices=list(RULE_NAMES) + ["none"],
                   help="verification rule whose time per block is measured as overhead (default hsd; "
                        "'none' for the pure forward-cost model)")
    p.add_argument("--block-every", type=whole(0), default=8,
                   help="draft a block after every N-th target-sampled position to measure acceptance by "
                        "position (default 8; 0 skips it: the profile then has one α per pair only)")
    p.add_argument("--accept-source", choices=["traces", "blocks"], default="traces",
                   help="acceptance by position from real single-draft decodes of every pair (default) or "
                        "from blocks drafted at evenly spaced positions (faster; it overstates acceptance)")
    add_acceptance_measurement(p)
    add_machine(p)


def add_optimize(sub) -> None:
    p = sub.add_parser("optimize", help="latency-optimal hierarchy for a measured profile",
                       description="Find the hierarchy (chain + buffers) minimising the "
                                   "model-predicted ms per token (GSP dynamic programme).")
    p.add_argument("profile", help="profile JSON written by `hsd profile`")
    p.add_argument("--max-buffer", type=whole(1), default=16, help="largest buffer per level (default 16)")
    p.add_argument("--top", type=whole(1), default=8, help="how many hierarchies to rank (default 8)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--scale-cost", action="append", default=[], metavar="MODEL=F",
                   help="what-if: multiply MODEL's measured forward costs by F (repeatable)")
    p.add_argument("--alpha", action="append", default=[], metavar="DRAFTER:VERIFIER=X",
                   help="what-if: set the acceptance rate of that pair to X (repeatable; that pair is "
                        "then read i.i.d.)")
    add_acceptance(p)


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="predicted vs measured ms/token on real models",
                       description="Decode with the optimum, the best single draft, AR and two "
                                   "deeper hierarchies; print model-predicted vs measured latency.")
    add_family(p, profile=True)
    p.add_argument("--max-new-tokens", type=whole(1), default=64)
    p.add_argument("--prompts", nargs="+", default=None, help="prompts (default: --prompts-file)")
    p.add_argument("--prompts-file", default=None, metavar="FILE",
                   help="prompts file to decode (default: assets/prompts/validate.txt, 32 windows of held-out "
                        "stdlib code, none from a file the profile prompts come from)")
    p.add_argument("--repeats", type=whole(1), default=1, help="runs per prompt and hierarchy (default 1)")
    p.add_argument("--temperature", type=number(0.0), default=None, help="default: the profile's")
    p.add_argument("--rule", default="hsd", choices=RULE_NAMES, help="verification rule at every level (default hsd)")
    p.add_argument("--max-buffer", type=whole(1), default=16)
    add_acceptance(p)
    p.add_argument("--fresh-profile", action="store_true",
                   help="measure the profile in this run, just before the decodes (instead of --profile)")
    p.add_argument("--save-profile", default=None, help="with --fresh-profile: also write it to this path")
    add_acceptance_measurement(p)
    p.add_argument("--retime-costs", action="store_true",
                   help="time every model's forwards again between the decodes (a round after each prompt's "
                        "runs) and predict with those costs: this machine's speed drifts, and then the costs "
                        "see the state the decodes saw")
    add_machine(p)
    p.add_argument("--json", default=None, help="also write the full report as JSON to this path")


def check_validate(args) -> str | None:
    if args.profile_prompts and not args.fresh_profile:
        return "--profile-prompts measures a profile: it needs --fresh-profile"
    if args.save_profile and not args.fresh_profile:
        return "--save-profile writes the profile measured in this run: it needs --fresh-profile"
    if args.fresh_profile and args.profile:
        return "--profile and --fresh-profile exclude each other: validate a saved profile or measure one"
    return None


BENCH_QUICK = {"prompts": 2, "repeats": 1, "max_new_tokens": 32}


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="speed vs transformers generate and assisted generation, in one run",
        description="Side-by-side wall-clock speed: (a) transformers generate, (b) transformers assisted "
                    "generation, (c) this engine with the best single draft, (d) the optimiser's hierarchy, "
                    "(e) each verification rule on (d), (f) hand-picked hierarchies; interleaved per prompt.")
    add_family(p, profile=True)
    p.add_argument("--prompts", default=None,
                   help="prompts file, one per line, \\n escapes allowed (default: assets/prompts/code.txt "
                        "for the bundled family, natural.txt otherwise)")
    p.add_argument("--max-new-tokens", type=whole(1), default=None,
                   help="tokens per decode (default 128; 32 with --quick)")
    p.add_argument("--temperature", type=floats, default=[0.0, 1.0],
                   help="one or more comma-separated temperatures; 0 = greedy (default 0,1)")
    p.add_argument("--repeats", type=whole(1), default=None,
                   help="runs per prompt and contender (default 3; 1 with --quick)")
    p.add_argument("--max-prompts", type=whole(1), default=None, help="use only the first N prompts")
    p.add_argument("--max-buffer", type=whole(1), default=16, help="largest buffer the optimiser considers (default 16)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop every contender at eos (default: ignore eos)")
    add_machine(p)
    p.add_argument("--json", default=None, help="write the full report (every run) as JSON to this path")
    p.add_argument("--html", default=None, help="write the Plotly figure as HTML (and PNG when kaleido is installed)")
    p.add_argument("--plotlyjs", choices=["embed", "cdn"], default="embed",
                   help="HTML: embed plotly.js (works offline, default) or load it from its CDN (small file)")
    p.add_argument("--markdown", default=None, help="write the tables as Markdown to this path")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke test: {BENCH_QUICK['prompts']} prompts × {BENCH_QUICK['repeats']} repeat × "
                        f"{BENCH_QUICK['max_new_tokens']} tokens (one repeat: no spread worth quoting)")


def add_shapes(sub) -> None:
    p = sub.add_parser("shapes", help="forward costs of real model shapes (random weights), acceptance assumed",
                       description="Build models of a real family's published shapes with random weights, "
                                   "time their forwards on this machine, and write a profile whose "
                                   "acceptances are an assumed preset (edit them in the app's what-if lab).")
    p.add_argument("--family", required=True, help="shapes in assets/shapes/ (smollm2, qwen2.5)")
    p.add_argument("--out", required=True, help="where to write the profile JSON")
    p.add_argument("--preset", choices=SHAPE_PRESETS, default="close", help="assumed acceptances (default close)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="weights' dtype (default bf16)")
    p.add_argument("--max-n", type=whole(2), default=9, help="longest forward timed, in new tokens (default 9)")
    p.add_argument("--repeats", type=whole(1), default=5, help="timed repeats per block length (default 5)")
    p.add_argument("--compare-llamacpp", action="store_true",
                   help="also time each model's GGUF twin on llama.cpp (f16 for bf16, f32 for fp32) and print "
                        "both runtimes' costs side by side (the profile written is --forward's)")
    add_machine(p)


def add_export_gguf(sub) -> None:
    p = sub.add_parser("export-gguf", help="write a family's models as GGUF files llama.cpp loads",
                       description="Write every model of a family (bundled, local Llama/Qwen2 folders, hub ids "
                                   "where the Hub is reachable) as GGUF files with the family's vocabulary, "
                                   "one per model and type, and check each against transformers' logits.")
    p.add_argument("family", help="family spec: bundled, a preset, or comma-separated folders / hub ids")
    p.add_argument("out", help="folder to write <model>-<type>.gguf files into (made if missing)")
    p.add_argument("--types", type=csv, default=["f32", "f16"],
                   help=f"comma-separated GGUF types from {', '.join(GGUF_TYPES)} (default f32,f16)")
    p.add_argument("--no-check", action="store_true",
                   help="skip loading each file in llama.cpp and comparing its logits with transformers'")


def check_export(args) -> str | None:
    bad = [t for t in args.types if t not in GGUF_TYPES]
    if bad or not args.types:
        return f"--types takes {', '.join(GGUF_TYPES)}, got {','.join(args.types) or 'nothing'}"
    out = os.path.abspath(args.out)
    probe = out
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if os.path.exists(out) and not os.path.isdir(out):
        return f"{args.out} is a file, not a folder"
    if not os.access(probe, os.W_OK):
        return f"cannot write into {args.out} ({probe} is not writable)"
    return None


# every file a command writes (the attributes of its args), and every file it reads: checked
# before anything loads.  A reader's JSON files must also parse.
OUTPUTS = {"generate": ("trace",), "profile": ("out",), "shapes": ("out",), "validate": ("json", "save_profile"),
           "bench": ("json", "html", "markdown")}
INPUTS = {"profile": ("profile_prompts",), "optimize": ("profile",),
          "validate": ("profile", "prompts_file", "profile_prompts"), "bench": ("profile", "prompts")}
JSON_INPUTS = ("profile",)


def check_output(path: str, option: str) -> str | None:
    """Why ``path`` cannot be written, or None: it is a folder, its folder is missing or not a
    folder, or that folder is not writable."""
    if not path or not path.strip():
        return f"{option} needs a file path, got an empty one"
    full = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        return f"{option} {path} is a folder; give a file path"
    if not os.path.isdir(folder):
        return (f"{option} {path}: the folder {folder} does not exist" if not os.path.exists(folder)
                else f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        return f"{option} {path}: cannot write there (permission denied)"
    return None


def check_input(path: str, option: str, parse_json: bool) -> str | None:
    """Why ``path`` cannot be read (missing, a folder, unreadable, or, for JSON, not JSON), or None."""
    noun = "prompts" if "prompts" in option else "profile"
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return f"cannot read the {noun} file {path} ({option}): no such file"
    if os.path.isdir(full):
        return f"cannot read the {noun} file {path} ({option}): it is a folder"
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"cannot read the {noun} file {path} ({option}): {e.strerror}"
    if parse_json:
        try:
            json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return f"the {noun} file {path} ({option}) is not JSON ({str(e).splitlines()[0][:80]})"
    return None


def check_paths(args) -> str | None:
    """The first file ``args`` name that cannot be written or read, in one sentence; or None."""
    for name in OUTPUTS.get(args.command, ()):
        value = getattr(args, name, None)
        if value is not None:
            problem = check_output(value, "--" + name.replace("_", "-"))
            if problem:
                return problem
    for name in INPUTS.get(args.command, ()):
        value = getattr(args, name, None)
        if value is not None:
            option = name if args.command == "optimize" else "--" + name.replace("_", "-")
            problem = check_input(value, option, name in JSON_INPUTS)
            if problem:
                return problem
    return None


def check_chain_fits(args) -> str | None:
    """``generate --chain`` against the size of the family its spec names (no model is loaded)."""
    if args.command != "generate" or not args.chain:
        return None
    from hsd.models import resolve_spec

    size = len(resolve_spec(args.models))
    if max(args.chain) >= size:
        return f"--chain {','.join(map(str, args.chain))}: the family {args.models!r} has {size} models (indices 0 to {size - 1})"
    return None


def add_stress(sub) -> None:
    sub.add_parser("stress", help="reliability of the running app (runs `python -m tools.stress`)",
                   description="The app's load and fault test lives with the app: this runs "
                               f"`python -m {STRESS_MODULE}` with the same arguments "
                               "(`hsd stress --help` shows them).")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hsd", description="Hierarchical speculative decoding: generate, profile, "
                                             "optimise, validate, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (add_generate, add_profile, add_optimize, add_validate, add_bench, add_shapes, add_export_gguf,
                add_stress):
        add(sub)
    return parser


def _quiet_libraries() -> None:
    """The CLI's output is its own: no weight-loading progress bars or library warnings."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_stress(stress_args: list[str]) -> int:
    """``hsd stress ARGS`` = ``python -m tools.stress ARGS`` in the repository (a subprocess: hsd never
    imports the tool); without the repository's ``tools/`` folder (an installed wheel), one line."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isfile(os.path.join(root, *STRESS_MODULE.split("."), "__main__.py")):
        sys.stderr.write(error_line("hsd stress needs the repository's tools/stress folder "
                                    "(it is not part of the installed package): run it from a clone"))
        return 2
    return subprocess.call([sys.executable, "-m", STRESS_MODULE, *stress_args], cwd=root)


def main(argv=None) -> int:
    _quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stress"]:                      # every argument is the stress tool's to check
        return run_stress(argv[1:])
    args = build_parser().parse_args(argv)
    checks = {"generate": check_generate, "export-gguf": check_export, "validate": check_validate}
    problem = (checks[args.command](args) if args.command in checks else None) or check_paths(args)
    if problem:
        sys.stderr.write(error_line(problem))
        return 2
    module, func = COMMANDS[args.command].split(":")
    from hsd.errors import HSDError

    try:
        problem = check_chain_fits(args)
        if problem:
            sys.stderr.write(error_line(problem))
            return 2
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except HSDError as e:
        sys.stderr.write(error_line(str(e)))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

