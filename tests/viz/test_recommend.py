"""Which interests drove ELASTIC's recommendations."""

from __future__ import annotations

import numpy as np

from elastic.viz.recommend import contribution_figure


def test_contribution_grid_outlines_each_items_strongest_interest():
    contributions = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    fig = contribution_figure(
        contributions, ["item a", "item b"], ["D1 · slot 4", "D2 · slot 9", "D3 · slot 1"]
    )
    (cells,) = fig.data
    np.testing.assert_allclose(cells.marker.color, contributions.ravel())
    assert cells.marker.cmid == 0.0
    assert cells.marker.cmin == -3.0 and cells.marker.cmax == 3.0
    first, second = fig.layout.shapes  # item 0's strongest is D2, item 1's is D1
    assert (first.xanchor, first.yanchor) == (1, 0)
    assert (second.xanchor, second.yanchor) == (0, 1)
    assert list(cells.x[:3]) == ["D1", "D2", "D3"]
    assert list(fig.layout.yaxis.ticktext) == ["item a", "item b"]
