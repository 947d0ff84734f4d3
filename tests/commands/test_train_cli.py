"""`python -m elastic train | evaluate | data stats`, called in-process on a tiny dataset file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elastic import complexity
from elastic.cli import main
from elastic.commands.train import progress_bar
from elastic.data import SyntheticConfig, leave_one_out, load_dataset, make_synthetic
from elastic.defaults import SYNTHETIC_TRAIN
from elastic.models import ElasticModel, build_model
from elastic.train import TrainConfig, Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]

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


# --------------------------------------------------------------------------- own data


def _as_table(dataset_file, path, sep=","):
    rows = [line.split() for line in dataset_file.read_text().splitlines()]
    # a time column that reverses file order inside each user: only --time-col restores it
    lines = [sep.join((user, item, str(-number))) for number, (user, item) in enumerate(rows)]
    path.write_text(sep.join(("user", "item", "time")) + "\n" + "\n".join(lines[::-1]) + "\n")
    return path


@pytest.mark.parametrize("sep", [",", ";"])
def test_a_table_trains_evaluates_and_shows_stats_from_the_command_line(
    tmp_path, dataset_file, capsys, sep
):
    table = _as_table(dataset_file, tmp_path / "log.csv", sep)
    columns = ["--user-col", "user", "--item-col", "item", "--time-col", "time"]
    assert main(["data", "stats", str(table), "--json", *columns]) == 0
    from_table = json.loads(capsys.readouterr().out)
    assert main(["data", "stats", str(dataset_file), "--json"]) == 0
    from_txt = json.loads(capsys.readouterr().out)
    assert {k: from_table[k] for k in ("users", "items", "interactions")} == {
        k: from_txt[k] for k in ("users", "items", "interactions")}
    out = tmp_path / "run"
    assert main(["train", "--data", str(table), "--out", str(out), "--epochs", "1", *SMALL,
                 *columns, "--sep", sep]) == 0
    capsys.readouterr()
    # evaluate finds the table and its columns in the checkpoint
    assert main(["evaluate", "--checkpoint", str(out), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["users"] == 40


def test_evaluate_finds_the_data_from_another_folder_or_asks_for_it(
    tmp_path, dataset_file, capsys, monkeypatch
):
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    data = tmp_path / "project" / "data" / "tiny.txt"
    data.write_text(dataset_file.read_text())
    monkeypatch.chdir(tmp_path / "project")
    assert main(["train", "--data", "data/tiny.txt", "--out", "run", "--epochs", "1",
                 *SMALL]) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "../project/run", "--device", "cpu"]) == 0
    data.rename(data.with_name("moved.txt"))
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "../project/run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(data) in err and "pass --data" in err
    assert main(["evaluate", "--checkpoint", "../project/run", "--device", "cpu",
                 "--data", str(data.with_name("moved.txt"))]) == 0


# --------------------------------------------------------------------------- resume


def test_resume_recovers_a_save_killed_between_its_renames(tmp_path, dataset_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(dataset_file), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 0
    (out / "checkpoint").rename(out / ".checkpoint.old-1234abcd")
    (out / ".checkpoint.tmp-0badf00d").mkdir()  # and a write killed half way
    capsys.readouterr()
    assert main(["train", "--data", str(dataset_file), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 2  # a new run would overwrite the recovered one
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "metrics.json"]


def test_divergence_names_the_command_that_continues_with_a_lower_rate(
    tmp_path, dataset_file, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert main(["train", "--data", str(dataset_file), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 0
    real_loss = ElasticModel.training_loss
    monkeypatch.setattr(ElasticModel, "training_loss",
                        lambda self, *a, **k: real_loss(self, *a, **k) * float("nan"))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: training diverged") and "epoch 2" in last
    rate = SYNTHETIC_TRAIN["lr"] / 3  # a third of the default rate, to one digit
    lower = f"{float(f'{rate:.1g}'):g}"
    assert f"python -m elastic train --out {out} --resume --lr {lower}" in last
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--lr", lower]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_config"]["lr"] == float(lower) and len(metrics["history"]) == 2


# --------------------------------------------------------------------------- memory, progress


def test_a_batch_that_cannot_fit_is_refused_before_training(
    tmp_path, dataset_file, capsys, monkeypatch
):
    monkeypatch.setattr(complexity, "memory_budget", lambda device: 2**20)  # a 1 MiB machine
    assert main(["train", "--data", str(dataset_file), "--out", str(tmp_path / "run"),
                 *SMALL, "--batch", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Adam" in err and "--batch" in err
    assert not (tmp_path / "run").exists()


def test_the_progress_bar_counts_validation_and_test_batches(dataset_file):
    data = load_dataset(dataset_file)
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", max_len=12, eval_batch_size=8)
    model = build_model("sasrec", num_items=data.num_items, max_len=12, d_model=16, num_layers=1)
    trainer = Trainer(model, leave_one_out(data), config)
    bar = progress_bar(trainer)
    trainer.fit()
    per_epoch = len(trainer.train_loader) + len(trainer.valid_loader)
    assert bar.total == 2 * per_epoch + len(trainer.test_loader) == bar.n
    bar.close()


def test_evaluate_shows_progress_and_warnings_are_one_line(tmp_path, dataset_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(dataset_file), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--device", "cpu"]) == 0
    assert "evaluating" in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_text(dataset_file.read_text() + "999 1\n999 2\n")
    assert main(["data", "stats", str(short)]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: {short}: dropped 1 users with fewer than 3 interactions " \
        "(leave-one-out needs 3)\n"


def test_a_closed_pipe_ends_quietly(dataset_file):
    """`python -m elastic data stats FILE | head -1`: the reader goes away before the output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "elastic", "data", "stats", str(dataset_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
    )
    process.stdout.close()  # nothing reads: every write of the child fails with EPIPE
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
