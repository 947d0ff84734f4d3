"""Leave-one-out split, padding and the train/eval batches on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elastic.data import EvalLoader, InteractionData, TrainLoader, leave_one_out, pad_left


def toy() -> InteractionData:
    sequences = [[1, 2, 3, 4, 5], [6, 7, 8], [2, 2], [9, 1, 9, 3, 2, 8, 7]]
    return InteractionData(
        name="toy",
        sequences=[np.array(s) for s in sequences],
        num_items=9,
        user_ids=["a", "b", "c", "d"],
        item_ids=[None, *range(1, 10)],
    )


def test_leave_one_out_on_hand_example():
    split = leave_one_out(toy())
    assert split.users.tolist() == [0, 1, 3]  # "c" has 2 items: excluded
    assert [t.tolist() for t in split.train] == [[1, 2, 3], [6], [9, 1, 9, 3, 2]]
    assert split.valid_target.tolist() == [4, 7, 8]
    assert [h.tolist() for h in split.test_history] == [[1, 2, 3, 4], [6, 7], [9, 1, 9, 3, 2, 8]]
    assert split.test_target.tolist() == [5, 8, 7]
    assert split.history("valid") is split.train
    assert split.target("test") is split.test_target
    assert split.num_items == 9 and split.num_users == 3


def test_pad_left_keeps_most_recent_items():
    padded = pad_left([np.array([1, 2, 3, 4, 5]), np.array([6]), np.array([], dtype=np.int64)], 3)
    assert padded.dtype == np.int64
    assert padded.tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0]]
    assert pad_left([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match="max_len"):
        pad_left([np.array([1])], 0)


def test_train_loader_alignment_and_padding():
    split = leave_one_out(toy())
    loader = TrainLoader(split.train, max_len=3, batch_size=8, shuffle=False)
    assert len(loader) == 1 and loader.num_sequences == 2  # [6] has no target: skipped
    input_ids, target_ids = next(iter(loader))
    assert input_ids.dtype == torch.long and input_ids.shape == (2, 3) == target_ids.shape
    # [1, 2, 3] -> input [1, 2] / target [2, 3]; [9, 1, 9, 3, 2] -> the last 3 steps
    assert input_ids.tolist() == [[0, 1, 2], [1, 9, 3]]
    assert target_ids.tolist() == [[0, 2, 3], [9, 3, 2]]


def test_train_loader_target_is_next_item_everywhere():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 50, size=n) for n in rng.integers(2, 30, size=40)]
    loader = TrainLoader(sequences, max_len=12, batch_size=7, seed=3)
    seen = 0
    for input_ids, target_ids in loader:
        real = input_ids != 0
        assert torch.equal(target_ids == 0, ~real)  # target 0 exactly where input is pad
        # inside a row the target is the next input: target[t] == input[t + 1]
        # (left padding: once input[t] is real, so is input[t + 1])
        assert torch.equal(target_ids[:, :-1][real[:, :-1]], input_ids[:, 1:][real[:, :-1]])
        seen += input_ids.shape[0]
    assert seen == 40
    last_items = sorted(int(s[-1]) for s in sequences)
    assert sorted(loader.target_ids[:, -1].tolist()) == last_items


def test_train_loader_epochs_are_seeded_and_reshuffled():
    sequences = [np.array([i, i + 1, i + 2]) for i in range(1, 41)]

    def epoch_order(loader):
        return torch.cat([inp[:, -1] for inp, _ in loader]).tolist()

    first = TrainLoader(sequences, max_len=4, batch_size=6, seed=5)
    again = TrainLoader(sequences, max_len=4, batch_size=6, seed=5)
    epoch0, epoch1 = epoch_order(first), epoch_order(first)
    assert epoch0 == epoch_order(again) and epoch1 == epoch_order(again)
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1)
    first.set_epoch(1)
    assert epoch_order(first) == epoch1
    other_seed = TrainLoader(sequences, max_len=4, batch_size=6, seed=6)
    assert epoch_order(other_seed) == epoch1  # seed 6 epoch 0 == seed 5 epoch 1


def test_batches_by_length_hold_every_history_once_cut_to_their_longest():
    rng = np.random.default_rng(1)
    # ML-1M-like: most histories short, a few long
    sizes = np.concatenate([rng.integers(3, 40, size=180), rng.integers(150, 400, size=20)])
    sequences = [rng.integers(1, 90, size=n) for n in sizes]
    plain = TrainLoader(sequences, max_len=256, batch_size=16, seed=2)
    loader = TrainLoader(sequences, max_len=256, batch_size=16, seed=2, by_length=True)
    full = {tuple(row.tolist()): row for row in loader.input_ids}

    def epoch(loader):
        widths, rows, pads = [], [], 0
        for input_ids, target_ids in loader:
            real = input_ids != 0
            assert real[:, 0].any() or not loader.by_length, "an all-padding column was kept"
            assert torch.equal(target_ids == 0, ~real)
            for row, target in zip(input_ids, target_ids, strict=True):
                padded = torch.cat([row.new_zeros(256 - row.numel()), row])
                assert tuple(padded.tolist()) in full  # the window, cut on the left only
                rows.append(tuple(padded.tolist()))
                assert torch.equal(target[:-1][row[:-1] != 0], row[1:][row[:-1] != 0])
            widths.append(input_ids.shape[1])
            pads += int((~real).sum())
        return widths, rows, pads

    widths, rows, pads = epoch(loader)
    assert sorted(rows) == sorted(full)  # every history once
    _, _, plain_pads = epoch(plain)
    assert pads < plain_pads / 4  # similar lengths share a batch: far less padding
    assert min(widths) < 60 and max(widths) > 150 and len(widths) == len(plain)
    again, other = TrainLoader(sequences, max_len=256, batch_size=16, seed=2, by_length=True), []
    assert epoch(again)[1] == rows  # seeded
    other = epoch(loader)[1]  # the next epoch groups and orders differently
    assert other != rows and sorted(other) == sorted(rows)


def test_train_loader_drop_last():
    sequences = [np.array([1, 2, 3])] * 10
    assert len(TrainLoader(sequences, max_len=4, batch_size=4)) == 3
    dropping = TrainLoader(sequences, max_len=4, batch_size=4, drop_last=True)
    assert len(dropping) == 2
    assert [inp.shape[0] for inp, _ in dropping] == [4, 4]


@pytest.mark.parametrize(("num_sequences", "world_size"), [(41, 2), (41, 4), (3, 4), (40, 1)])
def test_rank_slices_make_up_the_single_process_batches(num_sequences, world_size):
    """Each global batch of a data-parallel epoch is the batch a single process reads, split
    into equal per-rank slices; the epoch is padded by wrapping around to a multiple of ranks."""
    sequences = [np.array([i, i + 1, i + 2]) for i in range(1, num_sequences + 1)]
    single = TrainLoader(sequences, max_len=4, batch_size=8, seed=5)
    ranks = [TrainLoader(sequences, max_len=4, batch_size=8, seed=5, rank=r,
                         world_size=world_size) for r in range(world_size)]
    padded = -(-num_sequences // world_size) * world_size
    for epoch in (0, 3):  # set_epoch repositions every rank alike (resume)
        single.set_epoch(epoch)
        for loader in ranks:
            loader.set_epoch(epoch)
        single_order = torch.cat([inp[:, -1] for inp, _ in single]).tolist()
        per_rank = [[inp[:, -1] for inp, _ in loader] for loader in ranks]
        assert {len(batches) for batches in per_rank} == {len(ranks[0])}  # same step count
        for slices in zip(*per_rank, strict=True):
            assert len({len(part) for part in slices}) == 1  # equal slices
        glued = [torch.cat(slices).tolist() for slices in zip(*per_rank, strict=True)]
        want = np.resize(single_order, padded).tolist()
        assert glued == [want[start : start + 8] for start in range(0, padded, 8)]


def test_a_batch_that_does_not_split_over_the_ranks_is_a_sentence():
    with pytest.raises(ValueError, match="divisible by 3"):
        TrainLoader([np.array([1, 2, 3])], max_len=4, batch_size=8, rank=0, world_size=3)


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_eval_loader_batches_and_seen_items(stage):
    data = toy()
    split = leave_one_out(data)
    loader = EvalLoader(split, stage, max_len=4, batch_size=2)
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    history = torch.cat([b[0] for b in batches])
    target = torch.cat([b[1] for b in batches])
    user_index = torch.cat([b[2] for b in batches])
    assert user_index.tolist() == [0, 1, 3]
    assert target.tolist() == split.target(stage).tolist()
    assert torch.equal(history, torch.from_numpy(pad_left(split.history(stage), 4)))
    rows, items = loader.seen_items(user_index[[2, 0]])  # any order, any subset
    full_history = data.sequences[3][: -2 if stage == "valid" else -1]
    assert sorted(items[rows == 0].tolist()) == sorted(set(full_history.tolist()))
    assert sorted(items[rows == 1].tolist()) == sorted(
        set(data.sequences[0][:-2].tolist()) | ({4} if stage == "test" else set())
    )
    scores = torch.zeros(2, data.num_items + 1)
    scores[rows, items] = float("-inf")
    assert torch.isinf(scores[0, 9])  # in every history of user "d"
    assert bool(torch.isinf(scores[0, 8])) == (stage == "test")  # valid target, seen at test
    assert not torch.isinf(scores[0, 7])  # the test target is never filtered


def test_eval_loader_rejects_unknown_stage():
    with pytest.raises(ValueError, match="stage"):
        EvalLoader(leave_one_out(toy()), "train", max_len=4)
