"""Optional adapter for KAN (``pykan==0.2.8``, the ``kan`` extra) as a peer baseline.

pykan's ``MultKAN`` seeds the global torch / numpy / ``random`` RNGs in its constructor,
draws from numpy's global RNG in every ``fit`` step, prints, shows a tqdm bar, can write
checkpoints under ``ckpt_path`` and builds its tensors in the *default* dtype.
:func:`fit_kan` contains all of that: it saves and restores the three global RNG states
(and CUDA's when initialised) and the default dtype, points ``ckpt_path`` into a
:class:`tempfile.TemporaryDirectory` (deleted afterwards; ``auto_save=False`` too), and
swallows stdout / stderr while pykan runs. It does not change the working directory.
Not thread-safe: the default dtype, RNG states and ``sys.stdout`` are process-wide.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["kan_available", "fit_kan"]

_INSTALL_HINT = "fit_kan needs pykan: pip install 'sepneuron[kan]' (pykan==0.2.8)"


@functools.lru_cache(maxsize=1)
def _import_kan() -> Any:
    """The ``kan`` package, imported once, with the global RNGs and output untouched."""
    with _isolated(torch.get_default_dtype()):
        return importlib.import_module("kan")


def kan_available() -> bool:
    """Whether pykan can be imported."""
    try:
        _import_kan()
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


@contextlib.contextmanager
def _isolated(dtype: torch.dtype) -> Iterator[None]:
    """Run pykan code with ``dtype`` as default dtype, silenced, restoring the global RNGs."""
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    old_dtype = torch.get_default_dtype()
    sink = io.StringIO()
    try:
        torch.set_default_dtype(dtype)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(np_state)
        random.setstate(py_state)


class _OutOfTime(Exception):
    """Raised from inside ``MultKAN.fit`` to stop it at the time budget."""


def _check_data(x: Tensor, y: Tensor, name: str, width: Sequence[int]) -> Tensor:
    if y.ndim == 1:
        y = y.unsqueeze(-1)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: need X (n, d) and y (n, k), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[1] != width[0] or y.shape[1] != width[-1]:
        raise ValueError(
            f"{name}: width {list(width)} must start with {x.shape[1]} inputs "
            f"and end with {y.shape[1]} outputs"
        )
    return y


def _rmse(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return math.sqrt(float(((model(x) - y) ** 2).mean()))


def fit_kan(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    width: Sequence[int],
    grid: int = 5,
    k: int = 3,
    steps: int = 100,
    opt: str = "LBFGS",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    max_time: float | None = None,
    lr: float = 1.0,
    lamb: float = 0.0,
    update_grid: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Build a pykan ``MultKAN`` and fit it with ``MultKAN.fit``; return its metrics.

    Args:
        x_train, y_train, x_test, y_test: ``(n, d)`` inputs and ``(n, k)`` (or ``(n,)``)
            targets; cast to ``dtype`` and ``device``.
        width: layer widths, e.g. ``[2, 5, 1]``; first = ``d``, last = ``k``.
        grid, k: spline intervals and order.
        steps: ``fit`` steps (one LBFGS step runs up to 20 closure evaluations).
        opt: ``"LBFGS"`` or ``"Adam"`` (pykan's names); ``lr`` its learning rate.
        seed: pykan's constructor seed (it also drives pykan's numpy batch sampling).
        max_time: stop after the first step that ends more than ``max_time`` seconds
            after ``fit`` started (``None``: run all ``steps``).
        lamb: pykan's sparsity penalty (0: plain least squares).
        update_grid: pykan's grid adaptation (every few steps during the first 50).

    Returns a dict with
        ``test_rmse``, ``train_rmse`` (float, evaluated after fitting),
        ``train_loss`` (list of per-step training RMSE, pykan's convention),
        ``step_time`` (list of seconds per step; each also contains pykan's per-step
        test-loss evaluation), ``wall_time`` (seconds in ``fit``), ``steps_done``,
        ``timed_out`` (bool), ``n_params`` (trainable spline parameters: ``coef``,
        ``scale_base``, ``scale_sp``), and ``model`` (the fitted ``MultKAN``).

    Raises ImportError when pykan is not installed.
    """
    if not kan_available():
        raise ImportError(_INSTALL_HINT)
    kan = _import_kan()
    width = [int(w) for w in width]
    if len(width) < 2 or min(width) < 1:
        raise ValueError(f"width must list at least two positive layer sizes, got {width!r}")
    if opt not in ("LBFGS", "Adam"):
        raise ValueError(f"opt must be 'LBFGS' or 'Adam', got {opt!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if max_time is not None and not max_time > 0:
        raise ValueError(f"max_time must be > 0 or None, got {max_time!r}")
    y_train = _check_data(x_train, y_train, "train", width)
    y_test = _check_data(x_test, y_test, "test", width)
    data = {
        key: t.detach().to(device=device, dtype=dtype)
        for key, t in (
            ("train_input", x_train), ("train_label", y_train),
            ("test_input", x_test), ("test_label", y_test),
        )
    }

    stamps: list[float] = []
    losses: list[float] = []
    fit_module = None  # pykan keeps the last training loss in a module global

    def wall_clock() -> Tensor:  # a pykan "metric", called once after every step
        stamps.append(time.perf_counter())
        loss = getattr(fit_module, "train_loss", None)
        losses.append(math.sqrt(float(loss.detach())) if loss is not None else math.nan)
        if max_time is not None and stamps[-1] - start > max_time:
            raise _OutOfTime
        return torch.tensor(0.0)

    timed_out = False
    with tempfile.TemporaryDirectory(prefix="sepneuron-kan-") as tmp, _isolated(dtype):
        model = kan.MultKAN(
            width=list(width), grid=grid, k=k, seed=seed, auto_save=False,
            ckpt_path=os.path.join(tmp, "model"), symbolic_enabled=False, device=device,
        )
        fit_module = importlib.import_module(type(model).__module__)
        save_act, symbolic = model.save_act, model.symbolic_enabled
        start = time.perf_counter()
        try:
            model.fit(
                data, opt=opt, steps=steps, lr=lr, lamb=lamb, update_grid=update_grid,
                metrics=[wall_clock], img_folder=os.path.join(tmp, "video"),
            )
        except _OutOfTime:
            timed_out = True
            model.save_act, model.symbolic_enabled = save_act, symbolic
        train_rmse = _rmse(model, data["train_input"], data["train_label"])
        test_rmse = _rmse(model, data["test_input"], data["test_label"])
    step_time = np.diff([start, *stamps]).tolist()
    return {
        "test_rmse": test_rmse,
        "train_rmse": train_rmse,
        "train_loss": losses,
        "step_time": step_time,
        "wall_time": (stamps[-1] - start) if stamps else 0.0,
        "steps_done": len(stamps),
        "timed_out": timed_out,
        "n_params": sum(p.numel() for p in model.act_fun.parameters() if p.requires_grad),
        "model": model,
    }
