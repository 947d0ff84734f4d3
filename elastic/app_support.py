"""Streamlit glue of the pages: with `elastic.app_guide` (the guided path's), the only module
below `app.py` and `app_pages/` that imports Streamlit.

It wraps the app's Streamlit-free parts (`elastic.app`) for Streamlit and holds nothing else:

1. caches — the shipped demo models (`st.cache_resource`, shared by every session) and the
   arrays derived from them (`st.cache_data`, keyed by the model bundle's key); the lab's
   analytic curves and the server's measurements;
2. session state — this session's training job (a session-scoped `st.cache_resource`), the
   model source and the user every page shows, the session's uploads, the sidebar's badge.

Heavy imports (torch and everything that needs it) happen inside the functions that need them,
so the first page draws before torch is imported; Python imports a module once per process.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from elastic.app import lab
from elastic.app.bundles import (
    ModelBundle,
    load_demo_bundle,
    read_demo_info,
    read_measured_ablation,
)
from elastic.app.jobs import JobSnapshot, TrainingJob
from elastic.app.lab import LabSettings, MeasureJob

if TYPE_CHECKING:
    from elastic.data import InteractionData
    from elastic.viz.analysis import UserView

# ----------------------------------------------------------------------------------------------
# The loaded models
# ----------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def demo_info() -> dict | None:
    """The demo's description (`bundles.read_demo_info`), read once per server; None when the
    demo was never built."""
    return read_demo_info()


@st.cache_resource(show_spinner="Loading the shipped demo models…")
def demo_bundle() -> ModelBundle | None:
    """The shipped checkpoint of the default synthetic dataset, on the auto-picked device;
    shared read-only by every session. None when assets/demo is missing."""
    info = demo_info()
    return None if info is None else load_demo_bundle(info)


def current_bundle() -> ModelBundle | None:
    """The bundle the sidebar chose: this session's trained models, or the shipped demo."""
    if st.session_state.get("model_source") == "session":
        trained = training_job().bundle()
        if trained is not None:
            return trained
    return demo_bundle()


def model_source_picker() -> None:
    """Sidebar choice between the demo and this session's trained models (when there are)."""
    trained = training_job().bundle()
    if trained is None:
        st.session_state["model_source"] = "demo"
        st.sidebar.caption("Models: the shipped demo (train your own on the Train page).")
        return
    st.sidebar.radio(
        "Models the pages show",
        ["demo", "session"],
        format_func=lambda v: "shipped demo" if v == "demo" else f"trained here: {trained.label}",
        key="model_source",
    )


def missing_demo_message() -> None:
    st.error(
        "The shipped demo checkpoint (assets/demo) is missing. Rebuild it with "
        "`python scripts/make_demo_checkpoint.py`, or train a model on the Train page."
    )


def require_bundle() -> ModelBundle:
    """The current bundle, or stop the page with a sentence."""
    bundle = current_bundle()
    if bundle is None:
        missing_demo_message()
        st.stop()
    return bundle


SELECTED_USER = "selected_user"  # session-state key of the user every page shows


def _remember_user(key: str) -> None:
    st.session_state[SELECTED_USER] = st.session_state[key]


def user_picker(data: InteractionData, max_len: int, key: str = "user") -> int:
    """Pick a user by id (type to search) and return the user's index; the caption says how
    much of the history the model (history length `max_len`) reads.

    Session state holds the choice (`selected_user`), not the widget: a widget's state belongs to
    its page, so the same selectbox on another page would start over at the first user. Each page
    that shows a user writes it back to the URL (`?user=42`) so the link can be shared; a link's
    user seeds a session that has not chosen one yet."""
    ids = [str(u) for u in data.user_ids]
    index_of = {u: i for i, u in enumerate(ids)}
    chosen = st.session_state.get(SELECTED_USER)
    if chosen not in index_of:  # a new session, or a user of another dataset (source changed)
        chosen = st.query_params.get("user")
        chosen = chosen if chosen in index_of else ids[0]
        st.session_state[SELECTED_USER] = chosen
    st.session_state[key] = chosen
    choice = st.selectbox(
        "User id (type to search)", ids, key=key, on_change=_remember_user, args=(key,)
    )
    st.query_params["user"] = choice
    user = index_of[choice]
    before = len(data.sequences[user]) - 1  # the last item is held out
    read = (
        f"the model reads the last N = {max_len} of the {before} before it"
        if before > max_len
        else f"the model reads all {before} before it (N = {max_len})"
    )
    st.caption(
        f"{before + 1} items in the history: the last one is held out as the next item, and "
        f"{read}."
    )
    return user


