"""``sepneuron predict MODEL --data X --out Y``: predictions of a trained model, streamed.

    sepneuron predict MODEL --data X.npz|X.npy|X.csv --out Y.npz|Y.npy|Y.csv
                      [--key X] [--chunk-rows N] [--threads 1]

``MODEL`` is a file written by ``sepneuron train --out`` (``.pt``) or by ``sepneuron
export`` (``.onnx``, evaluated by onnxruntime). The input is read and the output written a
chunk of ``--chunk-rows`` rows at a time (:mod:`sepneuron.stream_io` says what streams), so
memory does not grow with the file. The output holds float64 ``(rows, outputs)``: array
``y`` of an ``.npz``, or CSV columns ``y0, y1, ...``; it is written atomically. Bad input
(missing file, unknown format, wrong feature count, non-numeric or non-finite values) exits
with status 2 and one line ``sepneuron predict: ...``; no partial output is left.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..params import Param

__all__ = ["add_parser", "load_predictor", "run"]

Predictor = Callable[[np.ndarray], np.ndarray]
_AT_LEAST_1 = Param("int", low=1)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` subcommand to the subparsers ``sub``; returns its parser."""
    p = sub.add_parser(
        "predict", help="predict with a trained model, streaming large files in chunks",
        description="Evaluate MODEL (a .pt from `sepneuron train --out` or an .onnx from "
        "`sepneuron export`) on every row of --data and write the predictions to --out "
        "(float64, atomically). Files are read and written in chunks of rows: .npy memory-"
        "mapped, .npz members through their (possibly compressed) zip stream, .csv line by line.",
    )
    p.add_argument("model", metavar="MODEL", help="MODEL.pt (sepneuron train --out) or MODEL.onnx")
    p.add_argument("--data", required=True, metavar="X.npz|X.npy|X.csv",
                   help="inputs, one row per point (CSV: comma separated, optional header)")
    p.add_argument("--out", required=True, metavar="Y.npz|Y.npy|Y.csv",
                   help="where to write the predictions (array y of an .npz)")
    p.add_argument("--key", default="X",
                   help="array of an .npz input (default X; an archive of one array: that one)")
    p.add_argument("--chunk-rows", type=_AT_LEAST_1.parse, default=8192, metavar="N",
                   help="rows per chunk (default 8192: the temporaries of a 32-wide layer are then "
                   "2 MB each; 65536 rows cost 250 MB more at the peak)")
    p.add_argument("--threads", type=_AT_LEAST_1.parse, default=1, metavar="T",
                   help="torch / onnxruntime threads (default 1: a small network's elementwise "
                   "work runs no faster on more threads of a busy machine)")
    return p


def load_predictor(path: str, threads: int | None = None) -> tuple[Predictor, int, int]:
    """``(predict, n_features, n_outputs)`` for a ``.pt`` or ``.onnx`` model file;
    ``predict`` maps a float64 ``(rows, n_features)`` array to float64 ``(rows, n_outputs)``."""
    if Path(path).suffix.lower() == ".onnx":
        return _onnx_predictor(path, threads)
    import torch

    from ..model_file import read_model

    if threads is not None:
        torch.set_num_threads(threads)
    trained = read_model(path)
    return trained.predict, trained.n_features, trained.n_outputs


def _onnx_predictor(path: str, threads: int | None) -> tuple[Predictor, int, int]:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError:
        raise ValueError("an .onnx MODEL needs onnxruntime: pip install sepneuron[onnx]") from None
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types: name the file
        raise ValueError(f"{path}: cannot load it as ONNX ({type(e).__name__})") from None
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    n_features = inp.shape[1] if len(inp.shape) == 2 else None
    if not isinstance(n_features, int):
        raise ValueError(f"{path}: the input {inp.name!r} is not (batch, features)")
    n_outputs = out.shape[1] if len(out.shape) == 2 and isinstance(out.shape[1], int) else 1
    np_dtype = {"tensor(double)": np.float64, "tensor(float)": np.float32}.get(inp.type)
    if np_dtype is None:
        raise ValueError(f"{path}: input type {inp.type} is not float or double")

    def predict(X: np.ndarray) -> np.ndarray:
        y = sess.run([out.name], {inp.name: X.astype(np_dtype, copy=False)})[0]
        return np.asarray(y, dtype=np.float64).reshape(len(X), -1)

    return predict, n_features, n_outputs


def _predictions(source, predict: Predictor, rows: int) -> Iterator[np.ndarray]:
    done = 0
    for X in source.chunks(rows):
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise ValueError(f"--data {source.path}: row {done + int(np.argmax(bad))} (from 0) "
                             "holds NaN or Inf")
        yield predict(X)
        done += len(X)


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron predict``; returns the exit status (2: bad input)."""
    from ..stream_io import open_rows, write_rows

    t0 = time.perf_counter()
    try:
        predict, n_features, n_outputs = load_predictor(args.model, args.threads)
        source = open_rows(args.data, key=args.key)
        if source.n_cols != n_features:
            raise ValueError(f"--data {args.data} has {source.n_cols} feature column(s), but "
                             f"the model {args.model} takes {n_features}")
        if Path(args.out).resolve() == Path(args.data).resolve():
            raise ValueError("--out must not be the --data file")
        n = write_rows(args.out, _predictions(source, predict, args.chunk_rows), n_outputs,
                       source.n_rows)
    except (ValueError, OSError) as e:
        print(f"sepneuron predict: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {n} rows x {n_outputs} output(s) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
