"""The engine's own time: the share of decode wall time outside model forwards, and what one
verification costs with the factored draw against building the whole outcome table (wall clock):

    python -m hsd.tools.bench.overhead [--family bundled] [--hierarchy 0,3:3 --hierarchy 0,1,3:1,4]
                                       [--temperature 0,1] [--max-new-tokens 96] [--threads 2]
                                       [--repeats 50] [--forward llamacpp] [--json out.json]

1) Decodes: for each hierarchy (``chain:buffers``, chain indices into the family) and temperature,
   one decode per example prompt (eos ignored); forward time is the engine's own level counters
   (inside the passes only: sampling and rules are outside), wall time the whole ``generate``.
   Medians over prompts.
2) Verification: the rule on a (γ, V) float32 block as the engine hands it (the family's
   vocabulary, random rows), ``verify`` (the factored draw: row weights, then one row) and the
   same verdict from the whole (γ+1, V) table and one inverse CDF over it, the two interleaved
   call by call; medians after 20 warm-up calls.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

DEFAULT_HIERARCHIES = ("0,3:3", "0,1,3:1,4")
FORWARDS = ("auto", "lean", "hf", "llamacpp")      # = hsd.levels.FORWARDS (no torch import for --help)


def parse_hierarchy(text: str) -> tuple[list[int], list[int]]:
    chain, _, buffers = text.partition(":")
    return [int(x) for x in chain.split(",")], [int(x) for x in buffers.split(",") if x]


def decode_shares(family, hierarchies, temperatures, prompts, max_new_tokens: int,
                  forward_path: str = "auto") -> list[dict]:
    from hsd.engine import Hierarchy

    rows = []
    for chain, buffers in hierarchies:
        h = Hierarchy.from_family(family, chain=chain, buffers=buffers, rules="hsd", forward=forward_path, threads=None)
        for temperature in temperatures:
            h.generate(prompts[0], max_new_tokens=8, temperature=temperature)           # warm-up
            shares, outside = [], []
            for seed, prompt in enumerate(prompts):
                t0 = time.perf_counter()
                result = h.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                    seed=seed, stop_at_eos=False)
                wall = (time.perf_counter() - t0) * 1000.0
                forward = sum(level.forward_ms for level in result.trace.summary().levels)
                shares.append(1.0 - forward / wall)
                outside.append((wall - forward) / len(result.token_ids))
            label = " → ".join(f"{family.names[c]}[{b}]" for c, b in zip(chain, buffers))
            rows.append({"hierarchy": f"{label} → {family.names[chain[-1]]}" if buffers else family.names[chain[-1]],
                         "chain": chain, "buffers": buffers, "temperature": temperature,
                         "outside_share": statistics.median(shares),
                         "outside_ms_per_token": statistics.median(outside)})
    return rows


def rule_times(vocab: int, gammas, rules, repeats: int, seed: int = 0) -> list[dict]:
    import torch

    from hsd.verify import RULES, inverse_cdf

    g = torch.Generator().manual_seed(seed)
    rows = []
    for gamma in gammas:
        q = torch.softmax(3 * torch.randn(gamma, vocab, generator=g), -1)
        p = torch.softmax(3 * torch.randn(gamma + 1, vocab, generator=g), -1)
        tokens = torch.multinomial(q, 1, generator=g).reshape(-1)
        for name in rules:
            rule = RULES[name]

            def whole_table():
                table, _ = rule.outcome(tokens, q, p)
                u = float(torch.rand((), generator=g, dtype=torch.float64))
                return divmod(inverse_cdf(table.reshape(-1), u), vocab)

            ways = {"factored": lambda: rule(tokens, q, p, g, greedy=False), "whole_table": whole_table}
            times = {k: [] for k in ways}
            for r in range(repeats + 20):
                for k, f in ways.items():
                    t0 = time.perf_counter()
                    f()
                    if r >= 20:
                        times[k].append((time.perf_counter() - t0) * 1e6)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"rule": name, "gamma": gamma, "vocab": vocab, "factored_us": med["factored"],
                         "whole_table_us": med["whole_table"],
                         "factored_over_whole": med["factored"] / med["whole_table"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hsd.tools.bench.overhead", description=__doc__.splitlines()[0])
    p.add_argument("--family", default="bundled")
    p.add_argument("--hierarchy", action="append", default=None,
                   help="chain:buffers, e.g. 0,1,3:1,4 (repeatable; default 0,3:3 and 0,1,3:1,4)")
    p.add_argument("--temperature", default="0,1")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--forward", choices=FORWARDS, default="auto",
                   help="the levels' forward path (llamacpp: the models' GGUF twins on llama.cpp)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    try:
        hierarchies = [parse_hierarchy(h) for h in (args.hierarchy or DEFAULT_HIERARCHIES)]
        temperatures = [float(t) for t in args.temperature.split(",")]
    except ValueError:
        print("error: --hierarchy is chain:buffers (e.g. 0,1,3:1,4) and --temperature numbers "
              "separated by commas", file=sys.stderr)
        return 2
    import torch

    from hsd.errors import HSDError
    from hsd.models import load_family
    from hsd.tools.measure import DEFAULT_PROMPTS

    torch.set_num_threads(args.threads)
    try:
        family = load_family(args.family)
        decodes = decode_shares(family, hierarchies, temperatures, list(DEFAULT_PROMPTS), args.max_new_tokens,
                                forward_path=args.forward)
    except HSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rules = rule_times(family.vocab_size, (1, 3, 4), ("token", "hsd"), args.repeats)
    stamp = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print(f"engine time outside model forwards ({args.forward} forward), wall clock, {args.threads} thread(s), {stamp}; "
          f"{len(DEFAULT_PROMPTS)} prompts × {args.max_new_tokens} new tokens, medians")
    print(f"{'hierarchy':<52} {'T':>3} {'outside forwards':>17} {'outside ms/token':>17}")
    for r in decodes:
        print(f"{r['hierarchy']:<52} {r['temperature']:>3g} {100 * r['outside_share']:>16.1f}% "
              f"{r['outside_ms_per_token']:>17.3f}")
    print(f"\none verification, V = {family.vocab_size}, median of {args.repeats} interleaved calls (µs)")
    print(f"{'rule':<6} {'γ':>3} {'factored draw':>14} {'whole table':>12} {'factored ÷ whole':>17}")
    for r in rules:
        print(f"{r['rule']:<6} {r['gamma']:>3} {r['factored_us']:>14.0f} {r['whole_table_us']:>12.0f} "
              f"{r['factored_over_whole']:>17.2f}")
    if args.json:
        meta = {"date": stamp, "threads": args.threads, "family": args.family, "torch": torch.__version__,
                "prompts": len(DEFAULT_PROMPTS), "max_new_tokens": args.max_new_tokens, "forward": args.forward,
                "clock": "wall clock"}
        with open(args.json, "w") as f:
            json.dump({"format": "hsd-overhead/1", "meta": meta, "decodes": decodes, "verification": rules},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
