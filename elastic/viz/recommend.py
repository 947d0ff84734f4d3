"""Which interests drove ELASTIC's recommendations: per recommended item, the direct
contribution of each of the k interests to its score (see `analysis.interest_contributions`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from elastic.viz.grid import square_grid
from elastic.viz.style import SIGNED_SCALE


def contribution_figure(
    contributions: np.ndarray,
    item_labels: Sequence[str],
    interest_labels: Sequence[str],
) -> go.Figure:
    """contributions (m, k) -> an m × k grid, red = pushes the item up, blue = down; the
    strongest interest of each item is outlined. customdata = [item row, interest]."""
    contributions = np.asarray(contributions, dtype=float)
    m, k = contributions.shape
    bound = float(np.abs(contributions).max()) if contributions.size else 1.0
    hover = np.array(
        [
            [
                f"<b>{item_labels[r]}</b><br>{interest_labels[j]}: {contributions[r, j]:+.2f}"
                for j in range(k)
            ]
            for r in range(m)
        ],
        dtype=object,
    )
    strongest = contributions.argmax(axis=1) if contributions.size else []
    fig = square_grid(
        contributions,
        hovertext=hover,
        x_labels=[label.split(" ·")[0] for label in interest_labels],
        y_labels=[_shorten(label) for label in item_labels],
        colorscale=SIGNED_SCALE,
        cmin=-bound,
        cmax=bound,
        cmid=0.0,
        colorbar_title="logit",
        x_title="interest (dispatcher)",
        selected_cells=[(r, int(j)) for r, j in enumerate(strongest)],
        cell_px=26,
        title="What each interest adds to each recommended item's score",
    )
    fig.data[0].marker.colorscale = SIGNED_SCALE
    fig.data[0].marker.reversescale = True  # red = positive
    return fig


def _shorten(label: str, limit: int = 34) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
