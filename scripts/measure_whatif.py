"""Time a what-if edit in a real browser: change one cost multiplier on the Optimise tab and wait
until the GSP panel's title shows the re-solved optimum (wall clock, input to redraw).

    .venv/bin/python scripts/measure_whatif.py --url http://127.0.0.1:7860 [--repeats 7]

Run ``python app.py`` first (the bundled family and its shipped profile)."""
from __future__ import annotations

import argparse
import shutil
import statistics
import time

TITLE = "() => { const el = document.querySelector('#opt-gsp .js-plotly-plot'); return el && el.layout && el.layout.title ? (el.layout.title.text || '') : '' }"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=["--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(args.url)
        page.wait_for_selector("#prompt textarea", timeout=120_000)
        page.get_by_role("tab", name="Optimise").click()
        page.click("#optimise-btn")
        page.wait_for_function(f"() => ({TITLE})().includes('model-predicted')", timeout=300_000)
        page.wait_for_timeout(2000)
        box = page.locator("#whatif-cost-3 input[type=number]")
        times = []
        for i in range(args.repeats + 1):
            before = page.evaluate(TITLE)
            box.fill(f"{2 + i}")
            t0 = time.perf_counter()
            box.press("Enter")
            page.wait_for_function(f"() => ({TITLE})() !== {before!r}", timeout=60_000, polling="raf")
            ms = (time.perf_counter() - t0) * 1000
            if i:
                times.append(ms)
            page.wait_for_timeout(300)
        browser.close()
    print(f"what-if edit to redrawn GSP panel (chromium, wall clock): median {statistics.median(times):.0f} ms, "
          f"min {min(times):.0f}, max {max(times):.0f} over {len(times)} edits")


if __name__ == "__main__":
    main()
