"""The trainer: events, stop flag, resume equals an uninterrupted run, early stopping, learning."""

import threading

import pytest
import torch

from elastic.data import SyntheticConfig, TrainLoader, leave_one_out, make_synthetic
from elastic.evaluate import PopularityScorer, evaluate
from elastic.models import build_model
from elastic.train import (
    BatchEnd,
    EpochEnd,
    EpochStart,
    EvalBatchEnd,
    TrainConfig,
    TrainEnd,
    Trainer,
    TrainingDiverged,
    seed_everything,
)

TINY = {
    "max_len": 12,
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 2,
    "num_interests": 4,
    "num_slots": 16,
}


@pytest.fixture(scope="module")
def tiny():
    data = make_synthetic(
        SyntheticConfig(
            num_users=48, num_items=30, planted_interests=3, min_seq_len=6, max_seq_len=12, seed=3
        )
    )
    return data, leave_one_out(data)


def _trainer(tiny, name="elastic", seed=0, **config):
    data, split = tiny
    seed_everything(seed)
    model = build_model(name, num_items=data.num_items, **TINY)
    settings = {"epochs": 2, "batch_size": 16, "device": "cpu", "max_len": 12, **config}
    checkpoint_dir = settings.pop("checkpoint_dir", None)
    return Trainer(
        model,
        split,
        TrainConfig(**settings),
        data=data,
        data_spec="synthetic",
        checkpoint_dir=checkpoint_dir,
    )


def test_callbacks_fire_in_order_with_their_payloads(tiny):
    trainer = _trainer(tiny)
    events = []
    for name in ("on_epoch_start", "on_batch_end", "on_epoch_end", "on_train_end"):
        trainer.add_callback(name, events.append)
    result = trainer.fit()
    batches = len(trainer.train_loader)  # 48 users / 16
    kinds = [type(e) for e in events]
    one_epoch = [EpochStart] + [BatchEnd] * batches + [EpochEnd]
    assert kinds == one_epoch * 2 + [TrainEnd]
    steps = [e.step for e in events if isinstance(e, BatchEnd)]
    assert steps == list(range(1, 2 * batches + 1))
    assert [e.progress for e in events if isinstance(e, BatchEnd)][-1] == pytest.approx(1.0)
    assert events[-1].result is not None and result["test"]["users"] == 48
    assert [h["epoch"] for h in trainer.history] == [1, 2]
    assert set(result) >= {"train_loss", "valid", "test", "best_epoch", "seconds", "device"}
    with pytest.raises(ValueError, match="unknown event"):
        trainer.add_callback("on_step", print)


def test_stop_event_stops_within_one_batch_and_fit_continues_exactly(tiny):
    uninterrupted = _trainer(tiny).fit()
    trainer = _trainer(tiny)
    seen = []

    def stop_at_second_batch_of_epoch_2(event):
        seen.append(event.step)
        if event.epoch == 2 and event.batch == 2 and len(seen) == event.step:  # once
            trainer.stop_event.set()

    trainer.add_callback("on_batch_end", stop_at_second_batch_of_epoch_2)
    stopped = trainer.fit()
    batches = len(trainer.train_loader)
    assert seen[-1] == batches + 2  # not one batch more
    assert stopped["stopped"] and stopped["test"] is None and trainer.epochs_done == 1
    trainer.stop_event.clear()
    resumed = trainer.fit()  # the unfinished epoch 2 is redone from its start
    assert resumed["train_loss"] == uninterrupted["train_loss"]
    assert resumed["test"] == uninterrupted["test"]


def test_stop_from_another_thread(tiny):
    trainer = _trainer(tiny, epochs=50)
    first_batch = threading.Event()
    trainer.add_callback("on_batch_end", lambda event: first_batch.set())
    results = []
    worker = threading.Thread(target=lambda: results.append(trainer.fit()))
    worker.start()
    assert first_batch.wait(timeout=60)
    trainer.stop_event.set()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert results[0]["stopped"] and trainer.epochs_done < 50
    assert trainer.snapshot()["epochs_done"] == trainer.epochs_done


