"""How long torch's idle OpenMP threads spin, set before torch loads (no torch import here).

torch's CPU build runs its kernels on GNU OpenMP, whose idle threads spin up to 300,000 times
waiting for the next parallel region. ELASTIC is many small kernels, so on a busy CPU (a
workshop laptop training in the background) a spinning thread holds the core its partner
needs: a training step at N = 1024 took 14.6 s instead of 1.7 s in one busy run, inference at
N = 4096 9.5 s instead of 1.3 s. 10,000 spins kept idle speed and removed those stalls
(benchmarks/results/omp-wait.md, docs/complexity.md).

Only the single-process entry points call `cap_spinning` (`python -m elastic`, `app.py`): under
torchrun a DDP worker with 10,000 spins died with "terminate called without an active
exception" in 2 of 6 runs of tests/test_distributed.py, and never with libgomp's default.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "10000"
TORCHRUN_VARIABLES = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")


def cap_spinning() -> bool:
    """Set GOMP_SPINCOUNT for this process and its children, unless torch is already loaded
    (too late to matter), the user set it, or this is a torchrun worker. True if set."""
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ:
        return False
    if any(name in os.environ for name in TORCHRUN_VARIABLES):
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
