"""Dispatcher attention: the k × N stage-1 weights (each dispatcher gathers over the history)
and the stage-2 weights (each history token reads the k interests), on one shared x-axis.

Stage 2 is N × k in the model; it is drawn transposed (interests down, history across) so the
two grids line up position by position: a stage-1 row sums to 1, a stage-2 column sums to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from elastic.viz.grid import square_grid
from elastic.viz.style import WEIGHT_SCALE, base_layout, category_color, panels_layout


def dispatcher_labels(slot_ids: Sequence[int], gates: Sequence[float]) -> list[str]:
    """Row labels 'D1 · slot 37 (21%)': dispatcher, its memory slot and its gate."""
    return [
        f"D{j + 1} · slot {int(s)} ({g:.0%})"
        for j, (s, g) in enumerate(zip(slot_ids, gates, strict=True))
    ]


def _hover(
    stage: str, weights: np.ndarray, titles: Sequence[str], genres: Sequence[str] | None
) -> np.ndarray:
    k, n = weights.shape
    text = np.empty((k, n), dtype=object)
    for j in range(k):
        for t in range(n):
            genre = f"<br>{genres[t]}" if genres is not None and genres[t] else ""
            verb = "gathers" if stage == "stage1" else "is read by"
            text[j, t] = (
                f"<b>{titles[t]}</b>{genre}<br>position {t + 1} of {n} "
                f"({n - 1 - t} before the last)<br>D{j + 1} {verb} it: {weights[j, t]:.3f}"
            )
    return text


def _customdata(k: int, history: np.ndarray) -> np.ndarray:
    """(k, n, 3): [dispatcher, position, item id] per cell."""
    n = len(history)
    rows, cols = np.meshgrid(np.arange(k), np.arange(n), indexing="ij")
    items = np.broadcast_to(np.asarray(history)[None, :], (k, n))
    return np.stack([rows, cols, items], axis=-1)


def stage1_figure(
    stage1: np.ndarray,
    history: np.ndarray,
    titles: Sequence[str],
    genres: Sequence[str] | None,
    slot_ids: Sequence[int],
    gates: Sequence[float],
    selected: int | None = None,
    title: str | None = None,
) -> go.Figure:
    """stage1 (k, n) weights of dispatcher j over history position t; click a row to pick j.
    `title` replaces the default one (the app titles the maps of an intervention)."""
    stage1 = np.asarray(stage1)
    k, n = stage1.shape
    return square_grid(
        stage1,
        hovertext=_hover("stage1", stage1, titles, genres),
        customdata=_customdata(k, history),
        x_labels=np.arange(1, n + 1),
        y_labels=dispatcher_labels(slot_ids, gates),
        colorscale=WEIGHT_SCALE,
        cmin=0.0,
        cmax=float(stage1.max()) if stage1.size else 1.0,
        colorbar_title="weight",
        x_title="history position (oldest → most recent)",
        selected_rows=() if selected is None else (selected,),
        title=title or "Stage 1 — each dispatcher gathers over the history (each row sums to 1)",
    )


def stage2_figure(
    stage2: np.ndarray,
    history: np.ndarray,
    titles: Sequence[str],
    genres: Sequence[str] | None,
    slot_ids: Sequence[int],
    gates: Sequence[float],
    selected: int | None = None,
    title: str | None = None,
) -> go.Figure:
    """stage2 (n, k) weights of token t over the k interests, drawn as (k, n)."""
    weights = np.asarray(stage2).T  # (k, n)
    k, n = weights.shape
    return square_grid(
        weights,
        hovertext=_hover("stage2", weights, titles, genres),
        customdata=_customdata(k, history),
        x_labels=np.arange(1, n + 1),
        y_labels=dispatcher_labels(slot_ids, gates),
        colorscale=WEIGHT_SCALE,
        cmin=0.0,
        cmax=float(weights.max()) if weights.size else 1.0,  # contrast; the bar gives the scale
        colorbar_title="weight",
        x_title="history position (oldest → most recent)",
        selected_rows=() if selected is None else (selected,),
        title=title or "Stage 2 — each position reads the k interests (each column sums to 1)",
    )


@dataclass
class RankedItems:
    """One panel of ranked items: bars top-down, the first item on top."""

    title: str
    labels: Sequence[str]
    values: Sequence[float]
    x_title: str = ""
    colors: Sequence[str] | None = None
    hover: Sequence[str] | None = None


def ranked_items_figure(panels: Sequence[RankedItems]) -> go.Figure:
    """Horizontal bars, one panel per `RankedItems`, side by side in one figure (one chart for
    the browser to lay out instead of one per list): gathered items, pointed items."""
    layout = panels_layout([panel.title for panel in panels], gap=0.22)
    traces = []
    for i, panel in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        labels, values = list(panel.labels), list(panel.values)
        traces.append(
            {
                "type": "bar",
                "x": values,
                "y": list(range(len(labels))),
                "orientation": "h",
                "marker": {"color": list(panel.colors) if panel.colors else "#0F766E"},
                "hovertext": list(panel.hover) if panel.hover else labels,
                "hovertemplate": f"%{{hovertext}}<br>{panel.x_title or 'value'}: %{{x:.3g}}"
                "<extra></extra>",
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
            }
        )
        layout[f"yaxis{suffix}"].update(
            tickmode="array",
            tickvals=list(range(len(labels))),
            ticktext=[_shorten(label) for label in labels],
            autorange="reversed",
        )
        layout[f"xaxis{suffix}"]["title"] = {"text": panel.x_title}
    rows = max((len(panel.labels) for panel in panels), default=1)
    fig = go.Figure(data=traces, layout=layout)
    return base_layout(fig, height=80 + 24 * max(rows, 1), top=40)


def _shorten(label: str, limit: int = 38) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def interest_strip_figure(
    planted: np.ndarray,
    assigned: np.ndarray,
    interest_names: Sequence[str],
    titles: Sequence[str],
) -> go.Figure:
    """Two rows over the history: each item's planted interest, and the dispatcher that gathers
    it most, coloured by the planted interest that dispatcher gathers most often — so equal
    colours in a column mean the dispatcher recovered the planted interest. One trace (and one
    legend entry) per planted interest, in the colour-blind-safe categorical palette."""
    planted = np.asarray(planted)
    assigned = np.asarray(assigned)
    n = planted.size
    majority = {
        int(j): int(np.bincount(planted[assigned == j]).argmax()) for j in np.unique(assigned)
    }
    rows = [
        ("planted interest", planted, [interest_names[g] for g in planted]),
        (
            "strongest dispatcher",
            np.array([majority[int(j)] for j in assigned]),
            [f"D{int(j) + 1} (mostly {interest_names[majority[int(j)]]})" for j in assigned],
        ),
    ]
    positions = np.arange(1, n + 1)
    fig = go.Figure()
    for g in np.unique(np.concatenate([row[1] for row in rows])):
        x, y, hover = [], [], []
        for r, (_name, colour_index, text) in enumerate(rows):
            for t in np.flatnonzero(colour_index == g):
                x.append(int(positions[t]))
                y.append(r)
                hover.append(f"<b>{titles[t]}</b><br>{text[t]}")
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers",
                marker=dict(
                    symbol="square",
                    size=max(4, min(20, int(700 / max(n, 1)))),
                    color=category_color(g),
                ),
                name=interest_names[int(g)],
                hovertext=hover,
                hoverinfo="text",
            )
        )
    fig.update_yaxes(
        tickmode="array",
        tickvals=[0, 1],
        ticktext=[name for name, _, _ in rows],
        autorange="reversed",
        range=[-0.6, 1.6],
    )
    fig.update_xaxes(title="history position (oldest → most recent)", showgrid=False)
    fig = base_layout(fig, height=190, title=None)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0, title_text="planted interest:"),
        margin_t=40,
    )
    return fig
