"""Checkpoints: round trip, atomic replacement, recovery, and refusal of other data."""

import hashlib
import json
import os

import pytest
import torch

from elastic import checkpoint as ckpt
from elastic.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from elastic.data import SyntheticConfig, leave_one_out, make_synthetic
from elastic.models import build_model
from elastic.train import TrainConfig, Trainer

TINY = {
    "num_items": 30,
    "max_len": 12,
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 2,
    "num_interests": 4,
    "num_slots": 16,
}


def _model(name="elastic", seed=0):
    torch.manual_seed(seed)
    return build_model(name, **TINY).eval()


@pytest.mark.parametrize("name", ["elastic", "sasrec"])
def test_round_trip_gives_equal_outputs(tmp_path, name):
    model = _model(name)
    ids = torch.randint(0, 31, (3, 12))
    save_checkpoint(
        tmp_path / "ck",
        model,
        dataset={"fingerprint": "abc", "spec": "synthetic"},
        metrics={"test": {"HR@10": 0.5}},
    )
    loaded, meta = load_model(tmp_path / "ck")
    assert not loaded.training
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    assert meta["model"] == name and meta["config"] == model.config_dict()
    assert meta["dataset"]["fingerprint"] == "abc"
    assert meta["metrics"]["test"]["HR@10"] == 0.5
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no staging folder left behind


def test_best_and_last_weights_are_kept_apart_and_optimizer_loads_weights_only(tmp_path):
    model = _model()
    best = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(1, 31, (2, 12))).logsumexp(-1).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "ck", model, best_state=best, optimizer_state=optimizer.state_dict())
    state = torch.load(tmp_path / "ck" / "optimizer.pt", weights_only=True)
    assert state["state"]  # Adam moments are there
    loaded = read_checkpoint(tmp_path / "ck", with_train_state=True)
    key = "embedding.items.weight"
    assert torch.equal(loaded.best_weights[key], best[key])
    assert torch.equal(loaded.last_weights[key], model.state_dict()[key])
    assert not torch.equal(best[key], model.state_dict()[key])


def test_save_replaces_a_checkpoint_but_never_another_folder(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(seed=0))
    save_checkpoint(tmp_path / "ck", _model(seed=1))
    loaded, _ = load_model(tmp_path / "ck")
    torch.testing.assert_close(loaded.state_dict(), _model(seed=1).state_dict())
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save_checkpoint(precious, _model())
    assert (precious / "thesis.txt").exists()


def test_a_crash_while_saving_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ck", _model(seed=0))

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", _model(seed=1))
    monkeypatch.undo()
    loaded, _ = load_model(tmp_path / "ck")
    torch.testing.assert_close(loaded.state_dict(), _model(seed=0).state_dict())
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(seed=0))
    os.replace(tmp_path / "ck", tmp_path / ".ck.old-1234abcd")  # the new copy never arrived
    assert resolve_checkpoint(tmp_path / "ck") == tmp_path / ".ck.old-1234abcd"
    loaded, _ = load_model(tmp_path / "ck")
    torch.testing.assert_close(loaded.state_dict(), _model(seed=0).state_dict())


def test_missing_or_foreign_folders_say_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_model(tmp_path)


def test_a_run_folder_resolves_to_its_checkpoint_subfolder(tmp_path):
    save_checkpoint(tmp_path / "run" / "checkpoint", _model())
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint"


def test_resume_on_other_data_is_refused_with_a_clear_error(tmp_path):
    small = SyntheticConfig(
        num_users=30, num_items=30, planted_interests=3, min_seq_len=6, max_seq_len=10
    )
    data = make_synthetic(small)
    other = make_synthetic(SyntheticConfig(**{**small.__dict__, "seed": 7}))
    config = TrainConfig(epochs=1, batch_size=16, device="cpu", max_len=12)
    trainer = Trainer(
        _model(),
        leave_one_out(data),
        config,
        data=data,
        data_spec="synthetic",
        checkpoint_dir=tmp_path / "ck",
    )
    trainer.fit()
    again = Trainer(_model(), leave_one_out(other), config, data=other, data_spec="synthetic")
    with pytest.raises(CheckpointError, match="trained on other data") as err:
        again.resume(tmp_path / "ck")
    assert "use the same data" in str(err.value)
    wrong_model = Trainer(_model("sasrec"), leave_one_out(data), config, data=data)
    with pytest.raises(CheckpointError, match="holds a elastic model"):
        wrong_model.resume(tmp_path / "ck")


# --------------------------------------------------------------------------- damaged files


def _saved(tmp_path, **kwargs):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(1, 31, (2, 12))).logsumexp(-1).sum().backward()
    optimizer.step()
    return save_checkpoint(tmp_path / "ck", model, optimizer_state=optimizer.state_dict(),
                           train_state={"epochs_done": 1}, **kwargs)


