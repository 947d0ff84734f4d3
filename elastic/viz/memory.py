"""The product-key interest memory: the √K × √K grid of slots (slot = i·√K + j, row i = the
first sub-key, column j = the second), how many users retrieve each slot, and one user's k
slots and gates on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from elastic.viz.grid import cell_size, grid_height, square_grid
from elastic.viz.style import COUNT_SCALE, SELECTED_COLOR, base_layout

USER_COLOR = "#DB2777"  # the chosen user's slots


def slot_position(slot: int, num_slots: int) -> tuple[int, int]:
    """(row i, column j) of a slot on the grid: slot = i·n + j with n = √K."""
    n = math.isqrt(num_slots)
    return int(slot) // n, int(slot) % n


def slot_grid_figure(
    counts: np.ndarray,
    user_slots: Sequence[int] = (),
    user_gates: Sequence[float] = (),
    selected: int | None = None,
) -> go.Figure:
    """counts (K,): users retrieving each slot -> the √K × √K grid; the user's slots ringed, a
    ring's size growing with its gate; `selected` outlined in black.
    customdata = [i, j, slot, count] on the cells and the rings."""
    counts = np.asarray(counts)
    num_slots = counts.size
    n = math.isqrt(num_slots)
    if n * n != num_slots:
        raise ValueError(f"the memory has K = {num_slots} slots, not a perfect square")
    grid = counts.reshape(n, n)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    slots = rows * n + cols
    custom = np.stack([rows, cols, slots, grid], axis=-1)  # (n, n, 4)
    hover = np.vectorize(
        lambda s, c: (
            f"slot {s} = ({s // n}, {s % n})<br>retrieved by {c} users"
            + (" — dead" if c == 0 else "")
        )
    )(slots, grid)
    px_ = min(cell_size(n, 560), 30)
    fig = square_grid(
        grid,
        hovertext=hover,
        customdata=custom,
        colorscale=COUNT_SCALE,
        cmin=0,
        cmax=max(int(grid.max()), 1),
        colorbar_title="users",
        x_title="second sub-key j",
        y_title="first sub-key i",
        y_labels=[str(i) for i in range(n)],
        selected_cells=() if selected is None else (slot_position(selected, num_slots),),
        cell_px=px_,
        height=grid_height(n, px_, min_row_px=px_ + 2, extra_px=80),
        title="Interest memory — users per slot",
    )
    if len(user_slots):
        ui = np.array([slot_position(s, num_slots) for s in user_slots])
        gates = np.asarray(user_gates, dtype=float)
        fig.add_trace(
            go.Scatter(
                x=ui[:, 1],
                y=ui[:, 0],
                mode="markers",
                marker=dict(
                    symbol="circle-open",
                    # ring size grows with the gate: the user's strongest expert is the largest
                    size=px_ * (0.55 + 0.9 * np.sqrt(gates / max(gates.max(), 1e-9))),
                    line=dict(width=2.5, color=USER_COLOR),
                    color=USER_COLOR,
                ),
                customdata=[
                    [int(i), int(j), int(s), int(grid[i, j])]
                    for (i, j), s in zip(ui, user_slots, strict=True)
                ],
                hovertext=[
                    f"this user's dispatcher D{r + 1}: slot {s}, gate {g:.1%}"
                    for r, (s, g) in enumerate(zip(user_slots, gates, strict=True))
                ],
                hoverinfo="text",
                name="this user",
            )
        )
    fig.update_xaxes(range=[-0.7, n - 0.3], tickmode="linear", dtick=max(1, n // 8))
    fig.update_yaxes(range=[n - 0.3, -0.7], autorange=False)
    fig.update_layout(yaxis_scaleanchor="x")
    return fig


def usage_figure(counts: np.ndarray) -> go.Figure:
    """Share of all retrievals per slot, most used first, against the uniform share 1/K."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    share = np.sort(counts)[::-1] / total if total else np.zeros_like(counts)
    ranks = np.arange(1, counts.size + 1)
    fig = go.Figure(
        go.Scatter(
            x=ranks,
            y=share,
            mode="lines",
            fill="tozeroy",
            line=dict(color="#1D4ED8", shape="hv"),
            hovertemplate="slot ranked %{x}: %{y:.2%} of retrievals<extra></extra>",
        )
    )
    fig.add_hline(
        y=1 / counts.size,
        line=dict(color=SELECTED_COLOR, dash="dot"),
        annotation_text="uniform 1/K",
        annotation_position="top right",
    )
    fig.update_xaxes(title="slots, most retrieved first")
    fig.update_yaxes(title="share of retrievals", tickformat=".0%")
    return base_layout(fig, height=260, title="How evenly the slots are used")


