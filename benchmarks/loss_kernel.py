"""The full-softmax loss: the fused kernel against the checkpointed F.cross_entropy it replaced.

    python benchmarks/loss_kernel.py                         # the three cases, 1 and 2 threads
    python benchmarks/loss_kernel.py --quick --repeats 1 --results-dir /tmp/smoke

Times forward + backward of `full_softmax_loss` (`_LinearCrossEntropy`: logits once in
forward, once more in backward turned into softmax − onehot in place) and of
`full_softmax_loss_reference` (the previous path: F.cross_entropy on checkpointed chunks), on
R rows that all have a target, a (|I|+1, d) item table and d = 64, for
(R, |I|) = (6,400, 1,000) — SASRec's batch of 128 × 50 on the synthetic default —,
(25,600, 3,706) — a batch of 128 × 200 on MovieLens-1M — and (4,096, 100,000).
The two are called in alternating order (`measure_side_by_side`), after one warm-up call
each; each figure is the median of --repeats calls, in wall time and in process CPU time (all
threads), with the 1-minute load average read before and after each case. The peak memory of
one more call each comes from torch's allocator (`cpu_peak_bytes` on CPU). Every case also
checks that the two agree (loss and gradients).

Writes loss-kernel.{json,md} to --results-dir with the machine and the date. Run it alone:
other work on the machine stretches the wall times (the CPU times much less).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic.complexity import MiB, machine_info, measure_side_by_side  # noqa: E402
from elastic.device import describe_device, pick_device  # noqa: E402
from elastic.models.common import full_softmax_loss  # noqa: E402
from elastic.models.reference import full_softmax_loss_reference  # noqa: E402

CASES = [(6_400, 1_000), (25_600, 3_706), (4_096, 100_000)]  # (R rows, |I| items)
QUICK_CASES = [(256, 1_000), (512, 3_706), (64, 100_000)]  # smoke runs only
D_MODEL = 64
KERNELS = {"reference": full_softmax_loss_reference, "fused": full_softmax_loss}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per kernel")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per kernel first")
    parser.add_argument("--quick", action="store_true", help="small cases: a smoke run")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    return args


def loss_inputs(rows: int, items: int, device: torch.device, seed: int):
    """hidden (R, d) and item table (|I|+1, d) leaves at the model's scale, targets in 1..|I|."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, D_MODEL, generator=generator)
    weight = torch.randn(items + 1, D_MODEL, generator=generator) * D_MODEL**-0.5
    targets = torch.randint(1, items + 1, (rows,), generator=generator)
    return (hidden.to(device).requires_grad_(), weight.to(device).requires_grad_(),
            targets.to(device))


def agreement(hidden, weight, targets) -> dict:
    """Largest differences between the two kernels: loss, and gradients relative to their max."""
    out = {}
    for name, kernel in KERNELS.items():
        loss = kernel(hidden, weight, targets)
        out[name] = (loss.detach(), *torch.autograd.grad(loss, (hidden, weight)))
    ref, fused = out["reference"], out["fused"]
    return {
        "loss": float(ref[0]),
        "loss_abs_diff": float((ref[0] - fused[0]).abs()),
        "grad_hidden_rel_diff": float((ref[1] - fused[1]).abs().max() / ref[1].abs().max()),
        "grad_items_rel_diff": float((ref[2] - fused[2]).abs().max() / ref[2].abs().max()),
    }


