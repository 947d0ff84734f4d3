"""Data-parallel training: one DDP step equals one process on the whole batch; torchrun with two
gloo processes trains the model one process trains; a torchrun run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from elastic.cli import main
from elastic.data import SyntheticConfig, leave_one_out, make_synthetic
from elastic.distributed import Ranks, combine_metrics, current_ranks, shard_split
from elastic.models import build_model
from elastic.train import TrainConfig, Trainer, seed_everything

ROOT = Path(__file__).resolve().parents[1]
MAX_LEN = 12
# no randomness inside a step, so that two ranks compute what one process computes: no dropout,
# ELASTIC's query context c = 1 for every sequence, no balance loss (a product of batch means)
EXACT = {"max_len": MAX_LEN, "d_model": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0,
         "num_interests": 4, "num_slots": 16, "context_max_frac": 0.0, "balance_weight": 0.0}
SMALL = ["--max-len", "20", "--d-model", "32", "--layers", "1", "--batch", "32", "--slots", "64",
         "--lr", "0.01", "--device", "cpu"]


def _exact_data():
    # every training sequence fills its window, so every rank's slice holds as many targets
    return make_synthetic(SyntheticConfig(num_users=32, num_items=40, planted_interests=3,
                                          min_seq_len=MAX_LEN + 3, max_seq_len=MAX_LEN + 8, seed=4))


def _first_step_gradients(name: str) -> dict[str, torch.Tensor]:
    """Gradients after the first batch of a Trainer (one process, or this rank of a group)."""
    data = _exact_data()
    seed_everything(0)
    model = build_model(name, num_items=data.num_items, **EXACT)
    trainer = Trainer(model, leave_one_out(data),
                      TrainConfig(epochs=1, batch_size=16, device="cpu", grad_clip=None))
    grads = {}

    def keep_first(event):
        grads.update({key: p.grad.clone() for key, p in model.named_parameters()})
        trainer.stop_event.set()  # every rank stops at the same batch

    trainer.add_callback("on_batch_end", keep_first)
    trainer.fit()
    return grads


def _save_rank_gradients(folder: Path) -> None:
    """What each torchrun process runs (`python -m tests.test_distributed FOLDER`)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        rank = dist.get_rank()
        assert current_ranks() == Ranks(rank, 2, rank)
        grads = {name: _first_step_gradients(name) for name in ("sasrec", "elastic")}
        torch.save(grads, folder / f"grads-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Two processes of `python -m ARGS` under torchrun, from the repository root."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_one_ddp_step_has_the_gradients_of_one_process_on_the_whole_batch(tmp_path):
    # torchrun, not multiprocessing's spawn: spawn re-runs the parent's __main__, which after
    # the app tests is app.py
    _torchrun("tests.test_distributed", str(tmp_path))
    for name in ("sasrec", "elastic"):
        single = _first_step_gradients(name)
        for rank in (0, 1):
            ranked = torch.load(tmp_path / f"grads-{rank}.pt")[name]
            assert ranked.keys() == single.keys()
            for key, grad in single.items():
                # without the gradient all-reduce a rank holds its half-batch's gradient
                torch.testing.assert_close(ranked[key], grad, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["sasrec", "elastic"])
@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_every_parameter_receives_a_gradient_in_a_step(name, loss):
    """Why DDP runs without find_unused_parameters: a parameter without a gradient would stall
    the gradient all-reduce. A model change that leaves one unused fails here first."""
    data = _exact_data()
    seed_everything(0)
    model = build_model(name, num_items=data.num_items, max_len=MAX_LEN, d_model=16,
                        num_layers=2, num_interests=4, num_slots=16)
    trainer = Trainer(model, leave_one_out(data),
                      TrainConfig(batch_size=8, device="cpu", loss=loss, num_negatives=16))
    input_ids, target_ids = next(iter(trainer.train_loader))
    trainer.train_step(input_ids, target_ids).backward()
    unused = [key for key, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_shards_cover_every_user_once_and_metrics_combine_as_user_means():
    split = leave_one_out(_exact_data())
    shards = [shard_split(split, Ranks(r, 3)) for r in range(3)]
    users = sorted(u for shard in shards for u in shard.users.tolist())
    assert users == sorted(split.users.tolist())
    metrics = {"HR@10": 0.5, "HR@20": 1.0, "NDCG@10": 0.25, "NDCG@20": 0.5, "MRR": 0.2,
               "users": 4}
    assert combine_metrics(metrics, Ranks()) == metrics
    with pytest.raises(ValueError, match="nothing to evaluate"):
        combine_metrics(None, Ranks())


# ------------------------------------------------------------------------------ torchrun


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    # an easy dataset (one facet per interest, long sessions) that two epochs learn
    data = make_synthetic(SyntheticConfig(num_users=600, num_items=300, planted_interests=5,
                                          facets=1, session_len=8, min_seq_len=20,
                                          max_seq_len=40, seed=0))
    path = tmp_path_factory.mktemp("data") / "synthetic.txt"
    lines = [f"{user} {item}" for user, items in zip(data.user_ids, data.sequences, strict=True)
             for item in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(*args: str) -> subprocess.CompletedProcess:
    return _torchrun("elastic", "train", *args)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, dataset_file):
    """A 2-epoch run on two gloo processes: (metrics.json, what it printed)."""
    out = tmp_path_factory.mktemp("runs") / "two"
    done = _train("--data", str(dataset_file), "--epochs", "2", "--out", str(out), *SMALL)
    return json.loads((out / "metrics.json").read_text()), done.stdout


def test_two_gloo_processes_train_what_one_process_trains(two_processes, dataset_file, tmp_path):
    two, printed = two_processes
    out = tmp_path / "one"
    assert main(["train", "--data", str(dataset_file), "--epochs", "2", "--out", str(out),
                 "--threads", "1", *SMALL]) == 0
    one = json.loads((out / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert printed.count("test HR@10") == 1  # rank 0 alone reports
    assert two["test"]["users"] == one["test"]["users"] == 600  # sharded, then combined
    assert abs(two["test"]["HR@10"] - one["test"]["HR@10"]) < 0.05
    assert two["test"]["HR@10"] > 2 * two["popularity"]["HR@10"]  # and it did learn


def test_a_torchrun_run_resumes_exactly(two_processes, dataset_file, tmp_path):
    whole, _ = two_processes
    out = tmp_path / "resumed"
    _train("--data", str(dataset_file), "--epochs", "1", "--out", str(out), *SMALL)
    _train("--out", str(out), "--resume", "--epochs", "2")
    resumed = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["train_loss"] == whole["train_loss"]
    assert resumed["test"] == whole["test"]


if __name__ == "__main__":
    _save_rank_gradients(Path(sys.argv[1]))
