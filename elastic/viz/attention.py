"""Dispatcher attention: the k × N stage-1 weights (each dispatcher gathers over the history)
and the stage-2 weights (each history token reads the k interests), on one shared x-axis.

Stage 2 is N × k in the model; it is drawn transposed (interests down, history across) so the
two grids line up position by position: a stage-1 row sums to 1 with the weight the dispatcher
keeps on itself (its sink), a stage-2 column sums to 1. `dispatcher_maps_figure` stacks both
over one x-axis, so hovering a position draws a line through both. A selected position (a
history index) is outlined in every view that shows it: both grids, the ranked items
(`RankedItems.highlight`) and the planted-interest strip. `model_view_figure` draws every layer
and head at once, small, as BertViz's model view does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from elastic.viz.grid import square_grid, stack_grids
from elastic.viz.style import (
    SELECTED_COLOR,
    WEIGHT_SCALE,
    base_layout,
    category_color,
    panels_layout,
)


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
    position: int | None = None,
) -> go.Figure:
    """stage1 (k, n) weights of dispatcher j over history position t; a click on a cell picks j
    and t.
    `title` replaces the default one (the app titles the maps of an intervention); `position`
    (an index into the history) outlines that column, and its cell in the selected row."""
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
        **_selection(selected, position),
        title=title
        or "Stage 1 — each dispatcher gathers over the history (a row and its sink sum to 1)",
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
    position: int | None = None,
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
        **_selection(selected, position),
        title=title or "Stage 2 — each position reads the k interests (each column sums to 1)",
    )


def _selection(selected: int | None, position: int | None) -> dict:
    """square_grid's outlines for a selected dispatcher row and history position."""
    return {
        "selected_rows": () if selected is None else (selected,),
        "selected_cols": () if position is None else (position,),
        "selected_cells": () if None in (selected, position) else ((selected, position),),
    }


def dispatcher_maps_figure(
    stage1: np.ndarray,
    stage2: np.ndarray,
    history: np.ndarray,
    titles: Sequence[str],
    genres: Sequence[str] | None,
    slot_ids: Sequence[int],
    gates: Sequence[float],
    selected: int | None = None,
    position: int | None = None,
    titles_of_stages: tuple[str | None, str | None] = (None, None),
) -> go.Figure:
    """Stage 1 (k, n) over stage 2 (n, k, drawn transposed) on one shared x-axis: a column is one
    history position in both, and hovering it draws a line through both. The cells of both carry
    customdata [dispatcher, position, item], so a click on either reads the same way."""
    one = stage1_figure(stage1, history, titles, genres, slot_ids, gates, selected,
                        titles_of_stages[0], position)  # fmt: skip
    two = stage2_figure(stage2, history, titles, genres, slot_ids, gates, selected,
                        titles_of_stages[1], position)  # fmt: skip
    return stack_grids([one, two])


@dataclass
class RankedItems:
    """One panel of ranked items: bars top-down, the first item on top."""

    title: str
    labels: Sequence[str]
    values: Sequence[float]
    x_title: str = ""
    colors: Sequence[str] | None = None
    hover: Sequence[str] | None = None
    highlight: int | None = None  # the bar of the selected history position: outlined, marked


def ranked_items_figure(panels: Sequence[RankedItems]) -> go.Figure:
    """Horizontal bars, one panel per `RankedItems`, side by side in one figure (one chart for
    the browser to lay out instead of one per list): gathered items, pointed items."""
    layout = panels_layout([panel.title for panel in panels], gap=0.22)
    traces = []
    for i, panel in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        labels, values = list(panel.labels), list(panel.values)
        marker: dict = {"color": list(panel.colors) if panel.colors else "#0F766E"}
        if panel.highlight is not None:
            marker["line"] = {
                "color": SELECTED_COLOR,
                "width": [3 if r == panel.highlight else 0 for r in range(len(labels))],
            }
            labels[panel.highlight] = "▶ " + labels[panel.highlight]
        traces.append(
            {
                "type": "bar",
                "x": values,
                "y": list(range(len(labels))),
                "orientation": "h",
                "marker": marker,
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
    position: int | None = None,
) -> go.Figure:
    """Two rows over the history: each item's planted interest, and the dispatcher that gathers
    it most, coloured by the planted interest that dispatcher gathers most often — so equal
    colours in a column mean the dispatcher recovered the planted interest. One trace (and one
    legend entry) per planted interest, in the colour-blind-safe categorical palette.
    `position` (a history index) outlines that column."""
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
    if position is not None:
        fig.add_shape(
            type="rect",
            x0=position + 0.5,
            x1=position + 1.5,
            y0=-0.5,
            y1=1.5,
            line=dict(color=SELECTED_COLOR, width=2),
            fillcolor="rgba(0,0,0,0)",
            layer="above",
        )
    fig = base_layout(fig, height=190, title=None)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0, title_text="planted interest:"),
        margin_t=40,
    )
    return fig


