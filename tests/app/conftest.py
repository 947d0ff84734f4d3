"""AppTest helpers: run the real entry point, switch pages, read the drawn figures."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 120  # seconds per script run: the first one imports torch and loads the demo


def open_page(page: str | None = None, query: dict | None = None) -> AppTest:
    """Run app.py (optionally with URL query parameters), then switch to `page`."""
    if not (ROOT / "assets" / "demo" / "demo.json").is_file():
        pytest.fail("assets/demo is missing: run python scripts/make_demo_checkpoint.py")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page is None:
        at.query_params.update(query or {})
        return at.run()
    at.run()  # the entry point registers the pages; then open `page` with the query
    at.query_params.update(query or {})
    return at.switch_page(page).run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _decode(value):
    """Plotly sends numpy arrays as typed arrays ({"dtype", "bdata", "shape"}); make lists."""
    if isinstance(value, dict):
        if set(value) >= {"dtype", "bdata"}:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            if "shape" in value:
                shape = [int(n) for n in str(value["shape"]).split(",")]
                array = array.reshape(shape)
            return array.tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def figures(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page, as the JSON Streamlit sends to the browser."""
    return [_decode(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def figure_titled(at: AppTest, text: str) -> dict:
    """The figure whose title (or a subplot title) contains `text`."""
    for fig in figures(at):
        layout = fig.get("layout", {})
        titles = [layout.get("title", {}).get("text") or ""]
        titles += [a.get("text", "") for a in layout.get("annotations", [])]
        if any(text in t for t in titles):
            return fig
    raise AssertionError(f"no figure titled {text!r}")


def end_training(at: AppTest, timeout: float = 120.0) -> None:
    """Stop this session's training run and wait until it has ended. Every AppTest runs under
    the same session id, so the session-scoped training job carries over to the next test: a
    test that starts a run must end it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [s.value for s in at.subheader if s.value.endswith(("— training", "— loading"))]
        if not live:
            return
        stop = [b for b in at.button if b.key == "train_stop"]
        if stop:
            stop[0].click()
        time.sleep(0.5)
        at.run()
    raise AssertionError("the training run did not end")
