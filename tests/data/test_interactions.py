"""InteractionData: validation, fingerprint, stats and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elastic.data import InteractionData


def tiny(**changes) -> InteractionData:
    fields = {
        "name": "tiny",
        "sequences": [np.array([1, 2, 3]), np.array([3, 1, 2, 1])],
        "num_items": 3,
        "user_ids": [10, 20],
        "item_ids": [None, "x", "y", "z"],
        "item_titles": ["", "Ex", "", "Zed"],
    }
    return InteractionData(**{**fields, **changes})


def test_fingerprint_is_stable_and_content_sensitive():
    # a fixed digest: checkpoints written today must match the data tomorrow
    assert tiny().fingerprint() == tiny().fingerprint()
    assert tiny().fingerprint() == (
        "e25d76d82ac03f0e433a4b4641746f3a6ce87757ff97983a8f789e4152aa823a"
    )
    assert tiny(name="other", user_ids=["a", "b"]).fingerprint() == tiny().fingerprint()
    changed = tiny(sequences=[np.array([1, 2, 3]), np.array([3, 1, 2, 2])])
    assert changed.fingerprint() != tiny().fingerprint()
    # the split point between users matters, not only the concatenation
    moved = tiny(sequences=[np.array([1, 2, 3, 3]), np.array([1, 2, 1])])
    assert moved.fingerprint() != tiny().fingerprint()
    assert tiny(num_items=4, item_ids=[None, 1, 2, 3, 4], item_titles=None).fingerprint() != (
        tiny().fingerprint()
    )


def test_stats():
    stats = tiny(cleaning={"short_users_dropped": 2}).stats()
    assert stats["users"] == 2 and stats["items"] == 3 and stats["interactions"] == 7
    assert stats["mean_sequence_length"] == 3.5 and stats["median_sequence_length"] == 3.5
    assert stats["max_sequence_length"] == 4 and stats["min_sequence_length"] == 3
    assert stats["density"] == pytest.approx(7 / 6)
    assert stats["short_users_dropped"] == 2
    json.dumps(stats)  # plain Python types only


def test_item_label_uses_title_when_known():
    data = tiny()
    assert data.item_label(1) == "Ex"
    assert data.item_label(2) == "item 2"
    assert tiny(item_titles=None).item_label(3) == "item 3"


def test_inconsistent_construction_is_refused():
    with pytest.raises(ValueError, match=r"item ids must lie in 1\.\.3"):
        tiny(sequences=[np.array([1, 0, 3]), np.array([1, 2, 3])])
    with pytest.raises(ValueError, match="item_ids has 3 entries"):
        tiny(item_ids=[None, "x", "y"])
    with pytest.raises(ValueError, match="1 user ids for 2 sequences"):
        tiny(user_ids=[10])
    with pytest.raises(ValueError, match="item_titles has 2 entries"):
        tiny(item_titles=["", "Ex"])


def test_stats_count_the_users_training_can_learn_from():
    # leave-one-out keeps s[:-2] for training and a training pair needs 2 items: 4 in all
    assert tiny().stats()["trainable_users"] == 1
    assert tiny(sequences=[np.array([1, 2, 3]), np.array([3, 1, 2])]).stats()[
        "trainable_users"] == 0
