"""Leave-one-out split and the batches the trainer and the evaluator read.

Per user with sequence s (oldest first): train on s[:-2]; validate by predicting s[-2] from
s[:-2]; test by predicting s[-1] from s[:-1]. Batches are left-padded with 0 so the most recent
item sits at the last position (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from elastic.data.interactions import MIN_SEQUENCE_LENGTH, InteractionData

Stage = Literal["valid", "test"]


@dataclass(frozen=True)
class LeaveOneOut:
    """The split of one dataset. Histories are views into the dataset's arrays, not copies."""

    num_items: int  # catalogue size of the dataset it came from
    users: np.ndarray  # (U,) index in data.sequences of each user kept (those with >= 3 items)
    train: list[np.ndarray]  # per user, s[:-2]; also the validation history
    valid_target: np.ndarray  # (U,) s[-2]
    test_history: list[np.ndarray]  # per user, s[:-1]
    test_target: np.ndarray  # (U,) s[-1]

    @property
    def num_users(self) -> int:
        return len(self.users)

    def history(self, stage: Stage) -> list[np.ndarray]:
        """Everything the user saw before the `stage` target (also what ranking filters out)."""
        return self.train if stage == "valid" else self.test_history

    def target(self, stage: Stage) -> np.ndarray:
        return self.valid_target if stage == "valid" else self.test_target


def leave_one_out(data: InteractionData) -> LeaveOneOut:
    """Split `data`; users with fewer than 3 items (loaders already drop them) are left out."""
    users = np.array(
        [u for u, s in enumerate(data.sequences) if len(s) >= MIN_SEQUENCE_LENGTH], dtype=np.int64
    )
    sequences = [data.sequences[u] for u in users]
    return LeaveOneOut(
        num_items=data.num_items,
        users=users,
        train=[s[:-2] for s in sequences],
        valid_target=np.array([s[-2] for s in sequences], dtype=np.int64),
        test_history=[s[:-1] for s in sequences],
        test_target=np.array([s[-1] for s in sequences], dtype=np.int64),
    )


def pad_left(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(B, max_len) int64: the most recent max_len items of each sequence, left-padded with 0."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    tails = [np.asarray(s, dtype=np.int64)[-max_len:] for s in sequences]
    lengths = np.array([t.size for t in tails], dtype=np.int64)
    padded = np.zeros((len(tails), max_len), dtype=np.int64)
    if lengths.sum() == 0:
        return padded
    rows = np.repeat(np.arange(len(tails)), lengths)
    # position of each item inside its own tail, then shifted right against the last column
    offset_in_tail = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, max_len - lengths[rows] + offset_in_tail] = np.concatenate(tails)
    return padded


