"""Streamlit glue: the only module below `app.py` and `app_pages/` that imports Streamlit.

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

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from elastic.app.bundles import (
    ModelBundle,
    load_demo_bundle,
    read_demo_info,
    read_measured_ablation,
)
from elastic.app.jobs import JobSnapshot, TrainingJob
from elastic.app.paths import ROOT

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


def slot_causality_note(bundle: ModelBundle) -> None:
    """Above the memory map: whether the measured ablation found the retrieved slots to matter
    (the shipped demo only; nothing for a model trained in this session)."""
    record = measured_ablation()
    if record is None or bundle.key != "demo":
        return
    from elastic.viz.interventions import slot_verdict

    sentence = slot_verdict(record)
    if sentence:
        st.info(sentence, icon=":material/science:")


def measured_ablation_section(bundle: ModelBundle) -> None:
    """The ablation table measured over all users of the shipped demo, with its source, or a
    sentence saying why it is not shown."""
    record = measured_ablation()
    if record is None:
        st.caption("No measured ablation yet: `python benchmarks/ablation.py` writes one.")
        return
    if bundle.key != "demo":
        st.caption(
            "The measured ablation (`benchmarks/results/ablation.md`) describes the shipped "
            "demo, not the model trained in this session: run `python -m elastic ablate` on "
            "its checkpoint to measure it."
        )
        return
    import pandas as pd

    from elastic.viz.interventions import ablation_rows, ablation_source, ablation_verdict

    st.markdown(ablation_verdict(record))
    st.dataframe(
        pd.DataFrame(ablation_rows(record)),
        hide_index=True,
        width="stretch",
        column_config={
            "test NDCG@10": st.column_config.NumberColumn(format="%.4f"),
            "test HR@10": st.column_config.NumberColumn(format="%.4f"),
        },
        key="measured_ablation",
    )
    st.caption(ablation_source(record))


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
# Complexity lab: analytic curves (cached) and measurements in a background thread
# ----------------------------------------------------------------------------------------------

LAB_N = [2**i for i in range(4, 17)]  # 16 .. 65,536
LAB_K = [1, 2, 4, 8, 16, 32, 64, 128]
LAB_SLOTS = [16, 64, 256, 1024, 4096, 16384, 65536]
LAB_D = [32, 64, 128, 256, 512]
LAB_LAYERS = [1, 2, 3, 4, 6, 8]
LAB_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]
LAB_FORMS = ("sasrec-materialized", "sasrec-sdpa", "elastic")


@dataclass(frozen=True)
class LabSettings:
    """The lab's sliders except N (the curves run over N)."""

    mode: str  # "infer" or "train"
    interests: int  # k
    slots: int  # K
    d_model: int
    layers: int
    batch: int

    def shape(self, seq_len: int):
        from elastic.complexity import Shape

        return Shape(
            batch=self.batch,
            seq_len=seq_len,
            d_model=self.d_model,
            layers=self.layers,
            interests=self.interests,
            slots=self.slots,
        )


def _costs(settings: LabSettings, seq_len: int) -> dict[str, dict]:
    """Each form's FLOPs and predicted peak bytes at N = seq_len, each the sum of its formula's
    terms, which are kept too ("flops terms", "bytes terms") for the lab's hover."""
    from elastic.complexity import flops_terms, peak_bytes_terms

    shape = settings.shape(seq_len)
    costs = {}
    for form in LAB_FORMS:
        flop_terms = flops_terms(form, settings.mode, shape)
        byte_terms = peak_bytes_terms(form, settings.mode, shape)
        costs[form] = {
            "flops": sum(flop_terms.values()),
            "bytes": sum(byte_terms.values()),
            "flops terms": flop_terms,
            "bytes terms": byte_terms,
        }
    return costs


@st.cache_data(max_entries=2048, show_spinner=False)
def analytic_point(settings: LabSettings, seq_len: int) -> dict[str, dict[str, float]]:
    return _costs(settings, seq_len)


@st.cache_data(max_entries=2048, show_spinner=False)
def analytic_sweep(settings: LabSettings) -> dict:
    """FLOPs and predicted peak bytes of the three forms over N, their terms point by point,
    and the crossovers with SDPA."""
    from elastic.viz.complexity import find_crossover, n_grid

    ns = n_grid(LAB_N[0], LAB_N[-1], per_octave=2)
    points = [_costs(settings, int(n)) for n in ns]
    curves = {
        form: {q: [p[form][q] for p in points] for q in ("flops", "bytes")} for form in LAB_FORMS
    }
    terms = {
        form: {q: [p[form][f"{q} terms"] for p in points] for q in ("flops", "bytes")}
        for form in LAB_FORMS
    }
    crossovers = {
        q: find_crossover(ns, curves["sasrec-sdpa"][q], curves["elastic"][q])
        for q in ("flops", "bytes")
    }
    return {"ns": ns.tolist(), "curves": curves, "terms": terms, "crossovers": crossovers}


