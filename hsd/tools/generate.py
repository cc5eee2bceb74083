"""``hsd generate``: decode one prompt with a hierarchy and print the text (or one JSON object).

Ctrl-C stops the decode cleanly after the current target round (the engine's ``stop`` callback):
the trace ends with ``Finished("cancelled")``, what was generated so far is printed, and the exit
code is 130.  A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading


@contextlib.contextmanager
def ctrl_c_stops(flag: threading.Event):
    """The first Ctrl-C sets ``flag``; a second raises KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args) -> int:
    from hsd.engine import Hierarchy
    from hsd.models import load_family
    from hsd.trace import Trace

    family = load_family(args.models, device=args.device)
    chain = args.chain if args.chain is not None else list(range(len(family.models)))
    buffers = args.buffers if args.buffers is not None else [4] * (len(chain) - 1)
    rules = args.rule[0] if len(args.rule) == 1 else args.rule
    h = Hierarchy.from_family(family, chain=chain, buffers=buffers, rules=rules, forward=args.forward,
                              threads=args.threads)
    stop = threading.Event()
    trace = Trace()
    with ctrl_c_stops(stop):
        trace.extend(h.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=stop.is_set))
    summary = trace.summary()
    if args.json:
        print(json.dumps({"text": trace.text, "token_ids": trace.token_ids, "summary": summary.to_dict()}))
    else:
        print(args.prompt + trace.text)
        edges = ", ".join(f"L{e.drafter}→L{e.verifier} {e.rate:.2f}" for e in summary.edges) or "none"
        print(f"\n[{summary.n_tokens} tokens, {summary.tokens_per_s:.1f} tokens/s wall clock, "
              f"{summary.tokens_per_target_call:.2f} tokens per target call, acceptance {edges}"
              + (", stopped by Ctrl-C" if summary.finish_reason == "cancelled" else "") + "]", file=sys.stderr)
    if args.trace:                 # after the text: a write that fails now loses nothing already printed
        try:
            trace.save(args.trace)
        except OSError as e:
            print(f"error: could not write the trace to {args.trace} ({e.strerror or e})", file=sys.stderr)
            return 2
    return 130 if summary.finish_reason == "cancelled" else 0
