"""Pictures of one training run (``sepneuron train --plot DIR``), as PNG files.

* ``learning_curve.png``: training loss (MSE) per step and the train / test RMSE at each
  evaluation, log scale, against the step;
* ``fit.png`` (1-D and 2-D inputs): the fitted function -- for 1-D the model's curve over
  the training points (and the target's, when it is known), for 2-D a colour map of the
  model over the input box with the training points on top;
* ``error.png`` (1-D and 2-D inputs): ``model - target`` -- on a grid when the target
  function is known (a ``--task``), else the residuals at the training points.

Output 0 is drawn when the model has several. matplotlib (the ``bench`` extra) is
imported on first use and only through its Agg canvas: pyplot and its global state are
untouched. Every file is written atomically (:func:`sepneuron.checkpoint.atomic_open`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_learning_curve", "plot_fit", "plot_run"]

Predict = Callable[[np.ndarray], np.ndarray]  # (n, d) float64 -> (n, k) float64


def _figure(w: float, h: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("pictures need matplotlib: pip install sepneuron[bench]") from None
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    from .checkpoint import atomic_open

    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def plot_learning_curve(history: Any, path: str | os.PathLike, title: str = "") -> Path:
    """Loss per step and RMSE per evaluation of a :class:`~sepneuron.train.History`."""
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    if history.loss:
        steps = np.arange(1, len(history.loss) + 1)
        ax.plot(steps, np.sqrt(np.maximum(history.loss, 0)), lw=0.8, alpha=0.6,
                label="sqrt(training loss) per step")
    ev = np.asarray(history.eval_step)
    ax.plot(ev, history.train_rmse, "o-", ms=3, label="train RMSE")
    if history.test_rmse:
        ax.plot(ev, history.test_rmse, "s-", ms=3, label="test RMSE")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("RMSE (data units)")
    ax.set_title(f"learning curve -- {title}" if title else "learning curve")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, Path(path))


def _box(X: np.ndarray, bounds: tuple[Any, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    if bounds is not None:
        return np.asarray(bounds[0], float), np.asarray(bounds[1], float)
    lo, hi = X.min(0), X.max(0)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    return lo - pad, hi + pad


def plot_fit(predict: Predict, X: np.ndarray, y: np.ndarray, folder: str | os.PathLike, *,
             target: Predict | None = None, bounds: tuple[Any, Any] | None = None,
             n_grid: int = 120, title: str = "") -> list[Path]:
    """``fit.png`` and ``error.png`` in ``folder`` for a model of 1 or 2 inputs (else none).

    ``X`` ``(n, d)`` and ``y`` ``(n, k)`` are the training points; ``target`` the true
    function (then the error is drawn on a grid over ``bounds``, else at the points).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)[:, 0]
    d = X.shape[1]
    if d not in (1, 2):
        return []
    folder = Path(folder)
    lo, hi = _box(X, bounds)
    suffix = f" -- {title}" if title else ""
    fit, err = _figure(6.4, 4.8), _figure(6.4, 4.8)
    ax_f, ax_e = fit.add_subplot(), err.add_subplot()
    if d == 1:
        g = np.linspace(lo[0], hi[0], 4 * n_grid).reshape(-1, 1)
        ax_f.plot(X[:, 0], y, ".", ms=3, alpha=0.5, label="training points")
        ax_f.plot(g[:, 0], predict(g)[:, 0], lw=1.5, label="model")
        if target is not None:
            ax_f.plot(g[:, 0], target(g)[:, 0], "--", lw=1, label="target")
            ax_e.plot(g[:, 0], predict(g)[:, 0] - target(g)[:, 0], lw=1)
            ax_e.set_ylabel("model - target")
        else:
            ax_e.plot(X[:, 0], predict(X)[:, 0] - y, ".", ms=3)
            ax_e.set_ylabel("model - y at the training points")
        ax_f.set_xlabel("x")
        ax_f.legend()
        ax_e.set_xlabel("x")
        ax_e.axhline(0, color="k", lw=0.5)
    else:
        u, v = np.linspace(lo[0], hi[0], n_grid), np.linspace(lo[1], hi[1], n_grid)
        uu, vv = np.meshgrid(u, v)  # (n, n): rows follow x1, columns x0
        G = np.stack([uu.ravel(), vv.ravel()], 1)
        pred = predict(G)[:, 0].reshape(uu.shape)
        extent = (lo[0], hi[0], lo[1], hi[1])
        im = ax_f.imshow(pred, origin="lower", extent=extent, aspect="auto", cmap="viridis")
        fit.colorbar(im, ax=ax_f, label="model")
        ax_f.plot(X[:, 0], X[:, 1], "k.", ms=1.5, alpha=0.4)
        if target is not None:
            e = pred - target(G)[:, 0].reshape(uu.shape)
            m = float(np.abs(e).max()) or 1.0
            im = ax_e.imshow(e, origin="lower", extent=extent, aspect="auto", cmap="RdBu_r",
                             vmin=-m, vmax=m)
            err.colorbar(im, ax=ax_e, label="model - target")
        else:
            r = predict(X)[:, 0] - y
            m = float(np.abs(r).max()) or 1.0
            sc = ax_e.scatter(X[:, 0], X[:, 1], c=r, s=8, cmap="RdBu_r", vmin=-m, vmax=m)
            err.colorbar(sc, ax=ax_e, label="model - y at the training points")
        for ax in (ax_f, ax_e):
            ax.set_xlabel("x0")
            ax.set_ylabel("x1")
    ax_f.set_title("fitted function" + suffix)
    ax_e.set_title("error" + suffix)
    return [_save(fit, folder / "fit.png"), _save(err, folder / "error.png")]


def plot_run(folder: str | os.PathLike, history: Any, predict: Predict, X: Any, y: Any, *,
             target: Predict | None = None, bounds: tuple[Any, Any] | None = None,
             title: str = "") -> list[Path]:
    """All pictures of a run in ``folder``: the learning curve, and for 1-D / 2-D inputs the
    fitted function and its error. Returns the paths written."""
    folder = Path(folder)
    paths = [plot_learning_curve(history, folder / "learning_curve.png", title)]
    return paths + plot_fit(predict, np.asarray(X), np.asarray(y), folder, target=target,
                            bounds=bounds, title=title)
