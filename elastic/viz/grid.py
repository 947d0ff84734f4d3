"""Clickable grids drawn as square scatter markers.

`go.Heatmap` returns no click selections in Streamlit (`st.plotly_chart(on_select=...)` reports
points of scatter-like traces only), so every grid the user can click is a scatter of square
markers, one per cell. Each marker carries `customdata = [row, col, *extra]`, so a page reads
the clicked cell from the selection event without knowing which trace was hit. The figures
leave `clickmode` and `dragmode` unset on purpose: Streamlit sets them for
`selection_mode="points"` (a drag mode of "select" would turn point clicks off).

`stack_grids` draws several grids over one shared x-axis (the stage-1 and stage-2 maps, position
by position), so that hovering a column draws one spike line through all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from elastic.viz.style import SELECTED_COLOR, base_layout

# the plot area Streamlit gives a full-width chart on a laptop screen, in pixels
PLOT_WIDTH_PX = 760
MIN_CELL_PX, MAX_CELL_PX = 4, 34


def cell_size(num_cols: int, width_px: int = PLOT_WIDTH_PX) -> int:
    """Marker size in pixels so that `num_cols` squares fill the width."""
    return int(np.clip(width_px / max(num_cols, 1) * 0.9, MIN_CELL_PX, MAX_CELL_PX))


def grid_height(num_rows: int, cell_px: int, *, min_row_px: int = 22, extra_px: int = 70) -> int:
    """Figure height: rows at least `min_row_px` apart, so a row is easy to click."""
    return int(num_rows * max(cell_px * 1.1, min_row_px) + extra_px)


def square_grid(
    values: np.ndarray,
    *,
    hovertext: np.ndarray | None = None,
    customdata: np.ndarray | None = None,
    x_labels: Sequence | None = None,
    y_labels: Sequence[str] | None = None,
    colorscale: str | list = "Tealgrn",
    cmin: float | None = None,
    cmax: float | None = None,
    cmid: float | None = None,
    colorbar_title: str = "",
    x_title: str = "",
    y_title: str = "",
    selected_rows: Sequence[int] = (),
    selected_cols: Sequence[int] = (),
    selected_cells: Sequence[tuple[int, int]] = (),
    cell_px: int | None = None,
    title: str | None = None,
    height: int | None = None,
) -> go.Figure:
    """values (R, C) -> a figure with one square marker per cell, coloured by value.

    Row r is drawn at y = r (row 0 on top), column c at x = x_labels[c] (default c). The one
    trace holds the cells; `selected_rows` (whole rows), `selected_cols` (whole columns, dashed)
    and `selected_cells` ((r, c) pairs) are outlined by rectangles in the layout, which never
    intercept a click.
    """
    values = np.asarray(values, dtype=float)
    rows, cols = values.shape
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # (R, C)
    xs = np.asarray(x_labels if x_labels is not None else np.arange(cols))
    if customdata is None:
        customdata = np.stack([rr, cc], axis=-1)  # (R, C, 2)
    px_ = cell_px or cell_size(cols)
    cells = go.Scatter(
        x=xs[cc.ravel()],
        y=rr.ravel(),
        mode="markers",
        marker=dict(
            symbol="square",
            size=px_,
            color=values.ravel(),
            colorscale=colorscale,
            cmin=cmin,
            cmax=cmax,
            cmid=cmid,
            colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=12),
            line=dict(width=0),
        ),
        # plain lists: a numpy array would travel as a typed array, and a clicked point would
        # come back with its customdata as an index -> value object
        customdata=np.asarray(customdata).reshape(rows * cols, -1).tolist(),
        hovertext=None if hovertext is None else np.asarray(hovertext).ravel(),
        hoverinfo="text" if hovertext is not None else "x+y",
        name="cells",
    )
    fig = go.Figure(cells)
    # numeric x: outline in data units; categorical x: in category positions (0, 1, ...)
    numeric = np.issubdtype(xs.dtype, np.number)
    x_at = (lambda c: float(xs[c])) if numeric else float
    step = float(np.median(np.diff(xs))) if numeric and cols > 1 else 1.0
    outline = dict(
        type="rect",
        line=dict(color=SELECTED_COLOR, width=2),
        fillcolor="rgba(0,0,0,0)",
        layer="above",
    )
    half = px_ / 2 + 2  # a cell's outline hugs its marker, in pixels around the cell's centre
    fig.update_layout(
        shapes=[
            dict(
                outline, x0=x_at(0) - step / 2, x1=x_at(cols - 1) + step / 2, y0=r - 0.5, y1=r + 0.5
            )
            for r in selected_rows
        ]
        + [
            dict(
                outline,
                line=dict(color=SELECTED_COLOR, width=1.5, dash="dot"),
                x0=x_at(c) - step / 2,
                x1=x_at(c) + step / 2,
                y0=-0.5,
                y1=rows - 0.5,
            )
            for c in selected_cols
        ]
        + [
            dict(
                outline,
                xsizemode="pixel",
                xanchor=x_at(c),
                x0=-half,
                x1=half,
                ysizemode="pixel",
                yanchor=r,
                y0=-half,
                y1=half,
            )
            for r, c in selected_cells
        ]
    )
    fig.update_yaxes(
        title=y_title,
        autorange="reversed",
        tickmode="array",
        tickvals=list(range(rows)),
        ticktext=list(y_labels) if y_labels is not None else None,
        showgrid=False,
        zeroline=False,
        range=None,
    )
    fig.update_xaxes(title=x_title, showgrid=False, zeroline=False)
    return base_layout(fig, height=height or grid_height(rows, px_), title=title)


# the vertical line a hover draws through every panel of a stacked figure
SPIKES = dict(
    showspikes=True,
    spikemode="across",  # across every y-axis anchored to this x-axis: all the panels
    spikesnap="data",
    spikedash="dot",
    spikethickness=1,
    spikecolor="#64748B",
)


def stack_grids(figures: Sequence[go.Figure], gap_px: int = 48) -> go.Figure:
    """Figures made by `square_grid` (one x-axis, one y-axis each, the same columns), drawn top
    to bottom over one shared x-axis: a column is the same position in every panel, and hovering
    a cell draws a spike line through all of them (Plotly's `spikemode="across"` spans every
    y-axis anchored to the x-axis). Each figure's title goes over its panel, its colour bar
    beside it, its outlines onto its axes; panel heights keep each figure's row spacing."""
    figures = list(figures)
    plots = [max(int(f.layout.height or 0) - 70, 40) for f in figures]  # grid_height's extra
    total = sum(plots) + gap_px * (len(figures) - 1)
    layout: dict = {"annotations": [], "shapes": []}
    traces = []
    top = 1.0
    for i, fig in enumerate(figures):
        suffix = "" if i == 0 else str(i + 1)
        domain = [max(top - plots[i] / total, 0.0), top]
        top = domain[0] - gap_px / total
        layout[f"yaxis{suffix}"] = fig.layout.yaxis.to_plotly_json() | {
            "domain": domain,
            "anchor": "x",
        }
        for trace in fig.data:
            trace = trace.to_plotly_json() | {"xaxis": "x", "yaxis": f"y{suffix}"}
            bar = trace.get("marker", {}).get("colorbar")
            if bar is not None:
                bar.update(y=sum(domain) / 2, len=domain[1] - domain[0], yanchor="middle")
            traces.append(trace)
        for shape in fig.layout.shapes:
            layout["shapes"].append(shape.to_plotly_json() | {"xref": "x", "yref": f"y{suffix}"})
        title = fig.layout.title.text
        if title:
            layout["annotations"].append(
                {
                    "text": title,
                    "x": 0,
                    "y": domain[1],
                    "xref": "paper",
                    "yref": "paper",
                    "xanchor": "left",
                    "yanchor": "bottom",
                    "yshift": 4,
                    "showarrow": False,
                    "font": {"size": 15},
                }
            )
    layout["xaxis"] = figures[-1].layout.xaxis.to_plotly_json() | SPIKES | {
        "anchor": f"y{len(figures) if len(figures) > 1 else ''}"
    }
    stacked = go.Figure(data=traces, layout=layout)
    return base_layout(stacked, height=total + 70 + 40, top=40)


def clicked_customdata(selection: dict | None) -> list[int] | None:
    """The customdata [row, col, *extra] of the first clicked point that has one, or None."""
    if not selection:
        return None
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, dict):  # {"0": row, "1": col, ...} from a typed array
            custom = [custom[k] for k in sorted(custom, key=int)]
        if custom is not None and len(custom) >= 2:
            return [int(c) for c in custom]
    return None


def clicked_cell(selection: dict | None) -> tuple[int, int] | None:
    """(row, col) of the first point of a Streamlit plotly selection event, or None."""
    custom = clicked_customdata(selection)
    return None if custom is None else (custom[0], custom[1])
