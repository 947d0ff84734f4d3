"""The one trainer, for both models (minGPT style: it knows nothing of any UI).

    trainer = Trainer(model, leave_one_out(data), TrainConfig(epochs=10), data=data,
                      checkpoint_dir="runs/x/checkpoint")
    trainer.add_callback("on_epoch_end", lambda event: print(event.epoch, event.valid))
    result = trainer.fit()        # in this thread, or threading.Thread(target=trainer.fit)
    trainer.stop_event.set()      # from any thread: stops before the next batch

Events (each callback gets one frozen dataclass): `on_epoch_start` (EpochStart),
`on_batch_end` (BatchEnd), `on_eval_batch_end` (EvalBatchEnd: validation and test go batch by
batch too, so a progress bar never freezes), `on_epoch_end` (EpochEnd), `on_train_end`
(TrainEnd). Callbacks run in the training thread; a UI copies what it needs and returns.

Determinism: every epoch reseeds torch, numpy and `random` from (seed, epoch) and the loader
shuffles with seed + epoch, so an epoch does the same work whether the run was resumed before it
or not. On a stop, the unfinished epoch is dropped: the next `fit()` (or a resume from the
checkpoint) restarts it from the state at the end of the previous epoch.

Data-parallel: built inside `elastic.distributed.process_group` (torchrun), the trainer takes
its rank's share of every global batch and of the evaluation users, and only rank 0 writes
checkpoints (elastic/distributed.py, docs/scale.md).
"""

from __future__ import annotations

import copy
import math
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elastic.checkpoint import (
    CheckpointError,
    check_dataset,
    load_weights,
    model_name,
    read_checkpoint,
    train_state_of,
)
from elastic.checkpoint import save_checkpoint as write_checkpoint
from elastic.data import (
    MIN_SEQUENCE_LENGTH,
    EvalLoader,
    InteractionData,
    LeaveOneOut,
    ProgressLoader,
    TrainLoader,
)
from elastic.device import PRECISIONS, autocast_dtype, describe_device, pick_device
from elastic.distributed import (
    TrainingStep,
    current_ranks,
    evaluate_shard,
    mean_over_ranks,
    rank_device,
    shard_split,
    wrap_for_ranks,
)
from elastic.evaluate import evaluate
from elastic.models import SequentialRecommender
from elastic.models.common import NEGATIVE_SAMPLERS, PAD, NegativeSampler

EARLY_STOPPING_METRIC = "NDCG@10"
EVENTS = ("on_epoch_start", "on_batch_end", "on_eval_batch_end", "on_epoch_end", "on_train_end")
SCHEDULES = ("constant", "cosine")



