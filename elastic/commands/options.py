"""What several commands share: value types that refuse a bad setting in one sentence, and the
dataset flags (`--data`, the table's columns) with the way a command finds its data again.

A type raises `argparse.ArgumentTypeError`; the parser turns it into
"error: argument --max-len: must be at least 1, got -5 (see ... --help)".
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elastic.data import TABLE_SUFFIXES, DataError, InteractionData, load_dataset, table_columns

# flag -> load_dataset keyword of the table settings (they apply to .csv/.tsv/.parquet only)
TABLE_FLAGS = {"user_col": "--user-col", "item_col": "--item-col", "time_col": "--time-col",
               "sep": "--sep"}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# how a tab can be typed on a command line
_TAB_SPELLINGS = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """An argparse type: a finite number >= 0 (epochs of warm-up)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1) (a dropout rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (1 excluded), got {text!r}")
    return value


def device_name(text: str) -> str:
    """An argparse type: auto, cpu, cuda, cuda:N or mps (whether it is present is checked later,
    by `pick_device`, with its own sentence)."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def separator(text: str) -> str:
    """An argparse type: one character; a tab may be typed as \\t or tab."""
    value = _TAB_SPELLINGS.get(text, text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(
            f"must be one character (a tab may be written \\t or tab), got {text!r}"
        )
    return value


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """--user-col, --item-col, --time-col, --sep and --five-core."""
    group = parser.add_argument_group(
        "own data", "a .csv, .tsv or .parquet table needs --user-col and --item-col"
    )
    group.add_argument("--user-col", metavar="COLUMN", help="the table's user id column")
    group.add_argument("--item-col", metavar="COLUMN", help="the table's item id column")
    group.add_argument(
        "--time-col", metavar="COLUMN", help="the table's time column (default: file order)"
    )
    group.add_argument(
        "--sep", type=separator, help="the CSV's separator (default: detected among , ; tab |)"
    )
    group.add_argument(
        "--five-core",
        action="store_const",
        const=True,
        help="drop items with fewer than 5 interactions (any file)",
    )


def table_settings(args: argparse.Namespace, spec: str) -> dict[str, Any]:
    """The loader settings the flags give, checked against the kind of dataset `spec` names."""
    given = {key: getattr(args, key) for key in TABLE_FLAGS if getattr(args, key) is not None}
    if given and Path(spec).suffix.lower() not in TABLE_SUFFIXES:
        flags = ", ".join(TABLE_FLAGS[key] for key in given)
        verb, pronoun = ("applies", "it") if len(given) == 1 else ("apply", "them")
        raise ValueError(
            f"{flags} {verb} only to a table (.csv, .tsv, .parquet, .pq), and {spec} is not one; "
            f"drop {pronoun}"
        )
    if args.five_core:
        if spec == "synthetic":
            raise ValueError("--five-core applies to a file, not to synthetic data; drop it")
        given["five_core"] = True
    return given


def load_data(spec: str, settings: dict[str, Any]) -> InteractionData:
    """`load_dataset(spec, **settings)`, with a table's missing columns asked for as flags."""
    if Path(spec).suffix.lower() in TABLE_SUFFIXES and not (
        settings.get("user_col") and settings.get("item_col")
    ):
        columns = table_columns(spec, settings.get("sep"))
        raise DataError(
            f"a table needs its user and item columns named; the file has columns {columns}",
            path=spec,
            fix="Pass --user-col COLUMN --item-col COLUMN (and --time-col COLUMN if there is one)",
        )
    return load_dataset(spec, **settings)


def checkpoint_data(
    meta: dict[str, Any], args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    """(spec, loader settings) of the data a checkpoint was trained on: `--data` if given, else
    the absolute path it stored, else the path as it was typed; table flags override the
    settings it stored."""
    stored = meta.get("dataset", {})
    stored_spec = stored.get("spec")
    settings = dict(stored.get("settings", {}))
    if args.data is not None:
        spec = args.data
        if stored_spec is None or Path(spec).suffix.lower() != Path(stored_spec).suffix.lower():
            settings = {}  # another kind of file: the stored columns do not apply
    elif stored_spec == "synthetic":
        spec = stored_spec
    else:
        candidates = [c for c in (stored.get("path"), stored_spec) if c]
        if not candidates:
            raise ValueError("the checkpoint does not name its dataset; pass --data PATH")
        found = [c for c in candidates if Path(c).expanduser().exists()]
        if not found:
            raise FileNotFoundError(
                f"the data this model was trained on, {candidates[0]}, is not there (moved, "
                "renamed or on another machine); pass --data with its path"
            )
        spec = found[0]
    return spec, {**settings, **table_settings(args, spec)}
