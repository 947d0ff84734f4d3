"""A real `streamlit run app.py` and Debian's Chromium, for the browser test and the latency
benchmark. Only data-testid attributes, roles, text and Plotly's own graph div are used —
never Streamlit's generated CSS class names."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'  # Plotly's graph div (its own class)
# a named trace's y values as drawn: Plotly keeps the decoded arrays in _fullData (the figure
# JSON sends numpy arrays as base64 typed arrays, which `data` keeps encoded)
TRACE_Y = """([selector, i, name]) => {
    const g = document.querySelectorAll(selector)[i];
    const t = g && g._fullData && g._fullData.find(t => t.name === name);
    return t ? Array.from(t.y) : null;
}"""


# the centre of the drawn marker of trace `trace` whose customdata starts with `prefix`, in the
# first chart whose title or a panel title contains `title` (contains: Streamlit wraps a title
# in <b>), scrolled into view (a click outside the viewport hits nothing)
MARKER_CENTRE = """([selector, title, trace, prefix]) => {
    const titled = (g) => [g._fullLayout.title && g._fullLayout.title.text,
        ...(g._fullLayout.annotations || []).map(a => a.text)]
        .some(t => t && t.includes(title));
    const g = [...document.querySelectorAll(selector)].find(titled);
    const custom = Array.from(g._fullData[trace].customdata, (row) => Array.from(row));
    const i = custom.findIndex(c => prefix.every((v, j) => c[j] === v));
    const marker = g.querySelectorAll('.scatterlayer .trace')[
        g._fullData.filter((t, j) => j < trace && t.type === 'scatter').length
    ].querySelectorAll('.points path')[i];
    marker.scrollIntoView({block: 'center'});
    const r = marker.getBoundingClientRect();
    return {x: r.x + r.width / 2, y: r.y + r.height / 2};
}"""


def click_marker(page, title: str, trace: int, prefix: list[int]) -> None:
    """Click the marker of `trace` (its index in the figure's data) whose customdata starts
    with `prefix`, in the chart titled `title`."""
    box = page.evaluate(MARKER_CENTRE, [CHART, title, trace, prefix])
    page.mouse.click(box["x"], box["y"])


def click_marker_until(page, title: str, trace: int, prefix: list[int], condition: str,
                       tries: int = 3, timeout_ms: float = 10_000) -> None:
    """`click_marker`, then wait for the JavaScript `condition`; click again (the marker found
    afresh) if it does not hold within `timeout_ms`. A click that lands while Plotly is still
    laying the chart out is lost (seen once in CI on a loaded 2-core machine); the last try's
    TimeoutError propagates."""
    for attempt in range(tries):
        click_marker(page, title, trace, prefix)
        try:
            page.wait_for_function(condition, timeout=timeout_ms)
            return
        except Exception:
            if attempt == tries - 1:
                raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(timeout: float = 60.0, env: dict | None = None) -> Iterator[str]:
    """`streamlit run app.py` on a free port; yields its URL once it answers its health check."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
        "--server.headless", "true", "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Until the script run has finished (the app's own state attribute says so)."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def wait_charts(page, count: int = 1, timeout_ms: float = 60_000) -> None:
    """Until `count` Plotly charts have drawn their data."""
    page.wait_for_function(
        """([selector, count]) => {
            const charts = document.querySelectorAll(selector);
            return charts.length >= count &&
                [...charts].slice(0, count).every(g => g._fullData && g._fullLayout);
        }""",
        arg=[CHART, count],
        timeout=timeout_ms,
    )


def trace_y(page, chart_index: int, trace_name: str):
    """The y values of a named trace of the chart_index-th chart, read from Plotly's graph div."""
    return page.evaluate(TRACE_Y, [CHART, chart_index, trace_name])


def exceptions(page) -> int:
    return page.locator('[data-testid="stException"]').count()


def wait_trace_change(page, chart_index: int, trace_name: str, before, timeout_ms: float = 30_000):
    """Until the named trace's drawn y values differ from `before`."""
    page.wait_for_function(
        f"""([selector, i, name, before]) => {{
            const y = ({TRACE_Y})([selector, i, name]);
            return y !== null && JSON.stringify(y) !== JSON.stringify(before);
        }}""",
        arg=[CHART, chart_index, trace_name, before],
        polling="raf",
        timeout=timeout_ms,
    )
