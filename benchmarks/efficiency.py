"""ELASTIC vs SASRec (materialized, SDPA), side by side: time and peak memory over N and k.

    python benchmarks/efficiency.py                 # the full sweep on the best device
    python benchmarks/efficiency.py --quick         # three lengths, no k sweep, one repeat
    python benchmarks/efficiency.py --device cuda --out "$OUT"

Writes `efficiency-<device>.json` (records, machine, date, settings) and `efficiency-<device>.md`
(tables: per mode and N, the three forms' median ms and peak MiB and ELASTIC's ratios to
each; the growth of ELASTIC from N=512 to N=4096; the k sweep; what was skipped and why).
Every point goes through the memory guard and, with --max-point-s, a time guard, so
impossible points are skipped with the reason instead of crashing or running for hours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from elastic.commands.bench import int_list
from elastic.complexity import FORMS, MODES, bench, machine_info
from elastic.device import describe_device, pick_device

MODEL = dict(slots=256, items=1000, batch=32, d_model=64, layers=2, heads=2)  # the setting
DEFAULT_K = 8
GROWTH = (512, 4096)  # ELASTIC's growth is reported between these lengths (8× longer)
NAMES = {"elastic": "ELASTIC", "sasrec-materialized": "materialized", "sasrec-sdpa": "SDPA"}
OTHERS = ("sasrec-materialized", "sasrec-sdpa", "none")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument(
        "--ns", type=int_list, default=None, help="lengths (default 128..4096; up to 16384 on CUDA)"
    )
    p.add_argument("--ks", type=int_list, default=[4, 8, 16, 32], help="k sweep (ELASTIC only)")
    p.add_argument("--k-ns", type=int_list, default=[1024, 4096], help="lengths of the k sweep")
    p.add_argument("--modes", default=",".join(MODES), help="infer,train")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 3; 10 on CUDA)")
    p.add_argument(
        "--max-point-s",
        type=float,
        default=None,
        help="skip points predicted slower than this (default 180 s on CPU)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="N=128,512,1024, no k sweep, 1 repeat")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args(argv)


def show(record: dict) -> None:
    if "skipped" in record:
        what = f"skipped: {record['skipped']}"
    else:
        what = f"{record['median_ms']:10.1f} ms {record['peak_mib']:9.1f} MiB"
    print(
        f"{record['mode']:<5} {record['impl']:<20} N={record['N']:<6} k={record['k']:<3} {what}",
        flush=True,
    )


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared CPU, 1 thread avoids OpenMP stalls
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    ns = args.ns or ([128, 256, 512, 1024, 2048, 4096] + ([8192, 16384] if cuda else []))
    repeats = args.repeats or (10 if cuda else 3)
    max_point_s = args.max_point_s or (None if cuda else 180.0)
    ks, k_ns = args.ks, args.k_ns
    if args.quick:
        ns, ks, repeats = [128, 512, 1024], [], 1
    modes = [m for m in args.modes.split(",") if m]
    machine = machine_info(device)  # before the run: its load average is the one that matters
    print(
        f"efficiency on {describe_device(device)}, load average {machine['load_avg']}", flush=True
    )
    common = dict(MODEL, device=device, repeats=repeats, max_point_s=max_point_s, progress=show)
    records = []
    for mode in modes:
        records += bench(list(FORMS), ns, k=DEFAULT_K, mode=mode, **common)
        for k in ks:
            if k != DEFAULT_K:
                records += bench(["elastic"], k_ns, k=k, mode=mode, **common)
    return {
        "machine": machine | {"load_avg_end": round(os.getloadavg()[0], 2)},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": dict(MODEL, k=DEFAULT_K, repeats=repeats, max_point_s=max_point_s),
        "records": records,
    }


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    machine, settings = report["machine"], report["settings"]
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['threads']} threads"
    lines = [
        f"# Efficiency: ELASTIC vs SASRec on {machine['device']}",
        "",
        f"{where}; torch {machine['torch']}; {report['date']}; 1-minute load average "
        f"{machine['load_avg']} at the start, {machine['load_avg_end']} at the end.",
        f"Whole model: {settings['layers']} layers, d={settings['d_model']}, "
        f"{settings['heads']} heads, k={settings['k']}, K={settings['slots']}, "
        f"{settings['items']} items, batch {settings['batch']}; median of "
        f"{settings['repeats']} calls after one warm-up; peak = memory allocated during one "
        "call above what was live before it. infer = `model(ids)` (logits at the last "
        "position) under no_grad; train = `training_loss` + backward.",
        "Ratios are ELASTIC ÷ the other form: below 1× ELASTIC is faster / smaller. "
        "'no attention' is the same model without its attention sublayers (embedding, "
        "feed-forward, loss): the floor no attention form can go below.",
    ]
    main = [r for r in report["records"] if r["k"] == settings["k"]]
    index = {(r["mode"], r["impl"], r["N"]): r for r in main}
    for mode in MODES:
        ns = sorted({r["N"] for r in main if r["mode"] == mode})
        if not ns:
            continue
        lines += [
            "",
            f"## {mode}",
            "",
            "| N | ELASTIC ms | materialized ms | SDPA ms | no attention ms | ELASTIC MiB | "
            "materialized MiB | SDPA MiB | no attention MiB | time ÷ mat. | time ÷ SDPA | "
            "time ÷ no attention | memory ÷ mat. | memory ÷ SDPA | memory ÷ no attention |",
            "|---:|" + "---:|" * 14,
        ]
        for n in ns:
            row = {f: index.get((mode, f, n), {}) for f in FORMS}
            ms, mib = ({f: row[f].get(key) for f in FORMS} for key in ("median_ms", "peak_mib"))
            cells = [_cell(ms[f], ".1f") for f in FORMS] + [_cell(mib[f], ".1f") for f in FORMS]
            cells += [_ratio(q["elastic"], q[other]) for q in (ms, mib) for other in OTHERS]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        if machine["device"] == "cpu":
            lines += [
                "",
                "Process CPU time of the same calls (ms, all threads), which other work on the "
                "machine barely moves:",
                "",
                "| N | ELASTIC | materialized | SDPA | no attention | ELASTIC ÷ mat. | "
                "ELASTIC ÷ SDPA | ELASTIC ÷ no attention |",
                "|---:|" + "---:|" * 7,
            ]
            for n in ns:
                cpu = {f: index.get((mode, f, n), {}).get("median_cpu_ms") for f in FORMS}
                cells = [_cell(cpu[f], ".1f") for f in FORMS]
                cells += [_ratio(cpu["elastic"], cpu[other]) for other in OTHERS]
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lo, hi = (index.get((mode, "elastic", n)) for n in GROWTH)
        if lo and hi and lo["median_ms"] and hi["median_ms"]:
            lines += [
                "",
                f"ELASTIC {mode} from N={GROWTH[0]} to N={GROWTH[1]} ({GROWTH[1] // GROWTH[0]}× "
                f"longer): time ×{hi['median_ms'] / lo['median_ms']:.2f}, peak memory "
                f"×{hi['peak_mib'] / lo['peak_mib']:.2f}.",
            ]
    sweep = sorted(
        (r for r in report["records"] if r["impl"] == "elastic" and "skipped" not in r),
        key=lambda r: (r["mode"], r["N"], r["k"]),
    )
    sweep_ns = {r["N"] for r in report["records"] if r["k"] != settings["k"]}
    sweep = [r for r in sweep if r["N"] in sweep_ns]
    if sweep:
        lines += [
            "",
            "## ELASTIC over k",
            "",
            "| mode | N | k | ms | peak MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['mode']} | {r['N']} | {r['k']} | {r['median_ms']:.1f} | {r['peak_mib']:.1f} |"
            for r in sweep
        ]
    skipped = [r for r in report["records"] if "skipped" in r]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [
            f"- {NAMES[r['impl']]} {r['mode']} N={r['N']} k={r['k']}: {r['skipped']}"
            for r in skipped
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"efficiency-{report['machine']['device']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and {stem}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
