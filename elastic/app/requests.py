"""What the Train form asks for (`TrainRequest`) and whether it can run: the form's own checks,
before the job starts, and the memory guard, once the data (and so the catalogue) is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from elastic.app.bundles import MODEL_ORDER
from elastic.app.paths import ROOT


@dataclass
class TrainRequest:
    """Everything the Train form decides. Plain values only, so it can be shown and saved."""

    dataset: str  # what load_dataset reads: "synthetic", a folder, a .zip, a .csv...
    dataset_kwargs: dict  # synthetic settings, or the table's columns, or five_core
    dataset_label: str  # human name ("synthetic", "ML-1M", "upload: ratings.csv")
    model: dict  # build_model settings shared by both models (max_len, d_model, ...)
    train: dict  # TrainConfig fields (epochs, batch_size, lr, seed, ...)
    models: tuple[str, ...] = MODEL_ORDER


def check_training_request(
    source: str, dataset: str, dataset_kwargs: dict, model: dict, train: dict
) -> str | None:
    """A sentence saying why the Train form's settings cannot run, or None. Problems found
    only while loading (a malformed line, say) come back from the job as its error."""
    if source == "upload" and dataset == "synthetic":
        return "Upload a table first, then pick its user and item columns."
    if source == "upload":
        if not dataset_kwargs.get("user_col") or not dataset_kwargs.get("item_col"):
            return "Pick the user and the item column."
        chosen = [dataset_kwargs.get(c) for c in ("user_col", "item_col", "time_col")]
        chosen = [c for c in chosen if c]
        if len(set(chosen)) != len(chosen):
            return "The user, item and time columns must be three different columns."
    if source == "movielens" and not Path(dataset).exists():
        return (
            f"{dataset} does not exist on the server. Give the folder or .zip holding "
            "ratings.dat and movies.dat, or a SASRec ml-1m.txt, or upload the GroupLens zip."
        )
    if source == "synthetic":
        from elastic.data import DataError, SyntheticConfig

        shortest, longest = dataset_kwargs["min_seq_len"], dataset_kwargs["max_seq_len"]
        if shortest > longest:
            return (f"The shortest history ({shortest}) cannot be longer than the longest "
                    f"history ({longest}).")

        try:
            SyntheticConfig(**dataset_kwargs)
        except DataError as error:
            return str(error)
    if model["d_model"] % model["num_heads"]:
        return f"The width d = {model['d_model']} must divide by the {model['num_heads']} heads."
    return None


def training_memory_problem(request: TrainRequest, num_items: int) -> str | None:
    """The memory guard of elastic.complexity applied to one training step of each model:
    a sentence when a setting would not fit in this machine's memory, else None."""
    from elastic.complexity import Shape, check_training_budget
    from elastic.device import pick_device

    m, t = request.model, request.train
    shape = Shape(
        batch=int(t.get("batch_size", 128)),
        seq_len=m["max_len"],
        d_model=m["d_model"],
        heads=m["num_heads"],
        layers=m["num_layers"],
        interests=m["num_interests"],
        slots=m["num_slots"],
        items=num_items,
    )
    device = pick_device(t.get("device", "auto"))
    forms = {"elastic": "elastic", "sasrec": "sasrec-sdpa"}  # the app trains SASRec with SDPA
    for name in request.models:
        reason = check_training_budget(forms[name], shape, device)
        if reason:
            return f"This setting would not fit: {reason}. Lower the batch size or N."
    return None


def table_columns(path: Path, sep: str | None = None) -> list[str]:
    """The column names of an uploaded table, read as the loader will read it (a DataError,
    a ValueError, carries the sentence for the page)."""
    from elastic.data import table_columns as read_columns

    return read_columns(path, sep)


def default_movielens_path() -> str:
    """Where ML-1M usually lies: $ELASTIC_ML1M, else the project's shared data folder."""
    if os.environ.get("ELASTIC_ML1M"):
        return os.environ["ELASTIC_ML1M"]
    shared = ROOT.parent / "shared" / "data" / "ml-1m" / "ml-1m.txt"
    return str(shared) if shared.is_file() else "ml-1m.zip"
