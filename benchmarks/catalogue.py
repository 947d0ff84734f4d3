"""Catalogues of millions of items: the full softmax against the sampled ones.

    python benchmarks/catalogue.py scale        # 1M synthetic items: memory and seconds per epoch
    python benchmarks/catalogue.py accuracy     # MovieLens-1M: what sampling costs in HR@10
    python benchmarks/catalogue.py scale --items 20000 --users 256 --results-dir /tmp/smoke
    python benchmarks/catalogue.py accuracy --epochs 1 --max-users 300 --results-dir /tmp/smoke

`scale` trains one epoch of each loss on a synthetic catalogue (default 1,000,000 items) and
records, per loss: seconds of the training epoch and of the (catalogue-chunked) validation, the
peak memory of one training step above what was live before it (CPU: torch's allocator through
the profiler; CUDA: max_memory_allocated), and the memory the parameters and AdamW state hold.
`accuracy` trains each loss on ML-1M with one protocol (leave-one-out, full ranking, early
stopping on validation NDCG@10) and records the test metrics: the accuracy cost of sampling.

Writes catalogue-scale-<device>.{json,md} or catalogue-accuracy-<device>.{json,md} to
--results-dir, with the machine, the date and the load average. The ML-1M data is licensed: it
is read where it lies and never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic.checkpoint import META_FILE  # noqa: E402
from elastic.complexity import MiB, cpu_peak_bytes, machine_info  # noqa: E402
from elastic.data import (  # noqa: E402
    InteractionData,
    SyntheticConfig,
    leave_one_out,
    load_dataset,
    make_synthetic,
)
from elastic.device import describe_device, pick_device  # noqa: E402
from elastic.evaluate import METRIC_NAMES  # noqa: E402
from elastic.models import build_model  # noqa: E402
from elastic.train import EpochEnd, TrainConfig, Trainer, seed_everything  # noqa: E402

DEFAULT_ML1M = ROOT.parent / "shared" / "data" / "ml-1m" / "ml-1m.txt"
# the losses compared; the sampled ones draw 256 candidates per batch in all
LOSSES = {
    "full": {"loss": "full"},
    "uniform": {"loss": "sampled", "sampler": "uniform", "num_negatives": 256},
    "log-uniform": {"loss": "sampled", "sampler": "log-uniform", "num_negatives": 256},
    "popularity": {"loss": "sampled", "sampler": "popularity", "num_negatives": 256},
    "popularity+in-batch": {"loss": "sampled", "sampler": "popularity", "num_negatives": 128,
                            "batch_negatives": 128},
}
# SASRec+'s setting on ML-1M (benchmarks/ml1m.py); the scale part reads 50 items
MODEL = {"d_model": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2, "num_interests": 8,
         "num_slots": 256}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["scale", "accuracy"])
    parser.add_argument("--losses", default=",".join(LOSSES),
                        help=f"comma-separated subset of {','.join(LOSSES)}")
    parser.add_argument("--model", choices=["sasrec", "elastic"], default="sasrec",
                        help="the sequence model (the head and loss are the same for both)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    scale = parser.add_argument_group("scale")
    scale.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    scale.add_argument("--users", type=int, default=1024, help="synthetic users")
    scale.add_argument("--interests", type=int, default=1000, help="planted interests")
    accuracy = parser.add_argument_group("accuracy")
    accuracy.add_argument("--data", default=str(DEFAULT_ML1M), help="the ml-1m.txt file")
    accuracy.add_argument("--max-len", type=int, default=200)
    accuracy.add_argument("--epochs", type=int, default=200)
    accuracy.add_argument("--patience", type=int, default=10)
    accuracy.add_argument("--lr", type=float, default=1e-3)
    accuracy.add_argument("--max-users", type=int, help="only the first N users (smoke tests)")
    accuracy.add_argument("--runs-dir", default=str(ROOT / "runs" / "catalogue"),
                          help="checkpoints, one folder per loss")
    accuracy.add_argument("--resume", action="store_true",
                          help="continue the losses whose checkpoints are in --runs-dir")
    args = parser.parse_args(argv)
    args.loss_names = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = sorted(set(args.loss_names) - set(LOSSES))
    if unknown:
        parser.error(f"unknown losses {unknown}; choose from {','.join(LOSSES)}")
    return args


def _state_bytes(trainer: Trainer) -> int:
    """Bytes of the parameters and the AdamW state (moments), what lives between steps."""
    tensors = list(trainer.model.parameters())
    for state in trainer.optimizer.state.values():
        tensors += [t for t in state.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


def step_peak_bytes(trainer: Trainer) -> int:
    """Peak memory of one training step (forward, loss, backward, AdamW) above what was live."""
    input_ids, target_ids = (t.to(trainer.device) for t in next(iter(trainer.train_loader)))

    def step() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.train_step(input_ids, target_ids).backward()
        trainer.optimizer.step()

    step()  # the AdamW state exists before the measured step, as in training
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
        base = torch.cuda.memory_allocated(trainer.device)
        torch.cuda.reset_peak_memory_stats(trainer.device)
        step()
        torch.cuda.synchronize(trainer.device)
        return torch.cuda.max_memory_allocated(trainer.device) - base
    return cpu_peak_bytes(step)


def timed_epochs(trainer: Trainer) -> dict:
    """fit() with the training part of each epoch timed apart from its validation."""
    marks: dict[str, float] = {}
    train_seconds: list[float] = []
    trainer.add_callback("on_epoch_start", lambda e: marks.update(start=time.perf_counter()))
    trainer.add_callback("on_batch_end", lambda e: marks.update(last=time.perf_counter()))
    trainer.add_callback("on_epoch_end",
                         lambda e: train_seconds.append(marks["last"] - marks["start"]))
    result = trainer.fit()
    epoch_seconds = [entry["seconds"] for entry in result["history"]]
    if not train_seconds:  # resumed after its last epoch: only whole epochs' seconds exist
        return {"result": result, "train_s": epoch_seconds, "validation_s": []}
    # a resumed run's history also holds the epochs of earlier invocations, untimed here
    timed = epoch_seconds[-len(train_seconds):]
    return {"result": result, "train_s": train_seconds,
            "validation_s": [e - t for e, t in zip(timed, train_seconds, strict=True)]}


def config_for(args: argparse.Namespace, loss: str, **overrides) -> TrainConfig:
    return TrainConfig(batch_size=args.batch, seed=args.seed, device=args.device,
                       num_threads=args.threads, precision=args.precision,
                       **LOSSES[loss], **overrides)


def run_scale(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    data = make_synthetic(SyntheticConfig(num_users=args.users, num_items=args.items,
                                          planted_interests=args.interests, seed=args.seed))
    print(f"{args.items} items, {args.users} users generated in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    split = leave_one_out(data)
    rows = {}
    for loss in args.loss_names:
        seed_everything(args.seed)
        model = build_model(args.model, num_items=data.num_items, max_len=50, **MODEL)
        trainer = Trainer(model, split, config_for(args, loss, epochs=1, patience=None,
                                                   lr=1e-3))
        timing = timed_epochs(trainer)
        rows[loss] = {
            "train_s_per_epoch": timing["train_s"][0],
            "validation_s": timing["validation_s"][0],
            "step_peak_mib": step_peak_bytes(trainer) / MiB,
            "state_mib": _state_bytes(trainer) / MiB,
            "steps_per_epoch": len(trainer.train_loader),
            "test": timing["result"]["test"],
            **LOSSES[loss],
        }
        print(f"{loss}: {rows[loss]['train_s_per_epoch']:.1f} s/epoch, step peak "
              f"{rows[loss]['step_peak_mib']:.0f} MiB, state {rows[loss]['state_mib']:.0f} MiB",
              flush=True)
    return {"items": data.num_items, "users": data.num_users, "max_len": 50, "losses": rows}


def first_users(data: InteractionData, count: int) -> InteractionData:
    """The first `count` users, the catalogue unchanged (a smaller run of the same protocol)."""
    return InteractionData(name=f"{data.name}-first{count}", sequences=data.sequences[:count],
                           num_items=data.num_items, user_ids=data.user_ids[:count],
                           item_ids=data.item_ids, source=data.source)


def run_accuracy(args: argparse.Namespace) -> dict:
    data = load_dataset(args.data)
    if args.max_users:
        data = first_users(data, args.max_users)
    split = leave_one_out(data)
    rows = {}
    for loss in args.loss_names:
        seed_everything(args.seed)
        model = build_model(args.model, num_items=data.num_items, max_len=args.max_len, **MODEL)
        config = config_for(args, loss, epochs=args.epochs, patience=args.patience, lr=args.lr,
                            max_len=args.max_len)
        checkpoint_dir = Path(args.runs_dir) / f"{args.model}-{loss}"
        trainer = Trainer(model, split, config, data=data, data_spec=args.data,
                          checkpoint_dir=checkpoint_dir)
        if args.resume and (checkpoint_dir / META_FILE).is_file():
            trainer.resume(checkpoint_dir)
            print(f"{loss}: resumed after epoch {trainer.epochs_done}", flush=True)

        def report(event: EpochEnd, loss: str = loss) -> None:
            valid = event.valid or {}
            print(f"{loss} epoch {event.epoch}: loss {event.train_loss:.4f} valid NDCG@10 "
                  f"{valid.get('NDCG@10', float('nan')):.4f} ({event.seconds:.0f} s)", flush=True)

        trainer.add_callback("on_epoch_end", report)
        timing = timed_epochs(trainer)
        result = timing["result"]
        rows[loss] = {**result["test"], "best_epoch": result["best_epoch"],
                      "epochs_run": result["epochs"], "seconds": result["seconds"],
                      "train_s_per_epoch": sum(timing["train_s"]) / max(1, len(timing["train_s"])),
                      **LOSSES[loss]}
        print(f"{loss}: test HR@10 {rows[loss]['HR@10']:.4f} NDCG@10 {rows[loss]['NDCG@10']:.4f}",
              flush=True)
    return {"items": data.num_items, "users": data.num_users, "max_len": args.max_len,
            "epochs": args.epochs, "patience": args.patience, "losses": rows}


def markdown(part: str, report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"# Catalogue benchmark: {part}",
        "",
        f"{report['model']} on {report['device']}; {machine['cpu']}, torch {machine['torch']}; "
        f"{report['date']}; load average {machine['load_avg']} at the start; "
        f"{report['items']:,} items, {report['users']:,} users, the last {report['max_len']} "
        f"items read; precision {report['precision']}.",
        "",
    ]
    if part == "scale":
        lines += ["| loss | train s/epoch | steps | validation s | step peak MiB | "
                  "parameters + AdamW MiB | test HR@10 |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for loss, row in report["losses"].items():
            lines.append(f"| {loss} | {row['train_s_per_epoch']:.1f} | {row['steps_per_epoch']} "
                         f"| {row['validation_s']:.1f} | {row['step_peak_mib']:.0f} | "
                         f"{row['state_mib']:.0f} | {row['test']['HR@10']:.4f} |")
        lines += ["", "One epoch per loss. The step peak is above what was live before the step "
                  "(parameters and AdamW state are counted apart). Validation ranks the whole "
                  "catalogue a chunk of 65,536 items at a time."]
    else:
        full = report["losses"].get("full")
        lines += [f"| loss | {' | '.join(METRIC_NAMES)} | HR@10 vs full | best epoch | "
                  "train s/epoch |",
                  "|" + " --- |" * (len(METRIC_NAMES) + 4)]
        for loss, row in report["losses"].items():
            cells = " | ".join(f"{row[name]:.4f}" for name in METRIC_NAMES)
            versus = f"{row['HR@10'] / full['HR@10'] - 1:+.1%}" if full and full["HR@10"] else "–"
            lines.append(f"| {loss} | {cells} | {versus} | {row['best_epoch']} | "
                         f"{row['train_s_per_epoch']:.0f} |")
        lines += ["", f"At most {report['epochs']} epochs, early stopping on validation NDCG@10 "
                  f"(patience {report['patience']}); full ranking over all items, history "
                  "filtered, for every loss."]
    if report.get("smoke"):
        lines += ["", f"**Smoke run** ({report['smoke']}): these figures only show that the "
                  "benchmark runs; they are not results."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = {
        "model": args.model,
        "device": describe_device(device),
        "machine": machine_info(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "precision": args.precision,
        "batch": args.batch,
        **(run_scale(args) if args.part == "scale" else run_accuracy(args)),
    }
    smaller = (args.part == "scale" and args.items < 1_000_000) or (
        args.part == "accuracy" and args.max_users)
    if smaller:
        report["smoke"] = "a smaller setting than the benchmark's"
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stem = f"catalogue-{args.part}-{device.type}"
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (results / f"{stem}.md").write_text(markdown(args.part, report))
    print(f"wrote {results / stem}.json and .md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:  # bad path, other data in --runs-dir
        sys.exit(f"error: {err}")
