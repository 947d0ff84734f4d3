#!/usr/bin/env bash
# Create .venv with the library and the app; `--test` adds what the test suite needs
# (pytest, Playwright's Python package, and Debian's Chromium for the browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: on the project's machines this is a CPU build already on disk; an
# unpinned torch would pull a several-GB CUDA build. A GPU user may install any torch >= 2.4.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q -e ".[test]"
  if [ ! -x /usr/bin/chromium ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
  fi
else
  .venv/bin/pip install -q -e .
fi
