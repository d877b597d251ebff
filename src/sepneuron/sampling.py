"""Samples of a task (:mod:`sepneuron.tasks`): uniform train and test sets, regular grids.

:func:`make_data` draws from an explicit ``torch.Generator`` (or an int seed); nothing here
touches the global RNGs. Targets are evaluated in float64 and cast to the requested dtype.
Both functions are also importable from :mod:`sepneuron.tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["make_data", "grid"]


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A ``torch.Generator`` from a generator, an int seed, or ``None`` (fresh OS entropy)."""
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    if generator is None:
        g.seed()  # non-deterministic, from the OS; the global RNG is left alone
    elif isinstance(generator, int) and not isinstance(generator, bool):
        g.manual_seed(generator)
    else:
        raise TypeError(
            f"generator must be a torch.Generator, an int seed or None, got {generator!r}"
        )
    return g


def _bounds(task: Task, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    low = torch.tensor(task.low, dtype=torch.float64, device=device)
    high = torch.tensor(task.high, dtype=torch.float64, device=device)
    return low.to(dtype), high.to(dtype)


def _uniform(task: Task, n: int, g: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    """``(n, dim)`` points uniform in the task's box, drawn in float64 then cast."""
    u = torch.rand(n, task.dim, generator=g, dtype=torch.float64, device=g.device)
    low, high = _bounds(task, torch.float64, g.device)
    return (low + u * (high - low)).to(device=device, dtype=dtype)  # (n, dim)


def _in_rows(x: Tensor, ref: Tensor) -> Tensor:
    """Boolean ``(len(x),)``: whether each row of ``x`` equals some row of ``ref``."""
    if len(x) == 0 or len(ref) == 0:
        return torch.zeros(len(x), dtype=torch.bool, device=x.device)
    _, inverse = torch.unique(torch.cat([ref, x]), dim=0, return_inverse=True)
    seen = torch.zeros(int(inverse.max()) + 1, dtype=torch.bool, device=x.device)
    seen[inverse[: len(ref)]] = True
    return seen[inverse[len(ref) :]]


def make_data(
    task: str | Task,
    n_train: int,
    n_test: int,
    *,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Uniform train and test samples of a task: ``(X_train, y_train, X_test, y_test)``.

    Shapes: ``X_*`` ``(n, dim)``, ``y_*`` ``(n, 1)``. Points are drawn uniformly in the
    task's box from ``generator`` (a ``torch.Generator``, an int seed, or ``None`` for a
    fresh non-deterministic one): first the training set, then the test set, both in
    float64 and then cast to ``dtype``. Any test point that equals a training point after
    the cast is redrawn, so the two sets share no point. Targets are ``f`` evaluated in
    float64 on the cast points and then cast to ``dtype``.
    """
    from .tasks import get_task

    task = get_task(task)
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    g = _as_generator(generator)
    x_train = _uniform(task, n_train, g, dtype, device)
    x_test = _uniform(task, n_test, g, dtype, device)
    for _ in range(100):
        clash = _in_rows(x_test, x_train)  # (n_test,)
        n_clash = int(clash.sum())
        if n_clash == 0:
            break
        x_test[clash] = _uniform(task, n_clash, g, dtype, device)
    else:  # pragma: no cover - needs a domain with almost no representable points
        raise RuntimeError("could not draw test points distinct from the training points")
    return x_train, _target(task, x_train), x_test, _target(task, x_test)


def _target(task: Task, x: Tensor) -> Tensor:
    """``f(x)`` evaluated in float64, returned in ``x``'s dtype; ``(n, 1)``."""
    return task(x.to(torch.float64)).to(x.dtype)


def grid(
    task: str | Task,
    n_per_axis: int,
    *,
    axes: Sequence[int] = (0, 1),
    fixed: Sequence[float] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A regular grid over two inputs of a task, for heat maps: ``(X, y)``.

    ``X`` is ``(n * n, dim)`` and ``y`` is ``(n * n, 1)`` with ``n = n_per_axis``;
    ``y.reshape(n, n)[i, j]`` is ``f`` at ``axes[0]`` = ``i``-th grid value and
    ``axes[1]`` = ``j``-th (``indexing="ij"``; transpose for ``imshow`` with x
    horizontal). Both axes span the task's box including the end points. For tasks with
    more than two inputs the others are held at ``fixed`` (one value per input of
    ``task``; entries on ``axes`` are ignored), by default the centre of the box.
    """
    from .tasks import get_task

    task = get_task(task)
    if not isinstance(n_per_axis, int) or isinstance(n_per_axis, bool) or n_per_axis < 2:
        raise ValueError(f"n_per_axis must be an int >= 2, got {n_per_axis!r}")
    i, j = (int(a) for a in axes)
    if len(axes) != 2 or i == j or not (0 <= i < task.dim and 0 <= j < task.dim):
        raise ValueError(f"axes must be two distinct inputs of the {task.dim}-D task, got {axes!r}")
    if fixed is None:
        fixed = [0.5 * (lo + hi) for lo, hi in zip(task.low, task.high, strict=True)]
    if len(fixed) != task.dim:
        raise ValueError(f"fixed must have {task.dim} entries, got {len(fixed)}")
    f64 = torch.float64
    u = torch.linspace(task.low[i], task.high[i], n_per_axis, dtype=f64, device=device)
    v = torch.linspace(task.low[j], task.high[j], n_per_axis, dtype=f64, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="ij")  # (n, n) each
    x = torch.tensor(list(fixed), dtype=f64, device=device).repeat(n_per_axis**2, 1)
    x[:, i] = uu.reshape(-1)
    x[:, j] = vv.reshape(-1)  # (n * n, dim)
    x = x.to(dtype)
    return x, _target(task, x)
