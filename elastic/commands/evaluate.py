"""`python -m elastic evaluate --checkpoint DIR`: full-ranking metrics of a saved model."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from elastic.checkpoint import check_dataset, load_model
from elastic.commands.options import (
    add_table_options,
    at_least,
    checkpoint_data,
    device_name,
    load_data,
)
from elastic.data import EvalLoader, ProgressLoader, leave_one_out
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
    parser.add_argument(
        "--data",
        help="the dataset (default: the one the model was trained on, found by the absolute "
        "path the checkpoint stores)",
    )
    parser.add_argument(
        "--device", type=device_name, default="auto", help="auto (default), cpu, cuda, mps"
    )
    parser.add_argument(
        "--batch", type=at_least(1), default=256, help="users per batch (default 256)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_table_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model, meta = load_model(args.checkpoint, pick_device(args.device))
    spec, settings = checkpoint_data(meta, args)
    data = load_data(spec, settings)
    check_dataset(meta, data.fingerprint(), args.checkpoint)
    split = leave_one_out(data)
    trained = meta.get("train_state", {}).get("train_config", {})
    max_len = trained.get("max_len") or model.config.max_len
    loaders = {stage: EvalLoader(split, stage, max_len, args.batch) for stage in ("valid", "test")}
    results = {"model": meta["model"], "data": str(spec)}
    with tqdm(total=sum(len(loader) for loader in loaders.values()), desc="evaluating",
              unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        for stage, loader in loaders.items():
            bar.set_postfix_str(stage)
            results[stage] = evaluate(model, ProgressLoader(loader, lambda *_: bar.update(1)))
    # popularity on the test items, as in training
    results["popularity"] = evaluate(PopularityScorer(split), loaders["test"])
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{meta['model']} on {spec} ({results['test']['users']} users, full ranking)")
    print(f"{'':<12}" + "".join(f"{name:>9}" for name in METRIC_NAMES))
    for row in ("valid", "test", "popularity"):
        print(f"{row:<12}" + "".join(f"{results[row][name]:>9.4f}" for name in METRIC_NAMES))
    return 0
