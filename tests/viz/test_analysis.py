"""The arrays the views draw, computed from model outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elastic.data import load_dataset
from elastic.models import PAD, build_model
from elastic.viz import analysis


def test_user_view_is_the_test_history_trimmed_to_real_positions(data, model):
    user = 5
    view = analysis.elastic_user_view(model, data, user)
    history = data.sequences[user][:-1]
    n = min(len(history), model.config.max_len)
    L, h, k = 2, 2, 4
    assert view.history.tolist() == history[-n:].tolist()
    assert view.held_out == int(data.sequences[user][-1])
    assert view.stage1.shape == (L, h, k, n)
    assert view.stage2.shape == (L, h, n, k)
    assert view.interest_vectors.shape == (L, k, 16)
    assert view.slot_ids.shape == view.gates.shape == (k,)
    np.testing.assert_allclose(view.stage1.sum(-1) + view.stage1_sink, 1.0, atol=1e-5)
    np.testing.assert_allclose(view.stage2.sum(-1), 1.0, atol=1e-5)  # stage-2 rows
    assert np.isclose(view.gates.sum(), 1.0, atol=1e-5)
    assert view.logits[PAD] == -np.inf


def test_user_view_logits_equal_the_plain_forward(data, model):
    view = analysis.elastic_user_view(model, data, 2)
    np.testing.assert_allclose(
        view.logits[1:], analysis.next_item_scores(model, data, 2)[1:], rtol=1e-5, atol=1e-5
    )


def test_top_items_skip_padding_and_history_and_are_sorted():
    scores = np.array([99.0, 1.0, 5.0, 3.0, 4.0, 2.0])
    top = analysis.top_items(scores, exclude=np.array([2]), top=3)
    assert top.tolist() == [4, 3, 5]
    assert scores[PAD] == 99.0  # the caller's array is untouched


def test_top_items_caps_at_the_candidates_left():
    assert analysis.top_items(
        np.array([0.0, 1.0, 2.0]), exclude=np.array([1]), top=10
    ).tolist() == [2]


def test_rank_of_matches_top_items():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=30)
    seen = np.array([3, 7, 11])
    top = analysis.top_items(scores, seen, top=5)
    assert [analysis.rank_of(scores, int(i), seen) for i in top] == [1, 2, 3, 4, 5]


def _reference_directions(model, interests, head_weights, layer):
    """What interest j writes, computed head by head with torch ops."""
    k, d = interests.shape
    h = head_weights.shape[0]
    dh = d // h
    proj = model.layers[layer].proj.weight.detach()
    gamma = model.final_norm.weight.detach()
    out = []
    for j in range(k):
        concat = torch.zeros(d)
        for head in range(h):
            part = (
                torch.as_tensor(interests[j, head * dh : (head + 1) * dh]) * head_weights[head, j]
            )
            concat[head * dh : (head + 1) * dh] = part
        y = proj @ concat
        out.append(gamma * (y - y.mean()))
    return torch.stack(out).numpy()


def test_interest_item_scores_read_every_head_fully(data, model):
    with torch.no_grad():
        model.final_norm.weight.uniform_(0.5, 1.5)  # a non-trivial gain must be applied
    view = analysis.elastic_user_view(model, data, 7)
    scores = analysis.interest_item_scores(model, view, layer=0)
    directions = _reference_directions(model, view.interest_vectors[0], np.ones((2, 4)), layer=0)
    expected = directions @ model.item_weight.detach().numpy().T
    assert scores.shape == (4, data.num_items + 1)
    assert np.all(scores[:, PAD] == -np.inf)
    np.testing.assert_allclose(scores[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-5)


def test_strongest_dispatcher_and_gathered_items():
    stage1 = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert analysis.strongest_dispatcher(stage1).tolist() == [1, 0, 0]
    history = np.array([7, 8, 7])
    items, weights = analysis.gathered_items(stage1[0], history, top=5)
    assert items.tolist() == [8, 7]  # item 7 twice: kept once, with its larger weight
    np.testing.assert_allclose(weights, [0.6, 0.3])


def test_dispatcher_agreement_is_one_for_a_perfect_split():
    planted = np.array([2, 2, 5, 5, 5])
    stage1 = np.array([[0.4, 0.4, 0.0, 0.1, 0.1], [0.0, 0.0, 0.4, 0.3, 0.3]])
    assert analysis.dispatcher_agreement(stage1, planted) == pytest.approx(1.0)


def test_planted_interests_of_history(data):
    planted = analysis.planted_interests_of_history(data, 4, 5)
    expected = data.truth.item_interest[data.sequences[4][:-1][-5:]]
    assert planted.tolist() == expected.tolist()


def test_retrieve_all_matches_one_user_at_a_time(data, model):
    slots, gates = analysis.retrieve_all(model, data, batch_size=7)
    assert slots.shape == gates.shape == (data.num_users, 4)
    for user in (0, 13, 39):
        view = analysis.elastic_user_view(model, data, user)
        assert slots[user].tolist() == view.slot_ids.tolist()
        np.testing.assert_allclose(gates[user], view.gates, rtol=1e-5, atol=1e-6)


def test_users_of_slot():
    slot_ids = np.array([[1, 2], [2, 3], [4, 5]])
    assert analysis.users_of_slot(slot_ids, 2).tolist() == [0, 1]
    assert analysis.users_of_slot(slot_ids, 9).tolist() == []


def _toy_data():
    # item 1 is held by everybody; item 2 only by users 0 and 1 (the group); last items held out
    sequences = [[1, 2, 3, 9], [2, 1, 4, 9], [1, 5, 6, 9], [1, 6, 5, 9]]
    from elastic.data import InteractionData

    return InteractionData(
        name="toy",
        sequences=[np.array(s) for s in sequences],
        num_items=9,
        user_ids=[10, 11, 12, 13],
        item_ids=[None, *range(1, 10)],
        item_genres=["", "A", "B", "A|B", "A", "B", "B", "A", "A", "A"],
    )


def test_shared_items_rank_by_lift():
    data = _toy_data()
    rows = analysis.shared_items(data, np.array([0, 1]), top=3)
    assert rows[0]["item"] == 2
    assert rows[0]["users"] == 2
    assert rows[0]["lift"] == pytest.approx((2 / 2) / (2 / 4))
    assert all(r["item"] != 9 for r in rows)  # the held-out item is not history
    assert analysis.shared_items(data, np.array([], dtype=int)) == []


def test_label_shares_split_multi_genre_items():
    data = _toy_data()
    labels, shares = analysis.label_shares(data, np.array([0]))
    assert labels == ["A", "B"]
    # user 0's history 1 (A), 2 (B), 3 (A|B): A = 1.5, B = 1.5
    np.testing.assert_allclose(shares, [0.5, 0.5])
    _, all_shares = analysis.label_shares(data)
    assert all_shares.sum() == pytest.approx(1.0)


def test_label_shares_use_planted_interests_on_synthetic(data):
    labels, shares = analysis.label_shares(data)
    assert labels == data.truth.interest_names
    assert shares.sum() == pytest.approx(1.0)


def test_item_groups(data):
    labels, groups = analysis.item_groups(data, np.array([1, 2]))
    assert groups.tolist() == data.truth.item_interest[[1, 2]].tolist()
    assert labels == [data.truth.interest_names[g] for g in groups]
    toy = _toy_data()
    labels, groups = analysis.item_groups(toy, np.array([1, 2, 3]))
    assert labels == ["A", "B", "A"]
    assert groups.tolist() == [0, 1, 0]


def test_next_item_scores_for_sasrec(data):
    torch.manual_seed(0)
    sasrec = build_model("sasrec", num_items=data.num_items, max_len=16, d_model=16).eval()
    scores = analysis.next_item_scores(sasrec, data, 0)
    assert scores.shape == (data.num_items + 1,)
    assert scores[PAD] == -np.inf


def test_views_handle_histories_shorter_than_the_window():
    short = load_dataset(
        "synthetic",
        num_users=5,
        num_items=30,
        planted_interests=2,
        interests_per_user=1,
        min_seq_len=4,
        max_seq_len=6,
        seed=1,
    )
    torch.manual_seed(0)
    model = build_model(
        "elastic", num_items=30, max_len=12, d_model=8, num_heads=2, num_interests=2, num_slots=4
    ).eval()
    view = analysis.elastic_user_view(model, short, 0)
    assert view.stage1.shape[-1] == len(short.sequences[0]) - 1


def test_shared_items_ignore_items_too_rare_in_the_group():
    from elastic.data import InteractionData

    # 40 users; the group is users 0..19. Item 5 is held by 2 group users only (lift 2, rare);
    # item 6 by 12 group users and 4 others (lift 1.5, common in the group).
    sequences = []
    for u in range(40):
        history = [1, 2]
        if u in (0, 1):
            history.append(5)
        if u < 12 or u in (30, 31, 32, 33):
            history.append(6)
        sequences.append(np.array([*history, 9]))
    data = InteractionData(
        name="toy",
        sequences=sequences,
        num_items=9,
        user_ids=list(range(40)),
        item_ids=[None, *range(1, 10)],
    )
    rows = analysis.shared_items(data, np.arange(20), top=3, min_share=0.2)  # >= 4 holders
    assert rows[0]["item"] == 6
    assert all(r["item"] != 5 for r in rows)


def test_with_position_marks_the_item_at_a_position_and_appends_it_when_missing():
    history = np.array([5, 6, 7, 6, 8])
    row = np.array([0.1, 0.3, 0.05, 0.2, 0.35])
    items, weights = analysis.gathered_items(row, history, top=2)  # 8, 6
    assert analysis.with_position(items, weights, row, history, None)[2] is None
    assert analysis.with_position(items, weights, row, history, 9)[2] is None  # past the end
    same_items, _, mark = analysis.with_position(items, weights, row, history, 3)  # item 6
    assert mark == 1 and same_items.tolist() == [8, 6]
    more, more_weights, mark = analysis.with_position(items, weights, row, history, 0)  # item 5
    assert more.tolist() == [8, 6, 5] and mark == 2 and more_weights[2] == 0.1


def test_user_view_carries_the_logits_of_both_softmaxes(data, model):
    view = analysis.elastic_user_view(model, data, 3)
    L, h, k, n = view.stage1.shape
    assert view.stage1_logits.shape == (L, h, k, n)
    assert view.stage1_sink_logits.shape == (L, h, k)
    assert view.stage2_logits.shape == (L, h, n, k)
    assert np.isfinite(view.stage1_logits).all()  # trimmed to the real positions
