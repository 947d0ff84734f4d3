"""The product-key slot grid and its usage."""

from __future__ import annotations

import numpy as np
import pytest

from elastic.viz.memory import (
    label_share_figure,
    rank_counts,
    slot_grid_figure,
    slot_position,
    slot_users_figure,
    usage_figure,
)


def test_slot_position_is_row_first_subkey_column_second():
    assert slot_position(0, 16) == (0, 0)
    assert slot_position(6, 16) == (1, 2)
    assert slot_position(15, 16) == (3, 3)


def test_slot_grid_places_every_slot_with_its_count():
    counts = np.arange(16)
    fig = slot_grid_figure(counts, user_slots=[6, 1], user_gates=[0.7, 0.3], selected=9)
    cells, user = fig.data
    assert len(cells.x) == 16
    custom = np.asarray(cells.customdata)
    assert (custom[:, 2] == custom[:, 0] * 4 + custom[:, 1]).all()  # slot = i·n + j
    np.testing.assert_array_equal(custom[:, 3], counts)
    np.testing.assert_array_equal(cells.marker.color, counts)
    (selected,) = fig.layout.shapes  # slot 9 = row 2, column 1
    assert (selected.yanchor, selected.xanchor) == (2, 1)
    assert list(user.y) == [1, 0] and list(user.x) == [2, 1]
    assert user.marker.size[0] > user.marker.size[1]  # the larger gate, the larger ring
    assert "gate 70.0%" in user.hovertext[0]
    assert "dead" in cells.hovertext[0]


def test_slot_grid_refuses_a_memory_that_is_not_square():
    with pytest.raises(ValueError, match="perfect square"):
        slot_grid_figure(np.ones(10))


def test_a_different_user_moves_the_rings():
    counts = np.ones(16)
    a = slot_grid_figure(counts, [0, 1], [0.5, 0.5])
    b = slot_grid_figure(counts, [14, 15], [0.5, 0.5])
    assert list(a.data[-1].y) != list(b.data[-1].y)


def test_usage_is_sorted_shares_with_the_uniform_line():
    fig = usage_figure(np.array([0, 5, 1, 4]))
    share = np.asarray(fig.data[0].y)
    np.testing.assert_allclose(share, [0.5, 0.4, 0.1, 0.0])
    assert fig.layout.shapes[0].y0 == pytest.approx(0.25)


def test_label_shares_are_two_bar_groups():
    fig = label_share_figure(["I0", "I1"], np.array([0.8, 0.2]), np.array([0.5, 0.5]), "slot 3")
    assert [bar.name for bar in fig.data] == ["slot 3", "all users"]
    assert list(fig.data[0].y) == [0.8, 0.2]


def test_the_users_of_a_slot_and_the_dispatcher_each_holds_it_as():
    slot_ids = np.array([[3, 5, 1], [5, 3, 0], [2, 4, 6], [1, 2, 5]])  # 4 users, k = 3
    gates = np.array([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.7, 0.2, 0.1]])
    fig = slot_users_figure(slot_ids, gates, 5, ["u0", "u1", "u2", "u3"], current_user=3)
    cells = fig.data[0]
    custom = np.asarray(cells.customdata).reshape(3, 3, 5)  # rows: the 3 users holding slot 5
    assert custom[:, 0, 2].tolist() == [3, 1, 0]  # the chosen user first, then by rank
    outlined = [(s.yanchor, s.xanchor) for s in fig.layout.shapes]
    assert outlined == [(0, 2), (1, 0), (2, 1)]  # row, column (D3, D1, D2): where slot 5 is
    for row, column in outlined:
        assert custom[int(row), int(column), 3] == 5  # the outlined cell is the slot
    np.testing.assert_allclose(cells.marker.color, gates[[3, 1, 0]].ravel())
    assert "← this slot" in cells.hovertext[2] and "(chosen)" in fig.layout.yaxis.ticktext[0]
    assert rank_counts(slot_ids, 5).tolist() == [1, 1, 1]
    assert rank_counts(slot_ids, 2).tolist() == [1, 1, 0]
