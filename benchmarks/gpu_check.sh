#!/usr/bin/env bash
# GPU check, under 5 minutes on one GPU: the CUDA tests (CUDA vs CPU agreement of layers,
# tuner, fit, checkpoints, estimator, DDP over NCCL), the gloo DDP test and the tuner's
# fast-path tests, then the throughput table (each separated analog + tuner vs the plain
# MLP of its family) with its time breakdown.
#
#   benchmarks/gpu_check.sh            # picks a Python whose torch sees a GPU
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#
# The project's .venv holds a CPU build of torch; on a GPU machine give a Python with a
# CUDA build (PYTHON=...) -- sepneuron is taken from src/ if it is not installed there.
set -euo pipefail
cd "$(dirname "$0")/.."

has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
PY=""
for cand in ${PYTHON:-} .venv/bin/python python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && has_cuda "$cand"; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
    echo "gpu_check: no Python with a CUDA-enabled torch that sees a GPU (set PYTHON=...)" >&2
    exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "== $("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))')"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true

echo "== CUDA and DDP tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_distributed.py \
    tests/test_tuner_paths.py

echo "== throughput (float32 and float64; ms per step, separated / plain of the same family)"
timeout 60 "$PY" benchmarks/throughput.py --device cuda --dtype float32 --widths 64 256 1024 \
    --batches 1000 64000 --steps 20 --warmup 5 --repeats 3 --breakdown
timeout 60 "$PY" benchmarks/throughput.py --device cuda --dtype float64 --sizes 32x1000 256x8000 \
    --steps 20 --warmup 5 --repeats 3
