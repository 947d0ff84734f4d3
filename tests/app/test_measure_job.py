"""The complexity lab's background measurement, driven directly (no Streamlit runtime)."""

from __future__ import annotations

import threading

import numpy as np

from elastic.app_support import LAB_FORMS, LabSettings, MeasureJob, _measured_curves

TINY = LabSettings(mode="infer", interests=2, slots=16, d_model=32, layers=1, batch=2)


def test_a_measurement_records_every_form_at_every_n():
    job = MeasureJob(TINY, ns=[16, 32], device="cpu")
    job.run()  # in this thread: the app runs it in a daemon thread
    status, records, error = job.snapshot()
    assert status == "done", error
    assert len(records) == job.total == 2 * len(LAB_FORMS)
    assert {r["impl"] for r in records} == set(LAB_FORMS)
    assert all(r["median_ms"] > 0 for r in records)
    ns, curves, skipped = _measured_curves(records)
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
    _, curves, skipped = _measured_curves(records)
    assert curves["sasrec-materialized"]["ms"] == [0.0]
    assert skipped == ["too big"]
    assert curves["elastic"]["peak"] == [2.0 * 2**20]