def run_case(rows: int, items: int, args: argparse.Namespace, device: torch.device) -> dict:
    hidden, weight, targets = loss_inputs(rows, items, device, args.seed)

    def call(kernel):
        def forward_backward() -> None:
            kernel(hidden, weight, targets).backward()
            hidden.grad = weight.grad = None
        return forward_backward

    load_before = round(os.getloadavg()[0], 2)
    measured = measure_side_by_side({name: call(k) for name, k in KERNELS.items()}, device,
                                    repeats=args.repeats, warmup=args.warmup)
    load_after = round(os.getloadavg()[0], 2)
    row = {"rows": rows, "items": items, "d_model": D_MODEL,
           "gflop": 4 * 2 * rows * D_MODEL * items / 1e9,  # 4 products of (R × d)·(d × |I|)
           "load_before": load_before, "load_after": load_after,
           **agreement(hidden, weight, targets)}
    for name, m in measured.items():
        row[name] = {"median_ms": m.median_ms, "median_cpu_ms": m.median_cpu_ms,
                     "times_ms": m.times_ms, "peak_mib": m.peak_bytes / MiB}
    row["speedup_wall"] = row["reference"]["median_ms"] / row["fused"]["median_ms"]
    row["speedup_cpu"] = row["reference"]["median_cpu_ms"] / row["fused"]["median_cpu_ms"]
    return row


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Full-softmax loss: fused against the checkpointed F.cross_entropy",
        "",
        f"{report['device']}; {machine['cpu']}, torch {machine['torch']}; {report['date']}; "
        f"d = {D_MODEL}; forward + backward, median of {report['repeats']} calls after "
        f"{report['warmup']} warm-up, the two kernels alternating; `python "
        "benchmarks/loss_kernel.py`.",
        "",
        "| threads | R | \\|I\\| | GFLOP | reference ms (CPU ms) | fused ms (CPU ms) | "
        "speedup wall | speedup CPU | reference MiB | fused MiB | load before → after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in report["runs"]:
        for row in run["cases"]:
            ref, fused = row["reference"], row["fused"]
            lines.append(
                f"| {run['threads']} | {row['rows']:,} | {row['items']:,} | {row['gflop']:.1f} | "
                f"{ref['median_ms']:.1f} ({ref['median_cpu_ms']:.1f}) | "
                f"{fused['median_ms']:.1f} ({fused['median_cpu_ms']:.1f}) | "
                f"{row['speedup_wall']:.2f}× | {row['speedup_cpu']:.2f}× | "
                f"{ref['peak_mib']:.0f} | {fused['peak_mib']:.0f} | "
                f"{row['load_before']} → {row['load_after']} |")
    worst = max((row for run in report["runs"] for row in run["cases"]),
                key=lambda row: max(row["grad_hidden_rel_diff"], row["grad_items_rel_diff"]))
    lines += [
        "",
        "Speedup = reference ÷ fused (above 1× the fused loss is faster). Peak = memory "
        "allocated during one call above what was live before it. GFLOP counts the four "
        "products per call (logits, logits again in backward, two gradients). The two kernels "
        "agree in every case: largest relative gradient difference "
        f"{max(worst['grad_hidden_rel_diff'], worst['grad_items_rel_diff']):.1e} "
        f"(R = {worst['rows']:,}, |I| = {worst['items']:,}).",
    ]
    if report.get("smoke"):
        lines += ["", f"**Smoke run** ({report['smoke']}): these figures only show that the "
                  "benchmark runs; they are not results."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    threads_before = torch.get_num_threads()
    machine = machine_info(device)
    del machine["threads"]  # each run sets its own
    report = {
        "device": device.type if device.type == "cpu" else describe_device(device),
        "machine": machine,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "runs": [],
    }
    for threads in args.thread_counts:
        torch.set_num_threads(threads)
        run = {"threads": threads, "cases": []}
        for rows, items in QUICK_CASES if args.quick else CASES:
            row = run_case(rows, items, args, device)
            run["cases"].append(row)
            print(f"{threads} thread(s), R={rows}, |I|={items}: reference "
                  f"{row['reference']['median_ms']:.1f} ms, fused {row['fused']['median_ms']:.1f} "
                  f"ms ({row['speedup_wall']:.2f}×), load {row['load_after']}", flush=True)
        report["runs"].append(run)
    torch.set_num_threads(threads_before)
    if args.quick or args.repeats < 3:
        report["smoke"] = "--quick" if args.quick else f"--repeats {args.repeats}"
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "loss-kernel.json").write_text(json.dumps(report, indent=2))
    (results / "loss-kernel.md").write_text(markdown(report))
    print(f"wrote {results / 'loss-kernel'}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
