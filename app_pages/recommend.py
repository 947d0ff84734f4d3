"""Recommend: a user's next ten items from ELASTIC and SASRec side by side, and which
interests drove ELASTIC's."""

import pandas as pd
import streamlit as st

from elastic import app_support as support
from elastic.viz import analysis
from elastic.viz.attention import dispatcher_labels
from elastic.viz.recommend import contribution_figure
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
contributions = recs["contributions"]  # (10, k)
strongest = contributions.argmax(axis=1)
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
        if name == "elastic":
            frame["driven by"] = [interest_names[j].split(" (")[0] for j in strongest]
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config={"score": st.column_config.NumberColumn(format="%.2f")},
        )

if "sasrec" not in recs["models"]:
    st.caption("This bundle has no SASRec model; train both on the Train page to compare.")

st.subheader("Which interests drove ELASTIC's list")
st.plotly_chart(
    contribution_figure(
        contributions,
        [data.item_label(int(i)) for i in recs["models"]["elastic"]["items"]],
        interest_names,
    ),
    key="contributions",
    width="stretch",
)
st.caption(
    "Each cell is what one interest vector of the last layer adds to an item's score at the last "
    "position, through the output projection and the final LayerNorm (direct logit attribution, "
    "up to one positive factor per user); the outlined cell is the item's strongest interest. "
    "The local window, the feed-forward path and the residual stream carry the rest of the "
    "score, so this is a partial account: attention weights are not explanations."
)
