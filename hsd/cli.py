"""``python -m hsd <command>``: the command-line face of the engine.

Every command module in ``COMMAND_MODULES`` provides ``add_cli(subparsers)``, which adds its
sub-parser with ``set_defaults(func=run)``; ``run(args) -> int`` returns the exit code.
A user mistake (any ``hsd.errors.HSDError``) is printed as ONE line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from hsd.errors import HSDError

COMMAND_MODULES = ["hsd.cli", "hsd.profile", "hsd.optimize", "hsd.validate", "hsd.bench", "hsd.stress"]


def _csv_ints(text: str) -> list[int]:
    text = text.strip()
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("generate", help="decode a prompt with a hierarchy of models")
    p.add_argument("--models", default="bundled",
                   help="comma-separated local folders or hub ids, smallest first, last = target; "
                        "or a family name: 'bundled' (default) or a preset")
    p.add_argument("--chain", type=_csv_ints, default=None,
                   help="with a family name: which of its models to stack, e.g. 0,2,3 (default: all)")
    p.add_argument("--buffers", type=_csv_ints, default=None,
                   help="buffer size per draft level, smallest first, e.g. 4,8 (default: 4 per level)")
    p.add_argument("--rule", type=_csv, default=["hsd"],
                   help="verification rule for every level, or one per verifying level (comma-separated)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.add_argument("--trace", default=None, help="also save the full trace as JSON to this path")
    p.set_defaults(func=run_generate)


def run_generate(args) -> int:
    from hsd.engine import Hierarchy
    from hsd.models import load_family

    family = load_family(args.models, device=args.device)
    chain = args.chain if args.chain is not None else list(range(len(family.models)))
    buffers = args.buffers if args.buffers is not None else [4] * (len(chain) - 1)
    rules = args.rule[0] if len(args.rule) == 1 else args.rule
    h = Hierarchy.from_family(family, chain=chain, buffers=buffers, rules=rules)
    result = h.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if args.trace:
        result.trace.save(args.trace)
    summary = result.trace.summary()
    if args.json:
        print(json.dumps({"text": result.text, "token_ids": result.token_ids,
                          "summary": summary.to_dict()}))
    else:
        print(args.prompt + result.text)
        edges = ", ".join(f"L{e.drafter}→L{e.verifier} {e.rate:.2f}" for e in summary.edges) or "none"
        print(f"\n[{summary.n_tokens} tokens, {summary.tokens_per_s:.1f} tokens/s wall clock, "
              f"{summary.tokens_per_target_call:.2f} tokens per target call, acceptance {edges}]",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hsd", description="Hierarchical speculative decoding")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def _quiet_libraries() -> None:
    """The CLI's output is its own: no weight-loading progress bars or library warnings."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv=None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
