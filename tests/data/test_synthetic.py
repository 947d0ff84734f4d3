"""The planted-interest generator and the NMI used to score interest recovery."""

from __future__ import annotations

import itertools
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
    num_users=200, num_items=240, planted_interests=6, facets=2, min_seq_len=20, max_seq_len=40
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
    assert small.num_users == 200 and small.num_items == 240
    assert truth.item_interest.shape == (241,) and truth.item_interest[0] == -1
    assert np.bincount(truth.item_interest[1:]).tolist() == [40] * 6  # balanced interests
    assert np.bincount(truth.item_interest[1:] * 2 + truth.item_facet[1:]).tolist() == [20] * 12
    assert truth.interest_names == [f"I{g}" for g in range(6)]
    assert len(truth.user_interests) == small.num_users
    for items, interests, rotation in zip(small.sequences, truth.user_interests,
                                          truth.user_rotation, strict=True):
        assert 20 <= len(items) <= 40
        assert items.dtype == np.int64 and items.min() >= 1 and items.max() <= 240
        assert len(np.unique(items)) == len(items)  # no repeats within a user
        # the planted interest of each step is the interest of the item drawn at that step
        assert np.array_equal(interests, truth.item_interest[items])
        assert set(interests.tolist()) <= set(rotation.tolist())


def test_titles_and_genres_name_the_interest_and_facet(small):
    interest, facet = small.truth.item_interest[17], small.truth.item_facet[17]
    assert small.item_label(17) == f"I{interest}{'ab'[facet]} · item 17"
    assert small.item_genres[17] == f"I{interest}"
    assert small.item_titles[0] == "" and small.item_genres[0] == ""


def _sessions(interests: np.ndarray) -> list[tuple[int, int]]:
    """(interest, length) of each run of one interest."""
    bounds = np.flatnonzero(np.diff(interests)) + 1
    return [(int(run[0]), run.size) for run in np.split(interests, bounds)]


def test_sessions_rotate_through_the_held_interests(small):
    for interests, rotation in zip(small.truth.user_interests, small.truth.user_rotation,
                                   strict=True):
        runs = _sessions(interests)
        # every session but the first and the last (cut by the phase) has session_len items
        assert all(length == SMALL.session_len for _, length in runs[1:-1])
        order = rotation.tolist()
        for (a, _), (b, _) in itertools.pairwise(runs):
            assert order[(order.index(a) + 1) % len(order)] == b


def test_users_prefer_their_facet_at_the_configured_rate(small):
    truth, inside = small.truth, []
    for items, rotation, tastes in zip(small.sequences, truth.user_rotation, truth.user_tastes,
                                       strict=True):
        taste_of = dict(zip(rotation.tolist(), tastes.tolist(), strict=True))
        preferred = [taste_of[g] for g in truth.item_interest[items]]
        inside.append(np.mean(truth.item_facet[items] == preferred))
    assert np.mean(inside) == pytest.approx(SMALL.taste, abs=0.04)


def test_session_starts_need_memory_beyond_the_local_window_and_are_not_tied_to_the_end():
    """The next interest at a session start is absent from the last 2·session_len items but
    present earlier in the history (long-range memory, beyond a local window of 8); and the
    test target is a session start about once in session_len users, as anywhere else (the
    sequence end has a random phase: no position near the end is special)."""
    data = make_synthetic(SyntheticConfig(num_users=600, num_items=400, planted_interests=8,
                                          facets=2, min_seq_len=30, max_seq_len=50))
    split = leave_one_out(data)
    starts = 0
    for history, target in zip(split.test_history, split.test_target, strict=True):
        interests = data.truth.item_interest
        if interests[target] == interests[history[-1]]:
            continue
        starts += 1
        recent = interests[history[-2 * SyntheticConfig().session_len :]]
        assert interests[target] not in recent
        assert interests[target] in interests[history]
    assert starts / split.num_users == pytest.approx(1 / SyntheticConfig().session_len, abs=0.05)


def test_one_summary_per_interest_beats_the_recent_items_and_the_history_average():
    """Three scorers that know the catalogue's facets and read a user's history: the facets of
    the last 8 items (a local window), of the whole history (an average), and the facet the
    rotation says comes next (one summary per interest: the user's facet of the next one). At
    session starts only the last finds the target's facet."""
    data = make_synthetic(SyntheticConfig(num_users=400, num_items=400, planted_interests=8,
                                          facets=2, taste=0.8, min_seq_len=30, max_seq_len=50,
                                          seed=1))
    truth = data.truth
    facet_of = truth.item_interest * 2 + truth.item_facet  # a global facet id
    hits = {"window": 0, "average": 0, "per interest": 0}
    starts = 0
    for items in data.sequences:
        history, target = items[:-1], items[-1]
        if truth.item_interest[target] == truth.item_interest[history[-1]]:
            continue
        starts += 1
        current = truth.item_interest[history[-1]]
        previous = next(g for g in truth.item_interest[history[::-1]] if g != current)
        # the held interest that is neither the current nor the previous one, and its facet
        later = [i for i in history if truth.item_interest[i] not in (current, previous)]
        guesses = {
            "window": np.bincount(facet_of[history[-8:]]).argmax(),
            "average": np.bincount(facet_of[history]).argmax(),
            "per interest": np.bincount(facet_of[later]).argmax() if later else -1,
        }
        for name, facet in guesses.items():
            hits[name] += facet == facet_of[target]
    assert starts > 50
    assert hits["per interest"] / starts > 0.7
    assert hits["window"] / starts < 0.05
    assert hits["average"] / starts < 0.5


