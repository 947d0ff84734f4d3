"""Clickable square-marker grids."""

from __future__ import annotations

import numpy as np

from elastic.viz.grid import (
    cell_size,
    clicked_cell,
    clicked_customdata,
    grid_height,
    square_grid,
    stack_grids,
)


def test_one_square_marker_per_cell_with_row_and_column_in_customdata():
    values = np.arange(6.0).reshape(2, 3)
    fig = square_grid(values)
    cells = fig.data[0]
    assert cells.type == "scatter"
    assert cells.marker.symbol == "square"
    assert len(cells.x) == 6
    np.testing.assert_array_equal(cells.marker.color, values.ravel())
    custom = np.asarray(cells.customdata)
    assert custom[:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # rows
    assert custom[:, 1].tolist() == [0, 1, 2, 0, 1, 2]  # columns
    assert fig.layout.dragmode is None  # Streamlit sets it; "select" would disable clicks


def test_selected_rows_and_cells_are_outlined_by_rectangles():
    fig = square_grid(np.zeros((3, 4)), selected_rows=[1], selected_cells=[(2, 3)], cell_px=20)
    assert len(fig.data) == 1  # outlines never intercept a click
    row, cell = fig.layout.shapes
    assert (row.x0, row.x1, row.y0, row.y1) == (-0.5, 3.5, 0.5, 1.5)
    # a cell's outline is centred on the cell and hugs its 20-pixel marker
    assert (cell.xanchor, cell.yanchor) == (3, 2)
    assert (cell.xsizemode, cell.ysizemode) == ("pixel", "pixel")
    assert (cell.x0, cell.x1, cell.y0, cell.y1) == (-12, 12, -12, 12)


def test_outlines_follow_numeric_and_categorical_x_labels():
    numeric = square_grid(np.zeros((2, 3)), x_labels=[1, 2, 3], selected_rows=[0])
    assert (numeric.layout.shapes[0].x0, numeric.layout.shapes[0].x1) == (0.5, 3.5)
    named = square_grid(np.zeros((1, 3)), x_labels=["a", "b", "c"], selected_cells=[(0, 2)])
    assert named.layout.shapes[0].xanchor == 2  # category position


def test_x_labels_and_reversed_rows():
    fig = square_grid(np.ones((2, 2)), x_labels=[10, 20], y_labels=["a", "b"])
    assert list(fig.data[0].x) == [10, 20, 10, 20]
    assert fig.layout.yaxis.autorange == "reversed"
    assert list(fig.layout.yaxis.ticktext) == ["a", "b"]


def test_cell_size_shrinks_with_columns_within_bounds():
    assert cell_size(4) == 34
    assert cell_size(1000) == 4
    assert cell_size(100) < cell_size(50)
    assert grid_height(8, 10) > grid_height(4, 10)


def test_clicked_cell_reads_the_first_point_with_customdata():
    selection = {"points": [{"x": 1, "y": 2}, {"customdata": [3, 4, 99]}], "point_indices": [0]}
    assert clicked_cell(selection) == (3, 4)
    as_object = {"points": [{"customdata": {"0": 5, "1": 6, "2": 7}}]}
    assert clicked_cell(as_object) == (5, 6)
    assert clicked_cell({"points": []}) is None
    assert clicked_cell(None) is None


def test_a_selected_column_is_outlined_across_every_row():
    fig = square_grid(np.zeros((3, 4)), x_labels=[1, 2, 3, 4], selected_cols=[2])
    (column,) = fig.layout.shapes
    assert (column.x0, column.x1, column.y0, column.y1) == (2.5, 3.5, -0.5, 2.5)
    assert column.line.dash == "dot"


def test_stacked_grids_share_one_x_axis_and_a_hover_line_through_all_of_them():
    top = square_grid(np.zeros((2, 5)), x_labels=[1, 2, 3, 4, 5], selected_rows=[1],
                      title="first", cell_px=10)  # fmt: skip
    bottom = square_grid(np.ones((3, 5)), x_labels=[1, 2, 3, 4, 5], selected_cells=[(2, 4)],
                         title="second", cell_px=10)  # fmt: skip
    fig = stack_grids([top, bottom])
    first, second = fig.data
    assert (first.xaxis, first.yaxis) == ("x", "y")
    assert (second.xaxis, second.yaxis) == ("x", "y2")  # one x-axis: a column is one position
    assert fig.layout.xaxis.spikemode == "across" and fig.layout.xaxis.showspikes
    assert fig.layout.xaxis.anchor == "y2"  # ticks under the bottom panel
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis2.domain[1]  # top above bottom
    assert fig.layout.yaxis.autorange == "reversed" == fig.layout.yaxis2.autorange
    row, cell = fig.layout.shapes
    assert (row.yref, cell.yref) == ("y", "y2") and (cell.yanchor, cell.xanchor) == (2, 5)
    assert [a.text for a in fig.layout.annotations] == ["first", "second"]
    bar_top, bar_bottom = first.marker.colorbar, second.marker.colorbar
    assert bar_top.y > bar_bottom.y  # each colour bar beside its panel
    assert fig.layout.height > top.layout.height


def test_clicked_customdata_gives_every_field():
    assert clicked_customdata({"points": [{"customdata": [1, 2, 42, 7]}]}) == [1, 2, 42, 7]
    assert clicked_customdata({"points": [{"customdata": {"0": 1, "1": 0, "2": 9}}]}) == [1, 0, 9]
    assert clicked_customdata({"points": [{"x": 1}]}) is None
