#!/usr/bin/env bash
# How long idle OpenMP threads spin (GOMP_SPINCOUNT) against ELASTIC's and SDPA's speed, idle and
# with two CPU-bound processes beside the benchmark (a workshop laptop whose app trains in the
# background). `python -m elastic bench` at N = 1024, B = 32, infer and train, the two forms
# alternating, 5 timed calls; each variant in its own process (the spin count is read when
# torch loads OpenMP). "default" is torch's own (300,000 spins): it is run with the variable
# set to that value explicitly, since importing elastic now sets 10,000.
# Writes benchmarks/results/omp-wait.md (the raw tables, with the load average before each).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=benchmarks/results/omp-wait.md
run() {  # label
  for v in 300000 10000 1000; do
    echo "== $1, GOMP_SPINCOUNT=$v, load $(cut -d' ' -f1 /proc/loadavg)"
    for mode in infer train; do
      GOMP_SPINCOUNT=$v "$py" -m elastic bench --impl elastic,sasrec-sdpa --n 1024 --batch 32 \
        --mode "$mode" --k 8 --slots 256 --items 1000 --device cpu --repeats 5 2>&1 \
        | grep -E "^(impl|elastic|sasrec)"
    done
  done
}
{
  echo "# OpenMP spin count and speed on a shared CPU"
  echo
  echo "$(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, \`bash benchmarks/omp_wait.sh\`. Median wall ms and process CPU ms per call."
  echo
  echo '```'
  run idle
  python3 -c 'while True: pass' & b1=$!
  python3 -c 'while True: pass' & b2=$!
  trap 'kill $b1 $b2 2>/dev/null || true' EXIT
  sleep 3
  run busy
  run busy
  echo '```'
} | tee "$out"
