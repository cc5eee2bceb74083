"""Write the latency model's prompt sets from the bundled family's HELD-OUT standard-library
files (the build's split: no model was trained on them): ``assets/prompts/profile.txt`` (what
``hsd profile`` measures acceptance on) from every other held-out file, and
``assets/prompts/validate.txt`` (what ``hsd validate`` decodes) from the rest, so the two sets
never share a file.  ``python scripts/make_prompt_sets.py [--profile N] [--validate N]``"""
from __future__ import annotations

import argparse
import sys

from hsd.family.corpus import corpus_files, escape_prompt, prompt_windows, split_files
from hsd.tools.paths import ASSETS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", type=int, default=24, help="prompts for profiling (default 24)")
    ap.add_argument("--validate", type=int, default=32, help="prompts for validation (default 32)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    _, held = split_files(corpus_files())
    version = sys.version.split()[0]
    for name, files, n, seed in (("profile", held[0::2], args.profile, args.seed),
                                 ("validate", held[1::2], args.validate, args.seed + 1)):
        prompts = prompt_windows(files, n, seed=seed)
        out = ASSETS / "prompts" / f"{name}.txt"
        out.write_text(
            f"# {n} prompts for `hsd {name}`: windows of whole lines from held-out files of the Python {version}\n"
            f"# standard library (every other held-out file; the other set uses the rest), written by\n"
            f"# scripts/make_prompt_sets.py (seed {seed}). One prompt per line; \\n is a newline, \\\\ a backslash.\n"
            + "".join(escape_prompt(p) + "\n" for p in prompts), encoding="utf-8")
        print(f"wrote {out}: {len(prompts)} prompts from {len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
