"""Atomic checkpoints: a folder that is either the old one or the new one, never half of each.

A checkpoint is a folder holding

- ``model.safetensors``: the best-on-validation weights — what ``load_model`` returns;
- ``last.safetensors``: the weights at the end of the latest epoch — what a resume continues;
- ``optimizer.pt``: the optimizer state of ``last`` (loaded with ``weights_only=True``);
- ``checkpoint.json``: model name and config, dataset fingerprint and spec, metrics, and the
  train state (epochs done, best metric and epoch, history, train config).

``checkpoint.json`` also holds the SHA-256 of every other file (``files``); a reader refuses
a file whose digest differs, so flipped bytes or a cut-short copy can never load as weights
that quietly give other metrics. (Checkpoints written before the digests, such as the shipped
demo, load without that check; a damaged file there still fails with a sentence naming it.)

Saving writes a fresh sibling folder (``.NAME.tmp-*``), then swaps it in with two
``os.replace`` calls (old → ``.NAME.old-*``, new → NAME) and deletes the old one. A crash
before the swap leaves the old checkpoint untouched; a crash between the two renames leaves the
complete old checkpoint in ``.NAME.old-*``, which ``read_checkpoint`` falls back to and
``recover_checkpoint`` (run by every save, and by ``train`` before it starts) moves back into
place; a process killed while writing leaves a ``.NAME.tmp-*`` folder, which the next save
deletes. Weights are safetensors (no pickle: loading a checkpoint can never run code), the
optimizer state is a plain tensor dict that ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from elastic.models import MODELS, SequentialRecommender, build_model

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RUN_SUBFOLDER = "checkpoint"  # `python -m elastic train --out DIR` saves into DIR/checkpoint
# what checkpoint.json must hold for a model to be built from it
REQUIRED_KEYS = ("format", "model", "config")
# what its train_state must hold for a run to be resumed from it
RESUME_KEYS = ("epochs_done", "step", "best_metric", "best_epoch", "best_valid",
               "validations_since_best", "history", "seconds", "train_config")
_CHUNK = 1 << 20  # bytes hashed at a time


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


def file_digest(path: Path) -> str:
    """SHA-256 hex of a file, read in chunks (a checkpoint's weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recover_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """Repair what a killed save left beside the checkpoint folder `path`; return the folder if
    it holds a checkpoint afterwards, else None.

    A save killed between its two renames left the complete previous checkpoint in
    ``.NAME.old-*`` and nothing at NAME: it is moved back. Other retired copies (a save killed
    just before deleting one) and staging folders (``.NAME.tmp-*``, a save killed while
    writing) are deleted. Only one process may save into a folder at a time.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return None
    retired = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not (target / META_FILE).is_file() and not target.exists():
        complete = [folder for folder in retired if (folder / META_FILE).is_file()]
        if complete:
            os.replace(complete[-1], target)
    for leftover in (*target.parent.glob(f".{target.name}.old-*"),
                     *target.parent.glob(f".{target.name}.tmp-*")):
        shutil.rmtree(leftover, ignore_errors=True)
    return target if (target / META_FILE).is_file() else None


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
    recover_checkpoint(target)
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
            "files": {file.name: file_digest(file) for file in sorted(staging.iterdir())},
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
    """Read a checkpoint's metadata and weights (and, for a resume, last weights + optimizer).

    Every problem with the folder's files is a `CheckpointError` whose message names the file
    and says what to do: a missing or damaged file, a digest that differs, a checkpoint.json
    that is not JSON or lacks a key, an optimizer state that is not plain tensors."""
    folder = resolve_checkpoint(path)
    meta = _read_meta(folder)
    best = _load_weights(folder, BEST_WEIGHTS, meta)
    last, optimizer_state = None, None
    if with_train_state:
        last = _load_weights(folder, LAST_WEIGHTS, meta)
        if (folder / OPTIMIZER_FILE).is_file() or OPTIMIZER_FILE in meta.get("files", {}):
            _verify(folder, OPTIMIZER_FILE, meta)
            try:
                optimizer_state = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
            except pickle.UnpicklingError as error:
                raise CheckpointError(
                    f"checkpoint {folder}: {OPTIMIZER_FILE} holds Python objects besides tensors, "
                    "which loading would have to run, and was refused; do not use this folder: "
                    "train again"
                ) from error
            except (RuntimeError, EOFError, OSError) as error:
                raise _damaged(folder, OPTIMIZER_FILE, "cannot be read", error) from error
    return Checkpoint(
        path=folder,
        meta=meta,
        best_weights=best,
        last_weights=last,
        optimizer_state=optimizer_state,
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    where = folder / META_FILE
    try:
        meta = json.loads(where.read_text())
    except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointError(
            f"{where} cannot be read ({error}); the file is damaged or cut short: train again, "
            "or restore the folder from a copy"
        ) from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where} holds no checkpoint description; train again")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has checkpoint format {meta.get('format')}, this version reads "
            f"format {FORMAT_VERSION}; train again with this version"
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise CheckpointError(
            f"{where} lacks {', '.join(repr(key) for key in missing)}; the file is damaged: "
            "train again, or restore the folder from a copy"
        )
    if meta["model"] not in MODELS or not isinstance(meta["config"], dict):
        raise CheckpointError(
            f"{where} names model {meta['model']!r} with config {meta['config']!r}; this "
            f"version builds {', '.join(MODELS)} from a config dict: train again"
        )
    return meta


def _verify(folder: Path, name: str, meta: dict[str, Any]) -> None:
    if not (folder / name).is_file():
        raise CheckpointError(
            f"checkpoint {folder} is incomplete: {name} is missing; train again, or restore the "
            "folder from a copy"
        )
    expected = meta.get("files", {}).get(name)
    if expected is not None and file_digest(folder / name) != expected:
        raise CheckpointError(
            f"checkpoint {folder}: {name} does not match the checksum saved with it (the file "
            "is damaged or was changed); train again, or restore the folder from a copy"
        )


def _damaged(folder: Path, name: str, problem: str, error: BaseException) -> CheckpointError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return CheckpointError(
        f"checkpoint {folder}: {name} {problem} ({reason}); the file is damaged: train again, "
        "or restore the folder from a copy"
    )


def _load_weights(folder: Path, name: str, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    _verify(folder, name, meta)
    try:
        return load_file(folder / name)
    except (SafetensorError, OSError) as error:
        raise _damaged(folder, name, "cannot be read", error) from error


def train_state_of(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's train state, checked to hold everything a resume reads."""
    state = checkpoint.meta.get("train_state")
    missing = [key for key in RESUME_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(
            f"{checkpoint.path} holds a model but no training state to resume (train_state "
            f"lacks {', '.join(missing)}); evaluate it, or start a new run in another folder"
        )
    return state


# Settings added after checkpoints were written with this format: the value that rebuilds
# what an older checkpoint trained (a config without the key predates it).
LEGACY_CONFIG = {"elastic": {"stage1_scale": 0.0}}  # dot-product stage 1, before QK-norm


def build_from_checkpoint(checkpoint: Checkpoint) -> SequentialRecommender:
    """A fresh model built from a checkpoint's name and config (its weights not loaded)."""
    meta = checkpoint.meta
    try:
        return build_model(meta["model"], **(LEGACY_CONFIG.get(meta["model"], {})
                                             | meta["config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{checkpoint.path / META_FILE}: its {meta['model']} config does not build a model "
            f"({error}); train again with this version"
        ) from error


def load_weights(
    model: SequentialRecommender, weights: dict[str, torch.Tensor], checkpoint: Checkpoint
) -> None:
    """`model.load_state_dict(weights)`, with a sentence when they do not fit its config."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"checkpoint {checkpoint.path}: the weights do not fit the config in {META_FILE} "
            f"({first}); the folder mixes two runs: train again, or restore it from a copy"
        ) from error


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SequentialRecommender, dict[str, Any]]:
    """(model with the best-on-validation weights, in eval mode on `device`, metadata)."""
    checkpoint = read_checkpoint(path)
    model = build_from_checkpoint(checkpoint)
    load_weights(model, checkpoint.best_weights, checkpoint)
    return model.to(device).eval(), checkpoint.meta


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
