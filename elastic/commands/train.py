"""`python -m elastic train`: train ELASTIC or SASRec, evaluate it, write metrics and a checkpoint.

Defaults (`elastic.defaults.SYNTHETIC_MODEL`, `SYNTHETIC_TRAIN`) are tuned for the embedded
synthetic dataset (docs/training.md: ELASTIC in about 40 s on a 2-core CPU); for MovieLens-1M
pass e.g. `--max-len 200 --epochs 200 --patience 10 --lr 1e-3`.

Under `torchrun --nproc-per-node N -m elastic train ...` the same command trains one model on N
processes (elastic/distributed.py); only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from elastic.checkpoint import (
    META_FILE,
    RUN_SUBFOLDER,
    CheckpointError,
    build_from_checkpoint,
    model_name,
    read_checkpoint,
    recover_checkpoint,
    train_state_of,
)
from elastic.commands.options import (
    add_table_options,
    at_least,
    checkpoint_data,
    device_name,
    fraction,
    load_data,
    non_negative_number,
    positive_number,
    table_settings,
)
from elastic.complexity import Shape, check_training_budget
from elastic.data import InteractionData, leave_one_out
from elastic.defaults import SYNTHETIC_MODEL, SYNTHETIC_TRAIN
from elastic.device import PRECISIONS, pick_device
from elastic.distributed import process_group
from elastic.evaluate import PopularityScorer, evaluate
from elastic.models import SequentialRecommender, build_model
from elastic.models.common import NEGATIVE_SAMPLERS
from elastic.train import (
    SCHEDULES,
    BatchEnd,
    EpochEnd,
    EvalBatchEnd,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    seed_everything,
)

# flag -> ElasticConfig / SASRecConfig field
MODEL_FLAGS = {"max_len": "max_len", "d_model": "d_model", "layers": "num_layers",
               "heads": "num_heads", "dropout": "dropout", "k": "num_interests",
               "slots": "num_slots"}
# flag -> TrainConfig field
TRAIN_FLAGS = {"epochs": "epochs", "lr": "lr", "batch": "batch_size", "device": "device",
               "seed": "seed", "patience": "patience", "loss": "loss",
               "negatives": "num_negatives", "sampler": "sampler",
               "batch_negatives": "batch_negatives", "precision": "precision",
               "threads": "num_threads", "warmup_epochs": "warmup_epochs",
               "schedule": "schedule"}
# (flag, type, help) of each setting, in the order --help lists them; each type refuses a bad
# value in one sentence (options.py), so no setting reaches torch to fail as a traceback
MODEL_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("max_len", at_least(1), "N, most recent items read"),
    ("d_model", at_least(1), "embedding width d"),
    ("layers", at_least(1), "attention layers"),
    ("heads", at_least(1), "attention heads"),
    ("dropout", fraction, "dropout"),
    ("k", at_least(1), "ELASTIC: dispatchers per user"),
    ("slots", at_least(1), "ELASTIC: memory slots K, a square"),
]
TRAIN_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("epochs", at_least(1), "maximum epochs"),
    ("lr", positive_number, "AdamW learning rate"),
    ("batch", at_least(1), "sequences per step"),
    ("device", device_name, "auto, cpu, cuda or mps"),
    ("seed", at_least(0), "random seed"),
    ("patience", at_least(1), "validations without a better NDCG@10 before stopping"),
    ("loss", str, "full softmax or sampled"),
    ("negatives", at_least(1), "negatives drawn per batch for --loss sampled"),
    ("sampler", str, "where --loss sampled draws negatives from"),
    ("batch_negatives", at_least(0), "--loss sampled: also this many of the batch's own targets"),
    ("precision", str, "bf16 autocast, or auto: bf16 where the device computes it natively"),
    ("threads", at_least(1), "torch CPU threads; 1 is fastest for small models"),
    ("warmup_epochs", non_negative_number, "epochs over which the rate rises from 0 to --lr"),
    ("schedule", str, "after warm-up: constant, or cosine decay to 0 at --epochs"),
]
CHOICES = {"loss": ["full", "sampled"], "sampler": list(NEGATIVE_SAMPLERS),
           "precision": list(PRECISIONS), "schedule": list(SCHEDULES)}
# what a resumed run may change; everything else is the run's own. --lr too: after a
# divergence, the same rate would repeat the same steps
RESUMABLE = {"epochs", "patience", "lr", "device", "threads", "precision"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and evaluate it",
        description=(
            "Train ELASTIC or SASRec on a dataset with leave-one-out, keep the best epoch on "
            "validation, evaluate it on the test items (full ranking, history filtered) and "
            "write DIR/metrics.json and a checkpoint in DIR/checkpoint."
        ),
    )
    parser.add_argument(
        "--data",
        help='"synthetic" (default), a MovieLens folder or .zip, a SASRec .txt, or a table',
    )
    parser.add_argument("--model", choices=["elastic", "sasrec"], help="default: elastic")
    parser.add_argument("--out", help="run folder (default runs/MODEL)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    for title, options in (("model", MODEL_OPTIONS), ("training", TRAIN_OPTIONS)):
        group = parser.add_argument_group(title)
        for flag, kind, text in options:
            group.add_argument(f"--{flag.replace('_', '-')}", type=kind, choices=CHOICES.get(flag),
                               help=_with_default(flag, text))
    add_table_options(parser)
    parser.set_defaults(run=run)


def _with_default(flag: str, text: str) -> str:
    """Help text ending in the default a new run uses (a resumed run keeps its own)."""
    if flag in MODEL_FLAGS:
        value = SYNTHETIC_MODEL[MODEL_FLAGS[flag]]
    else:
        field = TRAIN_FLAGS[flag]
        value = SYNTHETIC_TRAIN.get(field, getattr(TrainConfig, field))
    return f"{text} (default {value})"


def _given(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in flags.items()
            if getattr(args, flag) is not None}


def _in_flag_terms(message: str) -> str:
    """A config's sentence with its field names written as the flags that set them."""
    flag_of = {field: flag for flag, field in (MODEL_FLAGS | TRAIN_FLAGS).items()}
    return re.sub(
        r"\b(" + "|".join(sorted(flag_of, key=len, reverse=True)) + r")\b",
        lambda match: "--" + flag_of[match.group(1)].replace("_", "-"),
        message,
    )