def model_view_figure(
    maps: np.ndarray,
    stage: int = 1,
    selected: tuple[int, int | None] | None = None,
    across: int = 8,
) -> go.Figure:
    """Every layer and head at once, small (BertViz's model view): one panel per layer (rows)
    and head (columns), plus the mean of the heads (the last column), each a dispatchers ×
    positions map on one colour scale shared by all panels, so a faint head is faint.

    maps: stage 1 (L, h, k, n) or stage 2 (L, h, n, k, drawn transposed). `selected` = (layer,
    head), head None for the mean, is outlined. All panels are one heatmap on one pair of axes,
    blank (NaN) rows and columns between them: one subplot instead of L·(h+1) keeps the browser's
    layout work small. A heatmap returns no click in Streamlit, so each panel is covered by a
    lattice of invisible markers (`across` per row, at its top, middle and bottom) carrying
    customdata [layer, column] (column h = the mean): `grid.clicked_cell` reads a click on a
    panel as (layer, column). `panel_origin` gives a panel's top-left cell.
    """
    maps = np.asarray(maps, dtype=float)
    if stage == 2:
        maps = maps.swapaxes(-1, -2)  # (L, h, k, n)
    num_layers, heads, k, n = maps.shape
    panels = np.concatenate([maps, maps.mean(1, keepdims=True)], axis=1)  # (L, h+1, k, n)
    cols = heads + 1
    gap_x, gap_y = _model_view_gaps(k, n)
    z = np.full((num_layers * (k + gap_y) - gap_y, cols * (n + gap_x) - gap_x), np.nan)
    annotations, lattice_x, lattice_y, custom, hover = [], [], [], [], []
    spots = np.unique(np.linspace(0, n - 1, min(across, n)).round().astype(int))
    rows_at = sorted({0, (k - 1) // 2, k - 1})
    for layer in range(num_layers):
        for col in range(cols):
            top, left = panel_origin(layer, col, k, n)
            z[top : top + k, left : left + n] = panels[layer, col]
            name = "mean of heads" if col == heads else f"head {col + 1}"
            label = f"layer {layer + 1} · {name}"
            annotations.append(
                {
                    "text": label,
                    "x": left - 0.5,
                    "y": top - 0.5,
                    "xanchor": "left",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": 12},
                }
            )
            for r in rows_at:
                for c in spots:
                    lattice_x.append(int(left + c))
                    lattice_y.append(int(top + r))
                    custom.append([layer, col])
                    hover.append(f"{label}<br>click to enlarge")
    traces = [
        {
            "type": "heatmap",
            "z": z,  # NaN: a blank cell between panels
            "colorscale": WEIGHT_SCALE,
            "zmin": 0.0,
            "zmax": float(panels.max()) if panels.size else 1.0,
            "colorbar": {"title": {"text": "weight", "side": "right"}, "thickness": 10},
            "hoverinfo": "skip",
            "name": "panels",
        },
        {
            "type": "scatter",
            "x": lattice_x,
            "y": lattice_y,
            "mode": "markers",
            "marker": {"symbol": "square", "size": 10, "opacity": 0},
            "customdata": custom,
            "hovertext": hover,
            "hoverinfo": "text",
            "name": "click targets",
        },
    ]
    shapes = []
    if selected is not None:
        layer, head = selected
        top, left = panel_origin(layer, heads if head is None else head, k, n)
        shapes.append(
            {
                "type": "rect",
                "x0": left - 0.5 - gap_x / 3,
                "x1": left + n - 0.5 + gap_x / 3,
                "y0": top - 0.6,
                "y1": top + k - 0.4,
                "line": {"color": SELECTED_COLOR, "width": 2.5},
                "layer": "above",
            }
        )
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False}
    layout = {
        "annotations": annotations,
        "shapes": shapes,
        "xaxis": {"range": [-0.5, z.shape[1] - 0.5], **hidden},
        "yaxis": {"range": [z.shape[0] - 0.5, -1.5 - gap_y], **hidden},
    }
    fig = go.Figure(data=traces, layout=layout)
    what = "gathers (stage 1)" if stage == 1 else "is read by each position (stage 2)"
    return base_layout(
        fig,
        height=num_layers * (max(6 * k, 48) + 24) + 60,
        title=f"Every layer and head: what each dispatcher {what} — click a panel to enlarge it",
    )


def _model_view_gaps(k: int, n: int) -> tuple[int, int]:
    """(blank columns between heads, blank rows between layers): room for a panel's label."""
    return max(2, n // 25), max(3, (k + 1) // 2)


def panel_origin(layer: int, column: int, k: int, n: int) -> tuple[int, int]:
    """(row, column) of the top-left cell of panel (layer, column) in `model_view_figure`."""
    gap_x, gap_y = _model_view_gaps(k, n)
    return layer * (k + gap_y), column * (n + gap_x)
