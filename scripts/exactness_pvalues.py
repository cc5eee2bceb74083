"""The p-values behind tests/test_sampling_exactness.py, as a table and JSON.

    .venv/bin/python scripts/exactness_pvalues.py [--out artifacts/exactness-pvalues.json]

Runs the test's own checks (the same stacks, seeds, sample size and reference law) for every
rule, sampling setting, bottom level and forward path, and prints each check's χ² p-value and the
threshold it is judged against: a lossless rule passes above 1 % / (number of lossless p-values)
(Bonferroni), ``hsd-uncapped`` must fall below 1e-6.  About as long as the test file (7 minutes
on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from hsd.levels.ggml import llamacpp_missing
    from hsd.verify import LOSSLESS_RULES
    from tests import test_sampling_exactness as t

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--out", default=None, help="write every p-value as JSON to this path")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    forwards = ["lean", "hf"] + (["llamacpp"] if llamacpp_missing() is None else [])
    rows, t0 = [], time.time()
    for setting in t.SETTINGS:
        for bottom in t.BOTTOMS:
            for forward in forwards:
                for rule in list(LOSSLESS_RULES) + ["hsd-uncapped"]:
                    pv = t._pvalues(setting, rule, forward, bottom)
                    lossless = rule != "hsd-uncapped"
                    worst = min(pv.values())
                    held = worst > t.PASS_ABOVE if lossless else worst < t.CAUGHT_BELOW
                    rows.append({"setting": setting, "bottom": bottom, "forward": forward, "rule": rule,
                                 "n": t.N, "length": t.LENGTH, "pvalues": pv, "min_pvalue": worst, "held": held})
                    print(f"{setting:<18} {bottom:<6} {forward:<9} {rule:<13} min p = {worst:.3g}  "
                          + "  ".join(f"{k}: {v:.3g}" for k, v in pv.items()) + ("" if held else "  FAILED"),
                          flush=True)
    lossless = [r for r in rows if r["rule"] != "hsd-uncapped"]
    caught = [r for r in rows if r["rule"] == "hsd-uncapped"]
    print(f"\n{len(lossless)} lossless runs × {len(t.CHECKS)} checks, {t.N} decodes of {t.LENGTH} tokens each: "
          f"smallest p = {min(r['min_pvalue'] for r in lossless):.3g} (pass above {t.PASS_ABOVE:.2g}); "
          f"hsd-uncapped: largest of its smallest p = {max(r['min_pvalue'] for r in caught):.3g} "
          f"(caught below {t.CAUGHT_BELOW:g}); {time.time() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"pass_above": t.PASS_ABOVE, "caught_below": t.CAUGHT_BELOW,
                                              "runs": rows}, indent=1), encoding="utf-8")
    return 0 if all(r["held"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
