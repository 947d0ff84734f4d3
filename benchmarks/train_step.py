"""Where a training step goes, and what recomputation costs: ELASTIC against SASRec.

    python benchmarks/train_step.py        # writes benchmarks/results/train-step.md

1. The default synthetic step (`elastic.defaults`: B 128, N 50, 2,000 items, one thread):
   ELASTIC's retrieval alone (query network + memory, forward + backward), retrieval + layers,
   the whole `training_loss` step; SASRec's layers and whole step.
2. N = 1024, B = 32, 1,000 items, 2 threads: ELASTIC's step with segments recomputed in
   backward against one pass (`ElasticConfig.recompute`).

Median of repeated calls, the measured forms alternating within each part; the load average is
written beside each part. Run it alone: a timing, not a test.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elastic.openmp import cap_spinning  # noqa: E402

cap_spinning()  # as `python -m elastic` does, before torch loads

import torch  # noqa: E402

from elastic.complexity import machine_info  # noqa: E402
from elastic.defaults import SYNTHETIC_DATA, SYNTHETIC_MODEL  # noqa: E402
from elastic.models import Intervention, build_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train-step.md"


def alternating(forms: dict, repeats: int) -> dict[str, float]:
    """Median ms of each callable, called in turn `repeats` times after one warm-up each."""
    for fn in forms.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(repeats):
        for name, fn in forms.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(ts) for name, ts in times.items()}


def default_step(repeats: int) -> dict[str, float]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    items = SYNTHETIC_DATA["num_items"]
    elastic = build_model("elastic", num_items=items, **SYNTHETIC_MODEL).train()
    sasrec = build_model("sasrec", num_items=items, **SYNTHETIC_MODEL).train()
    ids = torch.randint(1, items + 1, (128, SYNTHETIC_MODEL["max_len"]))
    change = Intervention(query_context=elastic.sample_context(ids))

    def retrieve():
        r, _ = elastic.retrieve(ids, change)
        (r.dispatchers.sum() + r.log_gates.sum()).backward()

    def retrieve_and_layers():
        r, _ = elastic.retrieve(ids, change)
        elastic._encode(ids, r, change)[0].sum().backward()

    return alternating({
        "ELASTIC retrieval": retrieve,
        "ELASTIC retrieval + layers": retrieve_and_layers,
        "ELASTIC step": lambda: elastic.training_loss(ids, ids).backward(),
        "SASRec layers": lambda: sasrec.encode(ids).sum().backward(),
        "SASRec step": lambda: sasrec.training_loss(ids, ids).backward(),
    }, repeats)


def recompute_step(repeats: int) -> dict[str, float]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = dict(num_items=1000, max_len=1024, d_model=64, num_layers=2, num_heads=2,
                  num_interests=8, num_slots=256)
    models = {f"recompute={r}": build_model("elastic", recompute=r, **config).train()
              for r in (True, False)}
    ids = torch.randint(1, 1001, (32, 1024))
    return alternating({name: (lambda m=m: m.training_loss(ids, ids).backward())
                        for name, m in models.items()}, repeats)


def main() -> int:
    machine = machine_info(torch.device("cpu"))
    lines = [
        "# Where a training step goes",
        "",
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}, {machine['cpu']}, torch "
        f"{machine['torch']}, GOMP_SPINCOUNT {os.environ.get('GOMP_SPINCOUNT')}; "
        "`python benchmarks/train_step.py`. Median ms, forward + backward, the forms of each "
        "part alternating.",
    ]
    for title, part, repeats in (
        ("Default synthetic step (B 128, N 50, 2,000 items, 1 thread), 9 calls each",
         default_step, 9),
        ("N = 1024, B = 32, 1,000 items, 2 threads, 5 calls each", recompute_step, 5),
    ):
        load = os.getloadavg()[0]
        result = part(repeats)
        lines += ["", f"## {title}", "", f"Load average {load:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after.", "", "| what | ms |", "| --- | ---: |"]
        lines += [f"| {name} | {ms:.1f} |" for name, ms in result.items()]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