# ----------------------------------------------------------------------------------------------
# Derived arrays (st.cache_data, keyed by the bundle key; the bundle itself is not hashed)
# ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=512, show_spinner=False)
def user_view(bundle_key: str, user_index: int, _bundle: ModelBundle) -> UserView:
    from elastic.viz.analysis import elastic_user_view

    return elastic_user_view(_bundle.elastic, _bundle.data, user_index)


@st.cache_data(max_entries=512, show_spinner=False)
def interest_scores(bundle_key: str, user_index: int, layer: int, _bundle: ModelBundle):
    from elastic.viz.analysis import interest_item_scores

    view = user_view(bundle_key, user_index, _bundle)
    return interest_item_scores(_bundle.elastic, view, layer)


@st.cache_data(max_entries=16, show_spinner="Retrieving every user's memory slots…")
def memory_table(bundle_key: str, _bundle: ModelBundle) -> dict:
    """Every user's slots and gates, and the usage statistics of the memory."""
    import torch

    from elastic.models import memory_usage
    from elastic.viz.analysis import retrieve_all

    slot_ids, gates = retrieve_all(_bundle.elastic, _bundle.data)
    num_slots = _bundle.elastic.config.num_slots
    usage = memory_usage(torch.from_numpy(slot_ids), num_slots)
    return {
        "slot_ids": slot_ids,
        "gates": gates,
        "users_per_slot": usage["counts"].numpy(),  # a user's k slots are distinct
        "share_used": usage["share_used"],
        "dead_slots": usage["dead_slots"],
        "kl_to_uniform": usage["kl_to_uniform"],
        "max_share": usage["max_share"],
    }


@st.cache_data(max_entries=256, show_spinner=False)
def slot_detail(bundle_key: str, slot: int, _bundle: ModelBundle) -> dict:
    """The users who retrieve `slot` and what their histories share."""
    from elastic.viz.analysis import label_shares, shared_items, users_of_slot

    table = memory_table(bundle_key, _bundle)
    users = users_of_slot(table["slot_ids"], slot)
    labels, share_group = label_shares(_bundle.data, users) if users.size else ([], [])
    _, share_all = label_shares(_bundle.data)
    return {
        "users": users,
        "items": shared_items(_bundle.data, users),
        "labels": labels,
        "share_group": share_group,
        "share_all": share_all,
    }


@st.cache_data(max_entries=512, show_spinner=False)
def recommendations(bundle_key: str, user_index: int, _bundle: ModelBundle, top: int = 10):
    """Top items of each model for one user (history filtered)."""
    from elastic.viz.analysis import next_item_scores, rank_of, top_items

    view = user_view(bundle_key, user_index, _bundle)
    seen = _bundle.data.sequences[user_index][:-1]
    out: dict[str, Any] = {"held_out": view.held_out, "models": {}}
    for name, model in _bundle.models.items():
        scores = (
            view.logits if name == "elastic" else next_item_scores(model, _bundle.data, user_index)
        )
        items = top_items(scores, seen, top)
        out["models"][name] = {
            "items": items,
            "scores": scores[items],
            "held_out_rank": rank_of(scores, view.held_out, seen),
        }
    return out


@st.cache_data(max_entries=512, show_spinner=False)
def knockout_effects_of(bundle_key: str, user_index: int, _bundle: ModelBundle):
    """ELASTIC's top-10 for one user with each dispatcher knocked out in turn."""
    import torch

    from elastic.data import pad_left
    from elastic.viz.analysis import user_history
    from elastic.viz.interventions import knockout_effects

    history, held_out = user_history(_bundle.data, user_index)
    ids = torch.from_numpy(pad_left([history], _bundle.elastic.config.max_len))
    return knockout_effects(_bundle.elastic, ids, held_out, seen=history)


@st.cache_data(max_entries=512, show_spinner="Running the model with the change…")
def experiment_of(bundle_key: str, user_index: int, experiment, _bundle: ModelBundle):
    """One user's pass as trained and under `experiment` (an `interventions.Experiment`)."""
    from elastic.viz.interventions import run_experiment

    return run_experiment(_bundle.elastic, _bundle.data, user_index, experiment)


