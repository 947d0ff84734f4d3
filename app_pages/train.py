"""Train: ELASTIC and SASRec side by side on a dataset of your choice, in the background."""

import time

import pandas as pd
import streamlit as st

from elastic import app_support as support
from elastic.app.jobs import TRAINING_SLOTS
from elastic.app.requests import (
    TrainRequest,
    check_training_request,
    default_movielens_path,
    table_columns,
)
from elastic.defaults import APP_TRAIN, SYNTHETIC_MODEL
from elastic.defaults import SYNTHETIC_DATA as DATA
from elastic.viz.style import MODEL_NAMES

job = support.training_job()
snap = job.snapshot()
defaults_model, defaults_train = SYNTHETIC_MODEL, APP_TRAIN
KEEP = {"persist_state": "session"}  # the form keeps its settings across page switches

st.title("Train")
st.caption(
    "Both models train at once in the background, with the same data, loss, optimizer and "
    "full-ranking evaluation; the only difference is the sequence mixer. Switching pages or "
    "moving a slider never stops a run; closing the tab does."
)

source = st.segmented_control(
    "Dataset",
    ["synthetic", "movielens", "upload"],
    format_func={
        "synthetic": "Synthetic (planted interests)",
        "movielens": "MovieLens-1M",
        "upload": "Upload a CSV / Parquet",
    }.get,
    default="synthetic",
    required=True,
    key="train_source",
)
uploaded_path, columns = None, []
if source == "movielens":
    zipped = st.file_uploader(
        "…or upload the GroupLens ml-1m.zip (it is not stored after the session)",
        type=["zip"],
        key="train_ml_zip",
    )
    if zipped is not None:
        uploaded_path = support.store_upload(zipped)
if source == "upload":
    uploaded = st.file_uploader(
        "An interaction table: one row per (user, item), optionally a time column",
        type=["csv", "tsv", "parquet", "pq"],
        key="train_upload",
    )
    separator = st.radio(
        "Separator (CSV)",
        [None, ",", ";", "\t", "|"],
        format_func=lambda sep: {None: "detect", "\t": "tab"}.get(sep, sep),
        horizontal=True,
        key="train_upload_sep",
    )
    if uploaded is not None:
        uploaded_path = support.store_upload(uploaded)
        try:
            columns = table_columns(uploaded_path, separator)
        except ValueError as error:
            st.error(f"{uploaded.name} could not be read: {error}")

