"""How quickly the app answers, measured in Chromium against a real `streamlit run app.py`.

    python benchmarks/app_latency.py            # writes benchmarks/results/app-latency.{json,md}
    python benchmarks/app_latency.py --phases startup,slider_ms --out /tmp/lat   # a subset

1. startup: from launching `streamlit run` to the first chart drawn on Home (fresh server each
   repeat; the browser is already open, as a user's would be);
2. slider: a Complexity-lab slider move (k, by the keyboard) to the redrawn analytic curves;
3. page switch: a sidebar click to the target page's charts drawn and its script idle;
4. load: five browser sessions each start training the default models, then every page is
   visited from each of them while they train; every visit must finish without an exception.

Targets (the issue's): startup <= 3 s, slider <= 300 ms, page switch <= 1 s. Timings depend
on the machine and on what else runs on it: the load average is recorded before and after.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.app.browser import (  # noqa: E402
    exceptions,
    free_port,
    launch_chromium,
    streamlit_server,
    trace_y,
    wait_charts,
    wait_healthy,
    wait_idle,
    wait_trace_change,
)

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"startup_s": 3.0, "slider_ms": 300.0, "page_switch_s": 1.0}
# sidebar title -> (text that only that page shows, charts it draws)
PAGES = {
    "Home": ("A guided path", 1),
    "Dispatcher attention": ("Stage 1 —", 4),
    "Interest memory": ("How evenly the slots are used", 2),
    "Recommend": ("What changes when a dispatcher is removed", 1),
    "Complexity lab": ("Measured on this device", 1),
    "Train": ("Both models train at once", 0),
}


ELASTIC_Y = (
    "(s) => JSON.stringify(document.querySelector(s).data.find(t => t.name === 'ELASTIC').y)"
)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "max": round(max(values), 3),
    }


def new_page(browser):
    return browser.new_page(viewport={"width": 1400, "height": 900})


def measure_startup(browser, repeats: int = 3) -> dict:
    """Fresh `streamlit run` each time, and a fresh browser context (no cached scripts); the
    clock starts before the process does. Records when the server answers, when the page's
    title is drawn and when the first chart is drawn."""
    times, boots, titles = [], [], []
    for _ in range(repeats):
        port = free_port()
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                "--server.headless", "true", "--server.port", str(port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, 60)
            boots.append(time.perf_counter() - started)
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.get_by_text("ELASTIC: attention that costs").wait_for(timeout=60_000)
            titles.append(time.perf_counter() - started)
            wait_charts(page, 1)
            times.append(time.perf_counter() - started)
            context.close()
        finally:
            process.terminate()
            process.wait(10)
    return {
        "first_chart_s": summary(times),
        "title_s": summary(titles),
        "server_answers_s": summary(boots),
    }


def measure_slider(page, url: str) -> dict:
    """Move k by the keyboard up to its largest value, down to its smallest and back to 8: a
    setting seen for the first time builds its figure, a revisited one comes from the cache."""
    page.goto(f"{url}/complexity_lab")
    wait_idle(page)
    wait_charts(page)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Dispatchers k")
    thumb = thumb.get_by_role("slider")
    values = [1, 2, 4, 8, 16, 32, 64, 128]
    position, seen = values.index(8), {8}
    moves = ["ArrowRight"] * 4 + ["ArrowLeft"] * 7 + ["ArrowRight"] * 3
    first, again = [], []
    for key in moves:
        before = trace_y(page, 0, "ELASTIC")
        thumb.focus()
        started = time.perf_counter()
        page.keyboard.press(key)
        wait_trace_change(page, 0, "ELASTIC", before)
        elapsed = (time.perf_counter() - started) * 1e3
        position += 1 if key == "ArrowRight" else -1
        (again if values[position] in seen else first).append(elapsed)
        seen.add(values[position])
        wait_idle(page)
    return {**summary(first + again), "new_setting": summary(first), "revisited": summary(again)}


def switch_to(page, title: str, timeout_ms: float = 60_000) -> float:
    """Click a sidebar link; seconds until the page's own text and charts are drawn."""
    marker, charts = PAGES[title]
    link = page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first
    started = time.perf_counter()
    link.click()
    page.get_by_text(marker).first.wait_for(timeout=timeout_ms)
    if charts:
        wait_charts(page, charts, timeout_ms)
    wait_idle(page, timeout_ms)
    elapsed = time.perf_counter() - started
    if exceptions(page):
        raise AssertionError(f"{title} shows an exception")
    return elapsed


def measure_page_switch(page, url: str, rounds: int = 2) -> dict:
    page.goto(url)
    wait_idle(page)
    wait_charts(page)
    order = ["Dispatcher attention", "Interest memory", "Recommend", "Complexity lab", "Train"]
    per_page: dict[str, list[float]] = {title: [] for title in [*order, "Home"]}
    for _ in range(rounds):
        for title in [*order, "Home"]:
            per_page[title].append(switch_to(page, title))
    every = [t for times in per_page.values() for t in times]
    return {"all_s": summary(every), "per_page_s": {t: summary(v) for t, v in per_page.items()}}


