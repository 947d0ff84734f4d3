#!/usr/bin/env bash
# Set up (.venv, test extras, Chromium) and run the whole test suite, lint included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
