"""ELASTIC and SASRec trained side by side in background threads, one `TrainingJob` per
browser session.

A supervisor thread loads the data and builds one library `Trainer` per model, then one thread
per model calls `Trainer.fit()`. The threads talk to the job only through its lock-protected
fields, filled by the trainers' `on_batch_end` / `on_epoch_end` callbacks; a page polls
`snapshot()`, a copy taken under the lock. Nothing here knows of Streamlit: the app holds one
job per session (`elastic.app_support.training_job`), the tests drive it directly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from elastic.app.bundles import ModelBundle
from elastic.app.paths import RUNS_DIR
from elastic.app.requests import TrainRequest, training_memory_problem

# How many models may train at once in this server process. Each training thread keeps every
# core busy, so more at once only makes all of them slower and the pages sluggish; a workshop
# server with many cores raises it (ELASTIC_APP_TRAINING_SLOTS).
TRAINING_SLOTS = int(os.environ.get("ELASTIC_APP_TRAINING_SLOTS", max(1, (os.cpu_count() or 2))))
_training_slots = threading.BoundedSemaphore(TRAINING_SLOTS)


@dataclass
class ModelRun:
    """One model's progress; written by its training thread under the job lock."""

    name: str
    status: str = (
        "queued"  # queued | waiting for a free CPU slot | training | done | stopped | failed
    )
    progress: float = 0.0  # share of the configured epochs done
    batch_losses: list[tuple[float, float]] = field(default_factory=list)  # (epoch, loss)
    history: list[dict] = field(default_factory=list)  # the trainer's per-epoch entries
    result: dict | None = None  # what Trainer.fit returned last
    error: str | None = None


@dataclass
class JobSnapshot:
    """A copy of the job's state for one poll of the page; never shared with the threads."""

    generation: int
    version: int  # grows with every change of the job's state: same version, same picture
    phase: str  # idle | loading | training | finished | stopped | failed
    request: TrainRequest | None
    runs: dict[str, ModelRun]
    error: str | None
    dataset_stats: dict | None
    started_at: float | None
    has_models: bool

    @property
    def running(self) -> bool:
        return self.phase in ("loading", "training")


