"""How long one rerun of the Dispatcher attention page takes on the server, through AppTest.

    python benchmarks/dispatcher_rerun.py [--repeats 3] [--browser]

A click on a grid cell reruns the whole page with a new interest expert (and, since the linked
views, a new history position); this times that rerun: the script, the cached model passes and
the figures, serialised for the browser. It does not include the browser drawing the charts
(`benchmarks/app_latency.py` measures that end to end); `--browser` adds that: Chromium against
`streamlit run`, a page switch to Dispatcher attention and a click on a stage-1 cell, each until
every chart on the page is drawn and the script is idle. Each expert is visited once cold (its
first visit in the process) and then again warm (the caches hold it). Not a test: nothing here
asserts a time. The load average is printed beside the medians: on a shared machine it says
how much the numbers are worth.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = "app_pages/dispatcher_attention.py"


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


ALL_CHARTS_DRAWN = """(selector) => {
    const charts = document.querySelectorAll(selector);
    return charts.length > 0 && [...charts].every(g => g._fullData && g._fullLayout);
}"""
def browser_timings(rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.app.browser import (
        CHART,
        MARKER_CENTRE,
        launch_chromium,
        streamlit_server,
        wait_idle,
    )

    def settled(page) -> None:
        wait_idle(page)
        page.wait_for_function(ALL_CHARTS_DRAWN, arg=CHART, timeout=120_000)

    switches, clicks = [], []
    with sync_playwright() as playwright, streamlit_server() as url:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        settled(page)
        for r in range(rounds):
            for title in ("Dispatcher attention", "Home"):
                link = page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title)
                started = time.perf_counter()
                link.first.click()
                if title == "Dispatcher attention":
                    page.get_by_text("Stage 1 —").first.wait_for(timeout=120_000)
                else:
                    page.wait_for_function("() => location.pathname.endsWith('/')")
                settled(page)
                if title == "Dispatcher attention":
                    switches.append(time.perf_counter() - started)
                    for j in (3, 5, 1):  # a cell of dispatcher j: a new expert each time
                        box = page.evaluate(MARKER_CENTRE, [CHART, "Stage 1", 0, [j, 10 + r]])
                        started = time.perf_counter()
                        page.mouse.click(box["x"], box["y"])
                        page.get_by_text(f"Interest expert D{j + 1} —").wait_for(timeout=120_000)
                        settled(page)
                        clicks.append(time.perf_counter() - started)
        browser.close()
    print(f"browser: page switch to Dispatcher attention, all charts drawn: median "
          f"{statistics.median(switches):.3f} s (n = {len(switches)}, max {max(switches):.3f})")
    print(f"browser: click on a stage-1 cell, all charts redrawn: median "
          f"{statistics.median(clicks):.3f} s (n = {len(clicks)}, max {max(clicks):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm passes over the experts")
    parser.add_argument("--browser", action="store_true", help="also time it in Chromium")
    args = parser.parse_args()

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    load_before = os.getloadavg()
    first_visit = timed(lambda: at.switch_page(PAGE).run())
    assert not at.exception, [e.value for e in at.exception]
    experts = at.selectbox(key="expert").options
    cold, warm = [], []
    for expert in experts[1:]:
        cold.append(timed(lambda e=expert: at.selectbox(key="expert").select(e).run()))
    for _ in range(args.repeats):
        for expert in experts:
            warm.append(timed(lambda e=expert: at.selectbox(key="expert").select(e).run()))
    assert not at.exception, [e.value for e in at.exception]
    load_after = os.getloadavg()
    print(f"page opened (first visit): {first_visit:.3f} s")
    print(f"rerun, an expert seen for the first time: median {statistics.median(cold):.3f} s "
          f"(n = {len(cold)}, max {max(cold):.3f})")
    print(f"rerun, an expert seen before: median {statistics.median(warm):.3f} s "
          f"(n = {len(warm)}, max {max(warm):.3f})")
    print("load average (1, 5, 15 min) before "
          f"{[round(x, 2) for x in load_before]}, after {[round(x, 2) for x in load_after]}; "
          f"{os.cpu_count()} cores")
    if args.browser:
        browser_timings(args.repeats)
        print(f"load average after the browser: {[round(x, 2) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()