@st.cache_resource(max_entries=512, show_spinner=False)
def analytic_figure(settings: LabSettings, seq_len: int):
    """The lab's analytic figure for one slider state. A resource, not data: the figure is only
    read (Streamlit serialises a copy), and skipping the pickle round trip keeps a revisited
    slider state at a few milliseconds."""
    from elastic.viz.complexity import cost_figure

    sweep, frame = analytic_sweep(settings), lab_frame()
    return cost_figure(
        sweep["ns"],
        sweep["curves"],
        panels=[
            ("flops", "time: FLOPs of one call", "flops"),
            ("bytes", "memory: predicted peak", "bytes"),
        ],
        current_n=seq_len,
        x_range=frame["x_range"],
        y_ranges=frame["y_ranges"],
        crossovers=sweep["crossovers"],
        breakdowns=sweep["terms"],
        # N·k against N²: SASRec's cost bends to slope 2 (its memory too when the N × N scores
        # are materialized), ELASTIC's stays at slope 1
        guides={
            "flops": [("elastic", 1), ("sasrec-sdpa", 2)],
            "bytes": [("elastic", 1), ("sasrec-materialized", 2)],
        },
    )


@st.cache_data(show_spinner=False)
def lab_frame() -> dict:
    """Axis ranges that hold every curve any slider setting can draw, rounded to decades, so
    the frame never moves while the sliders do."""
    import math

    smallest = LabSettings("infer", LAB_K[0], LAB_SLOTS[0], LAB_D[0], LAB_LAYERS[0], LAB_BATCH[0])
    largest = LabSettings(
        "train", LAB_K[-1], LAB_SLOTS[-1], LAB_D[-1], LAB_LAYERS[-1], LAB_BATCH[-1]
    )
    low, high = _costs(smallest, LAB_N[0]), _costs(largest, LAB_N[-1])
    y_ranges = {}
    for q in ("flops", "bytes"):
        lo = min(v[q] for v in low.values())
        hi = max(v[q] for v in high.values())
        y_ranges[q] = (10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)))
    return {"x_range": (LAB_N[0] / 1.3, LAB_N[-1] * 1.3), "y_ranges": y_ranges}


