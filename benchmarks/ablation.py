"""Do ELASTIC's experts drive its recommendations? The ablation table of a trained model, and
what the dataset rewards.

    python benchmarks/ablation.py                       # the shipped demo (assets/demo)
    python benchmarks/ablation.py --checkpoint runs/x   # any ELASTIC run on its own data

Writes benchmarks/results/ablation.{json,md}: for the ELASTIC model, test HR@10 / NDCG@10 as
trained and under each intervention of `elastic.ablation` (another user's experts, random slots,
one dispatcher out, dispatchers off, local window off, the query reading a prefix); beside it,
on the same users and targets, the reference models that say what the data rewards: SASRec
(the demo's, or --sasrec DIR), popularity, and both models reading only the last `--recent`
items of each history (what everything beyond the local window is worth). Accuracy, not
timing: the load average is recorded but does not change the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elastic.ablation import ablation_table, format_table  # noqa: E402
from elastic.checkpoint import load_model  # noqa: E402
from elastic.complexity import machine_info  # noqa: E402
from elastic.data import EvalLoader, SyntheticConfig, leave_one_out, load_dataset  # noqa: E402
from elastic.evaluate import PopularityScorer, evaluate  # noqa: E402
from elastic.models.common import PAD  # noqa: E402

DEMO = ROOT / "assets" / "demo"


class RecentOnly:
    """A model that reads only the last `keep` items of each history (the rest set to padding):
    a plain scorer, so `evaluate` asks it for (B, |I|+1) scores."""

    def __init__(self, model: torch.nn.Module, keep: int) -> None:
        self.model, self.keep = model, keep

    def __call__(self, history_ids: torch.Tensor) -> torch.Tensor:
        ids = history_ids.clone()
        ids[:, : max(0, ids.shape[1] - self.keep)] = PAD
        return self.model(ids)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEMO / "elastic",
                        help="the ELASTIC checkpoint (default: the shipped demo)")
    parser.add_argument("--sasrec", type=Path, default=None,
                        help="a SASRec checkpoint on the same data (default: the demo's, when "
                             "--checkpoint is the demo)")
    parser.add_argument("--recent", type=int, default=8,
                        help="the 'last items only' rows keep this many (default 8)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="ablation", help="file stem of the results")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.checkpoint)
    spec = meta["dataset"]["spec"]
    settings = meta["dataset"].get("settings", {})
    data = load_dataset(spec, **settings)
    if spec == "synthetic":  # every setting, the defaults included, so the file says them all
        settings = asdict(SyntheticConfig(**settings))
    split = leave_one_out(data)
    max_len = model.config.max_len
    loader = EvalLoader(split, "test", max_len, 256)
    rows = ablation_table(model, loader)
    sasrec_dir = args.sasrec or (DEMO / "sasrec" if args.checkpoint == DEMO / "elastic" else None)
    references: dict[str, dict] = {"popularity": evaluate(PopularityScorer(split), loader)}
    references[f"ELASTIC, last {args.recent} items only"] = evaluate(
        RecentOnly(model, args.recent), loader)
    if sasrec_dir is not None:
        sasrec, _ = load_model(sasrec_dir)
        references["SASRec"] = evaluate(sasrec, loader)
        references[f"SASRec, last {args.recent} items only"] = evaluate(
            RecentOnly(sasrec, args.recent), loader)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine_info(torch.device("cpu")),
        "checkpoint": str(args.checkpoint.resolve().relative_to(ROOT))
        if args.checkpoint.resolve().is_relative_to(ROOT) else str(args.checkpoint),
        "dataset": {"spec": spec, "settings": settings, "users": loader.num_users},
        "model": asdict(model.config),
        "ablation": [row.as_dict() for row in rows],
        "references": references,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (args.results_dir / f"{args.name}.md").write_text(markdown(report, rows))
    print(markdown(report, rows))
    return 0


def markdown(report: dict, rows) -> str:
    m = report["machine"]
    base = report["ablation"][0]["metrics"]["NDCG@10"]
    lines = [
        f"# Ablation: {report['checkpoint']}",
        "",
        f"{report['date']}, commit {report['commit']}, {m['cpu']}, torch {m['torch']}, "
        f"load average {m['load_avg']}. Test items, full ranking, history filtered, "
        f"{report['dataset']['users']} users of `{report['dataset']['spec']}` "
        f"{report['dataset']['settings']}.",
        "",
        "## ELASTIC under interventions",
        "",
        format_table(rows),
        "",
        "## What the data rewards (same users and targets)",
        "",
        "| model | HR@10 | NDCG@10 | NDCG@10 vs ELASTIC as trained |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, metrics in report["references"].items():
        lines.append(f"| {name} | {metrics['HR@10']:.4f} | {metrics['NDCG@10']:.4f} | "
                     f"{(metrics['NDCG@10'] - base) / base:+.1%} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
