"""Canned example traces for the app's Learn tab (``assets/examples/*.json``).

    python -m hsd.tools.examples [--family bundled] [--out assets/examples] [--max-new-tokens 40]

Each example is a real decode of a fixed prompt with a fixed hierarchy and seed on the given
family, saved as ``hsd.trace`` JSON with ``meta.label`` (what the app lists) and
``meta.request`` (how to reproduce it with ``python -m hsd generate``).  Short on purpose: a
trace is stepped through one event at a time.  Knows nothing of Gradio or pictures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hsd.errors import HSDError
from hsd.tools.paths import ASSETS

OUT = ASSETS / "examples"

PROMPT_DEF = "def parse_args(argv):\n"
PROMPT_CLASS = "class LRUCache:\n    \"\"\"A small least-recently-used cache.\"\"\"\n\n    def __init__(self, size):\n"


def example_specs(n_models: int) -> list[dict]:
    """(file stem, label, chain, buffers, rules, temperature, prompt, seed) for a family of n models."""
    k = n_models - 1
    mid = k // 2 if k >= 2 else None
    specs = []
    if mid is not None and 0 < mid < k:
        specs.append(dict(stem="three-levels-hsd", chain=[0, mid, k], buffers=[3, 6], rules=["hsd", "hsd"],
                          temperature=1.0, prompt=PROMPT_DEF, seed=1,
                          label="3 levels · hsd rule · temperature 1 (draft → middle → target)"))
    specs.append(dict(stem="one-draft-token", chain=[0, k], buffers=[4], rules=["token"], temperature=1.0,
                      prompt=PROMPT_CLASS, seed=2, label="1 draft · token-wise rule · temperature 1"))
    specs.append(dict(stem="one-draft-greedy", chain=[0, k], buffers=[5], rules=["block"], temperature=0.0,
                      prompt=PROMPT_DEF, seed=0, label="1 draft · greedy (temperature 0): exact-match verification"))
    return specs


def make_examples(family, out: Path, max_new_tokens: int = 40) -> list[Path]:
    from hsd.engine import Hierarchy

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in example_specs(len(family.models)):
        h = Hierarchy.from_family(family, chain=spec["chain"], buffers=spec["buffers"], rules=spec["rules"])
        result = h.generate(spec["prompt"], max_new_tokens=max_new_tokens, temperature=spec["temperature"],
                            seed=spec["seed"])
        trace = result.trace
        names = [family.names[i] for i in spec["chain"]]
        trace.meta.update({
            "label": spec["label"], "family": family.spec, "made_by": "python -m hsd.tools.examples",
            "request": {"prompt": spec["prompt"], "family": family.spec, "chain": spec["chain"], "names": names,
                        "buffers": spec["buffers"], "rules": spec["rules"], "temperature": spec["temperature"],
                        "top_p": 1.0, "top_k": 0, "seed": spec["seed"], "max_new_tokens": max_new_tokens}})
        path = out / f"{spec['stem']}.json"
        trace.save(path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsd.tools.examples", description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="bundled", help="model family spec (default: bundled)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        from hsd.models import load_family

        family = load_family(args.family, device=args.device)
        for path in make_examples(family, args.out, args.max_new_tokens):
            print(path)
    except HSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