@dataclass
class MeasureJob:
    """One sweep of measured points for one lab setting; shared by every session (the numbers
    belong to the device, not to a user). Written by its thread under `lock`."""

    settings: LabSettings
    ns: list[int]
    device: str
    status: str = "queued"  # queued | measuring | done | cancelled | failed
    records: list[dict] = field(default_factory=list)
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def total(self) -> int:
        return len(self.ns) * len(LAB_FORMS)

    def snapshot(self) -> tuple[str, list[dict], str | None]:
        with self.lock:
            return self.status, [dict(r) for r in self.records], self.error

    def run(self) -> None:
        """Measure in a child process (`python -m elastic bench --jsonl`), reading its records
        line by line. The child runs the CPU memory profiler in its own main thread, so
        nothing of the profiler (its USDT and thread warnings) reaches the server's console, a
        measurement that runs out of memory takes only the child down, and Stop ends the child
        at once."""
        with _measure_slot:  # one measurement at a time: they would disturb each other
            if self.cancel.is_set():
                self._finish("cancelled")
                return
            self._finish("measuring")
            s = self.settings
            command = [
                sys.executable, "-m", "elastic", "bench", "--jsonl",
                "--impl", ",".join(LAB_FORMS), "--n", ",".join(str(n) for n in self.ns),
                "--k", str(s.interests), "--slots", str(s.slots), "--batch", str(s.batch),
                "--d-model", str(s.d_model), "--layers", str(s.layers), "--mode", s.mode,
                "--device", self.device, "--repeats", "3", "--warmup", "1",
                "--max-point-s", str(MEASURE_MAX_POINT_S),
            ]  # fmt: skip
            with tempfile.TemporaryFile("w+") as errors:
                child = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True
                )
                watcher = threading.Thread(target=self._stop_on_cancel, args=(child,), daemon=True)
                watcher.start()
                for line in child.stdout:
                    if line.startswith("{"):
                        with self.lock:
                            self.records.append(json.loads(line))
                child.wait()
                if self.cancel.is_set():
                    self._finish("cancelled")
                elif child.returncode != 0:
                    errors.seek(0)
                    said = [ln for ln in errors.read().splitlines() if ln.startswith("error:")]
                    reason = said[-1][len("error:") :].strip() if said else None
                    self._finish(
                        "failed",
                        reason or f"The measurement stopped (exit status {child.returncode}).",
                    )
                else:
                    self._finish("done")

    def _stop_on_cancel(self, child: subprocess.Popen) -> None:
        while child.poll() is None:
            if self.cancel.wait(0.2):
                child.terminate()
                return

    def _finish(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.status, self.error = status, error


_measure_slot = threading.Lock()
MEASURE_MAX_POINT_S = 20.0  # a point predicted to take longer is skipped, with the reason


@st.cache_resource(show_spinner=False)
def _measurements() -> dict[tuple, MeasureJob]:
    """Every measurement this server made, by (settings, device)."""
    return {}


def measurement_grid(device_type: str) -> list[int]:
    """N values to measure: up to 4k on a CPU (minutes, not hours), 16k on a GPU."""
    top = 16384 if device_type == "cuda" else 4096
    return [n for n in LAB_N if 64 <= n <= top]


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
        job = MeasureJob(settings, measurement_grid(device), device)
        jobs[key] = job
        threading.Thread(target=job.run, name="elastic-measure", daemon=True).start()
    return job


def _measured_curves(records: list[dict]) -> tuple[list[int], dict, list[str]]:
    """(ns, curves[form]["ms" | "peak"], skipped reasons) from bench records; an unmeasured
    point is 0, which the figure leaves as a gap."""
    ns = sorted({r["N"] for r in records})
    curves = {form: {"ms": [0.0] * len(ns), "peak": [0.0] * len(ns)} for form in LAB_FORMS}
    skipped = []
    for r in records:
        i = ns.index(r["N"])
        if r.get("skipped"):
            skipped.append(r["skipped"])
            continue
        curves[r["impl"]]["ms"][i] = r["median_ms"]
        curves[r["impl"]]["peak"][i] = max(r["peak_mib"], 0.01) * 2**20
    return ns, curves, skipped


def measured_section(settings: LabSettings) -> None:
    """The button, the live progress and the measured curves (polled by a fragment)."""
    from elastic.device import describe_device, pick_device

    device = pick_device("auto")
    job = measurement_for(settings)
    running = job is not None and job.status in ("queued", "measuring")
    st.caption(
        f"Device: **{describe_device(device)}**. Each point is the median of 3 calls after a "
        "warm-up, with the peak memory of one more call. Points the memory guard predicts "
        "would not fit, or that would take too long, are skipped and say why."
    )
    if job is None or job.status in ("cancelled", "failed"):
        ns = measurement_grid(device.type)
        if st.button(
            f"Measure N = {ns[0]}…{ns[-1]} with these settings",
            icon=":material/timer:",
            key="measure_start",
        ):
            measurement_for(settings, start=True)
            st.rerun()
        if job is not None and job.error:
            st.error(job.error)
        return

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        status, records, error = job.snapshot()
        if status in ("queued", "measuring"):
            st.session_state["measure_was_running"] = True
            done = len(records)
            st.progress(
                done / job.total,
                text="Waiting for another measurement to finish…"
                if status == "queued"
                else f"Measuring: {done} of {job.total} points",
            )
            st.button("Stop measuring", on_click=job.cancel.set, key="measure_stop")
        elif st.session_state.pop("measure_was_running", False):
            st.rerun()
        if error:
            st.error(error)
        if not records:
            return
        from elastic.viz.complexity import cost_figure, find_crossover

        ns, curves, skipped = _measured_curves(records)
        crossovers = {}
        for q in ("ms", "peak"):
            a, b = curves["sasrec-sdpa"][q], curves["elastic"][q]
            both = [i for i in range(len(ns)) if a[i] > 0 and b[i] > 0]
            if len(both) >= 2:
                crossovers[q] = find_crossover(
                    [ns[i] for i in both], [a[i] for i in both], [b[i] for i in both]
                )
        ms = [v for c in curves.values() for v in c["ms"] if v > 0]
        peak = [v for c in curves.values() for v in c["peak"] if v > 0]
        if not ms:
            st.caption("No point could be measured with these settings.")
        else:
            st.plotly_chart(
                cost_figure(
                    ns,
                    curves,
                    panels=[
                        ("ms", "measured time of one call", "ms"),
                        ("peak", "measured peak memory", "bytes"),
                    ],
                    current_n=st.session_state.get("N", 1024),
                    x_range=lab_frame()["x_range"],
                    y_ranges={
                        "ms": (min(ms) / 2, max(ms) * 2),
                        "peak": (min(peak) / 2, max(peak) * 2),
                    },
                    crossovers=crossovers,
                ),
                key="measured",
                width="stretch",
            )
        if skipped:
            with st.expander(f"{len(skipped)} points skipped"):
                for reason in skipped:
                    st.markdown(f"- {reason[0].upper()}{reason[1:]}.")

    live()