with st.form("train_form"):
    dataset_kwargs, dataset, label = {}, "synthetic", "synthetic"
    if source == "synthetic":
        st.markdown(
            "**Synthetic data** — users visit a few planted interests in rotating sessions and "
            "prefer one facet inside each."
        )
        c1, c2, c3, c4 = st.columns(4)
        users = c1.number_input("Users", 100, 20000, DATA["num_users"], step=100,
                                key="tf_users", **KEEP)
        items = c2.number_input("Items", 100, 20000, DATA["num_items"], step=100,
                                key="tf_items", **KEEP)
        interests = c3.number_input("Planted interests G", 1, 64, DATA["planted_interests"],
                                    key="tf_interests", **KEEP)
        per_user = c4.number_input("Interests per user", 1, 16, DATA["interests_per_user"],
                                   key="tf_per_user", **KEEP)
        c1, c2, c3, c4 = st.columns(4)
        facets = c1.number_input("Facets per interest", 1, 16, DATA["facets"],
                                 key="tf_facets", **KEEP)
        session = c2.number_input("Session length", 1, 100, DATA["session_len"],
                                  key="tf_session", **KEEP)
        taste = c3.slider("Taste (share from the user's facet)", 0.0, 1.0, DATA["taste"], 0.05,
                          key="tf_taste", **KEEP)
        data_seed = c4.number_input("Data seed", 0, 10**6, DATA["seed"], key="tf_data_seed", **KEEP)
        c1, c2, c3, _ = st.columns(4)
        min_len = c1.number_input("Shortest history", 3, 2000, DATA["min_seq_len"],
                                  key="tf_min_len", **KEEP)
        max_len_data = c2.number_input("Longest history", 3, 5000, DATA["max_seq_len"],
                                       key="tf_max_len", **KEEP)
        archetypes = c3.number_input(
            "Taste communities", 0, 10000, DATA["archetypes"], key="tf_archetypes",
            help="Users copy their interests, order and tastes from one of this many "
            "archetypes; 0 draws every user independently.", **KEEP)
        dataset_kwargs = dict(
            num_users=int(users),
            num_items=int(items),
            planted_interests=int(interests),
            facets=int(facets),
            interests_per_user=int(per_user),
            session_len=int(session),
            taste=float(taste),
            min_seq_len=int(min_len),
            max_seq_len=int(max_len_data),
            archetypes=int(archetypes),
            seed=int(data_seed),
        )
    elif source == "movielens":
        st.markdown(
            "**MovieLens-1M** — a GroupLens folder or zip (ratings.dat + movies.dat), or a "
            "SASRec-format ml-1m.txt (titles are attached when movies.dat lies beside it)."
        )
        dataset = st.text_input(
            "Path on the server",
            str(uploaded_path) if uploaded_path else default_movielens_path(),
            disabled=uploaded_path is not None,
        )
        five_core = st.checkbox(
            "5-core item filter (items seen 5+ times)", value=False, key="tf_five_core", **KEEP
        )
        label = "ML-1M"
        if five_core:
            dataset_kwargs = {"five_core": True}
    else:
        st.markdown("**Your table** — pick which columns hold the user, the item and the time.")
        c1, c2, c3 = st.columns(3)
        user_col = c1.selectbox("User column", columns, index=0 if columns else None)
        item_col = c2.selectbox("Item column", columns, index=1 if len(columns) > 1 else None)
        time_col = c3.selectbox("Time column (optional)", ["(none: file order)", *columns])
        if uploaded_path is not None:
            dataset, label = str(uploaded_path), f"upload: {uploaded_path.name}"
            dataset_kwargs = {"user_col": user_col, "item_col": item_col, "sep": separator}
            if time_col and not time_col.startswith("("):
                dataset_kwargs["time_col"] = time_col

    st.markdown("**Models and training** (shared by both; k and K are ELASTIC's)")
    c1, c2, c3, c4 = st.columns(4)
    seq_len = c1.select_slider(
        "History length N",
        [10, 20, 30, 50, 100, 200, 400],
        defaults_model["max_len"],
        key="tf_seq_len",
        **KEEP,
    )
    d_model = c2.select_slider(
        "Width d", [16, 32, 64, 128, 256], defaults_model["d_model"], key="tf_d", **KEEP
    )
    layers = c3.slider("Layers", 1, 4, defaults_model["num_layers"], key="tf_layers", **KEEP)
    heads = c4.select_slider(
        "Heads", [1, 2, 4, 8], defaults_model["num_heads"], key="tf_heads", **KEEP
    )
    c1, c2, c3, c4 = st.columns(4)
    k = c1.select_slider(
        "Dispatchers k", [2, 4, 8, 16, 32], defaults_model["num_interests"], key="tf_k", **KEEP
    )
    slots = c2.select_slider(
        "Memory slots K",
        [n * n for n in (4, 8, 16, 32, 64)],
        defaults_model["num_slots"],
        key="tf_slots",
        **KEEP,
    )
    dropout = c3.slider(
        "Dropout", 0.0, 0.5, defaults_model["dropout"], 0.05, key="tf_dropout", **KEEP
    )
    seed = c4.number_input("Seed", 0, 10**6, defaults_train["seed"], key="tf_seed", **KEEP)
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.slider(
        "Epochs (at most)", 1, 100, defaults_train["epochs"], key="tf_epochs", **KEEP
    )
    batch = c2.select_slider(
        "Batch size", [32, 64, 128, 256, 512], defaults_train["batch_size"], key="tf_batch", **KEEP
    )
    lr = c3.select_slider(
        "Learning rate", [3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2], defaults_train["lr"],
        key="tf_lr", **KEEP,
    )
    patience = c4.slider(
        "Early-stopping patience", 1, 20, defaults_train["patience"], key="tf_patience", **KEEP
    )
    submitted = st.form_submit_button(
        "Train ELASTIC and SASRec", type="primary", disabled=snap.running
    )

if submitted:
    model = dict(
        max_len=int(seq_len),
        d_model=int(d_model),
        num_layers=int(layers),
        num_heads=int(heads),
        dropout=float(dropout),
        num_interests=int(k),
        num_slots=int(slots),
    )
    train = dict(
        epochs=int(epochs), batch_size=int(batch), lr=float(lr), seed=int(seed),
        patience=int(patience),
    )  # fmt: skip
    problem = check_training_request(source, dataset, dataset_kwargs, model, train)
    if problem:
        st.error(problem)
    else:
        job.start(TrainRequest(dataset, dataset_kwargs, label, model, train))
        st.session_state["train_was_running"] = True
        st.session_state.pop("train_archive", None)  # the last run's download is gone
        snap = job.snapshot()