def _new_run(args: argparse.Namespace, data: InteractionData):
    model_name = args.model or "elastic"
    model_config = {**SYNTHETIC_MODEL, **_given(args, MODEL_FLAGS)}
    try:
        config = TrainConfig(**{**SYNTHETIC_TRAIN, **_given(args, TRAIN_FLAGS)},
                             max_len=model_config["max_len"])
        seed_everything(config.seed)  # the model's initial weights
        model = build_model(model_name, num_items=data.num_items, **model_config)
    except ValueError as error:
        raise ValueError(_in_flag_terms(str(error))) from error
    return model, config


def _resumed_run(args: argparse.Namespace, checkpoint_dir: Path):
    checkpoint = read_checkpoint(checkpoint_dir)
    meta, state = checkpoint.meta, train_state_of(checkpoint)
    changed = {
        flag for flag in (*MODEL_FLAGS, *TRAIN_FLAGS, "model")
        if getattr(args, flag) is not None and flag not in RESUMABLE
    }
    if changed:
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in sorted(changed))
        raise CheckpointError(
            f"a resumed run keeps its own settings; drop {flags} (only --epochs, --patience, "
            "--lr, --device, --threads and --precision may change), or start a new run in "
            "another --out folder"
        )
    model = build_from_checkpoint(checkpoint)
    return model, TrainConfig(**{**state["train_config"], **_given(args, TRAIN_FLAGS)}), meta


def _check_memory(model: SequentialRecommender, config: TrainConfig, data: InteractionData) -> None:
    """Refuse, before the first batch, a run that would not fit in memory (it would otherwise
    die minutes later inside the allocator)."""
    name = model_name(model)
    form = "elastic" if name == "elastic" else f"sasrec-{model.config.attention}"
    batch = min(config.batch_size, data.num_users)  # a batch never holds more users than exist
    shape = Shape.from_config(model.config, batch=batch)
    reason = check_training_budget(form, shape, pick_device(config.device),
                                   eval_batch=config.eval_batch_size)
    if reason:
        raise ValueError(f"{reason}; lower --batch (or --max-len, --d-model)")


