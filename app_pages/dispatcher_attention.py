"""Dispatcher attention: what each of a user's k interest experts gathers from the history
(stage 1) and how each position reads them back (stage 2)."""

import numpy as np
import streamlit as st

from elastic import app_support as support
from elastic.viz import analysis, interventions
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
    "points in the catalogue; then [remove it](#experiment) and see what the prediction does "
    "without it."
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
    "matter as much. Read the grids as *what the model looks at*, not *why it decides*; the "
    "experiment below asks what the prediction does without a part.",
    icon=":material/info:",
)

st.subheader("Experiment: what does the prediction do without it?", anchor="experiment")
st.caption(
    "Pick a change; ELASTIC runs again on this user's history with it, and the top 10 and the "
    "held-out item's rank (full ranking, history filtered, as in the evaluation) are set beside "
    "the original. A map shows where weight goes; this shows whether the list depends on it. "
    "(ELASTIC only: SASRec has no dispatchers or memory slots to change.)"
)
kinds = [k for k in interventions.EXPERIMENTS if k != "plant" or data.truth is not None]
kind_labels = {  # also the values in the URL (?experiment=...): keep them short and fixed
    "knockout": "Knock out a dispatcher",
    "donor": "Another user's experts",
    "random": "Random memory slots",
    "off": "Dispatcher branch off",
    "remove": "Remove history items",
    "plant": "Append items of a planted interest",
}
c_kind, c_setting = st.columns([2, 3], gap="large")
with c_kind:
    kind = st.radio(
        "Intervention",
        kinds,
        format_func=kind_labels.get,
        key="experiment",
        bind="query-params",
    )
with c_setting:
    if kind == "knockout":
        experiment = interventions.Experiment("knockout", dispatcher=expert)
        st.markdown(
            f"D{expert + 1} (memory slot {int(view.slot_ids[expert])}, gate "
            f"{view.gates[expert]:.0%}) gets stage-2 weight 0 in every layer; the other "
            "dispatchers share its weight. Pick another expert above, or click a row of a grid."
        )
    elif kind == "donor":
        ids = [str(u) for u in data.user_ids]
        donor = st.selectbox(
            "Whose experts (the query reads that user's history)",
            ids,
            index=interventions.donor_of(user, len(ids)),
            key="donor",
        )
        experiment = interventions.Experiment("donor", donor=ids.index(donor))
        st.caption(
            "This user's history is read as before, but the k dispatchers and their gates are "
            "the ones the other user's history retrieves from the memory."
            + (" (That is this user: an identity check.)" if donor == ids[user] else "")
        )
    elif kind == "random":
        seed = st.number_input("Seed", min_value=0, max_value=9999, value=0, key="slot_seed")
        experiment = interventions.Experiment("random", seed=int(seed))
        st.caption(
            f"k = {cfg.num_interests} distinct slots drawn uniformly from the K = "
            f"{cfg.num_slots}, gated by this user's own query scores for them."
        )
    elif kind == "off":
        experiment = interventions.Experiment("off")
        st.caption(
            "Stages 1 and 2 add nothing in every layer"
            + (f"; the local window (the {cfg.local_window} most recent items)" if cfg.local_window
               else "")
            + ", the feed-forward path and the residual stream remain."
        )
    elif kind == "remove":
        options = list(dict.fromkeys(int(i) for i in view.history))  # distinct, oldest first
        kept = [i for i in st.session_state.get("remove_items", []) if i in options]
        st.session_state["remove_items"] = kept or [int(i) for i in items[:3]]
        removed = st.multiselect(
            f"History items to remove (preset: the three D{expert + 1} gathers most)",
            options,
            format_func=data.item_label,
            key="remove_items",
        )
        experiment = interventions.Experiment("remove", remove=tuple(sorted(removed)))
        st.caption(
            "Every occurrence is dropped; older items slide into the window, and a removed item "
            "becomes a candidate again (the user has not seen it now)."
        )
    else:
        held = sorted(set(analysis.planted_interests_of_history(data, user, n).tolist()))
        absent = [g for g in range(len(data.truth.interest_names)) if g not in held]
        interest = st.selectbox(
            "Planted interest",
            list(range(len(data.truth.interest_names))),
            index=absent[0] if absent else 0,
            format_func=lambda g: data.truth.interest_names[g]
            + (" (in this history)" if g in held else ""),
            key="plant_interest",
        )
        count = st.slider("Items appended", 1, 16, 8, key="plant_count")
        experiment = interventions.Experiment("plant", interest=interest, count=count)
        st.caption(
            "Its most consumed items that this user has not seen are appended after the last "
            "item, as if the user had just consumed them."
        )