def test_inside_a_session_the_facet_comes_from_the_whole_history_not_the_last_items():
    """With the default F = 8 facets and taste 0.6, at targets inside a session the user's facet
    of the current interest is told far better by all earlier items of that interest than by
    the last 8 items: long-range memory pays at every step, not only at session starts."""
    config = SyntheticConfig(num_users=400)
    data = make_synthetic(config)
    truth = data.truth
    facet_of = truth.item_interest * config.facets + truth.item_facet  # a global facet id
    hits = {"window": 0, "per interest": 0}
    inside = 0
    for items in data.sequences:
        history, target = items[:-1], items[-1]
        current = truth.item_interest[target]
        if current != truth.item_interest[history[-1]]:
            continue  # a session start
        inside += 1
        recent = [i for i in history[-8:] if truth.item_interest[i] == current]
        earlier = [i for i in history if truth.item_interest[i] == current]
        hits["window"] += np.bincount(facet_of[recent]).argmax() == facet_of[target]
        hits["per interest"] += np.bincount(facet_of[earlier]).argmax() == facet_of[target]
    assert inside > 200
    per_interest, window = hits["per interest"] / inside, hits["window"] / inside
    assert per_interest > 0.5  # about the taste, 0.6: the facet is found
    assert window < per_interest - 0.1  # 1-3 items of the session often point elsewhere


def test_uneven_interests_are_checked_by_their_smallest_members():
    """60 items over 4 × 2 facets: interests of 16, 16, 14 and 14 items. Sessions of 4 over 2
    interests draw up to 16 items of one interest in 30 items, so 30-item histories are
    refused (they crashed the generator when the smallest interest ran out)."""
    small = dict(num_items=60, planted_interests=4, facets=2, interests_per_user=2,
                 min_seq_len=10)
    with pytest.raises(DataError, match="max_seq_len=30 draws up to 16 items of one interest"
                                        r".* more than the 14 items of the smallest"):
        SyntheticConfig(**small, max_seq_len=30)
    make_synthetic(SyntheticConfig(num_users=300, **small | {"min_seq_len": 24},
                                   max_seq_len=24))


def test_archetype_members_share_interests_order_and_tastes_and_zero_means_independent():
    data = make_synthetic(SyntheticConfig(num_users=300, archetypes=5))
    truth = data.truth
    assert truth.user_archetype.shape == (300,) and set(truth.user_archetype) == set(range(5))
    for a in range(5):
        members = np.flatnonzero(truth.user_archetype == a)
        first = members[0]
        for u in members[1:]:
            assert truth.user_rotation[u].tolist() == truth.user_rotation[first].tolist()
            assert truth.user_tastes[u].tolist() == truth.user_tastes[first].tolist()
    independent = make_synthetic(SyntheticConfig(num_users=300, archetypes=0))
    assert independent.truth.user_archetype is None
    assert len({tuple(r) for r in independent.truth.user_rotation}) > 100  # C(8,3)·3! = 336
    with pytest.raises(DataError, match="archetypes"):
        SyntheticConfig(archetypes=-1)


def test_invalid_config_is_a_data_error():
    with pytest.raises(DataError, match="max_seq_len=800 draws up to 268 items"):
        SyntheticConfig(max_seq_len=800)
    with pytest.raises(DataError, match="interests_per_user"):
        SyntheticConfig(planted_interests=2, interests_per_user=3)
    with pytest.raises(DataError, match="taste"):
        SyntheticConfig(taste=1.5)
    with pytest.raises(DataError, match="min_seq_len"):
        SyntheticConfig(min_seq_len=2)
    with pytest.raises(DataError, match="every facet needs an item"):
        SyntheticConfig(num_items=20, planted_interests=8, facets=4)


def test_load_dataset_synthetic_passes_settings():
    data = load_dataset("synthetic", num_users=30, num_items=60, facets=4, min_seq_len=5,
                        max_seq_len=10)
    assert data.num_users == 30 and data.source == "synthetic" and data.name == "synthetic"
    with pytest.raises(DataError, match="unknown synthetic setting"):
        load_dataset("synthetic", users=30)


def test_extreme_settings_still_generate():
    # every item of its one interest consumed by every user: exercises exhaustion
    whole = make_synthetic(
        SyntheticConfig(num_users=5, num_items=12, planted_interests=1, facets=3,
                        interests_per_user=1, min_seq_len=12, max_seq_len=12)
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
