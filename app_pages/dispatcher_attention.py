"""Dispatcher attention: what each of a user's k interest experts gathers from the history
(stage 1) and how each position reads them back (stage 2)."""

import numpy as np
import streamlit as st

from app_pages._views import measured_ablation_section
from elastic import app_support as support
from elastic.viz import analysis, interventions, softmax
from elastic.viz.attention import (
    RankedItems,
    dispatcher_maps_figure,
    interest_strip_figure,
    model_view_figure,
    ranked_items_figure,
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
    "**Click a cell**: its row picks the expert (what it gathers, where it points in the "
    "catalogue), its column the history position, outlined in every view, and the softmax "
    "behind the cell appears with its numbers. Then [remove the expert](#experiment) and see "
    "what the prediction does without it."
)

c_user, c_layer, c_head, c_expert, c_position = st.columns([3, 1, 1, 1, 1])
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
with c_position:
    position = st.number_input(
        "Position",
        min_value=1,
        max_value=cfg.max_len,
        value=None,
        step=1,
        placeholder="click a cell",
        key="position",
        bind="query-params",
        help="A history position (1 = the oldest the model reads): outlined in both grids, "
        "the gathered items and the planted strip. Clicking a cell sets it.",
    )

view = support.user_view(bundle.key, user, bundle)
n = len(view.history)
t = int(position) - 1 if position is not None and int(position) <= n else None  # an index
pick = slice(None) if head == "mean" else int(head)
stage1 = view.stage1[layer][pick]  # (k, n) or (h, k, n)
stage2 = view.stage2[layer][pick]  # (n, k) or (h, n, k)
if head == "mean":  # the mean over heads keeps rows (stage 1) and columns (stage 2) summing to 1
    stage1, stage2 = stage1.mean(0), stage2.mean(0)
titles = [data.item_label(int(i)) for i in view.history]
genres = [data.item_genres[int(i)] for i in view.history] if data.item_genres else None


def pick_cell() -> None:
    """A click on a cell of either grid selects its row (the dispatcher) and its column (the
    history position); both are widgets bound to the URL, so the clicked view can be shared."""
    cell = clicked_cell(st.session_state["maps"].selection)
    if cell is not None:
        st.session_state["expert"], st.session_state["position"] = cell[0], cell[1] + 1


def pick_panel() -> None:
    """A click on a small panel of the overview enlarges it: its layer and head below."""
    cell = clicked_cell(st.session_state["model_view"].selection)
    if cell is not None:
        st.session_state["layer"] = cell[0]
        st.session_state["head"] = "mean" if cell[1] == cfg.num_heads else str(cell[1])


overview = st.segmented_control(
    "Overview of every layer and head",
    [1, 2],
    format_func=lambda s: f"stage {s}",
    default=1,
    required=True,
    key="overview",
    bind="query-params",
) or 1  # a link's empty overview= means stage 1
st.plotly_chart(
    model_view_figure(
        view.stage1 if overview == 1 else view.stage2,
        stage=overview,
        selected=(layer, None if head == "mean" else int(head)),
    ),
    key="model_view",
    on_select=pick_panel,
    selection_mode="points",
    width="stretch",
)

st.plotly_chart(
    dispatcher_maps_figure(
        stage1,
        stage2,
        view.history,
        titles,
        genres,
        view.slot_ids,
        view.gates,
        selected=expert,
        position=t,
    ),
    key="maps",
    on_select=pick_cell,
    selection_mode="points",
    width="stretch",
)
if position is not None and t is None:
    st.caption(f"Position {int(position)} is past this user's {n} history items the model reads.")

