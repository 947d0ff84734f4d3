"""The Train form's checks and the memory guard, without Streamlit (`elastic.app.requests`)."""

from __future__ import annotations

import pytest

from elastic.app import requests
from elastic.app.requests import (
    TrainRequest,
    check_training_request,
    default_movielens_path,
    table_columns,
    training_memory_problem,
)
from elastic.defaults import APP_TRAIN, SYNTHETIC_DATA, SYNTHETIC_MODEL


def test_the_forms_defaults_can_run():
    assert check_training_request(
        "synthetic", "synthetic", dict(SYNTHETIC_DATA), dict(SYNTHETIC_MODEL), dict(APP_TRAIN)
    ) is None


@pytest.mark.parametrize(
    ("source", "dataset", "dataset_kwargs", "sentence"),
    [
        ("upload", "synthetic", {}, "Upload a table first, then pick its user and item columns."),
        ("upload", "log.csv", {"user_col": "u"}, "Pick the user and the item column."),
        ("upload", "log.csv", {"user_col": "u", "item_col": "u"},
         "The user, item and time columns must be three different columns."),
        ("upload", "log.csv", {"user_col": "u", "item_col": "i", "time_col": "i"},
         "The user, item and time columns must be three different columns."),
        ("upload", "log.csv", {"user_col": "u", "item_col": "i", "time_col": "t"}, None),
        ("movielens", "/nonexistent/ml-1m.zip", {},
         "/nonexistent/ml-1m.zip does not exist on the server."),
        ("synthetic", "synthetic", SYNTHETIC_DATA | {"min_seq_len": 80, "max_seq_len": 60},
         "The shortest history (80) cannot be longer than the longest history (60)."),
        ("synthetic", "synthetic", SYNTHETIC_DATA | {"interests_per_user": 9},
         "synthetic: invalid synthetic configuration: interests_per_user must lie in "
         "1..planted_interests=8 (got 9)"),
    ],
)  # fmt: skip
def test_a_setting_that_cannot_run_gets_a_sentence(source, dataset, dataset_kwargs, sentence):
    said = check_training_request(
        source, dataset, dataset_kwargs, dict(SYNTHETIC_MODEL), dict(APP_TRAIN)
    )
    if sentence is None:
        assert said is None
    else:
        assert said is not None and said.startswith(sentence)


def test_the_width_must_divide_by_the_heads():
    model = SYNTHETIC_MODEL | {"d_model": 30, "num_heads": 4}
    said = check_training_request("synthetic", "synthetic", dict(SYNTHETIC_DATA), model, {})
    assert said == "The width d = 30 must divide by the 4 heads."


def request(*models: str) -> TrainRequest:
    return TrainRequest(
        "synthetic", dict(SYNTHETIC_DATA), "synthetic", dict(SYNTHETIC_MODEL),
        APP_TRAIN | {"device": "cpu"}, models=models,
    )  # fmt: skip


def test_the_memory_guard_passes_the_defaults_and_names_the_model_over_budget(monkeypatch):
    import elastic.complexity as complexity

    assert training_memory_problem(request("elastic", "sasrec"), num_items=2000) is None
    monkeypatch.setattr(complexity, "memory_budget", lambda device: 1024)  # 1 KiB
    said = training_memory_problem(request("sasrec"), num_items=2000)
    assert said.startswith("This setting would not fit: training sasrec-sdpa at N=50, batch 128")
    assert said.endswith("Lower the batch size or N.")
    assert "training elastic " in training_memory_problem(request("elastic"), num_items=2000)


def test_an_uploads_columns_are_read_as_the_loader_reads_them(tmp_path):
    table = tmp_path / "log.csv"
    table.write_text("user;item;time\n1;2;3\n")
    assert table_columns(table) == ["user", "item", "time"]  # the separator is sniffed
    notes = tmp_path / "log.txt"
    notes.write_text("user,item\n")
    with pytest.raises(ValueError, match="unknown table suffix"):  # the page shows the sentence
        table_columns(notes)


def test_movielens_is_looked_for_in_the_environment_then_the_shared_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ELASTIC_ML1M", "/data/ml-1m.zip")
    assert default_movielens_path() == "/data/ml-1m.zip"
    monkeypatch.delenv("ELASTIC_ML1M")
    monkeypatch.setattr(requests, "ROOT", tmp_path / "repo")
    assert default_movielens_path() == "ml-1m.zip"
    shared = tmp_path / "shared" / "data" / "ml-1m" / "ml-1m.txt"
    shared.parent.mkdir(parents=True)
    shared.write_text("1 1\n")
    assert default_movielens_path() == str(shared)