try:
    comparison = support.experiment_of(bundle.key, user, experiment, bundle)
except ValueError as error:  # e.g. every history item removed
    st.warning(str(error), icon=":material/warning:")
    comparison = None
if comparison is not None:
    phrase = interventions.experiment_phrase(experiment, data)
    st.markdown(
        interventions.verdict(comparison, phrase, interventions.unchanged_meaning(experiment))
    )
    before, after = comparison.before, comparison.after
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Held-out item's rank",
        after.target_rank,
        delta=after.target_rank - before.target_rank,
        delta_color="inverse",  # a smaller rank is better
        help=f"{before.target_rank} as trained; full ranking over the candidates, history "
        "filtered. Green: the item moved up.",
    )
    m2.metric("Top-10 items replaced", int(comparison.entered.size))
    m3.metric(
        "Largest score change in the top 10",
        f"{comparison.largest_score_change:.3f}",
        help=f"The original list's scores span {comparison.spread:.2f} (first minus tenth).",
    )

    def labelled(item: int) -> str:
        group = ""
        if data.truth is not None:
            group = f" ({data.truth.interest_names[data.truth.item_interest[item]]})"
        return data.item_label(item) + group + (" ✓" if item == view.held_out else "")

    def where(rank: int) -> str:
        return "in the history" if rank == interventions.NOT_RANKED else f"#{rank}"

    st.dataframe(
        {
            "#": list(range(1, len(before.top_items) + 1)),
            "before": [labelled(int(i)) for i in before.top_items],
            "score before": before.top_scores,
            "then at": [where(int(r)) for r in comparison.before_top_now],
            "after": [labelled(int(i)) for i in after.top_items],
            "score after": after.top_scores,
            "was at": [where(int(r)) for r in comparison.after_top_was],
        },
        hide_index=True,
        width="stretch",
        column_config={
            "score before": st.column_config.NumberColumn(format="%.2f"),
            "score after": st.column_config.NumberColumn(format="%.2f"),
        },
        key="experiment_table",
    )
    st.caption(
        "Before and after, best first (✓ = the held-out item). 'then at' is where an original "
        "item ranks after the change, 'was at' where a new item ranked before it."
    )
    with st.expander(f"The maps {phrase}", expanded=True):
        head_label = "mean of the heads" if head == "mean" else f"head {int(head) + 1}"
        after_stage1 = after.stage1[layer][pick]
        after_stage2 = after.stage2[layer][pick]
        if head == "mean":
            after_stage1, after_stage2 = after_stage1.mean(0), after_stage2.mean(0)
        after_titles = [data.item_label(int(i)) for i in after.history]
        after_genres = (
            [data.item_genres[int(i)] for i in after.history] if data.item_genres else None
        )
        for chart_key, figure, weights, stage in (
            ("stage1_after", stage1_figure, after_stage1, "Stage 1"),
            ("stage2_after", stage2_figure, after_stage2, "Stage 2"),
        ):
            st.plotly_chart(
                figure(
                    weights,
                    after.history,
                    after_titles,
                    after_genres,
                    after.slot_ids,
                    after.gates,
                    selected=expert if kind == "knockout" else None,
                    title=f"{stage} {phrase} (layer {layer + 1}, {head_label})",
                ),
                key=chart_key,
                width="stretch",
            )
        st.caption(
            "Same layer and head as above. A knocked-out dispatcher's stage-2 row is 0. With the "
            "branch off, the maps show what it would compute; none of it reaches the prediction."
        )

st.markdown("**Over all users: the measured ablation**")
support.measured_ablation_section(bundle)
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