# Material icons, drawn from the font Streamlit ships: emoji render as empty boxes in a browser
# without an emoji font (Debian's Chromium).
STATUS_ICONS = {
    "queued": ":material/hourglass_empty:",
    "waiting for a free CPU slot": ":material/hourglass_empty:",
    "training": ":material/play_circle:",
    "done": ":material/check_circle:",
    "stopped": ":material/pause_circle:",
    "failed": ":material/error:",
}


def show_trained_models() -> None:
    """Point the sidebar's model source at this session's models. The button lives in the
    polling fragment, whose own rerun would not redraw the sidebar: the radio would keep showing
    the demo and send that back on the next page switch. A full-app rerun redraws it."""
    st.session_state["model_source"] = "session"
    st.rerun()


# Poll every 2 s while a run is live (a batch takes longer than that on a laptop CPU); the
# curves are rebuilt only when the job's version changed.
@st.fragment(run_every=2.0 if snap.running else None)
def live_run() -> None:
    """Polls the job's snapshot; the job's threads never call Streamlit."""
    now = job.snapshot()
    if now.phase == "idle":
        st.info("No run yet in this session. Choose a dataset and press **Train**.")
        return
    if now.running:
        st.session_state["train_was_running"] = True
    elif st.session_state.pop("train_was_running", False):
        st.rerun()  # the run just ended: refresh the form, the sidebar and the buttons

    request = now.request
    elapsed = time.time() - (now.started_at or time.time())
    st.subheader(f"Run {now.generation}: {request.dataset_label} — {now.phase}")
    if now.phase == "loading":
        st.caption("Loading and splitting the data…")
    if now.error:
        st.error(now.error)
    if now.dataset_stats:
        s = now.dataset_stats
        st.caption(
            f"{s['users']} users · {s['items']} items · {s['interactions']} interactions · "
            f"mean history {s['mean_sequence_length']:.0f} · {elapsed:.0f} s since start"
        )
    cols = st.columns(len(now.runs))
    for col, (name, run) in zip(cols, now.runs.items(), strict=True):
        with col:
            st.markdown(
                f"{STATUS_ICONS.get(run.status, '')} **{MODEL_NAMES[name]}** — {run.status}"
            )
            st.progress(min(run.progress, 1.0))
            if run.error:
                st.error(run.error)
    st.plotly_chart(
        support.training_curves(job.id, now.generation, now.version, now),
        key="train_curves",
        width="stretch",
    )
    results = {
        MODEL_NAMES[name]: {
            **{f"valid {m}": v for m, v in ((run.result or {}).get("valid") or {}).items()},
            **{f"test {m}": v for m, v in ((run.result or {}).get("test") or {}).items()},
        }
        for name, run in now.runs.items()
        if run.result
    }
    if results:
        frame = pd.DataFrame(results).T
        keep = [c for c in frame.columns if c.split(" ")[1] in ("HR@10", "NDCG@10", "MRR")]
        st.dataframe(frame[keep].style.format("{:.4f}"), width="stretch")

    b1, b2, b3, b4 = st.columns(4)
    if now.running:
        b1.button("Stop", on_click=job.stop, icon=":material/stop:", key="train_stop")
    if (
        now.phase == "stopped"
        and now.has_models
        and b1.button("Resume", icon=":material/play_arrow:", key="train_resume")
    ):
        job.resume()
        st.rerun()  # a full rerun, so that this fragment polls again
    if not now.running and now.has_models:
        if b2.button("Save checkpoints", icon=":material/save:", key="train_save"):
            try:
                st.session_state["train_archive"] = str(job.save())
            except (RuntimeError, OSError, ValueError) as error:
                st.error(f"Could not save: {error}")
        archive = st.session_state.get("train_archive")
        if archive:
            with open(archive, "rb") as handle:
                b3.download_button(
                    "Download the checkpoints (.zip)",
                    handle.read(),
                    file_name=archive.rsplit("/", 1)[-1],
                    key="train_download",
                )
            st.caption(f"Saved to {archive}")
    if job.bundle() is not None and not now.running:
        if st.session_state.get("model_source") != "session":
            b4.button(
                "Show these models everywhere",
                type="primary",
                on_click=show_trained_models,
                key="train_use",
            )
        else:
            b4.success("Every page shows these models.")
    elif not now.running and now.phase in ("stopped", "failed"):
        st.caption("No validated ELASTIC model yet: resume to finish at least one epoch.")


live_run()
st.caption(
    f"This server trains at most {TRAINING_SLOTS} models at once; other sessions' runs "
    "wait for a free slot so that every page stays responsive."
)
