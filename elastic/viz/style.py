"""Colours and layout shared by every figure, so the three attention forms and the planted
interests look the same on every page."""

from __future__ import annotations

import plotly.graph_objects as go

# one colour per model / attention form, used by every curve and table
MODEL_COLORS = {
    "elastic": "#0F766E",  # teal: ELASTIC (linear dispatcher attention)
    "sasrec": "#B45309",  # amber: SASRec (the trained baseline)
    "sasrec-sdpa": "#B45309",  # amber: SASRec with the fused kernel
    "sasrec-materialized": "#B91C1C",  # red: SASRec with explicit N×N scores
}
MODEL_NAMES = {
    "elastic": "ELASTIC",
    "sasrec": "SASRec",
    "sasrec-sdpa": "SASRec (SDPA, fused)",
    "sasrec-materialized": "SASRec (materialized N×N)",
}
# categorical colours for planted interests, genres and dispatchers: the Okabe-Ito palette,
# told apart with any colour-vision deficiency (cycled past 8, where no palette stays safe)
CATEGORICAL = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#000000",  # black
)
# sequential colour scale of attention weights and counts; diverging for signed contributions
WEIGHT_SCALE = "Tealgrn"
COUNT_SCALE = "Blues"
SIGNED_SCALE = "RdBu"
SELECTED_COLOR = "#111827"
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)


def category_color(index: int) -> str:
    return CATEGORICAL[int(index) % len(CATEGORICAL)]


def base_layout(
    fig: go.Figure, *, height: int, title: str | None = None, top: int | None = None
) -> go.Figure:
    """Tight margins, the house font; the theme's colours come from Streamlit. `top` makes room
    for panel titles."""
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=top if top is not None else (40 if title else 10), b=10),
        font=FONT,
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
        hoverlabel=dict(font_size=12),
        showlegend=False,
    )
    return fig


def panels_layout(titles: list[str], gap: float = 0.08) -> dict:
    """Layout of side-by-side panels as one plain dict: axes x/y, x2/y2, ... and a title over
    each. Building it at once (instead of make_subplots + per-axis updates) keeps a figure's
    construction in the low milliseconds, which is what a slider redraw waits for."""
    n = len(titles)
    width = (1 - gap * (n - 1)) / n
    layout: dict = {"annotations": []}
    for i, text in enumerate(titles):
        suffix = "" if i == 0 else str(i + 1)
        left = i * (width + gap)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        layout["annotations"].append(
            {
                "text": text,
                "x": left + width / 2,
                "y": 1.0,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 14},
            }
        )
    return layout
