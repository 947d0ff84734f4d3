"""`python -m elastic ablate --checkpoint DIR`: what the model loses without each mechanism."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elastic.ablation import ablation_table, format_table
from elastic.checkpoint import check_dataset, load_model
from elastic.commands.options import (
    add_table_options,
    at_least,
    checkpoint_data,
    device_name,
    load_data,
)
from elastic.data import EvalLoader, leave_one_out
from elastic.device import pick_device


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="evaluate an ELASTIC model under interventions",
        description=(
            "Evaluate a saved ELASTIC model (full ranking, test items) as trained and with each "
            "mechanism changed: another user's experts, random slots, one dispatcher out, the "
            "dispatcher branch off, the local window off, the query reading a prefix. Prints "
            "HR@10 / NDCG@10 and the relative change."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, help="a train --out folder or its checkpoint/ folder"
    )
    parser.add_argument("--data", help="the dataset (default: the one the model was trained on)")
    parser.add_argument("--stage", choices=["test", "valid"], default="test",
                        help="which held-out item to rank (default test)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (default), cpu, cuda, mps")
    parser.add_argument("--batch", type=at_least(1), default=256,
                        help="users per batch (default 256)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the random slots")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    add_table_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model, meta = load_model(args.checkpoint, pick_device(args.device))
    spec, settings = checkpoint_data(meta, args)
    data = load_data(spec, settings)
    check_dataset(meta, data.fingerprint(), args.checkpoint)
    max_len = meta["train_state"].get("train_config", {}).get("max_len") or model.config.max_len
    loader = EvalLoader(leave_one_out(data), args.stage, max_len, args.batch)
    rows = ablation_table(model, loader, seed=args.seed)
    print(f"{meta['model']} on {spec}: {loader.num_users} users, {args.stage} items, "
          "full ranking")
    print(format_table(rows))
    if args.json:
        payload = {"checkpoint": str(args.checkpoint), "data": str(spec), "stage": args.stage,
                   "users": loader.num_users, "rows": [row.as_dict() for row in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0
