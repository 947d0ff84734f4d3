"""The models the pages show: a dataset and the models trained on it (`ModelBundle`), either
the shipped demo (assets/demo) or a run of this session's training job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from elastic.app.paths import ABLATION_RESULTS, DEMO_DIR, DEMO_INFO

if TYPE_CHECKING:
    from elastic.data import InteractionData
    from elastic.models import SequentialRecommender

MODEL_ORDER = ("elastic", "sasrec")  # the models the app trains and shows, in this order


@dataclass
class ModelBundle:
    """A dataset and the two models trained on it, ready for the views (eval mode)."""

    key: str  # "demo", or "session-<id>" for a model trained in this session
    label: str  # shown in the sidebar
    data: InteractionData
    models: dict[str, SequentialRecommender]  # "elastic" (always) and "sasrec" (if trained)
    metrics: dict[str, dict]  # model -> {"valid": ..., "test": ...}
    device: str  # human name of the device the models run on

    @property
    def elastic(self):
        return self.models["elastic"]


def read_demo_info() -> dict | None:
    """The demo's description (dataset settings, metrics, training curves), read without torch;
    None when the demo was never built."""
    if not DEMO_INFO.is_file():
        return None
    return json.loads(DEMO_INFO.read_text())


def load_demo_bundle(info: dict) -> ModelBundle:
    """The shipped checkpoint described by `info` (`read_demo_info()`), on the auto-picked
    device. The synthetic data is regenerated from its settings and checked against the
    checkpoint's dataset fingerprint: a changed generator raises a `CheckpointError` instead of
    silently mismatching."""
    from elastic.checkpoint import check_dataset, load_model
    from elastic.data import load_dataset
    from elastic.device import describe_device, pick_device

    data = load_dataset(info["dataset"]["spec"], **info["dataset"].get("settings", {}))
    device = pick_device("auto")
    models, metrics = {}, {}
    for name in MODEL_ORDER:
        folder = DEMO_DIR / name
        if not folder.is_dir():
            continue
        model, meta = load_model(folder, device)
        check_dataset(meta, data.fingerprint(), folder)
        models[name], metrics[name] = model, meta.get("metrics", {})
    return ModelBundle("demo", "shipped demo", data, models, metrics, describe_device(device))


def read_measured_ablation() -> dict | None:
    """`benchmarks/ablation.py`'s record of the shipped demo, or None when it was never run."""
    if not ABLATION_RESULTS.is_file():
        return None
    return json.loads(ABLATION_RESULTS.read_text())
