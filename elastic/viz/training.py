"""Live training curves of ELASTIC and SASRec side by side: the loss (every batch, and each
epoch's mean) and a validation metric per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from elastic.viz.style import MODEL_COLORS, MODEL_NAMES, base_layout, panels_layout


def training_figure(
    histories: Mapping[str, Sequence[Mapping]],
    batch_losses: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    metric: str = "NDCG@10",
    max_epochs: int | None = None,
    max_batch_points: int = 400,
) -> go.Figure:
    """histories: model -> the trainer's per-epoch entries ({"epoch", "train_loss", "valid"});
    batch_losses: model -> (epoch as a fraction, loss) per batch, thinned to at most
    `max_batch_points` (every m-th, the last kept) so a long run stays cheap to redraw. Both
    x-axes are epochs, fixed to [0, max_epochs] when given so the curves grow into a frame that
    does not move."""
    layout = panels_layout(
        ["training loss (cross-entropy)", f"validation {metric} (full ranking)"], gap=0.1
    )
    traces = []
    for name, history in histories.items():
        color = MODEL_COLORS.get(name, "#475569")
        label = MODEL_NAMES.get(name, name)
        if batch_losses and batch_losses.get(name):
            points = list(batch_losses[name])
            stride = -(-len(points) // max_batch_points)
            points = points[::-1][::stride][::-1]  # every stride-th, counted from the last
            xs, ys = zip(*points, strict=True)
            traces.append(
                {
                    "type": "scatter",
                    "x": list(xs),
                    "y": list(ys),
                    "mode": "lines",
                    "line": {"color": color, "width": 1},
                    "opacity": 0.35,
                    "name": f"{label} (batches)",
                    "hovertemplate": f"{label}<br>epoch %{{x:.2f}}<br>loss %{{y:.3f}}"
                    "<extra></extra>",
                }
            )
        traces.append(
            {
                "type": "scatter",
                "x": [entry["epoch"] for entry in history],
                "y": [entry["train_loss"] for entry in history],
                "mode": "lines+markers",
                "line": {"color": color, "width": 2},
                "name": label,
                "legendgroup": name,
                "hovertemplate": f"{label}<br>epoch %{{x}}<br>mean loss %{{y:.3f}}<extra></extra>",
            }
        )
        validated = [entry for entry in history if entry.get("valid")]
        traces.append(
            {
                "type": "scatter",
                "x": [entry["epoch"] for entry in validated],
                "y": [entry["valid"][metric] for entry in validated],
                "mode": "lines+markers",
                "line": {"color": color, "width": 2},
                "name": label,
                "legendgroup": name,
                "showlegend": False,
                "hovertemplate": f"{label}<br>epoch %{{x}}<br>{metric} %{{y:.4f}}<extra></extra>",
                "xaxis": "x2",
                "yaxis": "y2",
            }
        )
    for axis in ("xaxis", "xaxis2"):
        layout[axis]["title"] = {"text": "epoch"}
        if max_epochs:
            layout[axis]["range"] = [0, max_epochs + 0.2]
    fig = base_layout(go.Figure(data=traces, layout=layout), height=320, top=40)
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.25, "x": 0})
    return fig
