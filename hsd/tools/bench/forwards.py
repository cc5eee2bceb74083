"""Lean ÷ transformers forward time, side by side in one run (wall clock):

    python -m hsd.tools.bench.forwards [--family bundled] [--threads 1] [--cache 200] [--new 1,5]
                                       [--repeats 50] [--json out.json]

For every model of the family and every block length n: one forward over n new tokens on a warm
cache of ``--cache`` tokens, through the transformers level (``hsd.levels.hf.LevelModel``) and the
lean level (``hsd.levels.lean.LeanLevel``), the two interleaved call by call so machine drift hits
both alike; medians after 10 warm-up calls, and the ratio of the medians.  Prints a table and,
with ``--json``, writes every median.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def measure(family, *, cache_tokens: int, new_tokens: list[int], repeats: int, seed: int = 0) -> list[dict]:
    import torch

    from hsd.levels import SamplingSettings
    from hsd.levels.hf import LevelModel
    from hsd.levels.lean import LeanLevel, lean_support

    generator = torch.Generator().manual_seed(seed)
    context = torch.randint(family.vocab_size, (cache_tokens,), generator=generator).tolist()
    settings, rows = SamplingSettings(), []
    for name, model in zip(family.names, family.models):
        if lean_support(model) is not None:
            continue
        levels = {kind: cls(model, name=name, vocab_size=family.vocab_size, settings=settings)
                  for kind, cls in (("hf", LevelModel), ("lean", LeanLevel))}
        for n in new_tokens:
            times = {kind: [] for kind in levels}
            for level in levels.values():
                level.reset()
                level.logits_after(context, 1)
            for r in range(repeats + 10):
                for kind, level in levels.items():
                    new = torch.randint(family.vocab_size, (n,), generator=generator).tolist()
                    t0 = time.perf_counter()
                    level.logits_after(context + new, n)
                    if r >= 10:
                        times[kind].append((time.perf_counter() - t0) * 1000.0)
            med = {kind: statistics.median(t) for kind, t in times.items()}
            rows.append({"model": name, "new_tokens": n, "hf_ms": med["hf"], "lean_ms": med["lean"],
                         "lean_over_hf": med["lean"] / med["hf"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hsd.tools.bench.forwards", description=__doc__.splitlines()[0])
    p.add_argument("--family", default="bundled")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=int, default=200, help="tokens already in the cache (default 200)")
    p.add_argument("--new", default="1,5", help="block lengths, comma-separated (default 1,5)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    from hsd.errors import HSDError
    from hsd.models import load_family

    torch.set_num_threads(args.threads)
    try:
        family = load_family(args.family)
    except HSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = measure(family, cache_tokens=args.cache, new_tokens=[int(x) for x in args.new.split(",")],
                   repeats=args.repeats)
    print(f"forward time, wall clock, median of {args.repeats} interleaved calls, {args.threads} thread(s), "
          f"warm cache of {args.cache} tokens, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'model':<16} {'new':>4} {'transformers ms':>16} {'lean ms':>9} {'lean ÷ transformers':>20}")
    for r in rows:
        print(f"{r['model']:<16} {r['new_tokens']:>4} {r['hf_ms']:>16.2f} {r['lean_ms']:>9.2f} {r['lean_over_hf']:>20.2f}")
    if args.json:
        meta = {"threads": args.threads, "cache_tokens": args.cache, "repeats": args.repeats,
                "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "family": args.family}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"format": "hsd-forwards/1", "meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
