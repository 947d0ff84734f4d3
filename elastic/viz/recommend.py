"""What removing each dispatcher does to ELASTIC's recommendations: per recommended item, the
change of its score and its rank when one dispatcher is knocked out (see
`interventions.knockout_effects`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from elastic.viz.grid import square_grid
from elastic.viz.interventions import NOT_RANKED, KnockoutEffects
from elastic.viz.style import SIGNED_SCALE


def knockout_figure(
    effects: KnockoutEffects,
    item_labels: Sequence[str],
    dispatcher_labels: Sequence[str],
) -> go.Figure:
    """An m × k grid: cell (item, j) = the item's score change when dispatcher j is knocked
    out, red = the item loses score without j, blue = it gains; cells where the item leaves the
    top m are outlined. The colour scale spans ± max(largest change, the list's spread), so a
    change too small to reorder the list stays pale. customdata = [item row, dispatcher]."""
    change = np.asarray(effects.score_change, dtype=float)
    m, k = change.shape
    largest = float(np.abs(change).max()) if change.size else 0.0
    bound = max(largest, effects.spread, 1e-6)
    hover = np.empty((m, k), dtype=object)
    for r in range(m):
        for j in range(k):
            after = int(effects.rank_after[r, j])
            rank = "filtered" if after == NOT_RANKED else f"{after}"
            hover[r, j] = (
                f"<b>{item_labels[r]}</b><br>without {dispatcher_labels[j]}:<br>"
                f"score {effects.scores[r]:.2f} → {effects.scores[r] + change[r, j]:.2f} "
                f"({change[r, j]:+.3f})<br>rank {r + 1} → {rank}"
            )
    left = [(r, j) for r in range(m) for j in range(k) if effects.rank_after[r, j] > m]
    fig = square_grid(
        -change,  # red = the dispatcher's removal costs the item score
        hovertext=hover,
        x_labels=[label.split(" ·")[0] for label in dispatcher_labels],
        y_labels=[_shorten(label) for label in item_labels],
        colorscale=SIGNED_SCALE,
        cmin=-bound,
        cmax=bound,
        cmid=0.0,
        colorbar_title="score lost",
        x_title="dispatcher knocked out",
        selected_cells=left,
        cell_px=26,
        title="What changes when a dispatcher is removed: each top item's score",
    )
    fig.data[0].marker.reversescale = True  # red = positive (score lost)
    return fig


def _shorten(label: str, limit: int = 34) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
