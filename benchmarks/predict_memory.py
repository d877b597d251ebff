"""Peak resident memory of ``sepneuron predict`` against the number of rows.

    python benchmarks/predict_memory.py [--rows 10000000] [--formats npz npy csv] [--dir DIR]
                                        [--hidden 32,32] [--chunk-rows N] [--json]

Trains a small model (``sepneuron train --task kan_exp``, a few steps: only its size
matters), writes ``--rows`` random 2-D inputs in each format, and runs
``python -m sepneuron predict`` on them in a fresh process each, reading that process's
peak RSS from ``os.wait4``. The baseline is the same command on 1000 rows (interpreter,
torch and the model); the difference is what the rows cost. Prints a table, or with
``--json`` one JSON line ``{"baseline_mb": ..., FORMAT: {"rows", "peak_mb", "wall_s"}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _peak(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``cmd`` in a fresh process; raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0  # ru_maxrss is in KiB on Linux


def _write(path: Path, rows: int, fmt: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (rows, 2))
    if fmt == "npy":
        np.save(path, X)
    elif fmt == "npz":
        np.savez(path, X=X)
    else:
        with open(path, "w") as f:
            f.write("x0,x1\n")
            for i in range(0, rows, 1 << 20):
                np.savetxt(f, X[i:i + (1 << 20)], delimiter=",", fmt="%.17g")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--formats", nargs="+", default=["npz", "npy"], choices=["npz", "npy", "csv"])
    ap.add_argument("--dir", help="working folder (default: a temporary one)")
    ap.add_argument("--hidden", default="32,32")
    ap.add_argument("--chunk-rows", type=int, help="passed to sepneuron predict (default: its own)")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.dir or tmp)
        d.mkdir(parents=True, exist_ok=True)
        sep = [sys.executable, "-m", "sepneuron"]
        subprocess.run([*sep, "train", "--task", "kan_exp", "--steps", "3", "--hidden", args.hidden,
                        "--checkpoint", str(d / "ck.pt"), "--out", str(d / "model.pt")],
                       env=_env(), check=True, capture_output=True)
        result: dict = {}
        np.save(d / "small.npy", np.zeros((1000, 2)))
        result["baseline_mb"], _ = _peak([*sep, "predict", str(d / "model.pt"), "--data",
                                          str(d / "small.npy"), "--out", str(d / "small_y.npy")])
        for fmt in args.formats:
            src = d / f"x.{fmt}"
            _write(src, args.rows, fmt)
            chunk = [] if args.chunk_rows is None else ["--chunk-rows", str(args.chunk_rows)]
            peak, wall = _peak([*sep, "predict", str(d / "model.pt"), "--data", str(src),
                                "--out", str(d / f"y.{fmt}"), *chunk])
            result[fmt] = {"rows": args.rows, "peak_mb": round(peak, 1), "wall_s": round(wall, 1)}
            src.unlink()
            (d / f"y.{fmt}").unlink()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"baseline (1000 rows): peak RSS {result['baseline_mb']:.0f} MB")
    print("| input | rows | peak RSS (MB) | over baseline (MB) | wall (s) |")
    print("|---|---:|---:|---:|---:|")
    for fmt in args.formats:
        r = result[fmt]
        print(f"| .{fmt} | {r['rows']} | {r['peak_mb']:.0f} | "
              f"{r['peak_mb'] - result['baseline_mb']:.0f} | {r['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
