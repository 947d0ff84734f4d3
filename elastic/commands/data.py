"""`python -m elastic data stats PATH`: what a dataset holds, as the library loads it."""

from __future__ import annotations

import argparse
import json
import sys

from elastic.commands.options import add_table_options, load_data, table_settings
from elastic.data import MIN_SEQUENCE_LENGTH


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="inspect a dataset",
        description="Inspect a dataset the way training would load it.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    stats = actions.add_parser(
        "stats",
        help="print a dataset's statistics",
        description="Load a dataset and print its users, items, interactions and lengths.",
    )
    stats.add_argument(
        "path", help='"synthetic", a MovieLens folder or .zip, a SASRec .txt, or a table'
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_table_options(stats)
    stats.set_defaults(run=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    summary = load_data(args.path, table_settings(args, args.path)).stats()
    if summary["trainable_users"] == 0:
        print(
            f"warning: no user has {MIN_SEQUENCE_LENGTH + 1} or more interactions, so train "
            "will refuse this data (leave-one-out keeps each user's last two for validation "
            "and test, and a training pair needs two more)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    return 0