def label_share_figure(
    labels: Sequence[str], share_group: np.ndarray, share_all: np.ndarray, group: str
) -> go.Figure:
    """Grouped bars: how a group's history items spread over planted interests or genres,
    beside all users'."""
    fig = go.Figure(
        [
            go.Bar(name=group, x=list(labels), y=list(share_group), marker_color=USER_COLOR),
            go.Bar(name="all users", x=list(labels), y=list(share_all), marker_color="#94A3B8"),
        ]
    )
    fig.update_yaxes(title="share of history items", tickformat=".0%")
    fig.update_layout(barmode="group", showlegend=True)
    fig = base_layout(fig, height=280, title=None)
    fig.update_layout(showlegend=True, legend=dict(orientation="h", y=1.12, x=0))
    return fig


def slot_users_figure(
    slot_ids: np.ndarray,
    gates: np.ndarray,
    slot: int,
    user_labels: Sequence[str],
    current_user: int | None = None,
    max_users: int = 30,
) -> go.Figure:
    """The users who retrieve `slot` (rows) and their k dispatchers (columns, D1 = best slot),
    coloured by gate; the cell of the dispatcher that *is* the slot is outlined in every row, so
    one sees at which rank and with what gate each user holds it. Rows: the users holding it at
    the best rank first (then the larger gate), at most `max_users`; `current_user` first.
    customdata = [row, j, user index, slot of that cell, rank of the slot in that row]."""
    slot_ids, gates = np.asarray(slot_ids), np.asarray(gates, dtype=float)
    holders, ranks = np.nonzero(slot_ids == slot)  # a user's k slots are distinct
    order = sorted(
        range(holders.size),
        key=lambda i: (
            holders[i] != current_user,
            ranks[i],
            -gates[holders[i], ranks[i]],
            holders[i],
        ),
    )[:max_users]
    users, ranks = holders[order], ranks[order]
    k = slot_ids.shape[1]
    values = gates[users] if users.size else np.zeros((0, k))  # (R, k)
    rows, cols = np.meshgrid(np.arange(users.size), np.arange(k), indexing="ij")
    custom = np.stack(
        [rows, cols, users[:, None].repeat(k, 1), slot_ids[users], ranks[:, None].repeat(k, 1)],
        axis=-1,
    )  # (R, k, 5)
    hover = np.empty(values.shape, dtype=object)
    for r, u in enumerate(users):
        for j in range(k):
            mark = " ← this slot" if j == ranks[r] else ""
            hover[r, j] = (
                f"user {user_labels[u]}: D{j + 1} = slot {int(slot_ids[u, j])}, "
                f"gate {gates[u, j]:.1%}{mark}<br>click: show this user"
            )
    fig = square_grid(
        values,
        hovertext=hover,
        customdata=custom,
        x_labels=[f"D{j + 1}" for j in range(k)],
        y_labels=[
            f"user {user_labels[u]}" + (" (chosen)" if u == current_user else "") for u in users
        ],
        colorscale=COUNT_SCALE,
        cmin=0.0,
        cmax=float(values.max()) if values.size else 1.0,
        colorbar_title="gate",
        x_title="dispatcher (D1 = the user's best slot)",
        selected_cells=[(r, int(j)) for r, j in enumerate(ranks)],
        cell_px=16,
        title=f"Who uses slot {slot}, and as which dispatcher (outlined)",
        height=grid_height(max(users.size, 1), 16, min_row_px=18, extra_px=90),
    )
    fig.update_xaxes(type="category", side="bottom")
    return fig


def rank_counts(slot_ids: np.ndarray, slot: int) -> np.ndarray:
    """(k,): how many users hold `slot` as their D1, D2, ... (their j-th best slot)."""
    slot_ids = np.asarray(slot_ids)
    return (slot_ids == slot).sum(axis=0)
