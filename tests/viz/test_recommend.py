"""What removing each dispatcher does to ELASTIC's recommendations."""

from __future__ import annotations

import numpy as np

from elastic.viz.interventions import KnockoutEffects
from elastic.viz.recommend import knockout_figure


def _effects(score_change, rank_after, scores=(3.0, 2.5)) -> KnockoutEffects:
    score_change = np.asarray(score_change, dtype=float)
    k = score_change.shape[1]
    return KnockoutEffects(
        items=np.array([7, 9]),
        scores=np.asarray(scores),
        score_change=score_change,
        rank_after=np.asarray(rank_after),
        replaced=np.zeros(k, dtype=int),
        target_rank=4,
        target_rank_after=np.full(k, 4),
        slot_ids=np.arange(k),
        gates=np.full(k, 1 / k),
    )


def test_knockout_grid_colours_the_score_lost_and_outlines_items_that_leave():
    effects = _effects([[-0.2, 1.0, 0.0], [-3.0, 0.0, 0.1]], [[1, 3, 1], [2, 2, 2]])
    fig = knockout_figure(effects, ["item a", "item b"], ["D1 · slot 0", "D2 · slot 1", "D3"])
    (cells,) = fig.data
    np.testing.assert_allclose(cells.marker.color, -effects.score_change.ravel())  # score lost
    assert cells.marker.cmid == 0.0
    assert cells.marker.cmin == -3.0 and cells.marker.cmax == 3.0  # the largest change
    (left,) = fig.layout.shapes  # item a leaves the top 2 without D2
    assert (left.xanchor, left.yanchor) == (1, 0)
    assert list(cells.x[:3]) == ["D1", "D2", "D3"]
    assert list(fig.layout.yaxis.ticktext) == ["item a", "item b"]
    assert "score 3.00 → 4.00 (+1.000)" in cells.hovertext[1]
    assert "rank 1 → 3" in cells.hovertext[1]
    assert "rank 2 → 2" in cells.hovertext[3]


def test_a_change_too_small_to_reorder_the_list_stays_pale():
    effects = _effects([[0.01, -0.02], [0.0, 0.005]], [[1, 1], [2, 2]], scores=(3.0, 1.0))
    cells = knockout_figure(effects, ["a", "b"], ["D1", "D2"]).data[0]
    assert cells.marker.cmax == 2.0  # the list's spread, not the largest change (0.02)
    assert not knockout_figure(effects, ["a", "b"], ["D1", "D2"]).layout.shapes