if t is not None:
    heads = list(range(cfg.num_heads)) if head == "mean" else [int(head)]
    one = [
        softmax.stage1_cell(view, layer, h, expert, t, titles, cap=cfg.stage1_softcap)
        for h in heads
    ]
    two = [softmax.stage2_cell(view, layer, h, t, expert) for h in heads]
    st.subheader(
        f"The softmax behind D{expert + 1} × position {t + 1}: "
        f"{data.item_label(int(view.history[t]))}",
        anchor="softmax",
    )
    left, right = st.columns(2, gap="large")
    for column, cells, stage, shown in (
        (left, one, 1, stage1[expert, t]),
        (right, two, 2, stage2[t, expert]),
    ):
        with column:
            if stage == 1:
                st.markdown(
                    f"**Stage 1**: D{expert + 1}'s weight on position {t + 1}, one entry of a "
                    f"softmax over D{expert + 1} itself (its sink) and the {n} positions."
                )
            else:
                st.markdown(
                    f"**Stage 2**: position {t + 1}'s weight on interest D{expert + 1}, one entry "
                    f"of a softmax over the k = {cfg.num_interests} interests."
                )
            for h, cell in zip(heads, cells, strict=True):
                if len(heads) > 1:
                    st.caption(f"head {h + 1}")
                st.latex(softmax.softmax_latex(cell, expert, t))
                if stage == 1:
                    raw = cell.raw_score()
                    st.caption(
                        f"a = {cfg.stage1_softcap:g}·tanh(s/{cfg.stage1_softcap:g}) with the "
                        f"score s = (W_q D{expert + 1})·(W_k x_{t + 1})/√d_h = {raw:.4g}; "
                        f"m = {cell.max_logit:.4g}, the largest logit of the row."
                    )
                else:
                    prior = float(cell.prior[expert])
                    st.caption(
                        f"ℓ = q_{t + 1}·I_{expert + 1}/√d_h + log g_{expert + 1} = "
                        f"{cell.logit - prior:.4g} + ({prior:.4g}): the gate's log-prior is "
                        f"part of the logit; m = {cell.max_logit:.4g}."
                    )
                st.dataframe(
                    softmax.softmax_rows(cell),
                    hide_index=True,
                    width="stretch",
                    column_config={
                        "logit": st.column_config.NumberColumn(format="%.4g"),
                        "exp(logit − m)": st.column_config.NumberColumn(format="%.4g"),
                        "weight": st.column_config.NumberColumn(format="%.4g"),
                        "of which log g": st.column_config.NumberColumn(format="%.4g"),
                    },
                    key=f"softmax_{stage}_{h}",
                )
            if len(heads) > 1:
                st.markdown(
                    f"The grid shows the mean of the heads: "
                    f"({' + '.join(f'{c.weight:.4g}' for c in cells)}) ÷ {len(heads)} = "
                    f"**{softmax.mean_of_heads(cells):.4g}** (drawn: {float(shown):.4g})."
                )
            else:
                st.markdown(
                    f"Recomputed: **{cells[0].weight:.4g}**; the model returned "
                    f"{cells[0].model_weight:.4g}."
                )

st.subheader(f"Interest expert D{expert + 1} — memory slot {int(view.slot_ids[expert])}")
top_items, top_weights = analysis.gathered_items(stage1[expert], view.history, top=10)
items, weights, marked = analysis.with_position(
    top_items, top_weights, stage1[expert], view.history, t
)
gathered_labels, gathered_groups = analysis.item_groups(data, items)
scores = support.interest_scores(bundle.key, user, layer, bundle)[expert]
pointed = analysis.top_items(scores, None, top=10)
pointed_labels, pointed_groups = analysis.item_groups(data, pointed)
in_history = set(view.history.tolist())
held_at = None if t is None else int(view.history[t])
pointed_mark = next((r for r, i in enumerate(pointed) if int(i) == held_at), None)
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
                highlight=marked,
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
                highlight=pointed_mark,
            ),
        ]
    ),
    key="expert_items",
    width="stretch",
)
if marked is not None:
    added = len(items) > len(top_items)
    st.caption(
        f"▶ = the item at position {t + 1}"
        + (f" (not among the {len(top_items)} it gathers most: added below them)" if added else "")
        + "."
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
        interest_strip_figure(planted, assigned, data.truth.interest_names, titles, position=t),
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
    "(ELASTIC only: SASRec has no dispatchers or memory slots to change.) It runs when you press "
    "Run or change a setting of this section, not on every click above, so the maps stay quick."
)

