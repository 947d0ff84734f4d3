"""`python -m elastic <command>`: bench, train, evaluate, ablate, data stats.

Each command lives in its own module (`elastic/commands/*.py`) exposing
`register(subparsers)`; this file only assembles them, and is where every error a user can
cause becomes one line on stderr: a bad flag, a bad file, a checkpoint that does not fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import NoReturn

from elastic.commands import ablate, bench, data, evaluate, train

COMMANDS = (bench, train, evaluate, ablate, data)
# exit status of a command whose reader went away (`... | head`), as if killed by SIGPIPE
BROKEN_PIPE = 141


class UsageError(ValueError):
    """A flag argparse refused; its message already names the flag."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one sentence (argparse would print the whole usage
    of `train`, a dozen lines, above the one that matters)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m elastic",
        description="ELASTIC: linear dispatcher attention for long-sequence recommendation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    # the default format adds the library's file, line and source: noise to a user
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _warn_in_one_line
        try:
            args = build_parser().parse_args(argv)
            code = int(args.run(args) or 0)
            sys.stdout.flush()  # a closed pipe fails here, inside the try, not at exit
            return code
        except (ValueError, FileNotFoundError) as err:  # errors a user can cause: one sentence
            print(f"error: {err}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # the reader stopped reading (`| head`): send what is left nowhere and stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return BROKEN_PIPE
