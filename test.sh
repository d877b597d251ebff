#!/usr/bin/env bash
# Set up .venv with the test dependencies, lint (ruff), type-check (mypy) and run the default
# test suite (slow tests excluded). Any step that fails stops the run. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh test,bench,kan
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
