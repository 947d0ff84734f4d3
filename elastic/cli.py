"""`python -m elastic <command>`: bench, train, evaluate, ablate, data stats.

Each command lives in its own module (`elastic/commands/*.py`) exposing
`register(subparsers)`; this file only assembles them.
"""

from __future__ import annotations

import argparse
import sys

from elastic.commands import ablate, bench, data, evaluate, train

COMMANDS = (bench, train, evaluate, ablate, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m elastic",
        description="ELASTIC: linear dispatcher attention for long-sequence recommendation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as err:  # errors a user can cause: one sentence
        print(f"error: {err}", file=sys.stderr)
        return 2
