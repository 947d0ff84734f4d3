"""Data-parallel training over processes: the process group, the ranks, the step DDP wraps.

    torchrun --standalone --nproc-per-node 2 -m elastic train ...    # one machine, 2 processes
    python -m elastic train ...                                       # the same, one process

A launcher (torchrun, or Ray Train's `TorchTrainer`) starts one process per rank and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. `process_group` joins the group the
launcher describes (gloo on CPU, NCCL when every rank of the node has a GPU of its own); a
`Trainer` built inside it finds the group (`current_ranks`) and then

- wraps its `TrainingStep` in DistributedDataParallel: gradients are averaged over the ranks
  during backward, so every rank takes the same optimizer step;
- reads its rank's slice of each global batch (`TrainLoader(rank=..., world_size=...)`);
- evaluates its shard of the users (`shard_split`) and sums the shards (`combine_metrics`),
  so every rank holds the same metrics and early stopping stops all ranks together;
- leaves checkpoints and metrics.json to rank 0.

Ray Train creates the process group itself before it calls the training function; the Trainer
uses that group as it is (docs/scale.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from elastic.data import EvalLoader, LeaveOneOut
from elastic.evaluate import METRIC_NAMES, evaluate
from elastic.models import SequentialRecommender

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes that train one model."""

    rank: int = 0  # 0 .. world_size - 1; rank 0 writes checkpoints and metrics
    world_size: int = 1  # processes training the model together
    local_rank: int = 0  # rank among the processes of this machine: picks its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_ranks() -> Ranks:
    """The ranks of the process group this process belongs to; Ranks() when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


def launched() -> bool:
    """Was this process started by a launcher (torchrun sets every LAUNCHER_VARIABLES)?"""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device of this rank: on CUDA without an index, GPU local_rank (modulo the GPUs of the
    machine, so that more ranks than GPUs share them); anything else as given."""
    if device.type != "cuda" or device.index is not None or ranks.world_size == 1:
        return device
    return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())


def backend_for(device: torch.device) -> str:
    """NCCL when each rank of this machine has a GPU of its own, gloo otherwise (CPU tensors,
    or ranks sharing a GPU, which NCCL refuses)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if device.type == "cuda" and local_world <= torch.cuda.device_count():
        return "nccl"
    return "gloo"


@contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """Join the launcher's process group for the with-block and leave it after.

    Without a launcher this is one process (Ranks()); when a group exists already (Ray Train
    made it), it is used and left alone. `device` is the device the trainer will use: it picks
    the backend and, for NCCL, this rank's GPU.
    """
    if (dist.is_available() and dist.is_initialized()) or not launched():
        yield current_ranks()
        return
    backend = backend_for(device)
    if backend == "nccl":
        # NCCL binds each rank to the GPU current when the group is made
        torch.cuda.set_device(device.index if device.index is not None
                              else int(os.environ.get("LOCAL_RANK", 0)))
    elif device.type == "cuda" and os.environ.get("RANK") == "0":
        print(f"{os.environ['LOCAL_WORLD_SIZE']} processes share "
              f"{torch.cuda.device_count()} GPU(s): using gloo, which is slow on GPUs; "
              "NCCL needs one GPU per process", file=sys.stderr)
    dist.init_process_group(backend)
    try:
        yield current_ranks()
    finally:
        dist.destroy_process_group()


class TrainingStep(nn.Module):
    """`model.training_loss` as `forward`, optionally under autocast.

    DistributedDataParallel synchronises gradients only for what runs through its `forward`,
    so the trainer calls this module (wrapped in DDP on several ranks) and never
    `training_loss` directly. Its state is the model's: checkpoints keep saving `model`.
    """

    def __init__(self, model: SequentialRecommender, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.autocast_dtype = autocast_dtype

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        enabled = self.autocast_dtype is not None
        with torch.autocast(input_ids.device.type, dtype=self.autocast_dtype, enabled=enabled):
            return self.model.training_loss(input_ids, target_ids)


def wrap_for_ranks(step: TrainingStep, device: torch.device, ranks: Ranks) -> nn.Module:
    """`step` itself on one rank; wrapped in DistributedDataParallel on several.

    DDP's constructor copies rank 0's weights to every rank, so all ranks start equal.
    find_unused_parameters stays off (it costs a graph traversal per step): every parameter of
    both models receives a gradient in every step, which tests/test_distributed.py checks.
    """
    if ranks.world_size == 1:
        return step
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=device_ids)


def mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> float:
    """The mean of a scalar over the ranks, the same float on every rank."""
    if ranks.world_size == 1:
        return float(value)
    total = value.detach().float().reshape(1).clone()
    dist.all_reduce(total)  # sum: gloo has no average
    return float(total) / ranks.world_size


def shard_split(split: LeaveOneOut, ranks: Ranks) -> LeaveOneOut:
    """This rank's users for evaluation: every world_size-th user, from the rank-th on."""
    take = slice(ranks.rank, None, ranks.world_size)
    return LeaveOneOut(
        num_items=split.num_items,
        users=split.users[take],
        train=split.train[take],
        valid_target=split.valid_target[take],
        test_history=split.test_history[take],
        test_target=split.test_target[take],
    )


def combine_metrics(metrics: dict[str, float] | None, ranks: Ranks) -> dict[str, float]:
    """The metrics of all users from each rank's metrics of its shard (None for an empty one).

    Every metric is a mean over users, so the total is Σ users_r · metric_r / Σ users_r."""
    local = metrics or {name: 0.0 for name in METRIC_NAMES} | {"users": 0}
    users = float(local["users"])
    sums = torch.tensor([users] + [users * local[name] for name in METRIC_NAMES],
                        dtype=torch.float64)
    if ranks.world_size > 1:
        dist.all_reduce(sums)
    total_users = int(sums[0])
    if total_users == 0:
        raise ValueError("nothing to evaluate: the split has no users")
    combined = {name: float(sums[i + 1] / total_users) for i, name in enumerate(METRIC_NAMES)}
    return {**combined, "users": total_users}


def evaluate_shard(model: nn.Module, loader: EvalLoader, ranks: Ranks) -> dict[str, float]:
    """`evaluate` on this rank's shard (`loader`), combined over the ranks."""
    local = evaluate(model, loader) if loader.num_users else None
    return combine_metrics(local, ranks)
