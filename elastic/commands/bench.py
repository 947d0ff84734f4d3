"""`python -m elastic bench`: time and memory of ELASTIC and SASRec side by side."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from elastic.complexity import FORMS, MODES, bench, machine_info
from elastic.device import describe_device, pick_device


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time and peak memory of ELASTIC vs SASRec (materialized, SDPA) over lengths N",
        description="Measure median wall and CPU time, peak memory and FLOPs of ELASTIC and "
        "SASRec (materialized and SDPA attention) side by side over history lengths N, the "
        "forms called in alternating order. 'none' is the same model without attention "
        "(embedding, feed-forward, loss): the floor no attention form can beat.",
    )
    p.add_argument("--impl", default=",".join(FORMS), help="comma-separated: " + ", ".join(FORMS))
    p.add_argument("--n", type=int_list, default=[256, 1024], help="history lengths, e.g. 256,1024")
    p.add_argument("--k", type=int, default=8, help="ELASTIC interests per user")
    p.add_argument("--slots", type=int, default=256, help="ELASTIC memory slots K (a square)")
    p.add_argument("--items", type=int, default=1000, help="catalogue size |I|")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument(
        "--mode",
        choices=MODES,
        default="infer",
        help="infer: model(ids) under no_grad; train: training loss + backward",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per point (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument(
        "--max-point-s",
        type=float,
        default=None,
        help="skip points predicted to take longer than this many seconds",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the records here")
    p.add_argument(
        "--jsonl",
        action="store_true",
        help="print each record as one JSON line as soon as it is measured, and nothing else "
        "(the app's complexity lab reads them)",
    )
    p.set_defaults(run=run)


def format_table(records: list[dict]) -> str:
    """One line per point: impl, mode, N, median wall and CPU ms, peak and predicted MiB,
    GFLOPs. CPU time is the process's, all threads: on a CPU shared with other work wall time
    stretches while CPU time barely moves."""
    lines = [
        f"{'impl':<20} {'mode':<5} {'N':>6} {'median ms':>10} {'CPU ms':>9} {'peak MiB':>9} "
        f"{'pred MiB':>9} {'GFLOPs':>8}"
    ]
    for r in records:
        head = f"{r['impl']:<20} {r['mode']:<5} {r['N']:>6}"
        tail = f"{r['predicted_mib']:>9.0f} {r['flops'] / 1e9:>8.2f}"
        if "skipped" in r:
            lines.append(f"{head} {'—':>10} {'—':>9} {'—':>9} {tail}  skipped: {r['skipped']}")
        else:
            lines.append(f"{head} {r['median_ms']:>10.1f} {r['median_cpu_ms']:>9.1f} "
                         f"{r['peak_mib']:>9.1f} {tail}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    impls = [name for name in args.impl.split(",") if name]
    unknown = sorted(set(impls) - set(FORMS))
    if unknown:
        raise ValueError(f"unknown --impl {', '.join(unknown)}; choose from {', '.join(FORMS)}")
    device = pick_device(args.device)
    if not args.jsonl:
        print(f"bench on {describe_device(device)}: {args.mode}, batch {args.batch}", flush=True)
    records = bench(
        impls,
        args.n,
        k=args.k,
        slots=args.slots,
        items=args.items,
        batch=args.batch,
        d_model=args.d_model,
        layers=args.layers,
        heads=args.heads,
        mode=args.mode,
        device=device,
        repeats=args.repeats,
        warmup=args.warmup,
        max_point_s=args.max_point_s,
        progress=(lambda record: print(json.dumps(record), flush=True)) if args.jsonl else None,
    )
    if not args.jsonl:
        print(format_table(records))
    if args.json is not None:
        report = {
            "machine": machine_info(device),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "records": records,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0