def test_resume_continues_the_run_and_equals_an_uninterrupted_one(tiny, tmp_path):
    whole = _trainer(tiny, epochs=3, checkpoint_dir=tmp_path / "whole").fit()
    _trainer(tiny, epochs=2, checkpoint_dir=tmp_path / "part").fit()
    # a fresh model (other initial weights) resumes from the checkpoint of epoch 2
    trainer = _trainer(tiny, seed=99, epochs=3, checkpoint_dir=tmp_path / "part")
    trainer.resume(tmp_path / "part")
    assert trainer.epochs_done == 2 and len(trainer.history) == 2
    epochs_run = []
    trainer.add_callback("on_epoch_start", lambda event: epochs_run.append(event.epoch))
    resumed = trainer.fit()
    assert epochs_run == [3]
    assert resumed["train_loss"] == whole["train_loss"]
    assert resumed["valid"] == whole["valid"] and resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["test"] == whole["test"]


def test_early_stopping_after_patience_validations_without_progress(tiny, monkeypatch):
    thread_settings = []
    monkeypatch.setattr(torch, "set_num_threads", thread_settings.append)
    trainer = _trainer(tiny, epochs=10, lr=0.0, patience=2, num_threads=3)  # nothing learns
    result = trainer.fit()
    assert result["epochs"] == 3 and result["best_epoch"] == 1 and result["early_stopped"]
    assert thread_settings == [3, 1]  # fit gave the process-wide setting back


def test_settings_a_user_can_get_wrong_are_sentences(tiny):
    with pytest.raises(ValueError, match="loss must be"):
        TrainConfig(loss="bpr")
    with pytest.raises(ValueError, match="num_negatives must be at least 1, got 0"):
        TrainConfig(loss="sampled", num_negatives=0)
    with pytest.raises(ValueError, match="num_threads must be at least 1"):
        TrainConfig(num_threads=0)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        _trainer(tiny, max_len=40)


def test_warmup_then_cosine_reaches_every_group_and_resumes_on_schedule(tiny, tmp_path):
    config = TrainConfig(epochs=4, warmup_epochs=1.0, schedule="cosine")
    assert 0 < config.lr_factor(0.0) < 0.01  # the first step moves, barely
    assert config.lr_factor(0.5) == pytest.approx(0.5, abs=2e-3)
    assert config.lr_factor(1.0) == pytest.approx(1.0)
    assert config.lr_factor(2.5) == pytest.approx(0.5)  # half-way down the cosine
    assert config.lr_factor(4.0) == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(epochs=4, warmup_epochs=1.0).lr_factor(3.9) == 1.0  # constant after

    rates = []  # every parameter group's rate at each optimizer step, scales included
    trainer = _trainer(tiny, epochs=3, lr=1e-2, warmup_epochs=1.0, schedule="cosine",
                       checkpoint_dir=tmp_path / "run")
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        rates.append([g["lr"] / g.get("lr_scale", 1.0) for g in trainer.optimizer.param_groups])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.fit()
    batches = len(trainer.train_loader)
    expected = [1e-2 * trainer.config.lr_factor(i / batches) for i in range(3 * batches)]
    assert [r[0] for r in rates] == pytest.approx(expected)
    assert all(r == pytest.approx([r[0]] * len(r)) for r in rates)  # memory values scaled alike
    assert rates[0][0] < rates[batches][0] and rates[-1][0] < rates[batches][0]
    assert [h["lr"] for h in trainer.history] == pytest.approx(
        [1e-2 * trainer.config.lr_factor(e - 1 / batches) for e in (1, 2, 3)])

    # a run interrupted after epoch 2 and resumed takes the schedule up where it was
    settings = {"epochs": 3, "lr": 1e-2, "warmup_epochs": 1.0, "schedule": "cosine"}
    part = _trainer(tiny, checkpoint_dir=tmp_path / "part", **settings)
    part.add_callback("on_epoch_end",
                      lambda event: event.epoch == 2 and part.stop_event.set())
    assert part.fit()["stopped"] and part.epochs_done == 2
    resumed = _trainer(tiny, seed=5, **settings)
    resumed.resume(tmp_path / "part")
    assert resumed.fit()["train_loss"] == [h["train_loss"] for h in trainer.history]
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="warmup_epochs must lie in"):
        TrainConfig(epochs=2, warmup_epochs=3)


