"""`python -m elastic train | evaluate | data stats`, called in-process on a tiny dataset file."""

import json

import pytest

from elastic.cli import main
from elastic.data import SyntheticConfig, make_synthetic

METRICS = {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR"}
SMALL = ["--max-len", "12", "--d-model", "16", "--layers", "1", "--k", "4", "--slots", "16",
         "--batch", "16", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    """A small SASRec-format file (`user item` per line, chronological)."""
    data = make_synthetic(SyntheticConfig(num_users=40, num_items=30, planted_interests=3,
                                          min_seq_len=6, max_seq_len=12, seed=2))
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    lines = [f"{user} {item}" for user, items in zip(data.user_ids, data.sequences, strict=True)
             for item in items]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("model", ["elastic", "sasrec"])
def test_train_writes_metrics_with_every_key_and_a_checkpoint(tmp_path, dataset_file, model):
    out = tmp_path / "run"
    code = main(["train", "--data", str(dataset_file), "--model", model, "--epochs", "2",
                 "--out", str(out), *SMALL])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"train_loss", "valid", "test", "best_epoch", "seconds", "device",
                            "model", "config", "popularity"}
    assert len(metrics["train_loss"]) == 2 and metrics["model"] == model
    assert set(metrics["test"]) >= METRICS and set(metrics["popularity"]) >= METRICS
    assert metrics["config"]["d_model"] == 16 and metrics["config"]["max_len"] == 12
    assert (out / "checkpoint" / "model.safetensors").is_file()


def test_resume_continues_and_evaluate_reads_the_run(tmp_path, dataset_file, capsys):
    out = tmp_path / "run"
    base = ["train", "--data", str(dataset_file), "--out", str(out)]
    assert main([*base, "--epochs", "1", *SMALL]) == 0
    assert main([*base, "--epochs", "2", *SMALL]) == 2  # the folder holds a run already
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--d-model", "32"]) == 2
    assert "drop --d-model" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"] == pytest.approx(metrics["test"])
    assert main(["evaluate", "--checkpoint", str(out), "--device", "cpu"]) == 0
    assert "popularity" in capsys.readouterr().out


def test_evaluate_on_other_data_is_one_sentence(tmp_path, dataset_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(dataset_file), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 0
    other = tmp_path / "other.txt"
    other.write_text(dataset_file.read_text().replace("\n1 ", "\n1 1\n1 ", 1))
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and len(err.strip().splitlines()) == 1


def test_data_stats_and_user_errors(dataset_file, capsys):
    assert main(["data", "stats", str(dataset_file), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 40 and stats["items"] <= 30
    assert main(["data", "stats", str(dataset_file)]) == 0
    assert "interactions" in capsys.readouterr().out
    assert main(["train", "--data", "no/such/file.txt", "--out", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["data"], ["data", "stats"]])
def test_help_says_what_each_command_does(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert len(capsys.readouterr().out) > 100
