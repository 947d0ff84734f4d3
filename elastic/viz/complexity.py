"""Cost curves of the three attention forms over the history length N, on log-log axes whose
ranges stay fixed while the sliders move (the curves move, the frame does not), with the
crossover where ELASTIC becomes the cheaper one. Hovering a point breaks its value into the
terms of its formula (`elastic.complexity.flops_terms`, `peak_bytes_terms`), and slope-1 and
slope-2 guide lines (∝ N, ∝ N²) show which growth each curve takes once N is large."""

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


# What a panel's quantity counts: FLOPs (SI prefixes), bytes (binary prefixes: "10B" would read
# as ten bytes), or milliseconds.
UNITS = ("flops", "bytes", "ms")
SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
BINARY_PREFIXES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
MAX_TICKS = 8


def format_quantity(value: float, unit: str) -> str:
    """A value with its unit, 3 significant digits: '13.3 GFLOPs', '201 MiB', '638 ms'."""
    if unit == "flops":
        power = min(max(int(np.floor(np.log10(max(value, 1)) / 3)), 0), len(SI_PREFIXES) - 1)
        return f"{value / 1000**power:.3g} {SI_PREFIXES[power]}FLOPs"
    if unit == "bytes":
        power = min(max(int(np.floor(np.log2(max(value, 1)) / 10)), 0), len(BINARY_PREFIXES) - 1)
        return f"{value / 1024**power:.3g} {BINARY_PREFIXES[power]}"
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")


