"""Stage-1 / stage-2 grids, ranked items and the planted-interest strip."""

from __future__ import annotations

import numpy as np
import pytest

from elastic.viz.attention import (
    RankedItems,
    dispatcher_labels,
    dispatcher_maps_figure,
    interest_strip_figure,
    model_view_figure,
    panel_origin,
    ranked_items_figure,
    stage1_figure,
    stage2_figure,
)
from elastic.viz.grid import clicked_cell
from elastic.viz.style import category_color

HISTORY = np.array([11, 12, 13, 14, 15])
TITLES = [f"title {i}" for i in HISTORY]
GENRES = ["A", "B", "A", "C", "B"]


def _weights(k=3, n=5, seed=0):
    w = np.random.default_rng(seed).random((k, n))
    return w / w.sum(1, keepdims=True)


def test_stage1_grid_draws_each_weight_at_dispatcher_and_position():
    stage1 = _weights()
    fig = stage1_figure(stage1, HISTORY, TITLES, GENRES, [7, 3, 9], [0.5, 0.3, 0.2], selected=1)
    cells = fig.data[0]
    np.testing.assert_allclose(cells.marker.color, stage1.ravel())
    custom = np.asarray(cells.customdata)
    assert custom.shape == (15, 3)
    assert custom[7].tolist() == [1, 2, 13]  # dispatcher 1, position 2, item 13
    assert list(cells.x[:5]) == [1, 2, 3, 4, 5]
    assert "title 13" in cells.hovertext[7] and "A" in cells.hovertext[7]
    assert list(fig.layout.yaxis.ticktext) == dispatcher_labels([7, 3, 9], [0.5, 0.3, 0.2])
    (outline,) = fig.layout.shapes  # the selected row, from before position 1 to after 5
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (0.5, 5.5, 0.5, 1.5)


def test_stage2_grid_is_transposed_so_positions_line_up():
    stage2 = _weights(k=5, n=3, seed=1)  # (n=5, k=3): each position's weights over interests
    fig = stage2_figure(stage2, HISTORY, TITLES, None, [7, 3, 9], [0.5, 0.3, 0.2])
    np.testing.assert_allclose(fig.data[0].marker.color, stage2.T.ravel())
    assert not fig.layout.shapes  # nothing selected
    assert fig.data[0].marker.cmax == stage2.max()


def test_a_different_user_changes_the_drawn_data():
    a = stage1_figure(_weights(seed=0), HISTORY, TITLES, GENRES, [1, 2, 3], [0.4, 0.3, 0.3])
    b = stage1_figure(_weights(seed=1), HISTORY, TITLES, GENRES, [1, 2, 3], [0.4, 0.3, 0.3])
    assert not np.allclose(a.data[0].marker.color, b.data[0].marker.color)


def test_dispatcher_labels():
    assert dispatcher_labels([37, 2], [0.214, 0.786]) == ["D1 · slot 37 (21%)", "D2 · slot 2 (79%)"]


