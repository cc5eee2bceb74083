"""Screenshots of every tab in Debian's chromium, in every look (light, dark, the presenter view)
and at every width asked (1400 and 1024 px by default), and the README screenshot.

    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:7860 [--out artifacts/screens]
                                            [--readme assets/screenshot.png] [--regime assets/regime-bundled.png]
                                            [--looks light,dark,presenter] [--widths 1400,1024]

Run ``python app.py`` first.  Files: ``<tab>-<look>-<width>.png``.  The README screenshot is the
Generate tab after a run in the presenter view at the first width; with a profile available the
stack is the optimiser's choice and the target alone is timed too.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def wait_finished(page, timeout_ms: int = 300_000) -> None:
    page.wait_for_function("() => document.querySelector('#stats').innerText.includes('Status: finished')",
                           timeout=timeout_ms)


QUERY = {"light": "/", "dark": "/?__theme=dark", "presenter": "/?presenter=1"}


def shoot(browser, url: str, out: Path, look: str, readme: Path | None, regime: Path | None = None,
          width: int = 1400) -> None:
    page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + QUERY[look])
    theme = f"{look}-{width}"
    page.wait_for_selector("#prompt textarea", timeout=120_000)
    time.sleep(2)
    # Optimise (shipped profile) -> send the plan to Generate, when a profile exists
    page.get_by_role("tab", name="Optimise").click()
    page.click("#optimise-btn")
    time.sleep(3)
    has_plan = page.evaluate("() => { const el = document.querySelector('#opt-gsp .js-plotly-plot');"
                             " return !!(el && el.data && el.data.length) }")
    if has_plan:
        page.click("#regime-btn")
        page.wait_for_function("() => { const el = document.querySelector('#opt-regime .js-plotly-plot');"
                               " return el && el.data && el.data.length && el.data[0].type === 'heatmap' }",
                               timeout=300_000)
        time.sleep(1.5)
        page.locator("#opt-regime").screenshot(path=str(out / f"regime-{theme}.png"))
        if regime is not None and theme == "light-1400":
            page.locator("#opt-regime").screenshot(path=str(regime))
        page.screenshot(path=str(out / f"optimise-{theme}.png"), full_page=True)
        page.get_by_role("button", name="Use this plan on the Generate tab").click()
        time.sleep(1.5)
    else:
        page.get_by_role("tab", name="Generate").click()
    page.get_by_label("Also time the target alone (runs it first)").check()
    page.click("#generate-btn")
    wait_finished(page)
    time.sleep(1.5)
    page.screenshot(path=str(out / f"generate-{theme}.png"), full_page=True)
    if readme is not None and look == "presenter" and width == 1400:
        page.screenshot(path=str(readme), full_page=True)
    page.get_by_role("tab", name="Compare").click()
    page.click("#compare-btn")
    page.wait_for_function("() => document.body.innerText.includes('Done:')", timeout=600_000)
    time.sleep(1.5)
    page.screenshot(path=str(out / f"compare-{theme}.png"), full_page=True)
    page.get_by_role("tab", name="Learn").click()
    time.sleep(3)
    for _ in range(5):
        page.get_by_role("button", name="Step ▶").click()
        time.sleep(0.5)
    page.click("#scenario-cheap")
    page.wait_for_function("() => document.querySelector('#scenario-answer').innerText.includes('×0.1')",
                           timeout=60_000)
    time.sleep(2)
    page.screenshot(path=str(out / f"learn-{theme}.png"), full_page=True)
    print(theme, "page errors:", errors or "none")
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--out", type=Path, default=Path("artifacts/screens"))
    parser.add_argument("--readme", type=Path, default=None)
    parser.add_argument("--regime", type=Path, default=None, help="also write the Optimise tab's regime map here")
    parser.add_argument("--looks", default="light,dark,presenter")
    parser.add_argument("--widths", default="1400,1024")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=["--disable-gpu"])
        for width in (int(w) for w in args.widths.split(",")):
            for look in args.looks.split(","):
                shoot(browser, args.url, args.out, look, args.readme, args.regime, width)
        browser.close()


if __name__ == "__main__":
    main()
