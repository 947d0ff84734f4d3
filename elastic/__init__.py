"""ELASTIC: linear dispatcher attention and a product-key interest memory for long-sequence
recommendation, with a SASRec baseline, data, training, evaluation and complexity tools."""

import os
import sys

__version__ = "0.1.0"

# torch's CPU build runs its kernels on GNU OpenMP, whose idle threads spin up to 300,000 times
# waiting for the next parallel region. ELASTIC is many small kernels, so on a busy CPU (a
# workshop laptop training in the background) a spinning thread holds the core its partner
# needs: ELASTIC inference at N = 1024 took 3.4 s instead of 0.3 s in 2 of 4 busy runs. A spin
# count of 10,000 kept idle speed and removed those stalls (benchmarks/results/omp-wait.md). It
# only takes effect before torch is first imported, and never overrides the user's own setting.
if "torch" not in sys.modules:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