def log_ticks(lo: float, hi: float, unit: str) -> tuple[list[float], list[str]]:
    """(tickvals, ticktext) for a log axis from lo to hi, at most MAX_TICKS of them, all in
    one format: decades with SI prefixes for FLOPs ('10 G', '100 P', '1 E'), powers of two
    with binary prefixes for bytes ('32 MiB', '1 GiB'), decades of milliseconds or seconds."""
    if unit == "bytes":
        first, last = int(np.ceil(np.log2(lo))), int(np.floor(np.log2(hi)))
        step = next(s for s in (1, 2, 5, 10, 20, 30, 40) if (last - first) // s + 1 <= MAX_TICKS)
        exponents = [e for e in range(first, last + 1) if e % step == 0]
        return [float(2**e) for e in exponents], [
            f"{2 ** (e % 10)} {BINARY_PREFIXES[e // 10]}" for e in exponents
        ]
    first, last = int(np.ceil(np.log10(lo) - 1e-9)), int(np.floor(np.log10(hi) + 1e-9))
    steps = (1, 3, 6, 9, 12) if unit == "flops" else (1, 2, 3, 5, 10)  # FLOPs: 1 k, 1 M, 1 G…
    step = next(s for s in steps if (last - first) // s + 1 <= MAX_TICKS)
    exponents = [e for e in range(first, last + 1) if e % step == 0]
    if unit == "flops":
        text = [f"{10 ** (e % 3)} {SI_PREFIXES[e // 3]}".rstrip() for e in exponents]
    elif unit == "ms":
        text = [format_quantity(10.0**e, "ms") for e in exponents]
    else:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    return [10.0**e for e in exponents], text


def breakdown_text(terms: Mapping[str, float], unit: str) -> str:
    """A point's value term by term, largest first, for a hover: 'share term: value' lines."""
    total = sum(terms.values())
    lines = []
    for term, value in sorted(terms.items(), key=lambda kv: -kv[1]):
        if value:
            share = value / total
            lines.append(
                f"{'<1%' if share < 0.005 else f'{share:.0%}'}  {term}: "
                f"{format_quantity(value, unit)}"
            )
    return "<br>".join(lines)


GUIDE_COLOR = "#94A3B8"
SLOPE_NAMES = {1: "∝ N (slope 1)", 2: "∝ N² (slope 2)"}


def guide_line(
    ns: Sequence[float], values: Sequence[float], slope: int, x_from: float
) -> tuple[list[float], list[float]]:
    """A straight line of slope `slope` on log-log axes, through a curve's last point and back
    to `x_from`, with a point in between for its label: y = y_end·(x / N_end)^slope."""
    n_end, y_end = float(ns[-1]), float(values[-1])
    xs = [float(x_from), n_end / 16, n_end]
    return xs, [y_end * (x / n_end) ** slope for x in xs]


def cost_figure(
    ns: Sequence[int],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    panels: Sequence[tuple[str, str, str]],
    current_n: int,
    x_range: tuple[float, float],
    y_ranges: Mapping[str, tuple[float, float]],
    crossovers: Mapping[str, tuple[float | None, str]] | None = None,
    baseline: str = "sasrec-sdpa",
    title: str | None = None,
    breakdowns: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]] | None = None,
    guides: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> go.Figure:
    """One log-log panel per (quantity, panel title, unit) in `panels`, unit one of UNITS (for
    the ticks and the hovers); curves[form][quantity] holds one value per N in `ns`.
    `y_ranges[quantity]` fixes each panel's y-axis (data units); `crossovers[quantity]` marks
    where ELASTIC becomes cheaper than `baseline`; a dotted line marks `current_n`.
    `breakdowns[form][quantity]` holds each point's terms (they sum to the point's value): the
    hover lists them. `guides[quantity]` = [(form, slope), ...]: a dotted line of that slope
    through the form's last point."""
    layout = panels_layout([label for _, label, _ in panels])
    traces, shapes = [], []
    for i, (quantity, _label, unit) in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        for form in FORMS:
            if form not in curves or quantity not in curves[form]:
                continue
            values = np.asarray(curves[form][quantity], dtype=float)
            terms = (breakdowns or {}).get(form, {}).get(quantity)
            trace = {
                "type": "scatter",
                "x": list(ns),
                "y": np.where(values > 0, values, np.nan),  # log axes: 0 = a gap
                "mode": "lines+markers",
                "marker": {"size": 4},
                "line": {"color": MODEL_COLORS[form], "dash": DASH[form], "width": 2.5},
                "name": MODEL_NAMES[form],
                "legendgroup": form,
                "showlegend": i == 0,
                "customdata": [format_quantity(v, unit) for v in values],
                "hovertemplate": f"{MODEL_NAMES[form]}<br>N = %{{x:,}}<br>%{{customdata}}"
                + ("<br>= %{text}" if terms else "")
                + "<extra></extra>",
                **axes,
            }
            if terms:
                trace["text"] = [breakdown_text(point, unit) for point in terms]
            traces.append(trace)
        for form, slope in (guides or {}).get(quantity, ()):
            values = np.asarray(curves[form][quantity], dtype=float)
            if not values.size or values[-1] <= 0:
                continue
            xs, ys = guide_line(ns, values, slope, x_range[0])
            traces.append(
                {
                    "type": "scatter",
                    "x": xs,
                    "y": ys,
                    "mode": "lines+text",
                    "line": {"color": GUIDE_COLOR, "dash": "dot", "width": 1.5},
                    "text": ["", SLOPE_NAMES.get(slope, f"slope {slope}"), ""],
                    "textposition": "top left",
                    "textfont": {"color": "#64748B", "size": 11},
                    "name": f"slope {slope} through {MODEL_NAMES[form]}",
                    "showlegend": False,
                    "hoverinfo": "skip",
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
        tickvals, ticktext = log_ticks(*y_ranges[quantity], unit)
        layout[f"yaxis{suffix}"].update(
            type="log",
            range=_log_range(*y_ranges[quantity]),
            tickmode="array",
            tickvals=tickvals,
            ticktext=ticktext,
            title={"text": "FLOPs" if unit == "flops" else None},
        )
    layout["shapes"] = shapes
    fig = go.Figure(data=traces, layout=layout)
    fig = base_layout(fig, height=380, title=title, top=40)
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.22, "x": 0})
    return fig
