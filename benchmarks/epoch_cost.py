"""What a MovieLens-1M training epoch costs at max_len 200, 512 and 1024, with random batches
and with batches by length (`TrainConfig.batch_by_length`), for SASRec and ELASTIC.

    python benchmarks/epoch_cost.py [--batches 8] [--threads 2]

An epoch is estimated as (mean seconds of a training step over `--batches` batches drawn evenly
from the epoch's own batches) × (batches per epoch): the mean, not the median, because an epoch
is a sum, and by-length batches differ in width. Every configuration is timed on its batch
before the next batch is drawn, so the forms alternate and drift hits all alike. Wall and
process CPU time; the load average beside. Writes benchmarks/results/epoch-cost.md. Run alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic.openmp import cap_spinning  # noqa: E402

cap_spinning()

import torch  # noqa: E402

from elastic.complexity import machine_info  # noqa: E402
from elastic.data import TrainLoader, leave_one_out, load_dataset  # noqa: E402
from elastic.models import build_model  # noqa: E402
from elastic.train import TrainConfig, make_optimizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ml-1m" / "ml-1m.txt"
MODEL = {"d_model": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2, "num_interests": 8,
         "num_slots": 256}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--lengths", default="200,512,1024")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    split = leave_one_out(data)
    lengths = [int(n) for n in args.lengths.split(",")]
    forms = {}
    for n in lengths:
        for by_length in (False, True):
            loader = TrainLoader(split.train, n, 128, seed=0, by_length=by_length)
            batches = list(loader)
            pick = [batches[i * len(batches) // args.batches] for i in range(args.batches)]
            for name in ("sasrec", "elastic"):
                torch.manual_seed(0)
                model = build_model(name, num_items=data.num_items, max_len=n, **MODEL).train()
                optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
                forms[(name, n, by_length)] = (model, optimizer, pick, len(batches), [], [])
    for model, optimizer, pick, *_ in forms.values():  # warm-up: allocator, first-call setup
        model.training_loss(*pick[0]).backward()
        optimizer.zero_grad(set_to_none=True)
    load_before = os.getloadavg()
    for i in range(args.batches):
        for model, optimizer, pick, _, walls, cpus in forms.values():
            inputs, targets = pick[i]
            wall, cpu = time.perf_counter(), time.process_time()
            loss = model.training_loss(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    load_after = os.getloadavg()
    m = machine_info(torch.device("cpu"))
    lines = [
        "# What a MovieLens-1M training epoch costs",
        "",
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}, {m['cpu']}, torch "
        f"{m['torch']}, {args.threads} threads; `python benchmarks/epoch_cost.py`. Batch 128, "
        f"d 64, 2 layers, 2 heads, k 8, K 256, full-softmax CE; epoch = mean step over "
        f"{args.batches} batches drawn evenly from the epoch × batches per epoch, the forms "
        f"alternating batch by batch. Load average before {[round(x, 2) for x in load_before]}, "
        f"after {[round(x, 2) for x in load_after]}.",
        "",
        "| model | max_len | batches | mean width | epoch s (wall) | epoch s (CPU) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for (name, n, by_length), (_, _, pick, count, walls, cpus) in forms.items():
        width = sum(b[0].shape[1] for b in pick) / len(pick)
        lines.append(
            f"| {name} | {n} | {'by length' if by_length else 'random'} | {width:.0f} | "
            f"{sum(walls) / len(walls) * count:.0f} | {sum(cpus) / len(cpus) * count:.0f} |")
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results" / "epoch-cost.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