def _is_out_of_memory(error: RuntimeError) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def progress_bar(trainer: Trainer) -> tqdm:
    """One bar over the whole run: training batches, then each validation's batches, and the
    test batches at the end, so it never freezes while the model is evaluated. Its rate is the
    run's average (smoothing=0), so the time left does not jump at every validation."""
    config = trainer.config
    train_batches, valid_batches = len(trainer.train_loader), len(trainer.valid_loader)

    def batches_of(epoch: int) -> int:
        validates = epoch % config.eval_every == 0 or epoch == config.epochs
        return train_batches + (valid_batches if validates else 0)

    bar = tqdm(
        total=sum(map(batches_of, range(1, config.epochs + 1))) + len(trainer.test_loader),
        initial=sum(map(batches_of, range(1, trainer.epochs_done + 1))),
        unit="batch",
        dynamic_ncols=True,
        smoothing=0,
        file=sys.stderr,
    )

    def on_batch_end(event: BatchEnd) -> None:
        bar.update(1)
        bar.set_postfix_str(f"epoch {event.epoch}, loss {event.loss:.3f}")

    def on_eval_batch_end(event: EvalBatchEnd) -> None:
        bar.update(1)
        what = "validating" if event.stage == "valid" else "testing"
        bar.set_postfix_str(f"epoch {event.epoch}, {what} {event.batch}/{event.batches}")

    def on_epoch_end(event: EpochEnd) -> None:
        line = f"epoch {event.epoch}: train loss {event.train_loss:.4f}"
        if event.valid is not None:
            line += f", valid NDCG@10 {event.valid['NDCG@10']:.4f} HR@10 {event.valid['HR@10']:.4f}"
            line += " (best)" if event.improved else ""
        bar.write(line, file=sys.stderr)

    trainer.add_callback("on_batch_end", on_batch_end)
    trainer.add_callback("on_eval_batch_end", on_eval_batch_end)
    trainer.add_callback("on_epoch_end", on_epoch_end)
    return bar


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(payload, indent=2))
    os.replace(staging, path)  # a reader never sees half a file


def run(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/{args.model or 'elastic'}")
    checkpoint_dir = out / RUN_SUBFOLDER
    recover_checkpoint(checkpoint_dir)  # what a killed save left: the run is whole again
    meta = None
    if args.resume:
        if not (checkpoint_dir / META_FILE).is_file():
            raise FileNotFoundError(f"nothing to resume: {checkpoint_dir} holds no checkpoint")
        model, config, meta = _resumed_run(args, checkpoint_dir)
        spec, settings = checkpoint_data(meta, args)
    else:
        if (checkpoint_dir / META_FILE).exists():
            raise CheckpointError(
                f"{out} already holds a run; add --resume to continue it, or choose another --out"
            )
        spec = args.data or "synthetic"
        settings = table_settings(args, spec)
    data = load_data(spec, settings)
    if meta is None:
        model, config = _new_run(args, data)
    _check_memory(model, config, data)
    with process_group(pick_device(config.device)) as ranks:
        trainer = Trainer(model, leave_one_out(data), config, data=data, data_spec=str(spec),
                          data_settings=settings, checkpoint_dir=checkpoint_dir)
        if args.resume:
            trainer.resume(checkpoint_dir)
        bar = progress_bar(trainer) if ranks.is_main else None
        try:
            result = trainer.fit()
        except KeyboardInterrupt:
            if bar is not None:
                print(f"interrupted after epoch {trainer.epochs_done}; the checkpoint in {out} "
                      "holds it. Continue with --resume.", file=sys.stderr)
            return 130
        except TrainingDiverged as error:
            lower = f"{float(f'{config.lr / 3:.1g}'):g}"  # a third, to one significant digit
            if trainer.epochs_done:
                hint = (f"the checkpoint in {out} holds epoch {trainer.epochs_done}: continue it "
                        f"with python -m elastic train --out {out} --resume --lr {lower}")
            else:
                hint = f"train again with e.g. --lr {lower}"
            raise TrainingDiverged(f"{error}: {hint}") from error
        except RuntimeError as error:
            if not _is_out_of_memory(error):
                raise
            raise ValueError(
                f"training ran out of memory on {trainer.device} at batch {config.batch_size}; "
                "lower --batch (or --max-len, --d-model)"
            ) from error
        finally:
            if bar is not None:
                bar.close()
    if not ranks.is_main:
        return 0  # rank 0 writes and prints for all
    popularity = evaluate(PopularityScorer(trainer.split), trainer.test_loader)
    metrics = {
        **{key: result[key] for key in ("train_loss", "valid", "test", "best_epoch", "epochs",
                                        "early_stopped", "seconds", "device", "world_size")},
        "model": model_name(trainer.model),
        "config": trainer.model.config_dict(),
        "train_config": trainer.train_state()["train_config"],
        "data": {**trainer.dataset_info, "users": data.num_users, "items": data.num_items},
        "popularity": popularity,
        "history": result["history"],
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "metrics.json", metrics)
    test, pop = result["test"], popularity
    print(f"test HR@10 {test['HR@10']:.4f}  NDCG@10 {test['NDCG@10']:.4f}  MRR {test['MRR']:.4f}"
          f"  (popularity HR@10 {pop['HR@10']:.4f}); best epoch {result['best_epoch']}, "
          f"{result['seconds']:.1f} s on {result['device']}"
          + (f" × {result['world_size']} processes" if result["world_size"] > 1 else "")
          + f"; wrote {out / 'metrics.json'}")
    return 0
