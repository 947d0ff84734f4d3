"""The per-session background training job, driven directly: `elastic.app.jobs` needs no
Streamlit."""

from __future__ import annotations

import time
import zipfile

import pytest

from elastic.app.jobs import TrainingJob
from elastic.app.requests import TrainRequest

TINY_DATA = dict(
    num_users=60, num_items=60, planted_interests=4, interests_per_user=2, min_seq_len=8,
    max_seq_len=15, seed=1,
)  # fmt: skip
TINY_MODEL = dict(
    max_len=10, d_model=16, num_layers=1, num_heads=2, dropout=0.0, num_interests=4, num_slots=16
)


def request(epochs: int = 2, **data) -> TrainRequest:
    return TrainRequest(
        dataset="synthetic",
        dataset_kwargs=TINY_DATA | data,
        dataset_label="synthetic",
        model=TINY_MODEL,
        train=dict(epochs=epochs, batch_size=16, lr=3e-3, seed=0, patience=None),
    )


def wait_for(job: TrainingJob, condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.snapshot()
        if condition(snap):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"timed out; phase {job.snapshot().phase}")


def test_a_run_trains_both_models_and_hands_over_a_bundle(tmp_path):
    job = TrainingJob()
    job.start(request(epochs=2))
    with pytest.raises(RuntimeError, match="in progress"):
        job.start(request())
    snap = wait_for(job, lambda s: s.phase in ("finished", "failed"))
    assert snap.phase == "finished", snap.error
    for run in snap.runs.values():
        assert run.status == "done"
        assert [entry["epoch"] for entry in run.history] == [1, 2]
        assert run.batch_losses and run.progress == 1.0
        assert run.result["test"]["users"] == 60
    assert snap.dataset_stats["users"] == 60
    bundle = job.bundle()
    assert set(bundle.models) == {"elastic", "sasrec"}
    assert not any(m.training for m in bundle.models.values())
    assert bundle.key.startswith("session-")
    assert bundle.metrics["elastic"]["test"]["NDCG@10"] >= 0

    archive = job.save(tmp_path / "run")
    names = zipfile.ZipFile(archive).namelist()
    assert any(n.startswith("run/elastic/") for n in names)
    assert any(n.startswith("run/sasrec/") for n in names)
    assert "run/request.json" in names


def test_stop_then_resume_continues_from_the_last_complete_epoch():
    job = TrainingJob()
    job.start(request(epochs=200))
    wait_for(job, lambda s: all(len(r.history) >= 1 for r in s.runs.values()))
    job.stop()
    stopped = wait_for(job, lambda s: s.phase in ("stopped", "finished", "failed"))
    assert stopped.phase == "stopped"
    epochs_before = {name: len(run.history) for name, run in stopped.runs.items()}
    assert job.bundle() is not None  # validated epochs exist: the pages may use them

    job.resume()
    resumed = wait_for(
        job,
        lambda s: all(len(s.runs[n].history) > epochs_before[n] for n in s.runs),
    )
    for name, run in resumed.runs.items():
        epochs = [entry["epoch"] for entry in run.history]
        assert epochs == list(range(1, len(epochs) + 1)), name  # no epoch repeated or skipped
    job.stop()
    wait_for(job, lambda s: s.phase == "stopped")


def test_a_bad_dataset_fails_with_a_sentence():
    job = TrainingJob()
    job.start(
        TrainRequest(
            dataset="/nonexistent/ratings.csv",
            dataset_kwargs={"user_col": "u", "item_col": "i"},
            dataset_label="upload",
            model=TINY_MODEL,
            train=dict(epochs=1),
        )
    )
    snap = wait_for(job, lambda s: s.phase in ("failed", "finished"))
    assert snap.phase == "failed"
    assert "nonexistent" in snap.error
    assert "Traceback" not in snap.error
    assert job.bundle() is None


def test_stop_before_the_data_is_loaded_ends_cleanly():
    job = TrainingJob()
    job.start(request(epochs=50))
    job.stop()
    snap = wait_for(job, lambda s: s.phase in ("stopped", "finished", "failed"))
    assert snap.phase == "stopped"


def test_a_setting_over_the_memory_budget_fails_with_a_sentence(monkeypatch):
    import elastic.complexity as complexity

    monkeypatch.setattr(complexity, "memory_budget", lambda device: 1024)  # 1 KiB
    job = TrainingJob()
    job.start(request(epochs=1))
    snap = wait_for(job, lambda s: s.phase in ("failed", "finished"))
    assert snap.phase == "failed"
    assert snap.error.startswith("This setting would not fit")
    assert "Lower the batch size" in snap.error
