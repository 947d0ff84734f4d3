"""The models the pages show, loaded without Streamlit (`elastic.app.bundles`)."""

from __future__ import annotations

import pytest

from elastic.app import bundles
from elastic.app.bundles import MODEL_ORDER, load_demo_bundle, read_demo_info
from elastic.checkpoint import CheckpointError


def test_the_shipped_demo_loads_as_a_bundle_of_both_models_in_eval_mode():
    info = read_demo_info()
    assert info is not None, "assets/demo is missing: run python scripts/make_demo_checkpoint.py"
    bundle = load_demo_bundle(info)
    assert (bundle.key, bundle.label) == ("demo", "shipped demo")
    assert tuple(bundle.models) == MODEL_ORDER and bundle.elastic is bundle.models["elastic"]
    assert not any(model.training for model in bundle.models.values())
    assert bundle.data.fingerprint() == info["dataset"]["fingerprint"]
    assert bundle.metrics["elastic"]["test"] == info["metrics"]["elastic"]["test"]


def test_demo_data_that_no_longer_matches_the_checkpoint_is_refused():
    info = read_demo_info()
    dataset = info["dataset"]
    other = info | {"dataset": dataset | {"settings": dataset["settings"] | {"seed": 1}}}
    with pytest.raises(CheckpointError, match="trained on other data"):
        load_demo_bundle(other)


def test_missing_files_read_as_none(tmp_path, monkeypatch):
    monkeypatch.setattr(bundles, "DEMO_INFO", tmp_path / "demo.json")
    monkeypatch.setattr(bundles, "ABLATION_RESULTS", tmp_path / "ablation.json")
    assert bundles.read_demo_info() is None
    assert bundles.read_measured_ablation() is None