def measure_under_training(browser, url: str, sessions: int = 5, rounds: int = 2) -> dict:
    """Each session starts the default training run, then visits every page while they train."""
    contexts = [
        browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(sessions)
    ]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.goto(f"{url}/train")
        wait_idle(page)
        page.get_by_role("button", name="Train ELASTIC and SASRec").click()
        page.get_by_text("Run 1:").wait_for(timeout=60_000)
    times, failures = [], []
    order = ["Dispatcher attention", "Interest memory", "Recommend", "Complexity lab", "Home"]
    for _ in range(rounds):
        for i, page in enumerate(pages):
            for title in order:
                try:
                    times.append(switch_to(page, title, timeout_ms=120_000))
                except Exception as error:  # record, go on: the point is whether pages answer
                    failures.append(f"session {i + 1}, {title}: {error}")
    progress = []
    for page in pages:
        switch_to(page, "Train", timeout_ms=120_000)
        progress.append(page.get_by_text("Run 1:").first.inner_text())
        stop = page.get_by_role("button", name="Stop")
        if stop.count():
            stop.first.click()
    for context in contexts:
        context.close()
    return {
        "sessions": sessions,
        "visits": len(times),
        "failures": failures,
        "every_page_answered": not failures,
        "page_visit_s": summary(times) if times else None,
        "runs_at_the_end": progress,
    }


def _row(label: str, stats: dict | None, target: str, error: str | None = None) -> str:
    if stats is None:
        return f"| {label} | failed: {error} | | | {target} |"
    return f"| {label} | {stats['median']} | {stats['p90']} | {stats['max']} | {target} |"


def write_markdown(result: dict, path: Path) -> None:
    skipped = {"error": "not measured in this run (--phases)"}
    s, sl, sw, load = (result.get(name, skipped) for name in PHASES)
    machine = result["machine"]
    lines = [
        "# App latency",
        "",
        f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['device']}, {machine['training_slots']} training slots), Chromium headless "
        f"on the same machine; load average (1, 5, 15 min) before {result['load_before']}, "
        f"after {result['load_after']}. Produced by `python benchmarks/app_latency.py`.",
        "",
        "| what | median | p90 | max | target |",
        "| --- | --- | --- | --- | --- |",
        _row(
            "`streamlit run` → first chart drawn (s)",
            s.get("first_chart_s"),
            f"≤ {TARGETS['startup_s']}",
            s.get("error"),
        ),
        _row(
            "Complexity-lab slider → redrawn curves (ms)",
            None if "error" in sl else sl,
            f"≤ {TARGETS['slider_ms']:.0f}",
            sl.get("error"),
        ),
        _row(
            "page switch, click → charts drawn (s)",
            sw.get("all_s"),
            f"≤ {TARGETS['page_switch_s']}",
            sw.get("error"),
        ),
        _row(
            f"page visit while {load.get('sessions', 5)} sessions train (s)",
            load.get("page_visit_s"),
            "every page answers",
            load.get("error"),
        ),
        "",
    ]
    if "server_answers_s" in s:
        lines.append(
            f"Startup, medians: the server answers its health check after "
            f"{s['server_answers_s']['median']} s, the page title is drawn after "
            f"{s['title_s']['median']} s, the first chart after {s['first_chart_s']['median']} s. "
            "The last step is the browser fetching and compiling Streamlit's 4.7 MB Plotly "
            "bundle, which it loads on the first Plotly element of a session."
        )
    if "new_setting" in sl:
        lines += [
            "",
            f"Slider: a setting seen for the first time {sl['new_setting']['median']} ms "
            f"(median of {sl['new_setting']['n']}), a revisited one (figure cached) "
            f"{sl['revisited']['median']} ms (median of {sl['revisited']['n']}).",
        ]
    if "per_page_s" in sw:
        lines += [
            "",
            "Page switch by page (median s): "
            + ", ".join(f"{t} {v['median']}" for t, v in sw["per_page_s"].items())
            + ".",
        ]
    if "visits" in load:
        answered = "yes" if load["every_page_answered"] else "no — " + "; ".join(load["failures"])
        lines += [
            "",
            f"Under load: {load['visits']} page visits from {load['sessions']} browser sessions, "
            f"each of which had started training the default models (both models, 1,000 "
            f"synthetic users); every page answered: {answered}. Runs when the visits ended: "
            + "; ".join(load["runs_at_the_end"])
            + ".",
        ]
    path.write_text("\n".join([*lines, ""]))


PHASES = ("startup", "slider_ms", "page_switch", "under_training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="fresh servers started for the startup figure")
    parser.add_argument("--sessions", type=int, default=5,
                        help="browser sessions training at once in the load phase")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for app-latency.{json,md}")
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from elastic.app.jobs import TRAINING_SLOTS

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "python": platform.python_version(),
            "training_slots": TRAINING_SLOTS,
        },
        "load_before": load_average(),
        "targets": TARGETS,
    }
    with open("/proc/cpuinfo") as f:
        result["machine"]["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
            result["machine"]["cpu"],
        )
    phases = {
        "startup": lambda browser, url: measure_startup(browser, args.startup_repeats),
        "slider_ms": lambda browser, url: measure_slider(new_page(browser), url),
        "page_switch": lambda browser, url: measure_page_switch(new_page(browser), url),
        "under_training": lambda browser, url: measure_under_training(browser, url,
                                                                       args.sessions),
    }
    phases = {name: phase for name, phase in phases.items() if name in args.phases.split(",")}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        with streamlit_server() as url:
            for name, phase in phases.items():
                print(f"{name}…", flush=True)
                try:
                    result[name] = phase(browser, url)
                except Exception as error:  # keep the other phases' numbers
                    result[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        browser.close()
    result["load_after"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "app-latency.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, args.out / "app-latency.md")
    print((args.out / "app-latency.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
