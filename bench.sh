#!/usr/bin/env bash
# The main job: set up .venv and run the default (quick) benchmark suite.
# Extra arguments go to `sepneuron bench`, e.g. ./bench.sh --suite paper --jobs 2
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh bench,kan
exec .venv/bin/sepneuron bench "$@"
