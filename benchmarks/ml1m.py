"""Accuracy on MovieLens-1M: popularity, SASRec (full CE) and ELASTIC, one protocol.

    python benchmarks/ml1m.py                          # all three, hours on a 2-core CPU
    python benchmarks/ml1m.py --models sasrec --device cuda --epochs 200
    python benchmarks/ml1m.py --resume                 # continue after an interruption
    python benchmarks/ml1m.py --epochs 1 --max-users 300 --results-dir /tmp/smoke  # smoke test

Protocol (the one of the published full-ranking figures in ../shared/data/ml-1m/README.md):
leave-one-out (last item test, second-to-last validation), all items ranked, each user's
history filtered out, the most recent 200 items read, the epoch with the best validation
NDCG@10 kept (early stopping) and evaluated once on the test items. Both models share width,
depth, heads, dropout, optimizer and batch size; only the sequence mixer differs.

Writes `ml1m.json` and `ml1m.md` (our figures beside the published ones) to --results-dir.
Checkpoints go to --runs-dir after every epoch, so --resume loses at most one epoch. The data is
licensed: it is read where it lies and never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic.checkpoint import META_FILE  # noqa: E402
from elastic.complexity import (  # noqa: E402
    Shape,
    check_training_budget,
    format_bytes,
    memory_budget,
    training_peak_bytes,
)
from elastic.data import EvalLoader, InteractionData, leave_one_out, load_dataset  # noqa: E402
from elastic.device import describe_device, pick_device  # noqa: E402
from elastic.evaluate import METRIC_NAMES, PopularityScorer, evaluate  # noqa: E402
from elastic.models import build_model  # noqa: E402
from elastic.train import EpochEnd, TrainConfig, Trainer, seed_everything  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-1m" / "ml-1m.txt"
MAX_LEN = 200
# SASRec+'s setting (Klenitskiy & Vasilev 2023): d=64, 2 blocks, dropout 0.2, lr 1e-3, batch 128
MODEL = {"max_len": MAX_LEN, "d_model": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2,
         "num_interests": 8, "num_slots": 256}
# ../shared/data/ml-1m/README.md: full ranking on this very file (3,416 items)
PUBLISHED = [
    ("SASRec, BCE loss, 1 negative", 0.2500, 0.1341),
    ("BERT4Rec", 0.2843, 0.1537),
    ("SASRec+, full cross-entropy", 0.3152, 0.1821),
    ("SASRec+, CE with 3,000 negatives", 0.3159, 0.1857),
]
PUBLISHED_SOURCE = "Klenitskiy & Vasilev, RecSys 2023"
COLUMNS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR")  # the published pair first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the ml-1m.txt file")
    parser.add_argument("--models", default="popularity,sasrec,elastic",
                        help="comma-separated subset of popularity,sasrec,elastic")
    parser.add_argument("--epochs", type=int, default=36,
                        help="maximum epochs per model (and the cosine schedule's horizon)")
    parser.add_argument("--patience", type=int, default=5,
                        help="validations without a better NDCG@10 before stopping")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--warmup-epochs", type=float, default=2.0,
                        help="linear warm-up from 0 to --lr over this many epochs")
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"),
                        help="after warm-up: constant, or cosine decay to 0 at --epochs")
    parser.add_argument("--by-length", action="store_true",
                        help="batches of similar-length histories, cut to their longest "
                             "(TrainConfig.batch_by_length): long --max-len runs cost little more")
    parser.add_argument("--max-len", type=int, default=MAX_LEN,
                        help="most recent items read (the long-history runs use 512 and 1024)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 was fastest on the shared 2-core machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-users", type=int, help="only the first N users (smoke tests)")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "ml1m"),
                        help="checkpoints, one folder per model")
    parser.add_argument("--resume", action="store_true",
                        help="continue the models whose checkpoints are in --runs-dir")
    return parser.parse_args(argv)


def first_users(data: InteractionData, count: int) -> InteractionData:
    """The first `count` users, the catalogue unchanged (a smaller run of the same protocol)."""
    return InteractionData(
        name=f"{data.name}-first{count}",
        sequences=data.sequences[:count],
        num_items=data.num_items,
        user_ids=data.user_ids[:count],
        item_ids=data.item_ids,
        source=data.source,
    )


def train_one(name: str, data: InteractionData, split, args, device) -> dict:
    seed_everything(args.seed)
    model = build_model(name, num_items=data.num_items, **{**MODEL, "max_len": args.max_len})
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                         max_len=args.max_len, seed=args.seed, device=str(device), loss="full",
                         patience=args.patience, num_threads=args.threads,
                         warmup_epochs=args.warmup_epochs, schedule=args.schedule,
                         batch_by_length=args.by_length)
    checkpoint_dir = Path(args.runs_dir) / name
    trainer = Trainer(model, split, config, data=data, data_spec=args.data,
                      checkpoint_dir=checkpoint_dir)
    if (checkpoint_dir / META_FILE).is_file():
        if args.resume:
            trainer.resume(checkpoint_dir)
            print(f"{name}: resumed after epoch {trainer.epochs_done}", flush=True)
        else:
            print(f"{name}: starting afresh; the first epoch replaces the checkpoint in "
                  f"{checkpoint_dir} (--resume continues it instead)", flush=True)

    def report(event: EpochEnd) -> None:
        valid = event.valid or {}
        print(f"{name} epoch {event.epoch}: loss {event.train_loss:.4f} "
              f"valid NDCG@10 {valid.get('NDCG@10', float('nan')):.4f} "
              f"HR@10 {valid.get('HR@10', float('nan')):.4f} "
              f"({event.seconds:.0f} s{', best' if event.improved else ''})", flush=True)

    trainer.add_callback("on_epoch_end", report)
    result = trainer.fit()
    return {
        **result["test"],
        "valid": result["valid"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs"],
        "early_stopped": result["early_stopped"],
        "parameters": model.num_parameters(),
        "config": model.config_dict(),
        "seconds": result["seconds"],
        "train_config": {"lr": args.lr, "warmup_epochs": args.warmup_epochs,
                         "schedule": args.schedule, "batch": args.batch,
                         "by_length": args.by_length,
                         "patience": args.patience, "threads": args.threads},
        "history": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 4),
                     "valid_NDCG@10": (h["valid"] or {}).get("NDCG@10"),
                     "valid_HR@10": (h["valid"] or {}).get("HR@10"),
                     "seconds": round(h["seconds"], 1), "lr": h.get("lr"),
                     "load_average": h.get("load_average")} for h in result["history"]],
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def guard(data: InteractionData, args, device) -> dict:
    """What the memory guard predicts for a whole training run of each attention form at this
    max_len and batch (the figure `python -m elastic train` refuses on), and its verdict."""
    budget = memory_budget(device)
    rows = {}
    for form in ("elastic", "sasrec-sdpa", "sasrec-materialized"):
        shape = Shape(batch=args.batch, seq_len=args.max_len, items=data.num_items,
                      **{k: MODEL[v] for k, v in (("d_model", "d_model"), ("layers", "num_layers"),
                                                  ("heads", "num_heads"),
                                                  ("interests", "num_interests"),
                                                  ("slots", "num_slots"))})
        refusal = check_training_budget(form, shape, device, budget_bytes=budget)
        rows[form] = {"predicted_bytes": training_peak_bytes(form, shape),
                      "refused": refusal}
    return {"budget_bytes": budget, "forms": rows}


def guard_lines(report: dict) -> list[str]:
    g = report.get("guard")
    if not g:
        return []
    lines = ["", f"Memory guard at max_len {report['max_len']}, batch {report['batch']} (budget "
             f"{format_bytes(g['budget_bytes'])}, 60 % of the memory available when the run "
             "started): predicted peak of a whole training run per attention form —"]
    for form, row in g["forms"].items():
        verdict = "refused" if row["refused"] else "runs"
        lines.append(f"- {form}: {format_bytes(row['predicted_bytes'])}, {verdict}")
    return lines


def curves(report: dict) -> list[str]:
    """Per-epoch lines of each trained model: loss, validation, seconds, rate and load."""
    lines = []
    for name in ("sasrec", "elastic"):
        history = report.get(name, {}).get("history")
        if not history:
            continue
        lines += ["", f"### {name}, epoch by epoch", "",
                  "| epoch | train loss | valid NDCG@10 | valid HR@10 | s | lr | load |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        best = report[name].get("best_epoch")
        for h in history:
            mark = " ←best" if h["epoch"] == best else ""
            lines.append(
                f"| {h['epoch']}{mark} | {h['train_loss']:.4f} | {h['valid_NDCG@10'] or 0:.4f} | "
                f"{h['valid_HR@10'] or 0:.4f} | {h['seconds']:.0f} | {h['lr'] or 0:.2e} | "
                f"{h['load_average']} |")
    return lines


def markdown(report: dict) -> str:
    rows = [f"| model | {' | '.join(COLUMNS)} | best epoch / run | train s | s per epoch "
            "(median) | peak RSS MiB | source |",
            "|" + " --- |" * (len(COLUMNS) + 6)]
    for name in ("popularity", "sasrec", "elastic"):
        if name not in report:
            continue
        m = report[name]
        cells = " | ".join(f"{m[key]:.4f}" for key in COLUMNS)
        epoch = f"{m['best_epoch']} / {m['epochs_run']}" if "best_epoch" in m else "–"
        seconds = f"{report['seconds'][name]:.0f}"
        per_epoch = [h["seconds"] for h in m.get("history", [])]
        median = f"{statistics.median(per_epoch):.0f}" if per_epoch else "–"
        rss = report.get("peak_rss_mb", {}).get(name) or "–"
        rows.append(f"| {name} (ours) | {cells} | {epoch} | {seconds} | {median} | {rss} | "
                    "this run |")
    for label, hr, ndcg in PUBLISHED:
        rows.append(f"| {label} | {hr:.4f} | {ndcg:.4f} | – | – | – | – | – | – | – | "
                    f"{PUBLISHED_SOURCE} |")
    return "\n".join([
        "# MovieLens-1M, full ranking",
        "",
        f"Protocol: {report['protocol']}",
        "",
        f"Device: {report['device']}; date {report['date']}; at most {report['epochs']} epochs "
        f"per model; {report['users']} users, {report['items']} items.",
        "",
        *rows,
        "",
        "Published rows are copied from ../shared/data/ml-1m/README.md (same file, same "
        "protocol). Figures with 100 sampled negatives are a different protocol and are not "
        "comparable.",
        *guard_lines(report),
        *curves(report),
        "",
    ])


def merge_previous(path: Path, report: dict, models: list[str]) -> dict:
    """Keep the models of an earlier run on the same protocol that this run did not train, so
    models can be trained in separate processes (one per core) and land in one table."""
    if not path.is_file():
        return report
    previous = json.loads(path.read_text())
    if previous.get("protocol") != report["protocol"]:
        return report
    for name in ("popularity", "sasrec", "elastic"):
        if name in previous and name not in models:
            report[name] = previous[name]
            report["seconds"][name] = previous["seconds"][name]
            report["peak_rss_mb"][name] = previous.get("peak_rss_mb", {}).get(name)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"popularity", "sasrec", "elastic"}
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from popularity,sasrec,elastic")
    device = pick_device(args.device)
    data = load_dataset(args.data)
    if args.max_users:
        data = first_users(data, args.max_users)
    split = leave_one_out(data)
    report: dict = {
        "protocol": (
            "leave-one-out (last item test, second-to-last validation); full ranking over all "
            f"{data.num_items} items with each user's history filtered out (a repeated target "
            f"stays a candidate; ties count for the target); the most recent {args.max_len} items; "
            f"full-softmax CE; best epoch on validation NDCG@10 (patience {args.patience})"
            + ("; training batches of similar-length histories" if args.by_length else "")
        ),
        "epochs": args.epochs,
        "device": describe_device(device) if device.type != "cpu"
        else f"cpu ({args.threads} thread{'s' if args.threads > 1 else ''})",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "users": data.num_users,
        "items": data.num_items,
        "load_average": os.getloadavg(),
        "seconds": {},
        "peak_rss_mb": {},  # the process's peak so far: run one model per process to compare
        "max_len": args.max_len,
        "batch": args.batch,
    }
    report["guard"] = guard(data, args, device)
    for name in models:
        started = time.perf_counter()
        if name == "popularity":
            scorer = PopularityScorer(split)
            report[name] = evaluate(scorer, EvalLoader(split, "test", args.max_len))
            report["seconds"][name] = time.perf_counter() - started
        else:
            report[name] = train_one(name, data, split, args, device)
            report["seconds"][name] = report[name]["seconds"]
        report["peak_rss_mb"][name] = peak_rss_mb()
        print(f"{name}: test " + ", ".join(f"{k} {report[name][k]:.4f}" for k in METRIC_NAMES),
              flush=True)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stem = "ml1m" + ("" if args.max_len == MAX_LEN else f"-len{args.max_len}") + (
        "-by-length" if args.by_length else "")
    report = merge_previous(results / f"{stem}.json", report, models)
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (results / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {results / stem}.json and .md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:  # bad path, other data in --runs-dir: a sentence
        sys.exit(f"error: {err}")
