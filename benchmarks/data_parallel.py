"""One process against several: `python -m elastic train` and the same command under torchrun.

    python benchmarks/data_parallel.py                         # 1×1, 1×2, 2×1 on the CPU
    python benchmarks/data_parallel.py --device cuda --runs 1x1,2x1 --epochs 2 --out "$OUT"

A run "PxT" is P processes (torchrun --standalone --nproc-per-node P; P = 1 is the plain
command) of T torch threads each. Every run trains the same model on the same data with the same
global batch, so they differ only in how the work is spread; `metrics.json` gives the seconds of
each epoch (training and validation) and the test metrics. Writes data-parallel-<device>.json
and .md with the machine, the date and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic.complexity import machine_info  # noqa: E402
from elastic.device import pick_device  # noqa: E402


def run_list(text: str) -> list[tuple[int, int]]:
    """'1x1,2x1' -> [(1, 1), (2, 1)]: (processes, threads per process)."""
    try:
        runs = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        runs = []
    if not runs or any(len(run) != 2 or min(run) < 1 for run in runs):
        raise argparse.ArgumentTypeError(f"expected runs like 1x1,2x1, got {text!r}")
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=run_list, default=run_list("1x1,1x2,2x1"),
                        help="PxT: P processes of T threads each (default 1x1,1x2,2x1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", choices=["elastic", "sasrec"], default="elastic")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--epochs", type=int, default=8, help="the synthetic default's 8")
    parser.add_argument("--train-args", default="",
                        help="more `python -m elastic train` flags, e.g. '--max-len 200'")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args(argv)


def train(processes: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    launcher = [sys.executable, "-m", "elastic"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(processes), "-m", "elastic"]
    command = [*launcher, "train", "--data", args.data, "--model", args.model, "--epochs",
               str(args.epochs), "--patience", str(args.epochs), "--device", args.device,
               "--threads", str(threads), "--out", str(out), *args.train_args.split()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{processes}x{threads} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    epoch_seconds = [entry["seconds"] for entry in metrics["history"]]
    return {
        "processes": processes,
        "threads": threads,
        "world_size": metrics["world_size"],
        "median_s_per_epoch": statistics.median(epoch_seconds),
        "epoch_seconds": epoch_seconds,
        "wall_s": wall,  # the whole command: start-up, data, training, test, popularity
        "test": metrics["test"],
        "best_epoch": metrics["best_epoch"],
    }


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"# Data-parallel training: {report['device']}",
        "",
        f"{report['model']} on {report['data']}, {report['epochs']} epochs, the same global "
        f"batch in every run; {machine['cpu']}, torch {machine['torch']}; {report['date']}; "
        f"load average {machine['load_avg']} at the start.",
        "",
        "| processes × threads | s/epoch (median, with validation) | command s | test HR@10 "
        "| test NDCG@10 | best epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["runs"]:
        lines.append(f"| {row['processes']} × {row['threads']} | "
                     f"{row['median_s_per_epoch']:.2f} | {row['wall_s']:.0f} | "
                     f"{row['test']['HR@10']:.4f} | {row['test']['NDCG@10']:.4f} | "
                     f"{row['best_epoch']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    report = {
        "model": args.model,
        "data": args.data,
        "epochs": args.epochs,
        "device": device.type,
        "machine": machine_info(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train_args": args.train_args,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        for processes, threads in args.runs:
            row = train(processes, threads, args, Path(scratch) / f"{processes}x{threads}")
            report["runs"].append(row)
            print(f"{processes}x{threads}: {row['median_s_per_epoch']:.2f} s/epoch, "
                  f"test HR@10 {row['test']['HR@10']:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"data-parallel-{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)  # this process only launches and reads
    sys.exit(main())