def _one_sentence(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message.strip()
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_flipped_bytes_in_the_weights_are_refused(tmp_path):
    folder = _saved(tmp_path)
    weights = bytearray((folder / "model.safetensors").read_bytes())
    middle = len(weights) // 2
    weights[middle : middle + 64] = bytes(b ^ 0xFF for b in weights[middle : middle + 64])
    (folder / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError) as error:
        load_model(folder)
    _one_sentence(error, "model.safetensors", "checksum")


@pytest.mark.parametrize("name", ["model.safetensors", "last.safetensors", "optimizer.pt"])
def test_truncated_files_are_one_sentence_with_or_without_checksums(tmp_path, name):
    folder = _saved(tmp_path)
    content = (folder / name).read_bytes()
    (folder / name).write_bytes(content[: len(content) // 2])
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder, with_train_state=True)
    _one_sentence(error, name)
    # a checkpoint written before checksums (the shipped demo): the reader still says which file
    meta = json.loads((folder / "checkpoint.json").read_text())
    del meta["files"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder, with_train_state=True)
    _one_sentence(error, name, "damaged")


def test_a_missing_file_is_named(tmp_path):
    folder = _saved(tmp_path)
    (folder / "last.safetensors").unlink()
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder, with_train_state=True)
    _one_sentence(error, "last.safetensors", "missing")


@pytest.mark.parametrize(
    "text, fragment",
    [('{"format": 1}', "'model'"), ('{"format": 1, "model": "elastic", "con', "checkpoint.json"),
     ("[1, 2]", "checkpoint.json"), ('{"format": 1, "model": "gpt", "config": {}}', "'gpt'")],
)
def test_a_damaged_checkpoint_json_is_one_sentence(tmp_path, text, fragment):
    folder = _saved(tmp_path)
    (folder / "checkpoint.json").write_text(text)
    with pytest.raises(CheckpointError) as error:
        load_model(folder)
    _one_sentence(error, fragment)


def test_a_config_that_does_not_fit_the_weights_is_one_sentence(tmp_path):
    folder = _saved(tmp_path)
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["config"]["d_model"] = 32
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as error:
        load_model(folder)
    _one_sentence(error, "do not fit")


class _Payload:
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_a_pickle_payload_in_the_optimizer_state_is_refused_in_one_sentence(tmp_path, capsys):
    folder = _saved(tmp_path)
    torch.save({"state": {}, "param_groups": [], "payload": _Payload()}, folder / "optimizer.pt")
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["files"]["optimizer.pt"] = hashlib.sha256(
        (folder / "optimizer.pt").read_bytes()).hexdigest()  # a forger updates the checksum
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder, with_train_state=True)
    _one_sentence(error, "optimizer.pt")
    assert "this ran" not in capsys.readouterr().out


# --------------------------------------------------------------------------- killed saves


def test_a_save_repairs_what_a_killed_save_left(tmp_path):
    folder = _saved(tmp_path)
    stale = tmp_path / ".ck.tmp-0badf00d"  # a save killed while writing
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    os.replace(folder, tmp_path / ".ck.old-1234abcd")  # a save killed between its renames
    assert recover_checkpoint(tmp_path / "ck") == tmp_path / "ck"
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    read_checkpoint(tmp_path / "ck", with_train_state=True)
    stale.mkdir()
    save_checkpoint(tmp_path / "ck", _model(seed=1))
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_a_resume_may_lower_the_learning_rate(tmp_path):
    data = make_synthetic(SyntheticConfig(num_users=30, num_items=30, planted_interests=3,
                                          min_seq_len=6, max_seq_len=10))
    settings = {"epochs": 1, "batch_size": 16, "device": "cpu", "max_len": 12, "lr": 1e-2}
    Trainer(_model(), leave_one_out(data), TrainConfig(**settings), data=data,
            checkpoint_dir=tmp_path / "ck").fit()
    lower = TrainConfig(**{**settings, "epochs": 2, "lr": 1e-4})
    trainer = Trainer(_model(), leave_one_out(data), lower, data=data)
    trainer.resume(tmp_path / "ck")
    groups = trainer.optimizer.param_groups
    assert [group["lr"] for group in groups] == [1e-4 * group["lr_scale"] for group in groups]
    assert {group["lr_scale"] for group in groups} == {1.0}  # the model's default
    assert trainer.optimizer.state  # the Adam moments came back with it


def test_the_dataset_is_stored_with_its_absolute_path_and_settings(tmp_path, monkeypatch):
    data = make_synthetic(SyntheticConfig(num_users=30, num_items=30, planted_interests=3,
                                          min_seq_len=6, max_seq_len=10))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "log.csv").write_text("stand-in: only the path is read")
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(_model(), leave_one_out(data), TrainConfig(device="cpu", max_len=12),
                      data=data, data_spec="data/log.csv",
                      data_settings={"user_col": "u", "item_col": "i"})
    assert trainer.dataset_info["spec"] == "data/log.csv"
    assert trainer.dataset_info["path"] == str(tmp_path / "data" / "log.csv")
    assert trainer.dataset_info["settings"] == {"user_col": "u", "item_col": "i"}
    synthetic = Trainer(_model(), leave_one_out(data), TrainConfig(device="cpu", max_len=12),
                        data=data, data_spec="synthetic")
    assert "path" not in synthetic.dataset_info


def test_a_checkpoint_written_before_cosine_stage1_loads_as_it_was_trained(tmp_path):
    """Configs saved before `stage1_scale` existed (dot-product stage 1) rebuild that model,
    not today's default, so the shipped weights keep meaning what they meant."""
    torch.manual_seed(0)
    model = build_model("elastic", **(TINY | {"stage1_scale": 0.0})).eval()
    folder = save_checkpoint(tmp_path / "ck", model)
    meta = json.loads((folder / "checkpoint.json").read_text())
    del meta["config"]["stage1_scale"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    loaded, _ = load_model(folder)
    assert loaded.config.stage1_scale == 0.0
    ids = torch.randint(1, 31, (3, 12))
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