@st.cache_data(show_spinner=False)
def measured_ablation() -> dict | None:
    """`benchmarks/ablation.py`'s record of the shipped demo, or None when it was never run."""
    return read_measured_ablation()


@st.cache_data(show_spinner=False)
def interest_recovery_of(bundle_key: str, _bundle: ModelBundle) -> dict | None:
    """Dataset-level dispatcher/slot NMI against the planted interests (synthetic only)."""
    if _bundle.data.truth is None:
        return None
    if bundle_key == "demo":
        info = demo_info() or {}
        if info.get("interest_recovery"):
            return info["interest_recovery"]
    from elastic.data import leave_one_out
    from elastic.evaluate import interest_recovery

    return interest_recovery(
        _bundle.elastic, _bundle.data, leave_one_out(_bundle.data), max_users=500
    )


# ----------------------------------------------------------------------------------------------
# This session's training job
# ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def training_curves(job_id: str, generation: int, version: int, _snapshot: JobSnapshot):
    """The live curves of one state of a job: drawn once per version, not once per poll."""
    from elastic.viz.training import training_figure

    return training_figure(
        {name: run.history for name, run in _snapshot.runs.items()},
        {name: run.batch_losses for name, run in _snapshot.runs.items()},
        max_epochs=_snapshot.request.train.get("epochs") if _snapshot.request else None,
    )


@st.cache_resource(scope="session", on_release=TrainingJob.release, show_spinner=False)
def training_job() -> TrainingJob:
    """This session's training job: survives reruns and page switches, ends with the session."""
    return TrainingJob()


def training_status_badge() -> None:
    """A line in the sidebar while this session trains, so a page switch never hides a run."""
    snap = training_job().snapshot()
    if snap.running:
        done = [run.progress for run in snap.runs.values()]
        share = sum(done) / len(done) if done else 0.0
        st.sidebar.info(f"Training in the background: {share:.0%} done (see the Train page).")
    elif snap.phase == "finished" and snap.has_models:
        st.sidebar.success("This session's training run has finished.")


# ----------------------------------------------------------------------------------------------
# Uploaded tables
# ----------------------------------------------------------------------------------------------


def session_upload_dir() -> Path:
    """A private folder for this session's uploads (removed with the process)."""
    if "upload_dir" not in st.session_state:
        st.session_state["upload_dir"] = tempfile.mkdtemp(prefix="elastic-upload-")
    return Path(st.session_state["upload_dir"])


def store_upload(uploaded) -> Path:
    """Write an `st.file_uploader` file to disk (the loaders read paths) and return its path."""
    folder = session_upload_dir()
    path = folder / Path(uploaded.name).name
    with open(path, "wb") as handle:
        shutil.copyfileobj(uploaded, handle)
    uploaded.seek(0)
    return path


# ----------------------------------------------------------------------------------------------
# Complexity lab: the analytic curves per slider state, the measurements per server
# ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=2048, show_spinner=False)
def analytic_point(settings: LabSettings, seq_len: int) -> dict[str, dict]:
    return lab.analytic_point(settings, seq_len)


@st.cache_data(max_entries=2048, show_spinner=False)
def analytic_sweep(settings: LabSettings) -> dict:
    return lab.analytic_sweep(settings)


@st.cache_data(show_spinner=False)
def lab_frame() -> dict:
    return lab.lab_frame()


@st.cache_resource(max_entries=512, show_spinner=False)
def analytic_figure(settings: LabSettings, seq_len: int):
    """The lab's analytic figure for one slider state. A resource, not data: the figure is only
    read (Streamlit serialises a copy), and skipping the pickle round trip keeps a revisited
    slider state at a few milliseconds."""
    return lab.analytic_figure(analytic_sweep(settings), lab_frame(), seq_len)


@st.cache_resource(show_spinner=False)
def _measurements() -> dict[tuple, MeasureJob]:
    """Every measurement this server made, by (settings, device)."""
    return {}


def measurement_for(settings: LabSettings, start: bool = False) -> MeasureJob | None:
    """The measurement of these settings on this device: existing, newly started, or None."""
    from elastic.device import pick_device

    device = pick_device("auto").type
    jobs = _measurements()
    key = (settings, device)
    job = jobs.get(key)
    if job is not None and job.status in ("cancelled", "failed") and start:
        job = None
    if job is None and start:
        job = MeasureJob(settings, lab.measurement_grid(device), device)
        jobs[key] = job
        threading.Thread(target=job.run, name="elastic-measure", daemon=True).start()
    return job
