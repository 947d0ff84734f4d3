"""`python -m elastic evaluate --checkpoint DIR`: full-ranking metrics of a saved model."""

from __future__ import annotations

import argparse
import json

from elastic.checkpoint import check_dataset, load_model
from elastic.data import EvalLoader, leave_one_out, load_dataset
from elastic.device import pick_device
from elastic.evaluate import METRIC_NAMES, PopularityScorer, evaluate


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model",
        description=(
            "Rank all items for every user with a saved model (history filtered out) and print "
            "HR@10/20, NDCG@10/20 and MRR on the validation and test items, beside popularity."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, help="a train --out folder or its checkpoint/ folder"
    )
    parser.add_argument("--data", help="the dataset (default: the one the model was trained on)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--batch", type=int, default=256, help="users per batch (default 256)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model, meta = load_model(args.checkpoint, pick_device(args.device))
    spec = args.data or meta["dataset"].get("spec")
    if spec is None:
        raise ValueError("the checkpoint does not name its dataset; pass --data")
    data = load_dataset(spec)
    check_dataset(meta, data.fingerprint(), args.checkpoint)
    split = leave_one_out(data)
    max_len = meta["train_state"].get("train_config", {}).get("max_len") or model.config.max_len
    results = {"model": meta["model"], "data": str(spec)}
    for stage in ("valid", "test"):
        loader = EvalLoader(split, stage, max_len, args.batch)
        results[stage] = evaluate(model, loader)
    results["popularity"] = evaluate(PopularityScorer(split), loader)  # test, as in training
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{meta['model']} on {spec} ({results['test']['users']} users, full ranking)")
    print(f"{'':<12}" + "".join(f"{name:>9}" for name in METRIC_NAMES))
    for row in ("valid", "test", "popularity"):
        print(f"{row:<12}" + "".join(f"{results[row][name]:>9.4f}" for name in METRIC_NAMES))
    return 0