class TrainLoader:
    """Shuffled mini-batches `(input_ids, target_ids)`, both LongTensor (B, max_len).

    For a training sequence s: input = s[:-1], target = s[1:], so target[:, t] is the item that
    follows input[:, t]; both keep the most recent max_len positions and are left-padded, with
    target 0 wherever input is padding (the loss ignores target 0). Only the most recent window
    of a long sequence is used, as in SASRec. Sequences shorter than 2 have no target and are
    skipped.

    Deterministic: epoch e is shuffled with seed + e. Each `iter()` runs the next epoch;
    `set_epoch` repositions it (e.g. when resuming from a checkpoint).

    `by_length=True` batches histories of similar length together and cuts each batch's leading
    columns that are padding in every row: a batch of short histories is then short, so a long
    max_len costs little more than its long users (on MovieLens-1M at max_len 1024 most users
    hold fewer than 200 items). The grouping changes every epoch: lengths are sorted after a
    random factor in [1/1.5, 1.5] (histories within about 1.5× of each other can share a batch),
    and the batches come in random order. Positions count from the right and padding is masked,
    so cutting pad columns changes no model's output at a real position (tested).

    Data-parallel (`world_size` > 1): `batch_size` is the global batch. Every rank draws the same
    permutation, padded by wrapping around to a multiple of world_size (as PyTorch's
    DistributedSampler does, so every rank runs the same number of steps), and rank r takes the
    r-th of world_size equal slices of each global batch. The global batches are therefore the
    ones a single process would run, whatever the number of ranks.
    """

    def __init__(
        self,
        sequences: Sequence[np.ndarray],
        max_len: int,
        batch_size: int = 128,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        by_length: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(
                f"the batch of {batch_size} sequences does not split evenly over {world_size} "
                f"processes; choose a batch size divisible by {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in 0..{world_size - 1}, got {rank}")
        trainable = [s for s in sequences if len(s) >= 2]
        # pre-padded once; a batch is then a single index into these tensors
        windows = pad_left(trainable, max_len + 1)  # (U, max_len + 1)
        inputs, targets = windows[:, :-1], windows[:, 1:].copy()
        targets[inputs == 0] = 0
        self.input_ids = torch.from_numpy(np.ascontiguousarray(inputs))  # (U, max_len)
        self.target_ids = torch.from_numpy(targets)  # (U, max_len)
        self.max_len = max_len
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.by_length = by_length
        self.lengths = (self.input_ids != 0).sum(1)  # (U,) real items in each window
        self.epoch = 0

    @property
    def num_sequences(self) -> int:
        return self.input_ids.shape[0]

    @property
    def _padded_sequences(self) -> int:
        """Sequences per epoch over all ranks: num_sequences rounded up to a multiple of ranks."""
        return -(-self.num_sequences // self.world_size) * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self._padded_sequences, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        rng = np.random.default_rng(self.seed + epoch)
        if self.shuffle:
            order = rng.permutation(self.num_sequences)
        else:
            order = np.arange(self.num_sequences)
        order = np.resize(order, self._padded_sequences)  # wraps around
        batches = np.arange(len(self))
        if self.by_length:
            jitter = np.exp(rng.uniform(-np.log(1.5), np.log(1.5), order.size))
            order = order[np.argsort(self.lengths.numpy()[order] * jitter, kind="stable")]
            if self.shuffle:
                batches = rng.permutation(batches)
        order = torch.from_numpy(order)
        for batch in batches:
            rows = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            rows = rows.view(self.world_size, -1)[self.rank]  # this rank's slice
            inputs, targets = self.input_ids[rows], self.target_ids[rows]
            if self.by_length:  # only the columns some row uses
                width = max(1, int(self.lengths[rows].max()))
                inputs, targets = inputs[:, -width:], targets[:, -width:]
            yield inputs, targets


class EvalLoader:
    """Batches `(history_ids (B, max_len), target (B,), user_index (B,))` for one stage.

    `user_index` is the user's index in `data.sequences` (so `data.user_ids[i]` and
    `data.truth.user_interests[i]` find it). Users come in split order, not shuffled.
    The batch history is truncated to max_len; `seen_items` covers the *whole* history, which
    full-ranking evaluation removes from the candidates:

        rows, items = loader.seen_items(user_index)
        scores[rows, items] = float("-inf")
    """

    def __init__(
        self, split: LeaveOneOut, stage: Stage, max_len: int, batch_size: int = 256
    ) -> None:
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        histories = split.history(stage)
        self.stage = stage
        self.batch_size = batch_size
        self.history_ids = torch.from_numpy(pad_left(histories, max_len))  # (U, max_len)
        self.targets = torch.from_numpy(split.target(stage))  # (U,)
        self.user_index = torch.from_numpy(split.users)  # (U,)
        # CSR over split rows: the distinct items of each full history
        seen = [np.unique(h) for h in histories]
        self.seen_counts = np.array([s.size for s in seen], dtype=np.int64)
        self.seen_offsets = np.concatenate(([0], np.cumsum(self.seen_counts)))
        self.seen_flat = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
        self._row_of_user = {int(u): row for row, u in enumerate(split.users)}

    @property
    def num_users(self) -> int:
        return self.history_ids.shape[0]

    def __len__(self) -> int:
        return -(-self.num_users // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for start in range(0, self.num_users, self.batch_size):
            batch = slice(start, start + self.batch_size)
            yield self.history_ids[batch], self.targets[batch], self.user_index[batch]

    def seen_items(self, user_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch_rows, item_ids), both LongTensor (S,): every item each user saw before the target.

        Row b of the batch is user `user_index[b]`; index a (B, num_items + 1) score matrix with
        the pair to filter the history out of the ranking.
        """
        rows = np.array([self._row_of_user[int(u)] for u in user_index], dtype=np.int64)
        counts = self.seen_counts[rows]
        starts = self.seen_offsets[rows]
        # flat positions of each row's run in seen_flat
        positions = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(
            counts.sum()
        )
        batch_rows = np.repeat(np.arange(len(rows)), counts)
        return torch.from_numpy(batch_rows), torch.from_numpy(self.seen_flat[positions])


class ProgressLoader:
    """An `EvalLoader` that calls `on_batch(done, batches)` each time a batch has been used, so
    whoever calls `evaluate` can show progress without the evaluator knowing of it.

        evaluate(model, ProgressLoader(loader, lambda done, total: bar.update(1)))
    """

    def __init__(self, loader: EvalLoader, on_batch: Callable[[int, int], None]) -> None:
        self.loader = loader
        self.on_batch = on_batch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        batches = len(self.loader)
        for done, batch in enumerate(self.loader, start=1):
            yield batch
            self.on_batch(done, batches)  # runs when the caller asks for the next batch

    def seen_items(self, user_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loader.seen_items(user_index)