class TrainingJob:
    """ELASTIC and SASRec trained side by side in background threads, one job per session.

    A supervisor thread loads the data and builds the trainers, then starts one thread per model
    and waits for them. The threads touch only this object (under `lock`) and their trainer;
    they never call Streamlit. `stop()` sets every trainer's stop event (the trainers stop before
    their next batch); `resume()` continues a stopped run from the last complete epoch.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.id = uuid.uuid4().hex  # tells the sessions' jobs apart in the figure cache
        self.generation = 0
        self.version = 0  # bumped under the lock by every change the page may draw
        self.phase = "idle"
        self.request: TrainRequest | None = None
        self.runs: dict[str, ModelRun] = {}
        self.error: str | None = None
        self.dataset_stats: dict | None = None
        self.started_at: float | None = None
        self.data = None
        self.trainers: dict = {}
        self._supervisor: threading.Thread | None = None
        self._stop = threading.Event()
        self._bundle: ModelBundle | None = None

    # -------------------------------------------------------------------------- for the page

    def snapshot(self) -> JobSnapshot:
        with self.lock:
            # shallow copies: loss tuples and history entries are never mutated once appended
            runs = {
                name: replace(run, batch_losses=list(run.batch_losses), history=list(run.history))
                for name, run in self.runs.items()
            }
            return JobSnapshot(
                generation=self.generation,
                version=self.version,
                phase=self.phase,
                request=self.request,
                runs=runs,
                error=self.error,
                dataset_stats=dict(self.dataset_stats) if self.dataset_stats else None,
                started_at=self.started_at,
                has_models=bool(self.trainers),
            )

    def running(self) -> bool:
        with self.lock:
            return self.phase in ("loading", "training")

    def start(self, request: TrainRequest) -> None:
        """Start a new run (an earlier one must have ended)."""
        with self.lock:
            if self.phase in ("loading", "training"):
                raise RuntimeError("a training run is in progress; stop it first")
            self.generation += 1
            self.version += 1
            self.phase = "loading"
            self.request = request
            self.runs = {name: ModelRun(name) for name in request.models}
            self.error = None
            self.dataset_stats = None
            self.started_at = time.time()
            self.trainers = {}
            self.data = None
            self._bundle = None
        self._stop.clear()
        self._launch(fresh=True)

    def stop(self) -> None:
        """Ask every trainer to stop before its next batch; returns at once."""
        self._stop.set()
        for trainer in list(self.trainers.values()):
            trainer.stop_event.set()

    def resume(self) -> None:
        """Continue a stopped run from the last complete epoch of each model."""
        with self.lock:
            if self.phase != "stopped" or not self.trainers:
                raise RuntimeError("only a stopped run can be resumed")
            self.phase = "training"
            self.version += 1
            for run in self.runs.values():
                if run.status in ("stopped", "queued"):
                    run.status = "queued"
        self._stop.clear()
        for trainer in self.trainers.values():
            trainer.stop_event.clear()
        self._launch(fresh=False)

    def release(self) -> None:
        """The session ended: stop the threads so they free the CPU."""
        self.stop()

    def bundle(self) -> ModelBundle | None:
        """The trained models as a bundle for the other pages, once the run has ended and
        ELASTIC has validated at least once."""
        with self.lock:
            return self._bundle

    def save(self, folder: Path | None = None) -> Path:
        """Save each model's checkpoint under `folder` (default runs/app/<time>) and a zip of
        them beside it; only when no thread is training."""
        if self.running():
            raise RuntimeError("stop the run (or let it finish) before saving")
        if not self.trainers:
            raise RuntimeError("nothing to save: train a model first")
        folder = folder or RUNS_DIR / time.strftime("%Y%m%d-%H%M%S")
        for name, trainer in self.trainers.items():
            trainer.save_checkpoint(folder / name)
        if self.request is not None:
            (folder / "request.json").write_text(json.dumps(asdict(self.request), indent=2))
        archive = folder.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(folder.parent))
        return archive

    # -------------------------------------------------------------------------- the threads

    def _launch(self, fresh: bool) -> None:
        generation = self.generation
        self._supervisor = threading.Thread(
            target=self._supervise,
            args=(generation, fresh),
            name=f"elastic-train-{generation}",
            daemon=True,
        )
        self._supervisor.start()

    def _set(self, generation: int, **changes: Any) -> bool:
        with self.lock:
            if generation != self.generation:
                return False
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1
            return True

    def _supervise(self, generation: int, fresh: bool) -> None:
        lower_thread_priority()
        try:
            if fresh:
                self._prepare(generation)
            self._set(generation, phase="training")
            threads = [
                threading.Thread(
                    target=self._train_one,
                    args=(generation, name),
                    name=f"elastic-train-{generation}-{name}",
                    daemon=True,
                )
                for name in self.trainers
                if self.runs[name].status not in ("done", "failed")
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self._finish(generation)
        except Exception as error:  # any failure is shown to the user as one sentence
            self._set(generation, phase="failed", error=_sentence(error))

    def _prepare(self, generation: int) -> None:
        from elastic.data import leave_one_out, load_dataset
        from elastic.models import build_model
        from elastic.train import TrainConfig, Trainer

        request = self.request
        data = load_dataset(request.dataset, **request.dataset_kwargs)
        split = leave_one_out(data)
        config = TrainConfig(**request.train)
        problem = training_memory_problem(request, data.num_items)
        if problem:
            raise ValueError(problem)
        trainers = {}
        for name in request.models:
            model = build_model(name, num_items=data.num_items, **request.model)
            trainer = Trainer(model, split, config, data=data, data_spec=request.dataset_label)
            trainer.add_callback("on_batch_end", self._on_batch(generation, name))
            trainer.add_callback("on_epoch_end", self._on_epoch(generation, name, trainer))
            if self._stop.is_set():
                trainer.stop_event.set()
            trainers[name] = trainer
        with self.lock:
            if generation != self.generation:
                return
            self.version += 1
            self.data = data
            self.trainers = trainers
            self.dataset_stats = data.stats()

    def _on_batch(self, generation: int, name: str):
        def record(event) -> None:
            with self.lock:
                if generation != self.generation:
                    return
                run = self.runs[name]
                self.version += 1
                run.progress = event.progress
                run.batch_losses.append((event.epoch - 1 + event.batch / event.batches, event.loss))

        return record

    def _on_epoch(self, generation: int, name: str, trainer):
        def record(event) -> None:
            history = trainer.snapshot()["history"]
            with self.lock:
                if generation == self.generation:
                    self.runs[name].history = history
                    self.version += 1

        return record

    def _update_run(self, name: str, **changes: Any) -> None:
        with self.lock:
            for field_name, value in changes.items():
                setattr(self.runs[name], field_name, value)
            self.version += 1

    def _train_one(self, generation: int, name: str) -> None:
        lower_thread_priority()
        trainer = self.trainers[name]
        self._update_run(name, status="waiting for a free CPU slot")
        while not _training_slots.acquire(timeout=0.2):
            if trainer.stop_event.is_set():
                self._update_run(name, status="stopped")
                return
        try:
            self._update_run(name, status="training")
            result = trainer.fit()
            done = not result["stopped"]
            self._update_run(
                name,
                result=result,
                history=result["history"],
                status="done" if done else "stopped",
                **({"progress": 1.0} if done else {}),
            )
        except Exception as error:  # any failure is shown to the user as one sentence
            self._update_run(name, status="failed", error=_sentence(error))
        finally:
            _training_slots.release()

    def _finish(self, generation: int) -> None:
        with self.lock:
            if generation != self.generation:
                return
            statuses = {run.status for run in self.runs.values()}
        if "failed" in statuses:
            phase = "failed"
        elif "stopped" in statuses:
            phase = "stopped"
        else:
            phase = "finished"
        bundle = self._make_bundle(generation)
        with self.lock:
            if generation != self.generation:
                return
            self.version += 1
            self.phase = phase
            self._bundle = bundle
            if phase == "failed" and self.error is None:
                self.error = next(r.error for r in self.runs.values() if r.error)

    def _make_bundle(self, generation: int) -> ModelBundle | None:
        """Copies of the best weights, so the views never see a model that is training."""
        trainer = self.trainers.get("elastic")
        if trainer is None or trainer.best_state is None:
            return None
        from elastic.device import describe_device

        models, metrics = {}, {}
        for name, trainer in self.trainers.items():
            if trainer.best_state is None:
                continue
            model = copy.deepcopy(trainer.model)
            model.load_state_dict(trainer.best_state)
            models[name] = model.eval()
            snap = trainer.snapshot()
            metrics[name] = {"valid": snap["best_valid"], "test": snap["test"]}
        label = f"{self.request.dataset_label}, run {generation}"
        return ModelBundle(
            f"session-{uuid.uuid4().hex[:12]}",
            label,
            self.data,
            models,
            metrics,
            describe_device(trainer.device),
        )


TRAINING_NICE = int(os.environ.get("ELASTIC_APP_TRAINING_NICE", 10))


def lower_thread_priority(nice: int = TRAINING_NICE) -> None:
    """Give the calling thread a lower CPU priority (Linux: `setpriority` on a thread id touches
    that thread only; the OpenMP workers torch starts from it inherit the value). Training then
    yields the cores to the pages and the browser instead of competing with them."""
    if nice and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _sentence(error: BaseException) -> str:
    """One readable sentence for an error a user can cause (no traceback)."""
    text = str(error).strip() or type(error).__name__
    return text[0].upper() + text[1:] if text else text