DONE = "experiment_done"  # (user, Experiment) last run: its results show while the inputs match


def want_experiment() -> None:
    """A setting of this section changed: run the experiment it now describes."""
    st.session_state["experiment_wanted"] = True


if DONE not in st.session_state and "experiment" in st.query_params:
    want_experiment()  # a shared link that names an experiment asks for its result
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
        on_change=want_experiment,
        bind="query-params",
    )
with c_setting:
    if kind == "knockout":
        experiment = interventions.Experiment("knockout", dispatcher=expert)
        st.markdown(
            f"D{expert + 1} (memory slot {int(view.slot_ids[expert])}, gate "
            f"{view.gates[expert]:.0%}) gets stage-2 weight 0 in every layer; the other "
            "dispatchers share its weight. Pick another expert above (or click a cell of its "
            "row), then Run."
        )
    elif kind == "donor":
        ids = [str(u) for u in data.user_ids]
        donor = st.selectbox(
            "Whose experts (the query reads that user's history)",
            ids,
            index=interventions.donor_of(user, len(ids)),
            key="donor",
            on_change=want_experiment,
        )
        experiment = interventions.Experiment("donor", donor=ids.index(donor))
        st.caption(
            "This user's history is read as before, but the k dispatchers and their gates are "
            "the ones the other user's history retrieves from the memory."
            + (" (That is this user: an identity check.)" if donor == ids[user] else "")
        )
    elif kind == "random":
        seed = st.number_input(
            "Seed", min_value=0, max_value=9999, value=0, key="slot_seed",
            on_change=want_experiment,
        )  # fmt: skip
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
        st.session_state["remove_items"] = kept or [int(i) for i in top_items[:3]]
        removed = st.multiselect(
            f"History items to remove (preset: the three D{expert + 1} gathers most)",
            options,
            format_func=data.item_label,
            key="remove_items",
            on_change=want_experiment,
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
            on_change=want_experiment,
        )
        count = st.slider(
            "Items appended", 1, 16, 8, key="plant_count", on_change=want_experiment
        )
        experiment = interventions.Experiment("plant", interest=interest, count=count)
        st.caption(
            "Its most consumed items that this user has not seen are appended after the last "
            "item, as if the user had just consumed them."
        )

run = st.button("Run the experiment", type="primary", key="run_experiment")
if run or st.session_state.pop("experiment_wanted", False):
    st.session_state[DONE] = (user, experiment)
comparison = None
if st.session_state.get(DONE) == (user, experiment):
    try:
        comparison = support.experiment_of(bundle.key, user, experiment, bundle)
    except ValueError as error:  # e.g. every history item removed
        st.warning(str(error), icon=":material/warning:")
else:
    st.caption(
        f"Press Run to knock out D{expert + 1}, the expert picked above."
        if kind == "knockout"
        else "Press Run to see what this change does to the top 10."
    )
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
        same_positions = kind not in ("remove", "plant")  # an edited history moves them
        st.plotly_chart(
            dispatcher_maps_figure(
                after_stage1,
                after_stage2,
                after.history,
                after_titles,
                after_genres,
                after.slot_ids,
                after.gates,
                selected=expert if kind == "knockout" else None,
                position=t if same_positions else None,
                titles_of_stages=tuple(
                    f"{stage} {phrase} (layer {layer + 1}, {head_label})"
                    for stage in ("Stage 1", "Stage 2")
                ),
            ),
            key="maps_after",
            width="stretch",
        )
        st.caption(
            "Same layer and head as above. A knocked-out dispatcher's stage-2 row is 0. With the "
            "branch off, the maps show what it would compute; none of it reaches the prediction."
        )

st.markdown("**Over all users: the measured ablation**")
measured_ablation_section(bundle)
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