class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: a setting the user chose (usually the learning rate)."""


@dataclass
class TrainConfig:
    epochs: int = 30  # upper bound on passes over the training users; early stopping may end sooner
    batch_size: int = 128  # sequences per optimizer step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decay on matrices only (not biases, norms); 0 = plain Adam
    max_len: int | None = None  # training/eval window of most recent items; None = model max_len
    seed: int = 0  # seeds torch, numpy and random per epoch, and the loader's shuffle
    device: str = "auto"  # "auto" (cuda, mps, cpu), "cpu", "cuda", "cuda:1", "mps"
    loss: str = "full"  # "full" softmax CE over all items, or "sampled" (large catalogues)
    num_negatives: int = 256  # loss="sampled": negatives drawn from `sampler` per batch
    sampler: str = "uniform"  # "uniform", "log-uniform" (Zipf by popularity rank), "popularity"
    batch_negatives: int = 0  # loss="sampled": also this many of the batch's targets (in-batch)
    precision: str = "fp32"  # "fp32", "bf16" autocast, "auto" (bf16 where the device has it)
    patience: int | None = 5  # stop after this many validations without a better NDCG@10
    eval_every: int = 1  # validate every this many epochs (and always after the last one)
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    num_threads: int | None = None  # torch CPU threads during fit (process-wide); None = as is
    eval_batch_size: int = 256  # users per evaluation batch
    warmup_epochs: float = 0.0  # the rate rises linearly from 0 over this many epochs
    schedule: str = "constant"  # after warm-up: "constant", or "cosine" decay to 0 at `epochs`
    batch_by_length: bool = False  # batches of similar-length histories, cut to their longest
    # (`TrainLoader(by_length=True)`): a long max_len then costs little on short histories

    def __post_init__(self) -> None:
        if self.loss not in ("full", "sampled"):
            raise ValueError(f"loss must be 'full' or 'sampled', got {self.loss!r}")
        if self.sampler not in NEGATIVE_SAMPLERS:
            raise ValueError(f"sampler must be one of {NEGATIVE_SAMPLERS}, got {self.sampler!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "num_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1 (or None), got {self.num_threads}")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 (or None), got {self.patience}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs):
            raise ValueError(f"warmup_epochs must lie in [0, epochs={self.epochs}], "
                             f"got {self.warmup_epochs}")

    def lr_factor(self, progress: float) -> float:
        """The share of `lr` used at `progress` epochs into the run (fractional, from 0)."""
        if progress < self.warmup_epochs:
            return (progress + 1e-3) / self.warmup_epochs  # never exactly 0: the first step moves
        if self.schedule == "constant":
            return 1.0
        span = self.epochs - self.warmup_epochs
        done = 1.0 if span <= 0 else min(1.0, (progress - self.warmup_epochs) / span)
        return 0.5 * (1.0 + math.cos(math.pi * done))


@dataclass(frozen=True)
class EpochStart:
    epoch: int  # 1-based number of the epoch that starts
    epochs: int  # the configured upper bound


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 1-based
    step: int  # optimizer steps since the run began (continues across resumes)
    batch: int  # 1-based batch number within the epoch
    batches: int  # batches per epoch
    loss: float  # this batch's training loss
    progress: float  # share of the configured epochs done, in [0, 1]


@dataclass(frozen=True)
class EvalBatchEnd:
    stage: str  # "valid" (after a training epoch) or "test" (once, at the end)
    epoch: int  # 1-based: the epoch whose weights are being evaluated
    batch: int  # 1-based batch number within this evaluation
    batches: int  # batches in this evaluation


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 1-based
    train_loss: float  # mean batch loss of the epoch
    valid: dict[str, float] | None  # validation metrics, None on epochs without validation
    improved: bool  # this validation is the best so far
    best_epoch: int | None
    seconds: float  # wall time of this epoch, validation included


@dataclass(frozen=True)
class TrainEnd:
    result: dict[str, Any]  # what fit() returns (see Trainer.fit)


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global generator and `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed per (run seed, epoch, rank) that never collides across runs as seed + epoch would.

    Each rank draws its own dropout masks and negatives; rank 0 draws what one process draws."""
    entropy = [seed, epoch] if rank == 0 else [seed, epoch, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on weight matrices (nanoGPT's rule): decaying biases and
    LayerNorm gains pulls them to 0, which regularises nothing useful. A model may give some
    parameters their own learning-rate scale (`parameter_groups`)."""
    groups = []
    for params, scale in model.parameter_groups():
        trainable = [p for p in params if p.requires_grad]
        for decay, members in ((config.weight_decay, [p for p in trainable if p.dim() >= 2]),
                               (0.0, [p for p in trainable if p.dim() < 2])):
            if members:
                groups.append({"params": members, "weight_decay": decay,
                               "lr": config.lr * scale, "lr_scale": scale})
    return torch.optim.AdamW(groups, lr=config.lr)


class Trainer:
    """Trains one `SequentialRecommender` on a leave-one-out split.

    Keeps the best-on-validation weights in memory (`best_state`) and puts them in the model
    before the test evaluation and at the end of `fit`. With `checkpoint_dir`, saves a
    checkpoint after every epoch and at the end. `data` (the dataset the split came from)
    stamps checkpoints with its fingerprint so a resume on other data is refused, and with its
    absolute path and loader settings (`data_settings`) so it can be found again from any folder.
    """

    def __init__(
        self,
        model: SequentialRecommender,
        split: LeaveOneOut,
        config: TrainConfig | None = None,
        *,
        data: InteractionData | None = None,
        data_spec: str | None = None,
        data_settings: dict[str, Any] | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        cfg = self.config
        self.ranks = current_ranks()  # one process unless built inside a process group
        self.device = rank_device(pick_device(cfg.device), self.ranks)
        self.model = model.to(self.device)
        self.max_len = cfg.max_len or model.config.max_len
        if self.max_len > model.config.max_len:
            raise ValueError(
                f"max_len {self.max_len} exceeds the model's max_len {model.config.max_len}"
            )
        self.split = split
        self.train_loader = TrainLoader(split.train, self.max_len, cfg.batch_size, cfg.seed,
                                        rank=self.ranks.rank, world_size=self.ranks.world_size,
                                        by_length=cfg.batch_by_length)
        if len(self.train_loader) == 0:
            raise ValueError(
                f"no user has {MIN_SEQUENCE_LENGTH + 1} or more interactions, so there is nothing "
                "to train on (leave-one-out keeps each user's last two for validation and test)"
            )
        self.valid_loader = EvalLoader(split, "valid", self.max_len, cfg.eval_batch_size)
        self.test_loader = EvalLoader(split, "test", self.max_len, cfg.eval_batch_size)
        self.model.loss_type = cfg.loss
        if cfg.loss == "sampled":
            target_counts = torch.bincount(self.train_loader.target_ids.flatten(),
                                           minlength=split.num_items + 1)
            target_counts[PAD] = 0
            self.model.negative_sampler = NegativeSampler(
                cfg.sampler, target_counts, cfg.num_negatives, cfg.batch_negatives
            ).to(self.device)
        self.train_step = wrap_for_ranks(
            TrainingStep(self.model, autocast_dtype(self.device, cfg.precision)),
            self.device,
            self.ranks,
        )
        # on several ranks each evaluates a shard of the users (evaluate_shard)
        self._shard_loaders = {
            stage: EvalLoader(shard_split(split, self.ranks), stage, self.max_len,
                              cfg.eval_batch_size)
            for stage in ("valid", "test")
        } if self.ranks.world_size > 1 else {}
        self.optimizer = make_optimizer(self.model, cfg)
        self.dataset_info = (
            _dataset_info(data, data_spec or data.source, data_settings) if data is not None else {}
        )
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

        self.stop_event = threading.Event()  # set from any thread to stop before the next batch
        self.lock = threading.Lock()  # guards the state below for readers in other threads
        self.history: list[dict[str, Any]] = []  # per epoch: epoch, train_loss, valid, seconds
        self.epochs_done = 0
        self.step = 0
        self.best_metric = float("-inf")
        self.best_epoch: int | None = None
        self.best_valid: dict[str, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.validations_since_best = 0
        self.test_metrics: dict[str, float] | None = None
        self.seconds = 0.0  # training wall time, summed over resumes
        # (weights, optimizer state) at the end of the last complete epoch: where fit() continues
        self._epoch_end_state: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._callbacks: dict[str, list[Callable[[Any], None]]] = defaultdict(list)

    # ------------------------------------------------------------------------------ callbacks

    def add_callback(self, event: str, fn: Callable[[Any], None]) -> None:
        """Subscribe `fn(event_object)` to one of EVENTS."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; choose one of {EVENTS}")
        self._callbacks[event].append(fn)

    def _fire(self, event: str, payload: Any) -> None:
        for fn in self._callbacks[event]:
            fn(payload)

    # ------------------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the progress, safe to read from another thread."""
        with self.lock:
            return {
                "epochs_done": self.epochs_done,
                "step": self.step,
                "history": copy.deepcopy(self.history),
                "best_epoch": self.best_epoch,
                "best_valid": dict(self.best_valid) if self.best_valid else None,
                "test": dict(self.test_metrics) if self.test_metrics else None,
            }

    def train_state(self) -> dict[str, Any]:
        """What a checkpoint stores to resume this run."""
        return {
            "epochs_done": self.epochs_done,
            "step": self.step,
            "best_metric": self.best_metric if self.best_epoch is not None else None,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "validations_since_best": self.validations_since_best,
            "history": self.history,
            "seconds": self.seconds,
            "train_config": asdict(self.config),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Save the run (last complete epoch, best weights, optimizer, history) atomically."""
        target = path or self.checkpoint_dir
        if target is None:
            raise ValueError("no checkpoint folder: pass checkpoint_dir or a path")
        last, optimizer_state = self._epoch_end_state or (
            self.model.state_dict(),
            self.optimizer.state_dict(),
        )
        return write_checkpoint(
            target,
            self.model,
            last_state=last,
            best_state=self.best_state,
            optimizer_state=optimizer_state,
            dataset=self.dataset_info,
            metrics={"valid": self.best_valid, "test": self.test_metrics},
            train_state=self.train_state(),
        )

    def resume(self, path: str | Path) -> None:
        """Continue the run saved at `path`: same epoch counter, optimizer state, history, best.

        The model must have the checkpoint's architecture, and the data its fingerprint."""
        checkpoint = read_checkpoint(path, with_train_state=True)
        meta = checkpoint.meta
        state = train_state_of(checkpoint)
        current = self.model.config_dict()
        # settings added to the config since the checkpoint was written count at their defaults
        saved = {**type(self.model.config)().__dict__, **meta["config"]}
        if meta["model"] != model_name(self.model) or saved != current:
            raise CheckpointError(
                f"checkpoint {checkpoint.path} holds a {meta['model']} model with settings "
                f"{meta['config']}, not the model given; build it from the checkpoint's settings"
            )
        if self.dataset_info:
            check_dataset(meta, self.dataset_info["fingerprint"], checkpoint.path)
        load_weights(self.model, checkpoint.last_weights, checkpoint)
        if checkpoint.optimizer_state is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
            # the saved state carries the old rate; a resume may lower it (after a divergence)
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr * group.get("lr_scale", 1.0)
        with self.lock:
            self.epochs_done = state["epochs_done"]
            self.step = state["step"]
            self.best_epoch = state["best_epoch"]
            self.best_metric = state["best_metric"] if self.best_epoch else float("-inf")
            self.best_valid = state["best_valid"]
            self.validations_since_best = state["validations_since_best"]
            self.history = state["history"]
            self.seconds = state["seconds"]
            self.test_metrics = meta["metrics"].get("test")
        self.best_state = checkpoint.best_weights if self.best_epoch is not None else None
        self._epoch_end_state = (
            copy.deepcopy(self.model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
        )

    # ------------------------------------------------------------------------------ training

    def evaluate(self, stage: str = "test") -> dict[str, float]:
        """Full-ranking metrics of the model as it is now on 'valid' or 'test', reported batch
        by batch to `on_eval_batch_end` (on several ranks, each scores its shard and every rank
        gets the combined metrics)."""
        return self._evaluate(stage, self.epochs_done)

    def _evaluate(self, stage: str, epoch: int) -> dict[str, float]:
        if self._shard_loaders:
            return evaluate_shard(self.model, self._shard_loaders[stage], self.ranks)
        loader = self.valid_loader if stage == "valid" else self.test_loader

        def report(batch: int, batches: int) -> None:
            self._fire("on_eval_batch_end", EvalBatchEnd(stage, epoch, batch, batches))

        return evaluate(self.model, ProgressLoader(loader, report))

    def early_stopped(self) -> bool:
        patience = self.config.patience
        return patience is not None and self.validations_since_best >= patience

    def fit(self) -> dict[str, Any]:
        """Train until `config.epochs` epochs are done, early stopping, or `stop_event`.

        Returns {"train_loss": [per epoch], "valid": best validation metrics, "test": test
        metrics of the best weights (None if stopped), "best_epoch", "epochs", "stopped",
        "early_stopped", "seconds", "device", "world_size", "history"}. Clear `stop_event` to
        fit again.
        """
        threads = torch.get_num_threads()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)  # the setting is process-wide: give it back

    def _fit(self) -> dict[str, Any]:
        cfg = self.config
        if self._epoch_end_state is not None:  # continue from the last complete epoch
            self.model.load_state_dict(self._epoch_end_state[0])
            self.optimizer.load_state_dict(copy.deepcopy(self._epoch_end_state[1]))
        stopped = False
        while self.epochs_done < cfg.epochs and not self.early_stopped():
            if not self._run_epoch():
                stopped = True
                break
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test = None
        if not stopped:
            test = self.evaluate("test")
            with self.lock:
                self.test_metrics = test
        if self.checkpoint_dir is not None and self.ranks.is_main:
            self.save_checkpoint()
        result = {
            "train_loss": [entry["train_loss"] for entry in self.history],
            "valid": self.best_valid,
            "test": test,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_done,
            "stopped": stopped,
            "early_stopped": self.early_stopped(),
            "seconds": self.seconds,
            "device": describe_device(self.device),
            "world_size": self.ranks.world_size,
            "history": copy.deepcopy(self.history),
        }
        self._fire("on_train_end", TrainEnd(result))
        return result

    def _set_lr(self, progress: float) -> None:
        """Put the scheduled rate (`TrainConfig.lr_factor`) in every parameter group."""
        factor = self.config.lr_factor(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * group.get("lr_scale", 1.0) * factor

    def _run_epoch(self) -> bool:
        """One epoch, its validation and checkpoint. False if `stop_event` cut it short."""
        cfg = self.config
        epoch = self.epochs_done + 1  # 1-based
        started = time.perf_counter()
        seed_everything(epoch_seed(cfg.seed, epoch, self.ranks.rank))
        self.train_loader.set_epoch(epoch - 1)
        self._fire("on_epoch_start", EpochStart(epoch, cfg.epochs))
        self.model.train()
        batches = len(self.train_loader)
        loss_sum, step = 0.0, self.step
        for batch, (input_ids, target_ids) in enumerate(self.train_loader, start=1):
            if self.stop_event.is_set():
                return False
            loss = self.train_step(input_ids.to(self.device), target_ids.to(self.device))
            # the global batch's loss, equal on every rank, so all ranks stop on a divergence
            loss_value = mean_over_ranks(loss.detach(), self.ranks)
            if not np.isfinite(loss_value):
                # a resume at the same rate repeats the same steps: only a lower rate helps
                raise TrainingDiverged(
                    f"training diverged (loss {loss_value} at epoch {epoch}, batch {batch}) at "
                    f"learning rate {cfg.lr:g}; lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._set_lr(epoch - 1 + (batch - 1) / batches)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            loss_sum += loss_value
            step += 1
            progress = (epoch - 1 + batch / batches) / cfg.epochs
            self._fire("on_batch_end", BatchEnd(epoch, step, batch, batches, loss_value, progress))

        valid, improved = None, False
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = self._evaluate("valid", epoch)
            improved = valid[EARLY_STOPPING_METRIC] > self.best_metric
        seconds = time.perf_counter() - started
        entry = {"epoch": epoch, "train_loss": loss_sum / batches, "valid": valid,
                 "seconds": seconds, "lr": cfg.lr * cfg.lr_factor(epoch - 1 / batches),
                 "load_average": _load_average()}
        with self.lock:
            self.step = step
            self.epochs_done = epoch
            self.history.append(entry)
            self.seconds += seconds
            if improved:
                self.best_metric = valid[EARLY_STOPPING_METRIC]
                self.best_epoch, self.best_valid = epoch, valid
                self.validations_since_best = 0
            elif valid is not None:
                self.validations_since_best += 1
        if improved:
            self.best_state = copy.deepcopy(self.model.state_dict())
        self._epoch_end_state = (
            copy.deepcopy(self.model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
        )
        if self.checkpoint_dir is not None and self.ranks.is_main:
            self.save_checkpoint()
        self._fire(
            "on_epoch_end",
            EpochEnd(epoch, entry["train_loss"], valid, improved, self.best_epoch, seconds),
        )
        return True


def _load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _dataset_info(
    data: InteractionData, spec: str, settings: dict[str, Any] | None
) -> dict[str, Any]:
    """What a checkpoint stores of its dataset: the fingerprint (to refuse other data), the spec
    as given, its absolute path (so `evaluate` finds it from any folder) and loader settings."""
    info = {"fingerprint": data.fingerprint(), "spec": spec, "name": data.name,
            "settings": dict(settings or {})}
    if spec != "synthetic" and Path(spec).expanduser().exists():
        info["path"] = str(Path(spec).expanduser().resolve())
    return info
