"""The complexity lab's data without Streamlit (`elastic.app.lab`): the analytic curves against
the library's formulas, the fixed axes, and the background measurement, driven directly."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from elastic import complexity
from elastic.app.lab import (
    LAB_BATCH,
    LAB_D,
    LAB_FORMS,
    LAB_K,
    LAB_LAYERS,
    LAB_N,
    LAB_SLOTS,
    LabSettings,
    MeasureJob,
    analytic_figure,
    analytic_point,
    analytic_sweep,
    lab_frame,
    measured_curves,
    measured_figure,
)

TINY = LabSettings(mode="infer", interests=2, slots=16, d_model=32, layers=1, batch=2)
OPENING = LabSettings(mode="infer", interests=8, slots=256, d_model=64, layers=2, batch=32)


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_a_point_is_the_librarys_formula_at_the_sliders_shape(mode):
    settings = LabSettings(mode=mode, interests=16, slots=1024, d_model=128, layers=3, batch=4)
    shape = complexity.Shape(batch=4, seq_len=2048, d_model=128, layers=3, interests=16, slots=1024)
    point = analytic_point(settings, 2048)
    assert set(point) == set(LAB_FORMS)
    for form in LAB_FORMS:
        assert point[form]["flops"] == pytest.approx(complexity.flops(form, mode, shape))
        assert point[form]["bytes"] == pytest.approx(complexity.peak_bytes(form, mode, shape))
        assert point[form]["flops terms"] == complexity.flops_terms(form, mode, shape)


def test_the_sweep_runs_over_every_n_and_crosses_where_elastic_gets_cheaper():
    sweep = analytic_sweep(OPENING)
    ns = sweep["ns"]
    assert ns[0] == LAB_N[0] and ns[-1] == LAB_N[-1]
    assert len(ns) == 2 * (len(LAB_N) - 1) + 1  # two points per doubling
    at_1024 = analytic_point(OPENING, 1024)
    for form in LAB_FORMS:
        for q in ("flops", "bytes"):
            assert len(sweep["curves"][form][q]) == len(sweep["terms"][form][q]) == len(ns)
            assert sweep["curves"][form][q][ns.index(1024)] == at_1024[form][q]
    n_star, kind = sweep["crossovers"]["flops"]
    assert kind == "cross" and LAB_N[0] < n_star < LAB_N[-1]
    elastic, sdpa = sweep["curves"]["elastic"]["flops"], sweep["curves"]["sasrec-sdpa"]["flops"]
    before = max(i for i, n in enumerate(ns) if n < n_star)
    assert elastic[before] >= sdpa[before]
    assert all(elastic[i] < sdpa[i] for i in range(before + 1, len(ns)))  # and stays cheaper


@pytest.mark.parametrize(
    "settings",
    [
        LabSettings("infer", LAB_K[0], LAB_SLOTS[0], LAB_D[0], LAB_LAYERS[0], LAB_BATCH[0]),
        OPENING,
        LabSettings("train", LAB_K[-1], LAB_SLOTS[-1], LAB_D[-1], LAB_LAYERS[-1], LAB_BATCH[-1]),
    ],
)
def test_the_frame_holds_every_curve_the_sliders_can_draw(settings):
    frame = lab_frame()
    x_lo, x_hi = frame["x_range"]
    assert x_lo < LAB_N[0] and LAB_N[-1] < x_hi
    sweep = analytic_sweep(settings)
    for q in ("flops", "bytes"):
        lo, hi = frame["y_ranges"][q]
        values = [v for form in LAB_FORMS for v in sweep["curves"][form][q]]
        assert lo <= min(values) and max(values) <= hi


def test_the_analytic_figure_draws_the_sweep_in_the_fixed_frame():
    sweep, frame = analytic_sweep(OPENING), lab_frame()
    figure = analytic_figure(sweep, frame, 1024).to_dict()
    curves = [t for t in figure["data"] if t.get("mode") == "lines+markers"]
    assert len(curves) == 2 * len(LAB_FORMS)  # each form in the FLOPs and the memory panel
    assert list(curves[0]["x"]) == sweep["ns"]
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [1024, 1024]  # the picked N
    assert list(figure["layout"]["yaxis"]["range"]) == pytest.approx(
        [math.log10(v) for v in frame["y_ranges"]["flops"]]
    )


def test_a_measurement_records_every_form_at_every_n():
    job = MeasureJob(TINY, ns=[16, 32], device="cpu")
    job.run()  # in this thread: the app runs it in a daemon thread
    status, records, error = job.snapshot()
    assert status == "done", error
    assert len(records) == job.total == 2 * len(LAB_FORMS)
    assert {r["impl"] for r in records} == set(LAB_FORMS)
    assert all(r["median_ms"] > 0 for r in records)
    ns, curves, skipped = measured_curves(records)
    assert ns == [16, 32] and not skipped
    assert all(np.all(np.array(curves[f]["ms"]) > 0) for f in LAB_FORMS)


def test_a_measurement_leaves_the_server_console_quiet(capfd):
    """The CPU peak comes from torch's profiler, whose Kineto backend writes USDT lines and,
    from a thread that is not the main one, 'External init callback must run in same thread'
    straight to file descriptor 2: the measurement runs in a child process that keeps them."""
    job = MeasureJob(TINY, ns=[16], device="cpu")
    thread = threading.Thread(target=job.run)  # as the app runs it
    thread.start()
    thread.join()
    assert job.snapshot()[0] == "done"
    console = capfd.readouterr()
    assert "USDT" not in console.err and "External init callback" not in console.err


def test_a_failed_measurement_says_why_in_one_sentence():
    not_a_square = LabSettings(mode="infer", interests=2, slots=15, d_model=32, layers=1, batch=2)
    job = MeasureJob(not_a_square, ns=[16], device="cpu")
    job.run()
    status, _, error = job.snapshot()
    assert status == "failed"
    assert error and "\n" not in error and "Traceback" not in error


def test_a_cancelled_measurement_stops_after_the_point_in_progress():
    job = MeasureJob(TINY, ns=[16, 32, 64], device="cpu")
    job.cancel.set()
    job.run()
    status, records, _ = job.snapshot()
    assert status == "cancelled"
    assert len(records) == 0


def test_skipped_points_leave_gaps_and_reasons():
    records = [
        {"impl": "elastic", "N": 16, "median_ms": 1.0, "peak_mib": 2.0},
        {"impl": "sasrec-sdpa", "N": 16, "median_ms": 2.0, "peak_mib": 3.0},
        {"impl": "sasrec-materialized", "N": 16, "skipped": "too big", "median_ms": None},
    ]
    _, curves, skipped = measured_curves(records)
    assert curves["sasrec-materialized"]["ms"] == [0.0]
    assert skipped == ["too big"]
    assert curves["elastic"]["peak"] == [2.0 * 2**20]


def measured(n: int, elastic_ms: float, sdpa_ms: float) -> list[dict]:
    return [
        {"impl": "elastic", "N": n, "median_ms": elastic_ms, "peak_mib": 1.0},
        {"impl": "sasrec-sdpa", "N": n, "median_ms": sdpa_ms, "peak_mib": 2.0},
        {"impl": "sasrec-materialized", "N": n, "skipped": "over the memory budget"},
    ]


def test_the_measured_figure_spans_what_was_measured_and_marks_a_crossover():
    records = measured(64, 4.0, 1.0) + measured(128, 4.0, 8.0)
    ns, curves, skipped = measured_curves(records)
    assert skipped == ["over the memory budget"] * 2
    figure = measured_figure(ns, curves, 1024, (10.0, 100_000.0)).to_dict()
    time_axis = list(figure["layout"]["yaxis"]["range"])
    assert time_axis == pytest.approx([math.log10(0.5), math.log10(16)])  # 1..8 ms, ×½ and ×2
    stars = [t for t in figure["data"] if t.get("name") == "crossover"]
    assert len(stars) == 1 and 64 < stars[0]["x"][0] < 128  # only the time curves cross


def test_no_crossover_from_one_measured_n_and_no_figure_without_a_measured_point():
    ns, curves, _ = measured_curves(measured(64, 4.0, 1.0))
    figure = measured_figure(ns, curves, 1024, (10.0, 100_000.0)).to_dict()
    assert not [t for t in figure["data"] if t.get("name") == "crossover"]
    ns, curves, skipped = measured_curves([{"impl": "elastic", "N": 64, "skipped": "too slow"}])
    assert measured_figure(ns, curves, 1024, (10.0, 100_000.0)) is None
    assert skipped == ["too slow"]
