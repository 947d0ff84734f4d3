"""Cost curves of the three attention forms over the history length N, on log-log axes whose
ranges stay fixed while the sliders move (the curves move, the frame does not), with the
crossover where ELASTIC becomes the cheaper one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from elastic.viz.style import (
    MODEL_COLORS,
    MODEL_NAMES,
    SELECTED_COLOR,
    base_layout,
    panels_layout,
)

FORMS = ("sasrec-materialized", "sasrec-sdpa", "elastic")
DASH = {"sasrec-materialized": "solid", "sasrec-sdpa": "dash", "elastic": "solid"}


def n_grid(lo: int, hi: int, per_octave: int = 2) -> np.ndarray:
    """History lengths from lo to hi, `per_octave` points per doubling (log-spaced)."""
    octaves = np.log2(hi / lo)
    points = round(float(octaves) * per_octave) + 1
    return np.unique(np.round(lo * 2 ** np.linspace(0, octaves, points)).astype(int))


def find_crossover(ns: Sequence[float], baseline: Sequence[float], elastic: Sequence[float]):
    """(N*, kind): the N beyond which `elastic` stays below `baseline`, interpolated in log-log
    between grid points. kind is "cross", "always" (cheaper from the first N on) or "never"
    (not cheaper at the longest N; N* is None)."""
    ns, a, b = (np.asarray(v, dtype=float) for v in (ns, baseline, elastic))
    below = b < a
    if below.all():
        return float(ns[0]), "always"
    if not below[-1]:
        return None, "never"
    i = int(np.flatnonzero(~below)[-1])  # the last N where ELASTIC is not cheaper
    gap0 = np.log(b[i]) - np.log(a[i])  # >= 0
    gap1 = np.log(b[i + 1]) - np.log(a[i + 1])  # < 0
    t = gap0 / (gap0 - gap1)
    return float(np.exp(np.log(ns[i]) + t * (np.log(ns[i + 1]) - np.log(ns[i])))), "cross"


def _log_range(lo: float, hi: float) -> list[float]:
    return [float(np.log10(lo)), float(np.log10(hi))]


def cost_figure(
    ns: Sequence[int],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    panels: Sequence[tuple[str, str]],
    current_n: int,
    x_range: tuple[float, float],
    y_ranges: Mapping[str, tuple[float, float]],
    crossovers: Mapping[str, tuple[float | None, str]] | None = None,
    baseline: str = "sasrec-sdpa",
    title: str | None = None,
) -> go.Figure:
    """One log-log panel per (quantity, axis title) in `panels`; curves[form][quantity] holds
    one value per N in `ns`. `y_ranges[quantity]` fixes each panel's y-axis (data units);
    `crossovers[quantity]` marks where ELASTIC becomes cheaper than `baseline`; a dotted line
    marks `current_n`."""
    layout = panels_layout([label for _, label in panels])
    traces, shapes = [], []
    for i, (quantity, _label) in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        for form in FORMS:
            if form not in curves or quantity not in curves[form]:
                continue
            values = np.asarray(curves[form][quantity], dtype=float)
            traces.append(
                {
                    "type": "scatter",
                    "x": list(ns),
                    "y": np.where(values > 0, values, np.nan),  # log axes: 0 = a gap
                    "mode": "lines+markers",
                    "marker": {"size": 4},
                    "line": {"color": MODEL_COLORS[form], "dash": DASH[form], "width": 2.5},
                    "name": MODEL_NAMES[form],
                    "legendgroup": form,
                    "showlegend": i == 0,
                    "hovertemplate": f"{MODEL_NAMES[form]}<br>N = %{{x}}<br>%{{y:.3s}}"
                    "<extra></extra>",
                    **axes,
                }
            )
        cross = (crossovers or {}).get(quantity)
        if cross and cross[0] is not None and cross[1] == "cross":
            n_star = cross[0]
            base = np.asarray(curves[baseline][quantity], dtype=float)
            known = base > 0  # measured curves may have gaps
            y_star = np.exp(
                np.interp(np.log(n_star), np.log(np.asarray(ns)[known]), np.log(base[known]))
            )
            traces.append(
                {
                    "type": "scatter",
                    "x": [n_star],
                    "y": [float(y_star)],
                    "mode": "markers+text",
                    "marker": {"symbol": "star", "size": 14, "color": SELECTED_COLOR},
                    "text": [f"N* ≈ {n_star:,.0f}"],
                    "textposition": "bottom right",
                    "name": "crossover",
                    "showlegend": False,
                    "hovertemplate": f"ELASTIC is cheaper than {MODEL_NAMES[baseline]} beyond "
                    f"N ≈ {n_star:,.0f}<extra></extra>",
                    **axes,
                }
            )
        shapes.append(
            {
                "type": "line",
                "xref": f"x{suffix}",
                "yref": f"y{suffix} domain",
                "x0": current_n,
                "x1": current_n,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#64748B", "dash": "dot", "width": 1.5},
            }
        )
        layout[f"xaxis{suffix}"].update(
            type="log", range=_log_range(*x_range), title={"text": "history length N"}
        )
        layout[f"yaxis{suffix}"].update(type="log", range=_log_range(*y_ranges[quantity]))
    layout["shapes"] = shapes
    fig = go.Figure(data=traces, layout=layout)
    fig = base_layout(fig, height=380, title=title, top=40)
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.22, "x": 0})
    return fig
