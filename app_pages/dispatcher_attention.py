"""Dispatcher attention: what each of a user's k interest experts gathers from the history
(stage 1) and how each position reads them back (stage 2)."""

import numpy as np
import streamlit as st

from elastic import app_support as support
from elastic.viz import analysis
from elastic.viz.attention import (
    RankedItems,
    interest_strip_figure,
    ranked_items_figure,
    stage1_figure,
    stage2_figure,
)
from elastic.viz.grid import clicked_cell
from elastic.viz.style import category_color

bundle = support.require_bundle()
data, model = bundle.data, bundle.elastic
cfg = model.config

st.title("Dispatcher attention")
st.caption(
    "Each user gets k dispatchers from the interest memory. In stage 1 every dispatcher "
    "gathers a weighted average of the history (one row of the first grid); in stage 2 every "
    "history position reads the k interest vectors back (one column of the second grid). "
    "**Click a row** (or pick an expert below) to see what that interest gathers and where it "
    "points in the catalogue."
)

c_user, c_layer, c_head, c_expert = st.columns([3, 1, 1, 1])
with c_user:
    user = support.user_picker(data, model.config.max_len)
with c_layer:
    layer = st.selectbox(
        "Layer",
        list(range(cfg.num_layers)),
        index=cfg.num_layers - 1,
        format_func=lambda i: str(i + 1),
        key="layer",
        bind="query-params",
    )
with c_head:
    head = st.selectbox(
        "Head",
        ["mean", *[str(i) for i in range(cfg.num_heads)]],
        format_func=lambda h: h if h == "mean" else str(int(h) + 1),
        key="head",
        bind="query-params",
    )
with c_expert:
    expert = st.selectbox(
        "Interest expert",
        list(range(cfg.num_interests)),
        format_func=lambda j: f"D{j + 1}",
        key="expert",
        bind="query-params",
    )

view = support.user_view(bundle.key, user, bundle)
n = len(view.history)
pick = slice(None) if head == "mean" else int(head)
stage1 = view.stage1[layer][pick]  # (k, n) or (h, k, n)
stage2 = view.stage2[layer][pick]  # (n, k) or (h, n, k)
if head == "mean":  # the mean over heads keeps rows (stage 1) and columns (stage 2) summing to 1
    stage1, stage2 = stage1.mean(0), stage2.mean(0)
titles = [data.item_label(int(i)) for i in view.history]
genres = [data.item_genres[int(i)] for i in view.history] if data.item_genres else None


def pick_expert(chart_key: str) -> None:
    """A click on a grid cell selects that cell's row: the dispatcher."""
    cell = clicked_cell(st.session_state[chart_key].selection)
    if cell is not None:
        st.session_state["expert"] = cell[0]


for chart_key, figure in (
    ("stage1_grid", stage1_figure),
    ("stage2_grid", stage2_figure),
):
    weights = stage1 if chart_key == "stage1_grid" else stage2
    st.plotly_chart(
        figure(weights, view.history, titles, genres, view.slot_ids, view.gates, selected=expert),
        key=chart_key,
        on_select=lambda key=chart_key: pick_expert(key),
        selection_mode="points",
        width="stretch",
    )

st.subheader(f"Interest expert D{expert + 1} — memory slot {int(view.slot_ids[expert])}")
items, weights = analysis.gathered_items(stage1[expert], view.history, top=10)
gathered_labels, gathered_groups = analysis.item_groups(data, items)
scores = support.interest_scores(bundle.key, user, layer, bundle)[expert]
pointed = analysis.top_items(scores, None, top=10)
pointed_labels, pointed_groups = analysis.item_groups(data, pointed)
in_history = set(view.history.tolist())
st.plotly_chart(
    ranked_items_figure(
        [
            RankedItems(
                "History items it gathers",
                [data.item_label(int(i)) for i in items],
                weights,
                "stage-1 weight",
                [category_color(g) for g in gathered_groups],
                [
                    f"{data.item_label(int(i))}<br>{g}"
                    for i, g in zip(items, gathered_labels, strict=True)
                ],
            ),
            RankedItems(
                "Catalogue items it points to (✓ = in the history)",
                [data.item_label(int(i)) + (" ✓" if int(i) in in_history else "") for i in pointed],
                scores[pointed],
                "logit it adds to the item (direct path)",
                [category_color(g) for g in pointed_groups],
                [
                    f"{data.item_label(int(i))}<br>{g}"
                    for i, g in zip(pointed, pointed_labels, strict=True)
                ],
            ),
        ]
    ),
    key="expert_items",
    width="stretch",
)

if data.truth is not None:
    st.subheader("Against the planted interests")
    planted = analysis.planted_interests_of_history(data, user, n)
    assigned = analysis.strongest_dispatcher(stage1)
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Agreement for this user (NMI)",
        f"{analysis.dispatcher_agreement(stage1, planted):.2f}",
        help="Normalised mutual information between 'the dispatcher that gathers item t most' and "
        "item t's planted interest: 1 = the dispatchers split the history exactly as planted, "
        "0 = no relation.",
    )
    recovery = support.interest_recovery_of(bundle.key, bundle)
    if recovery:
        m2.metric(
            "All users (NMI, last layer)",
            f"{recovery['dispatcher_nmi_per_user']:.2f}",
            help=f"Mean per-user NMI over {recovery['users']} users; shuffled labels score "
            f"{recovery['dispatcher_nmi_per_user_chance']:.2f}.",
        )
        m3.metric(
            "Shuffled (chance)",
            f"{recovery['dispatcher_nmi_per_user_chance']:.2f}",
        )
    st.plotly_chart(
        interest_strip_figure(planted, assigned, data.truth.interest_names, titles),
        key="planted",
        width="stretch",
    )
    held = set(np.unique(planted).tolist())
    st.caption(
        f"This user's history spans planted interests "
        f"{', '.join(data.truth.interest_names[g] for g in sorted(held))}; "
        "equal colours in a column mean the strongest dispatcher recovered the planted interest."
    )

st.info(
    "Attention weights are not explanations. A weight says how much an item enters an "
    "average, not whether the prediction depends on it; the values and the layers after it "
    "matter as much. Read the grids as *what the model looks at*, not *why it decides*.",
    icon=":material/info:",
)
local = (
    f"Besides the dispatchers, each position also attends to its {cfg.local_window} most recent "
    f"items (a local window, O(N·{cfg.local_window}·d)), which these grids do not show. "
    if cfg.local_window
    else ""
)
with st.expander("The formulas"):
    st.latex(
        r"\text{stage 1: } I_j = \sum_{t \le N} \operatorname{softmax}_t"
        r"\Big(\tfrac{(W_q D_j)\cdot(W_k x_t)}{\sqrt{d_h}}\Big)\, W_v x_t"
        r"\qquad j = 1..k"
    )
    st.latex(
        r"\text{stage 2: } y_t = \sum_{j \le k} \operatorname{softmax}_j"
        r"\Big(\tfrac{(W_{q'} x_t)\cdot I_j}{\sqrt{d_h}} + \log g_j\Big)\, I_j"
    )
    st.markdown(
        "Both stages cost O(N·k·d). D_j is the dispatcher retrieved from the memory, g_j its "
        "gate. In training, stage 1 is causal: position t only averages items up to t. "
        f"{local}'Points to' follows interest j through the layer's output projection and the "
        "final LayerNorm into item space (direct logit attribution), ignoring the other paths."
    )
