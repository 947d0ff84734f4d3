"""The one in-memory form of a dataset: chronological item sequences per user, plus metadata.

Every loader returns an `InteractionData`; the split, the trainer, the evaluator and the app
read only this. Item ids are internal and dense (1..num_items, 0 = padding, see
docs/architecture.md); the original ids live in `user_ids` / `item_ids`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from elastic.data.synthetic import SyntheticTruth

# Leave-one-out needs a training item, a validation target and a test target.
MIN_SEQUENCE_LENGTH = 3


class DataError(ValueError):
    """A dataset could not be loaded or built.

    The message names the file, where in it (line, row or column), the problem, and what to
    do; the parts are also kept as attributes so the app can lay them out.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | int | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.row = row
        self.column = column
        self.problem = problem
        self.fix = fix
        where = [self.path] if self.path else []
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        message = f"{', '.join(where)}: {problem}" if where else problem
        if fix:
            message = f"{message.rstrip('.')}. {fix}"
        super().__init__(message)


class DataWarning(UserWarning):
    """Something was dropped or guessed while loading (short users, duplicates, encoding)."""


@dataclass(kw_only=True)
class InteractionData:
    """Per-user chronological item sequences with internal ids 1..num_items."""

    name: str  # short label shown in the app and the CLI ("ml-1m", "synthetic")
    sequences: list[np.ndarray]  # one int64 array per user, oldest first, ids in 1..num_items
    num_items: int  # catalogue size; the model's item table has num_items + 1 rows
    user_ids: list[Any]  # original user id of each sequence
    item_ids: list[Any]  # original item id of each internal id; index 0 (padding) is None
    item_titles: list[str] | None = None  # per internal id, index 0 = ""; "" = unknown title
    item_genres: list[str] | None = None  # per internal id, index 0 = ""; "|"-joined genres
    truth: SyntheticTruth | None = None  # planted interests, only for synthetic data
    source: str = "memory"  # the path it was read from, or "synthetic"
    cleaning: dict[str, int] = field(default_factory=dict)  # what loading dropped, by reason

    def __post_init__(self) -> None:
        if len(self.user_ids) != len(self.sequences):
            raise ValueError(f"{len(self.user_ids)} user ids for {len(self.sequences)} sequences")
        if len(self.item_ids) != self.num_items + 1:
            raise ValueError(
                f"item_ids has {len(self.item_ids)} entries, expected num_items + 1 = "
                f"{self.num_items + 1} (index 0 is the padding placeholder)"
            )
        for label, values in (("item_titles", self.item_titles), ("item_genres", self.item_genres)):
            if values is not None and len(values) != self.num_items + 1:
                raise ValueError(
                    f"{label} has {len(values)} entries, expected {self.num_items + 1}"
                )
        self.sequences = [np.asarray(s, dtype=np.int64) for s in self.sequences]
        flat = self._flat_items()
        if flat.size and (flat.min() < 1 or flat.max() > self.num_items):
            raise ValueError(
                f"item ids must lie in 1..{self.num_items}; found {flat.min()}..{flat.max()}"
            )

    def _flat_items(self) -> np.ndarray:
        if not self.sequences:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self.sequences)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def sequence_lengths(self) -> np.ndarray:
        """(num_users,) int64."""
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=self.num_users)

    def fingerprint(self) -> str:
        """sha256 hex of num_items and the sequences: same data, same digest, on any machine.

        Checkpoints store it so a model is never evaluated on data it was not trained for.
        Names, titles and original ids are left out on purpose: they do not change what a
        model sees.
        """
        digest = hashlib.sha256(b"elastic.InteractionData.v1")
        digest.update(np.array([self.num_items, self.num_users], dtype="<i8").tobytes())
        digest.update(self.sequence_lengths().astype("<i8").tobytes())
        digest.update(self._flat_items().astype("<i8").tobytes())
        return digest.hexdigest()

    def stats(self) -> dict[str, Any]:
        """JSON-serialisable summary for `python -m elastic data stats` and the app."""
        lengths = self.sequence_lengths()
        interactions = int(lengths.sum())
        has_users = lengths.size > 0
        summary: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": interactions,
            "mean_sequence_length": float(lengths.mean()) if has_users else 0.0,
            "median_sequence_length": float(np.median(lengths)) if has_users else 0.0,
            "min_sequence_length": int(lengths.min()) if has_users else 0,
            "max_sequence_length": int(lengths.max()) if has_users else 0,
            # leave-one-out trains on s[:-2], and a training pair needs two items
            "trainable_users": int((lengths > MIN_SEQUENCE_LENGTH).sum()),
            # share of the user × item matrix that is observed
            "density": interactions / max(1, self.num_users * self.num_items),
            "has_titles": self.item_titles is not None,
            "has_ground_truth": self.truth is not None,
        }
        summary.update(self.cleaning)
        return summary

    def item_label(self, item: int) -> str:
        """A human name for internal item id `item`: its title if known, else "item <id>"."""
        if self.item_titles is not None and self.item_titles[item]:
            return self.item_titles[item]
        return f"item {item}"
