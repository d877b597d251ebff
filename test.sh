#!/usr/bin/env bash
# Set up .venv with the test dependencies and run the default test suite (slow tests excluded).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh test,bench,kan
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
