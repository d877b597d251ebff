#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install sepneuron into it.
# Usage: scripts/venv.sh EXTRAS   (e.g. "bench" or "test,bench,kan")
# torch is installed first, pinned to the CPU build 2.13.0, so that nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-bench}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
