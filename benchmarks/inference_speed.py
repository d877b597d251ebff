"""Inference speed: the exported ONNX model in onnxruntime and ``predict`` against
scikit-learn's ``MLPRegressor.predict`` of the same size, on the same rows, in one run.

    python benchmarks/inference_speed.py [--rows 1000000] [--hidden 32,32] [--features 2]
                                         [--threads 1] [--repeats 3] [--json]

Models (weights from a few training steps: only the size matters): a
``SeparatedMLPRegressor`` (SoftPlus analog, float64 and float32), exported with
``export_onnx`` in float64 and float32, and an ``MLPRegressor`` with the same hidden
layers, ReLU (scikit-learn's default) and tanh (like the separated neuron, a
transcendental function per neuron). Each is timed on the same ``--rows`` x
``--features`` float64 array (best of ``--repeats`` rounds; each round runs every
predictor once, in turn), all on ``--threads`` threads
(torch, onnxruntime, and scikit-learn's BLAS through threadpoolctl). Also timed:
``sepneuron predict`` from an ``.npy`` file to an ``.npy`` file, in this process (file
reading and writing included, interpreter start-up not). Prints a table with the time
ratio to scikit-learn (above 1: faster than scikit-learn), or with ``--json`` one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def _best_interleaved(calls: dict, repeats: int) -> dict[str, float]:
    """Best time of each call over ``repeats`` rounds, every round running each call once in
    turn, so that all of them meet the same phases of a shared machine's load."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--hidden", default="32,32")
    ap.add_argument("--features", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import onnxruntime as ort
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    from sepneuron import SeparatedMLPRegressor
    from sepneuron.cli import main as cli_main

    torch.set_num_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    rng = np.random.default_rng(0)
    Xtr = rng.uniform(-1, 1, (500, args.features))
    ytr = np.sin(3 * Xtr).sum(1)
    X = rng.uniform(-1, 1, (args.rows, args.features))
    calls: dict = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        d = Path(tmp)
        sk = MLPRegressor(hidden_layer_sizes=hidden, max_iter=5, random_state=0).fit(Xtr, ytr)
        calls["scikit-learn MLPRegressor.predict (ReLU, float64)"] = lambda: sk.predict(X)
        sk_tanh = MLPRegressor(hidden_layer_sizes=hidden, activation="tanh", max_iter=5,
                               random_state=0).fit(Xtr, ytr)
        calls["scikit-learn MLPRegressor.predict (tanh, float64)"] = lambda: sk_tanh.predict(X)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        for dtype in ("float64", "float32"):
            reg = SeparatedMLPRegressor(hidden, max_steps=5, dtype=dtype, random_state=0)
            reg.fit(Xtr, ytr)
            calls[f"SeparatedMLPRegressor.predict ({dtype})"] = lambda reg=reg: reg.predict(X)
            path = reg.export_onnx(d / f"m_{dtype}.onnx")
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            Xd = X.astype(dtype)
            calls[f"onnxruntime, exported graph ({dtype})"] = (
                lambda sess=sess, Xd=Xd: sess.run(None, {"X": Xd}))
        assert cli_main(["train", "--task", "kan_exp" if args.features == 2 else "smooth_3d",
                         "--steps", "3", "--hidden", args.hidden, "--progress", "none",
                         "--checkpoint", str(d / "ck.pt"), "--out", str(d / "m.pt")]) == 0
        np.save(d / "x.npy", X)
        calls["sepneuron predict .npy -> .npy (float64, files included)"] = lambda: cli_main(
            ["predict", str(d / "m.pt"), "--data", str(d / "x.npy"), "--out", str(d / "y.npy"),
             "--threads", str(args.threads)])
        timings = _best_interleaved(calls, args.repeats)
    base = timings["scikit-learn MLPRegressor.predict (ReLU, float64)"]
    if args.json:
        print(json.dumps({"rows": args.rows, "hidden": hidden, "threads": args.threads,
                          "seconds": timings}))
        return 0
    print(f"\n{args.rows} rows x {args.features} features, hidden {args.hidden}, "
          f"{args.threads} thread(s), best of {args.repeats}")
    print("| predictor | seconds | rows/s | speed vs scikit-learn |\n|---|---:|---:|---:|")
    for name, t in timings.items():
        print(f"| {name} | {t:.3f} | {args.rows / t:.3g} | {base / t:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