def test_ranked_items_keep_order_top_first_panel_by_panel():
    fig = ranked_items_figure(
        [
            RankedItems("gathers", ["a", "b", "c"], [0.5, 0.3, 0.2], "w", ["red", "green", "blue"]),
            RankedItems("points to", ["x", "y"], [2.0, 1.0], "logit"),
        ]
    )
    first, second = fig.data
    assert list(first.x) == [0.5, 0.3, 0.2]
    assert list(fig.layout.yaxis.ticktext) == ["a", "b", "c"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert (second.xaxis, second.yaxis) == ("x2", "y2")
    assert list(fig.layout.yaxis2.ticktext) == ["x", "y"]
    assert [a.text for a in fig.layout.annotations] == ["gathers", "points to"]


def test_ranked_items_shorten_long_labels():
    fig = ranked_items_figure([RankedItems("t", ["x" * 80], [1.0])])
    assert len(fig.layout.yaxis.ticktext[0]) <= 38


def test_interest_strip_colours_dispatchers_by_their_majority_interest():
    planted = np.array([0, 0, 1, 1, 2])
    assigned = np.array([4, 4, 6, 6, 6])  # dispatcher 4 gathers interest 0; 6 mostly interest 1
    fig = interest_strip_figure(planted, assigned, ["I0", "I1", "I2"], TITLES)
    cells = {
        (x, y): trace.marker.color
        for trace in fig.data
        for x, y in zip(trace.x, trace.y, strict=True)
    }
    assert [cells[(t + 1, 0)] for t in range(5)] == [category_color(g) for g in planted]
    assert [cells[(t + 1, 1)] for t in range(5)] == [category_color(g) for g in [0, 0, 1, 1, 1]]
    hovers = [h for trace in fig.data for h in trace.hovertext]
    assert any("D5 (mostly I0)" in h for h in hovers)


def test_interest_strip_has_a_legend_in_a_colour_blind_safe_palette():
    fig = interest_strip_figure(np.array([0, 1, 2]), np.array([0, 1, 2]), ["I0", "I1", "I2"],
                                TITLES[:3])  # fmt: skip
    assert fig.layout.showlegend
    assert [t.name for t in fig.data] == ["I0", "I1", "I2"]
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#000000"}  # fmt: skip
    assert {t.marker.color for t in fig.data} <= okabe_ito


def test_ranked_bar_hovers_show_three_significant_digits():
    fig = ranked_items_figure([RankedItems("gathers", ["a"], [0.02604834], "stage-1 weight")])
    template = fig.data[0].hovertemplate
    assert "%{x:.3g}" in template and "stage-1 weight" in template


def test_a_title_replaces_the_default_one():
    stage1 = _weights()
    default = stage1_figure(stage1, HISTORY, TITLES, GENRES, [7, 3, 9], [0.5, 0.3, 0.2])
    assert default.layout.title.text.startswith("Stage 1 — each dispatcher gathers")
    titled = stage2_figure(stage1.T, HISTORY, TITLES, GENRES, [7, 3, 9], [0.5, 0.3, 0.2],
                           title="Stage 2 with D2 knocked out")
    assert titled.layout.title.text == "Stage 2 with D2 knocked out"


def test_a_selected_position_is_outlined_in_both_stages_and_its_cell_in_the_row():
    stage1, stage2 = _weights(), _weights(k=5, n=3, seed=1)
    fig = dispatcher_maps_figure(stage1, stage2, HISTORY, TITLES, GENRES, [7, 3, 9],
                                 [0.5, 0.3, 0.2], selected=1, position=3)  # fmt: skip
    first, second = fig.data
    np.testing.assert_allclose(first.marker.color, stage1.ravel())
    np.testing.assert_allclose(second.marker.color, stage2.T.ravel())
    assert (first.xaxis, second.xaxis) == ("x", "x")
    assert np.asarray(first.customdata).tolist() == np.asarray(second.customdata).tolist()
    for yref in ("y", "y2"):
        shapes = [s for s in fig.layout.shapes if s.yref == yref]
        row, column, cell = shapes  # the dispatcher's row, position 4's column, their cell
        assert (row.y0, row.y1) == (0.5, 1.5)
        assert (column.x0, column.x1) == (3.5, 4.5)
        assert (cell.xanchor, cell.yanchor) == (4, 1)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("Stage 1") and titles[1].startswith("Stage 2")
    plain = dispatcher_maps_figure(stage1, stage2, HISTORY, TITLES, GENRES, [7, 3, 9],
                                   [0.5, 0.3, 0.2])  # fmt: skip
    assert not plain.layout.shapes


def test_ranked_items_outline_and_mark_the_selected_position():
    fig = ranked_items_figure([RankedItems("gathers", ["a", "b", "c"], [3, 2, 1], highlight=2)])
    assert list(fig.data[0].marker.line.width) == [0, 0, 3]
    assert list(fig.layout.yaxis.ticktext) == ["a", "b", "▶ c"]


def test_the_planted_strip_outlines_the_selected_position():
    planted, assigned = np.array([0, 1, 1, 0]), np.array([2, 0, 0, 2])
    fig = interest_strip_figure(planted, assigned, ["I0", "I1"], list("wxyz"), position=2)
    (column,) = fig.layout.shapes
    assert (column.x0, column.x1, column.y0, column.y1) == (2.5, 3.5, -0.5, 1.5)  # position 3


def test_the_model_view_draws_every_layer_and_head_and_the_mean_and_a_click_enlarges():
    maps = np.random.default_rng(0).random((2, 3, 4, 6))  # (L, h, k, n)
    fig = model_view_figure(maps, selected=(1, None))
    heatmap, targets = fig.data  # one heatmap holds every panel: one subplot to lay out
    z = np.asarray(heatmap.z, dtype=float)
    for layer in range(2):
        for col in range(4):
            top, left = panel_origin(layer, col, 4, 6)
            panel = z[top : top + 4, left : left + 6]
            expected = maps[layer].mean(0) if col == 3 else maps[layer, col]
            np.testing.assert_allclose(panel, expected)  # the heads, then their mean
            # a click anywhere on the panel lands near a marker that says which panel it is
            points = zip(targets.x, targets.y, targets.customdata, strict=True)
            mine = [(x, y) for x, y, c in points if tuple(c) == (layer, col)]
            xs, ys = {x for x, _ in mine}, {y for _, y in mine}
            assert min(xs) == left and max(xs) == left + 5 and {top, top + 3} <= ys
    assert np.isnan(z).sum() == z.size - 2 * 4 * 4 * 6  # the rest is blank space between panels
    assert heatmap.zmin == 0 and heatmap.zmax == pytest.approx(maps.max())  # one scale for all
    assert clicked_cell({"points": [{"customdata": [1, 2]}]}) == (1, 2)
    (outline,) = fig.layout.shapes  # layer 2's mean panel
    top, left = panel_origin(1, 3, 4, 6)
    assert outline.x0 < left - 0.5 and outline.x1 > left + 5.5 and outline.y1 > top + 3.5
    stage2 = model_view_figure(maps.swapaxes(-1, -2), stage=2)
    np.testing.assert_allclose(np.asarray(stage2.data[0].z, dtype=float)[:4, :6], maps[0, 0])
    assert not stage2.layout.shapes
