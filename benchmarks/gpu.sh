#!/usr/bin/env bash
# One session on a machine lent a GPU: install, run the tests on CUDA, benchmark on CUDA.
# Under 8 minutes on an H100, plus the data-parallel and 1M-item catalogue steps at the end
# (their timeouts cap them at 9 minutes). Results go to $OUT (when set) and to benchmarks/results.
#
#   bash benchmarks/gpu.sh
#
# Assumes a Python with CUDA-enabled torch is already installed (PYTHON, default python);
# the package is installed without touching it, and without the network if need be.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
RESULTS=benchmarks/results
mkdir -p "${OUT:-$RESULTS}"

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true

# editable install with the torch already there; offline it falls back to the source tree
if ! "$PY" -m pip install --no-deps --no-build-isolation -q -e . ; then
    echo "pip install failed; using the source tree via PYTHONPATH"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# Tests that take the `device` fixture run on the GPU (FLOP counts of the CUDA attention
# kernels, measure() with max_memory_allocated); the rest of the suite runs as usual.
if "$PY" -m pytest --version >/dev/null 2>&1; then
    ELASTIC_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -p no:cacheprovider \
        tests/test_complexity.py tests/commands/test_bench.py tests/models tests/test_device.py \
        | tee "${OUT:-$RESULTS}/gpu-tests.txt" || echo "some tests failed: see gpu-tests.txt"
else
    echo "pytest is not installed: skipping the tests"
fi

# N up to 16384; the guard skips what will not fit in the free GPU memory, with the reason
timeout 300 "$PY" benchmarks/efficiency.py --device cuda --out "${OUT:-$RESULTS}"
if [ -n "${OUT:-}" ]; then
    cp "$OUT"/efficiency-cuda.json "$OUT"/efficiency-cuda.md "$RESULTS"/
fi

# Data-parallel: two processes under torchrun on CUDA (NCCL with a GPU per process; ranks that
# share one GPU fall back to gloo, a check of the code path rather than a speed-up)
timeout 240 "$PY" benchmarks/data_parallel.py --device cuda --runs 1x1,2x1 --epochs 2 \
    --out "${OUT:-$RESULTS}" || echo "the data-parallel run failed"
# A catalogue of 1M items: full against sampled softmax, memory and seconds per epoch
timeout 300 "$PY" benchmarks/catalogue.py scale --device cuda --losses full,uniform,popularity+in-batch \
    --results-dir "${OUT:-$RESULTS}" || echo "the catalogue benchmark failed"
if [ -n "${OUT:-}" ]; then
    cp "$OUT"/data-parallel-cuda.* "$OUT"/catalogue-scale-cuda.* "$RESULTS"/ 2>/dev/null || true
fi