@pytest.mark.parametrize("name", ["elastic", "sasrec"])
def test_a_batch_cut_to_its_longest_history_has_the_padded_batchs_loss(tiny, name):
    """What `batch_by_length` relies on: the pad columns it cuts change no loss term."""
    data, split = tiny
    seed_everything(0)
    model = build_model(name, num_items=data.num_items, **{**TINY, "max_len": 40}).eval()
    loader = TrainLoader(split.train, 40, batch_size=8, by_length=True)
    cut_any = False
    for inputs, targets in loader:
        width = inputs.shape[1]
        cut_any |= width < 40
        padded = [torch.nn.functional.pad(t, (40 - width, 0)) for t in (inputs, targets)]
        extra = {}
        if name == "elastic":  # the same query context either way
            extra = {"context_len": model.sample_context(inputs)}
        with torch.no_grad():
            torch.testing.assert_close(model.training_loss(inputs, targets, **extra),
                                       model.training_loss(*padded, **extra))
    assert cut_any


@pytest.mark.parametrize("name", ["elastic", "sasrec"])
def test_a_short_run_beats_popularity(name):
    data = make_synthetic(
        SyntheticConfig(
            num_users=300, num_items=80, planted_interests=4, facets=4, taste=0.8, archetypes=0,
            min_seq_len=15, max_seq_len=30, seed=0,
        )
    )
    split = leave_one_out(data)
    seed_everything(0)
    model = build_model(
        name,
        num_items=data.num_items,
        max_len=30,
        d_model=32,
        num_layers=1,
        num_interests=4,
        num_slots=16,
    )
    config = TrainConfig(epochs=6, batch_size=64, lr=5e-3, device="cpu", patience=None)
    trainer = Trainer(model, split, config)
    result = trainer.fit()
    popularity = evaluate(PopularityScorer(split), trainer.test_loader)
    assert result["test"]["HR@10"] > 2 * popularity["HR@10"]  # about 4x at these settings
    assert result["train_loss"][-1] < result["train_loss"][0]


def test_evaluation_reports_its_progress_batch_by_batch(tiny):
    trainer = _trainer(tiny, eval_batch_size=10)  # 48 users: 5 batches per evaluation
    events = []
    for name in ("on_epoch_end", "on_eval_batch_end"):
        trainer.add_callback(name, events.append)
    trainer.fit()
    progress = [(e.stage, e.epoch, e.batch, e.batches) for e in events
                if isinstance(e, EvalBatchEnd)]
    assert progress == [
        *(("valid", 1, b, 5) for b in range(1, 6)),
        *(("valid", 2, b, 5) for b in range(1, 6)),
        *(("test", 2, b, 5) for b in range(1, 6)),
    ]
    # validation batches come before the epoch's end event
    assert isinstance(events[5], EpochEnd) and events[5].epoch == 1


def test_divergence_names_the_epoch_and_the_learning_rate(tiny, monkeypatch):
    trainer = _trainer(tiny)
    monkeypatch.setattr(trainer.model, "training_loss",
                        lambda *_: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingDiverged) as error:
        trainer.fit()
    assert "epoch 1, batch 1" in str(error.value) and "learning rate 0.001" in str(error.value)
    assert "resume" not in str(error.value)  # a resume at the same rate diverges again
