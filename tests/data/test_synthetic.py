"""The planted-interest generator and the NMI used to score interest recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elastic.data import (
    DataError,
    SyntheticConfig,
    interest_agreement,
    leave_one_out,
    load_dataset,
    make_synthetic,
)

SMALL = SyntheticConfig(
    num_users=200, num_items=120, num_interests=6, min_seq_len=20, max_seq_len=40
)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(SMALL)


def test_same_seed_same_data_different_seed_different(small):
    again = make_synthetic(SMALL)
    assert again.fingerprint() == small.fingerprint()
    assert all(np.array_equal(a, b) for a, b in zip(again.sequences, small.sequences, strict=True))
    assert np.array_equal(again.truth.item_interest, small.truth.item_interest)
    other = make_synthetic(SyntheticConfig(**{**vars(SMALL), "seed": 1}))
    assert other.fingerprint() != small.fingerprint()


def test_shapes_and_ground_truth(small):
    truth = small.truth
    assert small.num_users == 200 and small.num_items == 120
    assert truth.item_interest.shape == (121,) and truth.item_interest[0] == -1
    assert set(truth.item_interest[1:].tolist()) == set(range(6))
    assert np.bincount(truth.item_interest[1:]).tolist() == [20] * 6  # balanced interests
    assert truth.interest_names == [f"I{g}" for g in range(6)]
    assert len(truth.user_interests) == small.num_users
    for items, interests in zip(small.sequences, truth.user_interests, strict=True):
        assert 20 <= len(items) <= 40
        assert items.dtype == np.int64 and items.min() >= 1 and items.max() <= 120
        assert len(np.unique(items)) == len(items)  # no repeats within a user
        # the planted interest of each step is the interest of the item drawn at that step
        assert np.array_equal(interests, truth.item_interest[items])


def test_titles_and_genres_name_the_interest(small):
    interest = small.truth.item_interest[17]
    assert small.item_label(17) == f"I{interest} · item 17"
    assert small.item_genres[17] == f"I{interest}"
    assert small.item_titles[0] == "" and small.item_genres[0] == ""


def test_interests_persist_and_users_hold_few(small):
    runs, held = [], []
    for interests in small.truth.user_interests:
        switches = np.flatnonzero(np.diff(interests) != 0)
        runs.append(len(interests) / (len(switches) + 1))
        held.append(len(np.unique(interests)))
    assert np.mean(runs) > 4  # switch_prob 0.15: runs of ~7 steps
    assert np.median(held) <= SMALL.interests_per_user + 1  # drift adds about one at most


def test_next_item_is_predictable_from_recent_items(small):
    """A last-item transition table beats popularity by far on the test targets."""
    split = leave_one_out(small)
    train_items = np.concatenate(split.test_history)
    popularity = np.bincount(train_items, minlength=small.num_items + 1).astype(float)
    transitions = np.zeros((small.num_items + 1, small.num_items + 1))
    for history in split.test_history:
        np.add.at(transitions, (history[:-1], history[1:]), 1.0)
    hits = {"popularity": 0, "transitions": 0}
    for history, target in zip(split.test_history, split.test_target, strict=True):
        for name, scores in (
            ("popularity", popularity.copy()),
            ("transitions", transitions[history[-1]] + 1e-3 * popularity),
        ):
            scores[0] = -np.inf
            scores[history] = -np.inf
            hits[name] += target in np.argsort(-scores)[:10]
    assert hits["transitions"] > 3 * hits["popularity"]
    assert hits["transitions"] / split.num_users > 0.3


def test_invalid_config_is_a_data_error():
    with pytest.raises(DataError, match="max_seq_len=600 exceeds num_items=500"):
        SyntheticConfig(max_seq_len=600)
    with pytest.raises(DataError, match="interests_per_user"):
        SyntheticConfig(num_interests=2, interests_per_user=3)
    with pytest.raises(DataError, match="switch_prob"):
        SyntheticConfig(switch_prob=1.5)
    with pytest.raises(DataError, match="min_seq_len"):
        SyntheticConfig(min_seq_len=2)


def test_load_dataset_synthetic_passes_settings():
    data = load_dataset("synthetic", num_users=30, num_items=60, min_seq_len=5, max_seq_len=10)
    assert data.num_users == 30 and data.source == "synthetic" and data.name == "synthetic"
    with pytest.raises(DataError, match="unknown synthetic setting"):
        load_dataset("synthetic", users=30)


def test_extreme_settings_still_generate():
    # every item consumed by every user, a single interest, no drift: exercises exhaustion
    whole = make_synthetic(
        SyntheticConfig(
            num_users=5,
            num_items=12,
            num_interests=3,
            interests_per_user=1,
            min_seq_len=12,
            max_seq_len=12,
            drift_prob=0.0,
            order_prob=0.0,
        )
    )
    for items in whole.sequences:
        assert sorted(items.tolist()) == list(range(1, 13))


# --------------------------------------------------------------------------- NMI


def test_nmi_identical_and_permuted_labelings():
    labels = [0, 0, 1, 1, 2, 2, 2]
    assert interest_agreement(labels, labels) == pytest.approx(1.0)
    renamed = ["c", "c", "a", "a", "b", "b", "b"]
    assert interest_agreement(labels, renamed) == pytest.approx(1.0)


def test_nmi_hand_computed():
    # exactly independent: every (a, b) pair occurs once
    assert interest_agreement([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # a = [0,0,1,1], b = [0,0,0,1]: joint (0,0)=1/2, (1,0)=1/4, (1,1)=1/4
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    entropy_a = math.log(2)
    entropy_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mutual / ((entropy_a + entropy_b) / 2)
    assert expected == pytest.approx(0.343711, abs=1e-6)
    assert interest_agreement([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, abs=1e-12)


def test_nmi_independent_random_labelings_near_zero():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 8, 20_000), rng.integers(0, 8, 20_000)
    assert interest_agreement(a, b) < 0.01


def test_nmi_degenerate_cases():
    assert interest_agreement([3, 3, 3], [1, 1, 1]) == 1.0
    assert interest_agreement([3, 3, 3], [0, 1, 2]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        interest_agreement([0, 1], [0])
    with pytest.raises(ValueError, match="at least one"):
        interest_agreement([], [])


def test_nmi_of_planted_interests_against_themselves(small):
    truth = small.truth.item_interest[1:]
    assert interest_agreement(truth, truth) == pytest.approx(1.0)
    assert interest_agreement(truth, np.arange(truth.size) % 2) < 0.1
