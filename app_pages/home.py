"""Home: the guided path a workshop runs from, then what ELASTIC is and what is loaded.

The path comes first, above the fold of a laptop screen: the instructor starts from it. The page
is laid out in containers and filled out of order: everything that needs no torch (text,
picture, path, the demo's training curves from demo.json) is drawn first, the models are loaded
last, so the first chart appears while torch is still importing.
"""

import streamlit as st

from elastic import app_guide, guide
from elastic import app_support as support
from elastic.app.paths import ARCHITECTURE_SVG
from elastic.viz.training import training_figure

st.title("ELASTIC: attention that costs O(N·k), not O(N²)")
st.markdown(
    "A recommender that reads a user's last **N** items with **k** interest experts instead of "
    "comparing every item with every other: time and memory grow as **N·k**, not **N²**."
)

st.subheader("A guided path")
st.caption(
    f"{len(guide.STEPS)} steps, {guide.total_minutes()} minutes: each opens its page with the "
    "settings it needs and shows its question on top, what you should see, and the next step."
)
cards = st.columns(4)
for number, step in enumerate(guide.STEPS, start=1):
    # short titles on the link (a long question was cut off), the question below it
    with cards[(number - 1) % 4], st.container(border=True):
        app_guide.step_link(number, f"**{number} · {step.title}**", icon=":material/arrow_forward:")
        st.caption(f"{step.question} — *{step.page_title}, {step.minutes} min*")
with cards[len(guide.STEPS) % 4]:
    st.caption(
        "Each step is a link: copy it from the address bar to put the whole room on the same "
        "view. The sidebar leaves the path; **Back to the path** returns here."
    )

st.subheader("How it works")
left, right = st.columns(2, gap="large")
left.markdown(
    "A sequential recommender reads a user's history of **N** items and predicts the next "
    "one. Self-attention (SASRec) compares every item with every other: **N²** work, and "
    "**N²** memory when the scores are materialized. ELASTIC replaces it with **linear "
    "dispatcher attention**, so time and memory grow as **N·k**.\n\n"
    "The source paper (arXiv 2408.09380) was withdrawn by its authors; its speed and accuracy "
    "claims are hypotheses this app lets you test, not facts."
)
right.markdown(
    "1. A cheap query network reads the history and looks up **k interest experts** "
    "(*dispatchers*) in a **product-key memory** of **K** slots.\n"
    "2. **Stage 1, compress:** each dispatcher gathers the history items that match it into "
    "an interest vector (k × N weights).\n"
    "3. **Stage 2, dispatch:** each history position reads the k interest vectors back "
    "(N × k weights). Nothing N × N is ever formed."
)
if ARCHITECTURE_SVG.is_file():
    st.image(str(ARCHITECTURE_SVG), width=1000)
loaded = st.container()

info = support.demo_info()
if info is not None:
    st.subheader("The shipped demo, trained before you arrived")
    st.plotly_chart(
        training_figure(info["history"], metric="NDCG@10"), key="home_curves", width="stretch"
    )
    st.caption(
        f"Trained by `scripts/make_demo_checkpoint.py` on {info['device']} with the Train "
        "page's defaults; both models see the same data, loss and full-ranking evaluation."
    )

with loaded:
    with st.spinner("Loading the models…"):
        bundle = support.current_bundle()
    if bundle is None:
        support.missing_demo_message()
        st.stop()
    cfg = bundle.elastic.config
    stats = bundle.data.stats()
    st.markdown(
        f"**Loaded:** {bundle.label} on **{bundle.device}** — ELASTIC with k = "
        f"{cfg.num_interests} dispatchers, K = {cfg.num_slots} memory slots, d = {cfg.d_model}, "
        f"{cfg.num_layers} layers, N = {cfg.max_len}"
        + (", and a SASRec baseline" if "sasrec" in bundle.models else "")
        + f"; dataset {stats['name']}: {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions."
    )
    names = {"elastic": "ELASTIC", "sasrec": "SASRec"}
    cols = st.columns(4)
    for col, (name, metrics) in zip(cols, bundle.metrics.items(), strict=False):
        test = metrics.get("test") or {}
        if "NDCG@10" in test:
            col.metric(
                f"{names[name]} test NDCG@10",
                f"{test['NDCG@10']:.3f}",
                help=f"HR@10 {test['HR@10']:.3f}; full ranking over all items, history filtered",
            )
    recovery = (info or {}).get("interest_recovery") if bundle.key == "demo" else None
    if recovery:
        cols[2].metric(
            "Dispatchers vs planted interests",
            f"NMI {recovery['dispatcher_nmi_per_user']:.2f}",
            help="How well 'the dispatcher that gathers an item most' matches the item's "
            "planted interest, per user "
            f"(shuffled: {recovery['dispatcher_nmi_per_user_chance']:.2f}).",
        )
        cols[3].metric(
            "Memory slots vs planted interests",
            f"NMI {recovery['slot_nmi']:.2f}",
            help="A user's top slot against the user's dominant planted interest "
            f"(shuffled: {recovery['slot_nmi_chance']:.2f}).",
        )
