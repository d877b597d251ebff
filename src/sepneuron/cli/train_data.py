"""The data of ``sepneuron train``: a registered task, or the arrays of an ``.npz`` file.

A ``--task`` is drawn by :func:`sepneuron.tasks.make_data` with ``--seed``; an ``.npz``
holds ``X`` ``(n, features)``, ``y`` ``(n, outputs)`` (1-D arrays are one column) and
optionally ``X_test``, ``y_test``, used as given. Every problem is a :class:`Fail` naming
the file and the array.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily, for a fast --help
    from torch import Tensor

__all__ = ["Fail", "npz_data", "task_data"]


class Fail(Exception):
    """A problem to report as ``sepneuron train: <message>`` with an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def task_data(args: argparse.Namespace, dtype) -> tuple[tuple, dict[str, Any]]:
    """``(X, y, X_test, y_test)`` of ``--task`` (tests ``None`` for ``--n-test 0``) and its
    description."""
    from ..tasks import get_task, make_data

    try:
        task = get_task(args.task)
    except ValueError as e:
        raise Fail(str(e)) from None
    n_train = 1000 if args.n_train is None else args.n_train
    n_test = 2000 if args.n_test is None else args.n_test
    X, y, Xt_, yt_ = make_data(task, n_train, n_test, generator=args.seed, dtype=dtype)
    Xt, yt = (None, None) if n_test == 0 else (Xt_, yt_)
    desc = {"task": task.name, "n_train": n_train, "n_test": n_test, "seed": args.seed}
    return (X, y, Xt, yt), desc


def npz_data(path: str, dtype) -> tuple[tuple, dict[str, Any]]:
    """``(X, y, X_test, y_test)`` of the ``--data`` file, as ``dtype`` tensors ``(n, columns)``
    (a 1-D array is one column; tests ``None`` when absent), and its description."""
    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise Fail(f"--data {path}: no such file")
    if not zipfile.is_zipfile(p):
        raise Fail(f"--data {path}: not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated, corrupt ...
        raise Fail(f"--data {path}: cannot read it as .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise Fail(f"--data {path}: no array {' or '.join(missing)} (it has: "
                    f"{', '.join(sorted(arrays)) or 'nothing'})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise Fail(f"--data {path}: give both X_test and y_test, or neither")
    keys = ("X", "y", "X_test", "y_test")
    tensors: dict[str, Tensor] = {}
    for k in keys:
        if k not in arrays:
            continue
        a = arrays[k]
        if a.dtype.kind not in "biuf":
            raise Fail(f"--data {path}: array {k} is not numeric (dtype {a.dtype})")
        if a.ndim not in (1, 2) or a.shape[0] == 0:
            raise Fail(f"--data {path}: array {k} must have shape (n,) or (n, columns) with "
                        f"n >= 1, got shape {a.shape}")
        a64 = np.asarray(a, dtype=np.float64)
        t = torch.from_numpy(a64).to(dtype)
        if np.isfinite(a64).all() and not torch.isfinite(t).all():
            raise Fail(f"--data {path}: array {k} has values beyond the range of {dtype} "
                        f"(largest |value| {np.abs(a64).max():.3g}); use --dtype float64 "
                        "or scale it")
        tensors[k] = t.reshape(-1, 1) if t.ndim == 1 else t  # (n,) -> (n, 1)
    desc = {"data": str(p), "n_train": int(tensors["X"].shape[0]),
            "n_test": int(tensors["X_test"].shape[0]) if "X_test" in tensors else 0}
    return tuple(tensors.get(k) for k in keys), desc
