#!/usr/bin/env bash
# Issue 8's CPU targets, measured with `python -m elastic bench` (forms alternating, wall and
# CPU time): N = 1024 infer and train at B = 32, and N = 4096 infer, each idle and then with two
# CPU-bound processes beside it (a workshop laptop whose app trains in the background).
# Writes benchmarks/results/cpu-targets/{idle,busy}-{infer,train}.json (machine, date, load).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/cpu-targets
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
common=(--k 8 --slots 256 --items 1000 --d-model 64 --layers 2 --heads 2 --device cpu
        --repeats 5 --max-point-s 120)
run() {  # label
  "$py" -m elastic bench --impl elastic,sasrec-sdpa,sasrec-materialized,none --n 1024,4096 \
    --batch 32 --mode infer "${common[@]}" --json "$out/$1-infer.json"
  "$py" -m elastic bench --impl elastic,sasrec-sdpa,sasrec-materialized,none --n 1024 \
    --batch 32 --mode train "${common[@]}" --json "$out/$1-train.json"
}
run idle
python3 -c 'while True: pass' & busy1=$!
python3 -c 'while True: pass' & busy2=$!
trap 'kill $busy1 $busy2 2>/dev/null || true' EXIT
run busy
"$py" benchmarks/cpu_targets_table.py
