"""Atomic checkpoints: a folder that is either the old one or the new one, never half of each.

A checkpoint is a folder holding

- ``model.safetensors``: the best-on-validation weights — what ``load_model`` returns;
- ``last.safetensors``: the weights at the end of the latest epoch — what a resume continues;
- ``optimizer.pt``: the optimizer state of ``last`` (loaded with ``weights_only=True``);
- ``checkpoint.json``: model name and config, dataset fingerprint and spec, metrics, and the
  train state (epochs done, best metric and epoch, history, train config).

Saving writes a fresh sibling folder, then swaps it in with two ``os.replace`` calls
(old → ``.NAME.old-*``, new → NAME) and deletes the old one. A crash before the swap leaves the
old checkpoint untouched; a crash between the two renames leaves the complete old checkpoint in
``.NAME.old-*``, which ``read_checkpoint`` falls back to. Weights are safetensors (no pickle:
loading a checkpoint can never run code), the optimizer state is a plain tensor dict that
``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from elastic.models import MODELS, SequentialRecommender, build_model

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RUN_SUBFOLDER = "checkpoint"  # `python -m elastic train --out DIR` saves into DIR/checkpoint


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or does not belong to the data or model given."""


@dataclass
class Checkpoint:
    """What `read_checkpoint` returns: the metadata and the tensors, on the CPU."""

    path: Path
    meta: dict[str, Any]
    best_weights: dict[str, torch.Tensor]
    last_weights: dict[str, torch.Tensor] | None
    optimizer_state: dict[str, Any] | None


def model_name(model: SequentialRecommender) -> str:
    """The `build_model` name of a model instance."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a model build_model knows")


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous tensors that share no memory
    return {key: t.detach().to("cpu").contiguous().clone() for key, t in state.items()}


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SequentialRecommender,
    *,
    last_state: dict[str, torch.Tensor] | None = None,
    best_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    `model` gives the name and config; `last_state` the weights a resume continues from
    (default: the model's current ones) and `best_state` the best-on-validation ones (default:
    `last_state`). `dataset` is ``{"fingerprint": ..., "spec": ..., "name": ...}``. An existing
    folder is replaced only if it is a checkpoint, so a mistyped path never deletes files.
    """
    target = Path(path)
    if target.exists() and not (target / META_FILE).is_file():
        raise CheckpointError(
            f"{target} exists and is not a checkpoint; choose an empty or new folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.tmp-{tag}"
    staging.mkdir()
    try:
        last = _cpu_state(last_state if last_state is not None else model.state_dict())
        best = _cpu_state(best_state) if best_state is not None else last
        save_file(best, staging / BEST_WEIGHTS, metadata={"format": str(FORMAT_VERSION)})
        save_file(last, staging / LAST_WEIGHTS, metadata={"format": str(FORMAT_VERSION)})
        if optimizer_state is not None:
            torch.save(optimizer_state, staging / OPTIMIZER_FILE)
        meta = {
            "format": FORMAT_VERSION,
            "model": model_name(model),
            "config": model.config_dict(),
            "dataset": dataset or {},
            "metrics": metrics or {},
            "train_state": train_state or {},
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        _fsync_tree(staging)
        if target.exists():
            retired = target.parent / f".{target.name}.old-{tag}"
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder for `path`: the folder itself, a run folder's `checkpoint/`, or —
    after a crash between the two renames of a save — the complete retired copy beside it."""
    folder = Path(path)
    for candidate in (folder, folder / RUN_SUBFOLDER):
        if (candidate / META_FILE).is_file():
            return candidate
        retired = sorted(candidate.parent.glob(f".{candidate.name}.old-*"))
        if retired and (retired[-1] / META_FILE).is_file():
            return retired[-1]
    if not folder.exists():
        raise FileNotFoundError(f"no checkpoint at {folder}: the folder does not exist")
    raise CheckpointError(
        f"{folder} holds no checkpoint ({META_FILE} is missing); "
        "give the --out folder of a training run or its checkpoint/ folder"
    )


def read_checkpoint(path: str | os.PathLike[str], with_train_state: bool = False) -> Checkpoint:
    """Read a checkpoint's metadata and weights (and, for a resume, last weights + optimizer)."""
    folder = resolve_checkpoint(path)
    meta = json.loads((folder / META_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has checkpoint format {meta.get('format')}, this version reads "
            f"format {FORMAT_VERSION}; train again with this version"
        )
    last, optimizer_state = None, None
    if with_train_state:
        last = load_file(folder / LAST_WEIGHTS)
        if (folder / OPTIMIZER_FILE).is_file():
            optimizer_state = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
    return Checkpoint(
        path=folder,
        meta=meta,
        best_weights=load_file(folder / BEST_WEIGHTS),
        last_weights=last,
        optimizer_state=optimizer_state,
    )


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SequentialRecommender, dict[str, Any]]:
    """(model with the best-on-validation weights, in eval mode on `device`, metadata)."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint.meta
    model = build_model(meta["model"], **meta["config"])
    model.load_state_dict(checkpoint.best_weights)
    return model.to(device).eval(), meta


def check_dataset(meta: dict[str, Any], fingerprint: str, path: str | os.PathLike[str]) -> None:
    """Raise a `CheckpointError` that says what to do when a checkpoint was trained on other
    data than `fingerprint` (resuming or evaluating it there would mix two datasets)."""
    stored = meta.get("dataset", {}).get("fingerprint")
    if stored is not None and stored != fingerprint:
        spec = meta["dataset"].get("spec", "unknown")
        raise CheckpointError(
            f"checkpoint {path} was trained on other data (dataset {spec!r}, fingerprint "
            f"{stored[:12]}…) than the data given (fingerprint {fingerprint[:12]}…); "
            "use the same data, or start a new run in another folder"
        )
