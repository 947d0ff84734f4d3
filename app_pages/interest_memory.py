"""Interest memory: which of the K product-key slots users retrieve, and what the users of one
slot have in common."""

import math

import pandas as pd
import streamlit as st

from elastic import app_support as support
from elastic.viz.grid import clicked_cell, clicked_customdata
from elastic.viz.interventions import slot_verdict
from elastic.viz.memory import (
    label_share_figure,
    rank_counts,
    slot_grid_figure,
    slot_users_figure,
    usage_figure,
)

bundle = support.require_bundle()
data, model = bundle.data, bundle.elastic
cfg = model.config
num_slots = cfg.num_slots

st.title("Interest memory")
st.caption(
    f"The memory holds K = {num_slots} interest experts on a {math.isqrt(num_slots)} × "
    f"{math.isqrt(num_slots)} grid: a slot is a pair of sub-keys (i, j), so finding a user's best "
    f"k = {cfg.num_interests} slots scores 2·√K sub-keys instead of all K. The colour says how "
    "many users retrieve a slot; the ringed slots are the chosen user's (the larger the ring, "
    "the larger its gate). **Click a slot** to see who retrieves it and what they share."
)
# whether the measured ablation found the retrieved slots to matter: it measured the shipped
# demo, so a model trained in this session gets no sentence
ablation = support.measured_ablation()
if ablation is not None and bundle.key == "demo":
    verdict = slot_verdict(ablation)
    if verdict:
        st.info(verdict, icon=":material/science:")

table = support.memory_table(bundle.key, bundle)
c_user, c_slot = st.columns([3, 1])
with c_user:
    user = support.user_picker(data, model.config.max_len)
user_slots = table["slot_ids"][user]
user_gates = table["gates"][user]
user_id = str(data.user_ids[user])
if st.session_state.get("slot_user") != user_id:
    # another user than the slot was chosen for (here, or on another page): start on the new
    # user's strongest slot, unless this is a shared link's first run and it names a slot
    if "slot_user" in st.session_state or "slot" not in st.query_params:
        st.session_state["slot"] = int(user_slots[0])
    st.session_state["slot_user"] = user_id
with c_slot:
    slot = st.number_input(
        "Slot", min_value=0, max_value=num_slots - 1, step=1, key="slot", bind="query-params"
    )


def pick_slot() -> None:
    cell = clicked_cell(st.session_state["slot_grid"].selection)
    if cell is not None:
        st.session_state["slot"] = cell[0] * math.isqrt(num_slots) + cell[1]


m1, m2, m3, m4 = st.columns(4)
m1.metric(
    "Slots used", f"{table['share_used']:.0%}", help="Share of the K slots any user retrieves."
)
m2.metric("Dead slots", f"{table['dead_slots']}", help="Slots no user retrieves.")
m3.metric(
    "KL to uniform",
    f"{table['kl_to_uniform']:.2f} nats",
    help="0 when every slot is retrieved equally often; "
    f"log K = {math.log(num_slots):.2f} when one slot takes everything.",
)
m4.metric(
    "Busiest slot",
    f"{table['max_share']:.1%}",
    help="Share of all retrievals of the most used slot.",
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(
        slot_grid_figure(table["users_per_slot"], user_slots, user_gates, selected=int(slot)),
        key="slot_grid",
        on_select=pick_slot,
        selection_mode="points",
        width="stretch",
    )
    st.caption(
        "This user's slots (ring size = gate): "
        + ", ".join(
            f"D{j + 1} slot {int(s)} ({g:.0%})"
            for j, (s, g) in enumerate(zip(user_slots, user_gates, strict=True))
        )
    )
with right:
    st.plotly_chart(usage_figure(table["users_per_slot"]), key="usage", width="stretch")
    if table["share_used"] < 0.5:
        st.warning(
            "Fewer than half of the slots are ever retrieved: the memory has partly collapsed "
            "onto a few popular experts. A load-balancing term or more training spreads it out.",
            icon=":material/warning:",
        )

detail = support.slot_detail(bundle.key, int(slot), bundle)
users = detail["users"]
st.subheader(f"Slot {int(slot)}: retrieved by {len(users)} users")


def pick_slot_user() -> None:
    """A click on a row of the slot's users shows that user (here and on every page), keeping
    the slot: `slot_user` says the slot was chosen for them."""
    custom = clicked_customdata(st.session_state["slot_users"].selection)
    if custom is not None:
        chosen = str(data.user_ids[custom[2]])
        st.session_state[support.SELECTED_USER] = chosen
        st.session_state["slot_user"] = chosen


SLOT_USERS_DRAWN = 20
if len(users) == 0:
    st.caption("Nobody retrieves this slot: it is a dead expert. Click a coloured slot.")
else:
    user_labels = [str(u) for u in data.user_ids]
    per_rank = rank_counts(table["slot_ids"], int(slot))
    c_users, c_ranks = st.columns([2, 3], gap="large")
    with c_users:
        st.plotly_chart(
            slot_users_figure(
                table["slot_ids"],
                table["gates"],
                int(slot),
                user_labels,
                current_user=user,
                max_users=SLOT_USERS_DRAWN,
            ),
            key="slot_users",
            on_select=pick_slot_user,
            selection_mode="points",
            width="stretch",
        )
    with c_ranks:
        st.markdown(
            f"**As which dispatcher its {len(users)} users hold it**: "
            + ", ".join(f"D{j + 1} for {c}" for j, c in enumerate(per_rank) if c)
            + ". A user's D1 is its best-scoring slot; the gate is the share of stage-2 weight "
            "the slot's interest gets a priori."
        )
        st.caption(
            (f"The first {SLOT_USERS_DRAWN} are drawn: " if len(users) > SLOT_USERS_DRAWN else "")
            + "the chosen user, then those that hold it at the best rank. Click a row to show "
            "that user here and on the other pages."
        )
        mine = [j for j, s_ in enumerate(user_slots) if int(s_) == int(slot)]
        if mine:
            st.page_link(
                "app_pages/dispatcher_attention.py",
                label=f"See what D{mine[0] + 1} of user {user_id} gathers (Dispatcher attention)",
                icon=":material/visibility:",
                query_params={"user": user_id, "expert": f"D{mine[0] + 1}"},
            )
    ids = ", ".join(str(data.user_ids[u]) for u in users[:30])
    st.caption(f"Users: {ids}{' …' if len(users) > 30 else ''}")
    left, right = st.columns(2, gap="large")
    with left:
        what = "planted interests" if data.truth is not None else "genres"
        if detail["labels"]:
            st.markdown(f"**Their histories by {what}**, against all users")
            st.plotly_chart(
                label_share_figure(
                    detail["labels"],
                    detail["share_group"],
                    detail["share_all"],
                    f"slot {int(slot)}",
                ),
                key="slot_labels",
                width="stretch",
            )
    with right:
        st.markdown("**Items over-represented in their histories**")
        rows = pd.DataFrame(detail["items"])
        if rows.empty:
            st.caption("No item is held by two or more of these users.")
        else:
            group = "planted interest" if data.truth is not None else "genre"
            st.dataframe(
                rows.rename(columns={"genre": group})[["title", group, "users", "lift"]],
                hide_index=True,
                width="stretch",
                column_config={
                    "lift": st.column_config.NumberColumn(
                        "lift",
                        help="share of these users holding it ÷ share of all users",
                        format="%.1f×",
                    )
                },
            )
