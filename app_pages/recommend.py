"""Recommend: a user's next ten items from ELASTIC and SASRec side by side, and what changes
in ELASTIC's list when each of its dispatchers is removed."""

import pandas as pd
import streamlit as st

from app_pages._views import measured_ablation_section
from elastic import app_support as support
from elastic.viz import analysis
from elastic.viz.attention import dispatcher_labels
from elastic.viz.interventions import knockout_verdict
from elastic.viz.recommend import knockout_figure
from elastic.viz.style import MODEL_NAMES

bundle = support.require_bundle()
data, model = bundle.data, bundle.elastic

st.title("Recommend")
st.caption(
    "Each model ranks every item the user has not seen yet, from the history without its last "
    "item — that held-out item is the one the evaluation asks for (✓ marks it when it makes "
    "the top 10)."
)
user = support.user_picker(data, model.config.max_len)
view = support.user_view(bundle.key, user, bundle)
recs = support.recommendations(bundle.key, user, bundle)
interest_names = dispatcher_labels(view.slot_ids, view.gates)
held_out = recs["held_out"]
candidates = data.num_items - len(set(data.sequences[user][:-1].tolist()))
st.markdown(f"Held-out next item: **{data.item_label(held_out)}**")

columns = st.columns(len(recs["models"]), gap="large")
for col, (name, rec) in zip(columns, recs["models"].items(), strict=True):
    with col:
        st.subheader(MODEL_NAMES[name])
        rank = rec["held_out_rank"]
        st.caption(f"The held-out item ranks **{rank}** of {candidates} candidates.")
        groups, _ = analysis.item_groups(data, rec["items"])
        frame = pd.DataFrame(
            {
                "#": range(1, len(rec["items"]) + 1),
                "item": [
                    data.item_label(int(i)) + (" ✓" if int(i) == held_out else "")
                    for i in rec["items"]
                ],
                "planted interest" if data.truth is not None else "genre": groups,
                "score": rec["scores"],
            }
        )
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config={"score": st.column_config.NumberColumn(format="%.2f")},
        )

if "sasrec" not in recs["models"]:
    st.caption("This bundle has no SASRec model; train both on the Train page to compare.")

st.subheader("What changes when a dispatcher is removed", anchor="knockouts")
effects = support.knockout_effects_of(bundle.key, user, bundle)
st.markdown(knockout_verdict(effects))
st.plotly_chart(
    knockout_figure(
        effects,
        [data.item_label(int(i)) for i in effects.items],
        interest_names,
    ),
    key="knockouts",
    width="stretch",
)
summary = pd.DataFrame(
    {
        "dispatcher": [label.split(" (")[0] for label in interest_names],
        "gate": effects.gates,
        "top-10 items replaced": effects.replaced,
        "largest score change": abs(effects.score_change).max(axis=0),
    }
)
if effects.target_rank_after is not None:
    summary[f"held-out item's rank (as trained: {effects.target_rank})"] = (
        effects.target_rank_after
    )
st.dataframe(
    summary,
    hide_index=True,
    width="stretch",
    column_config={
        "gate": st.column_config.NumberColumn(format="percent"),
        "largest score change": st.column_config.NumberColumn(format="%.3f"),
    },
    key="knockout_summary",
)
st.caption(
    "Each column is one run of ELASTIC with that dispatcher knocked out: its stage-2 weight is "
    "set to 0 in every layer and the other dispatchers share the weight. A cell is the change "
    "of a top item's score (hover for the rank); the colours span the list's own score spread, "
    "so a change too small to reorder the list stays pale, and an outlined cell is an item that "
    "leaves the top 10. This measures what the prediction does without a dispatcher — unlike an "
    "attention weight, which only says where weight went. SASRec has no dispatchers, so its list "
    "has no such column."
)
st.page_link(
    "app_pages/dispatcher_attention.py",
    label="More experiments on this user: another user's experts, the branch off, an edited "
    "history",
    icon=":material/science:",
    query_params={"experiment": "Another user's experts"},
)

st.subheader("Over all users: the measured ablation")
measured_ablation_section(bundle)
