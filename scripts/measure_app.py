"""Measure the app's three targets and print a table (a benchmark command, not a test).

    .venv/bin/python scripts/measure_app.py [--family bundled] [--repeats 3] [--max-new-tokens 96]

1) start to ready: ``python app.py`` until ``/gradio_api/info`` answers (median of repeats);
2) first streamed token on screen: in Debian's chromium (Playwright, ``executable_path``), from
   the click on Generate to the first coloured token in ``#tokens`` (first click after start,
   then warm clicks);
3) panel-update overhead: the same request (prompt, stack, seed) decoded (a) by the engine alone
   in this process and (b) through the running app with streaming panels (gradio_client); the
   decode's wall time comes from each trace (start to finish, wall clock).  Interleaved, medians.

Timings on a shared 2-core machine vary run to run: read the medians, not single numbers.
"""
from __future__ import annotations

import argparse
import re
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "def parse_args(argv):\n"

from tools.stress.server import AppServer  # noqa: E402

START_TIMEOUT_S = 300.0


def start_app(env_extra: dict) -> tuple[AppServer, str, float]:
    """``app.py`` started and answering (within ``START_TIMEOUT_S``): (server, url, seconds to ready)."""
    server = AppServer(env_extra.get("HSD_FAMILY"), poll_s=0.1).start(timeout_s=START_TIMEOUT_S)
    return server, server.url.rstrip("/"), server.started_s


def first_token_s(url: str, clicks: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=["--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#prompt textarea", timeout=120_000)
        for _ in range(clicks):
            page.click("#clear-btn")
            page.wait_for_function("() => document.querySelectorAll('#tokens .token').length === 0")
            page.fill("#prompt textarea", PROMPT)
            t0 = time.perf_counter()
            page.click("#generate-btn")
            page.wait_for_selector("#tokens .token", timeout=120_000)
            out.append(time.perf_counter() - t0)
            page.wait_for_function("() => document.querySelector('#stats').innerText.includes('Status: finished')",
                                   timeout=300_000)
        browser.close()
    return out


def overhead(url: str, family_spec: str, chain_names: list[str], buffers: list[int], max_new: int,
             repeats: int, slots: int) -> tuple[list[float], list[float]]:
    """(engine-alone wall ms, through-the-app wall ms) per repeat, interleaved."""
    from gradio_client import Client

    from hsd.engine import Hierarchy
    from hsd.models import load_family
    from hsd.trace import Trace

    import torch

    from ui.settings import default_torch_threads

    torch.set_num_threads(default_torch_threads())      # the same threads as the app's decode
    family = load_family(family_spec)
    chain = [family.names.index(n) for n in chain_names]
    client = Client(url, verbose=False, download_files=False)
    alone, ui, paused, alone_e2e, ui_e2e = [], [], [], [], []
    for i in range(repeats + 1):                       # the first pair is a warm-up
        t0 = time.perf_counter()
        h = Hierarchy.from_family(family, chain=chain, buffers=buffers, rules="hsd")
        t = h.generate(PROMPT, max_new_tokens=max_new, temperature=1.0, seed=i).trace
        e2e_alone = time.perf_counter() - t0
        args = [PROMPT, family_spec, chain_names] + (buffers + [4] * slots)[:slots] + ["hsd"] * slots
        t0 = time.perf_counter()
        res = client.predict(*args, 1.0, 1.0, 0, i, max_new, False, False, api_name="/generate")
        e2e_ui = time.perf_counter() - t0
        dl = res[6]
        path = dl.get("path") or dl.get("value", {}).get("path")
        u = Trace.load(path)
        assert u.text == t.text, "the app and the engine decoded different text"
        if i:
            alone.append(t.summary().wall_ms)
            ui.append(u.summary().wall_ms)
            alone_e2e.append(1000 * e2e_alone)
            ui_e2e.append(1000 * e2e_ui)
            m = re.search(r"paused the decode (\d+) ms", res[1])
            paused.append(float(m.group(1)) / u.summary().wall_ms if m else float("nan"))
    return alone, ui, paused, alone_e2e, ui_e2e


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="bundled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--stack", default="", help="model names, comma-separated (default: the app's default)")
    parser.add_argument("--buffers", default="", help="one buffer per draft level, comma-separated")
    parser.add_argument("--skip-start", action="store_true", help="skip the start-up and first-token parts")
    args = parser.parse_args()
    env = {"HSD_FAMILY": args.family} if args.family != "bundled" else {}

    starts = []
    for _ in range(0 if args.skip_start else args.repeats):
        app, url, s = start_app(env)
        starts.append(s)
        app.stop()
    app, url, s = start_app(env)
    starts.append(s)
    try:
        time.sleep(3.0)                                 # the background preload of the models
        firsts = [float("nan")] * 2 if args.skip_start else first_token_s(url, args.repeats + 1)
        from ui.registry import Families, default_plan
        from ui.settings import Limits

        lim = Limits.from_env(dict(os.environ, **env))
        fams = Families(lim)
        names = fams.names(lim.family)
        if args.stack:
            stack = args.stack.split(",")
            buffers = [int(b) for b in args.buffers.split(",")] if args.buffers else [4] * (len(stack) - 1)
        else:
            stack, buffers = default_plan(fams, lim.family, names, lim)     # what the page starts with
        alone, ui, paused, alone_e2e, ui_e2e = overhead(url, lim.family, stack, buffers, args.max_new_tokens,
                                                        args.repeats, lim.max_levels - 1)
    finally:
        app.stop()
    med = statistics.median
    print(f"{'measure':58s} {'median':>10s}  all")
    print(f"{'app start to ready (python app.py -> /gradio_api/info)':58s} {med(starts):9.2f}s  "
          + " ".join(f"{x:.2f}" for x in starts))
    print(f"{'first token on screen after click (first click)':58s} {firsts[0]:9.2f}s")
    print(f"{'first token on screen after click (warm clicks)':58s} {med(firsts[1:]):9.2f}s  "
          + " ".join(f"{x:.2f}" for x in firsts[1:]))

    def row(label: str, values: list[float], fmt: str, each: str) -> None:
        print(f"{label:58s} {format(med(values), fmt):>9s}   " + " ".join(format(x, each) for x in values))

    def paired(u: list[float], a: list[float]) -> list[float]:
        return [x / y - 1 for x, y in zip(u, a)]

    row("decode wall ms, engine alone (" + "+".join(stack) + ")", alone, ".0f", ".0f")
    row("decode wall ms, through the app with streaming panels", ui, ".0f", ".0f")
    row("overhead per pair (app / alone - 1, same seed and text)", paired(ui, alone), ".1%", ".0%")
    row("share of the decode the page updates paused it (app count)", paused, ".1%", ".1%")
    row("end to end ms, engine alone (load stack + decode)", alone_e2e, ".0f", ".0f")
    row("end to end ms, click to final update (gradio_client)", ui_e2e, ".0f", ".0f")
    row("end-to-end overhead per pair (app / alone - 1)", paired(ui_e2e, alone_e2e), ".1%", ".0%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
