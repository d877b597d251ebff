r"""Registry of analytic regression targets of graded difficulty, and their sampling.

Each :class:`Task` is a noiseless function ``f: R^dim -> R`` on a box
``[low_j, high_j]``; ``task.fn`` maps a ``(n, dim)`` tensor to ``(n, 1)`` and is exact in
float64. Tasks are looked up by name (:data:`TASKS`, :func:`get_task`) or passed as
objects. :func:`make_data` draws uniform train and test sets from an explicit
``torch.Generator`` and :func:`grid` lays a regular grid (both in :mod:`sepneuron.sampling`,
re-exported here); nothing touches the global RNGs.

Registered tasks (``r = sqrt(x^2 + y^2)``; ``d`` = difficulty, 1 easy .. 4 hard)::

    name            dim  d  f                                        domain
    product          2   1  x y                                      [-1, 1]^2
    ridge_tanh       2   1  tanh(3 (0.6 x + 0.8 y))                  [-1, 1]^2
    kink_abs         2   1  |x| + y                        (kink)    [-1, 1]^2
    sin_cos          2   2  sin(pi x) cos(pi y)                      [-1, 1]^2
    kan_exp          2   2  exp(sin(pi x) + y^2)                     [-1, 1]^2
    radial_sin_2pi   2   2  sin(2 pi r)                    (kink)    [-1, 1]^2
    radial_sin_6pi   2   4  sin(6 pi r)                    (kink)    [-1, 1]^2
    smooth_3d        3   2  exp(-(x^2+y^2+z^2)/2) cos(pi (x+y+z)/2)  [-1, 1]^3
    abs_planes_3d    3   2  |x + y| + |y - z|              (kink)    [-1, 1]^3
    range_3d         3   3  max(x, y, z) - min(x, y, z)    (kink)    [-1, 1]^3
    friedman1_3d     3   2  10 sin(pi x1 x2) + 20 (x3 - 1/2)^2 + 7.5 [0, 1]^3
    friedman2        4   3  sqrt(x1^2 + (x2 x3 - 1/(x2 x4))^2)       Friedman box
    friedman3        4   3  atan((x2 x3 - 1/(x2 x4)) / x1)           Friedman box

The Friedman (1991) functions are the published ones without their additive noise:
#1 is ``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5`` on ``[0, 1]^10`` (only five
inputs matter); ``friedman1_3d`` keeps ``x1..x3`` and fixes ``x4 = x5 = 0.5``, which adds
the constant ``7.5``. #2 and #3 have four inputs on the published box
``x1 in [0, 100]``, ``x2 in [40 pi, 560 pi]``, ``x3 in [0, 1]``, ``x4 in [1, 11]`` (the
ranges of :func:`sklearn.datasets.make_friedman2`); they are the only 4-D tasks and their
inputs and outputs are far from unit scale, so standardise before fitting. ``friedman3``
is evaluated as ``atan2(num, x1)``, equal to ``atan(num / x1)`` for ``x1 > 0`` and finite at
``x1 = 0``.

``sin(k r)`` has a conical point at the origin (slope ``k`` in every direction), so the
radial tasks are flagged ``has_kink``. The others (``Task.smooth``: product, ridge_tanh,
sin_cos, kan_exp, smooth_3d and the three Friedman functions) are the benchmark's *smooth*
tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .sampling import grid, make_data  # sampling.py: the draws (it looks tasks up lazily)

__all__ = ["Task", "TASKS", "get_task", "make_data", "grid"]

_PI = math.pi


@dataclass(frozen=True)
class Task:
    """One analytic target on a box domain."""

    name: str  # registry key
    dim: int  # number of inputs
    fn: Callable[[Tensor], Tensor]  # (n, dim) -> (n, 1), exact in float64
    low: tuple[float, ...]  # lower corner of the domain, one entry per input
    high: tuple[float, ...]  # upper corner of the domain, one entry per input
    difficulty: int  # 1 (easy) .. 4 (hard), a rough ranking for reports
    description: str  # the formula and domain in words
    has_kink: bool = False  # True where the gradient is discontinuous somewhere

    def __post_init__(self) -> None:
        if len(self.low) != self.dim or len(self.high) != self.dim:
            raise ValueError(f"task {self.name!r}: low/high must have {self.dim} entries")
        if not all(lo < hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"task {self.name!r}: need low < high for every input")

    @property
    def smooth(self) -> bool:
        """True for a target without a kink (continuous gradient on the whole box): the
        "smooth tasks" of the benchmark's headline target."""
        return not self.has_kink

    def __call__(self, x: Tensor) -> Tensor:
        """``f(x)``: ``(n, dim)`` -> ``(n, 1)``, with a clear shape error."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"task {self.name!r} expects input of shape (n, {self.dim}), got {tuple(x.shape)}"
            )
        return self.fn(x)


# -- target functions: (n, dim) -> (n, 1) ----------------------------------------------------


def _cols(x: Tensor) -> list[Tensor]:
    """The inputs as ``(n, 1)`` columns."""
    return [x[:, j : j + 1] for j in range(x.shape[1])]


def _product(x: Tensor) -> Tensor:
    a, b = _cols(x)
    return a * b


def _ridge_tanh(x: Tensor) -> Tensor:
    a, b = _cols(x)
    return torch.tanh(3.0 * (0.6 * a + 0.8 * b))


def _kink_abs(x: Tensor) -> Tensor:
    a, b = _cols(x)
    return a.abs() + b


def _sin_cos(x: Tensor) -> Tensor:
    a, b = _cols(x)
    return torch.sin(_PI * a) * torch.cos(_PI * b)


def _kan_exp(x: Tensor) -> Tensor:
    a, b = _cols(x)
    return torch.exp(torch.sin(_PI * a) + b * b)


def _radial_sin(k: float) -> Callable[[Tensor], Tensor]:
    def f(x: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # (n, 1)
        return torch.sin(k * r)

    return f


def _smooth_3d(x: Tensor) -> Tensor:
    s = x.sum(dim=1, keepdim=True)
    return torch.exp(-0.5 * (x * x).sum(dim=1, keepdim=True)) * torch.cos(0.5 * _PI * s)


def _abs_planes_3d(x: Tensor) -> Tensor:
    a, b, c = _cols(x)
    return (a + b).abs() + (b - c).abs()


def _range_3d(x: Tensor) -> Tensor:
    return x.amax(dim=1, keepdim=True) - x.amin(dim=1, keepdim=True)


def _friedman1_3d(x: Tensor) -> Tensor:
    a, b, c = _cols(x)
    return 10.0 * torch.sin(_PI * a * b) + 20.0 * (c - 0.5) ** 2 + (10.0 * 0.5 + 5.0 * 0.5)


def _friedman_num(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x1, x2 x3 - 1 / (x2 x4))`` of Friedman #2 and #3."""
    x1, x2, x3, x4 = _cols(x)
    return x1, x2 * x3 - 1.0 / (x2 * x4)


def _friedman2(x: Tensor) -> Tensor:
    x1, num = _friedman_num(x)
    return torch.sqrt(x1 * x1 + num * num)


def _friedman3(x: Tensor) -> Tensor:
    x1, num = _friedman_num(x)
    return torch.atan2(num, x1)


# -- registry ----------------------------------------------------------------------------------


def _box(
    dim: int, lo: float = -1.0, hi: float = 1.0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(low, high)`` corners of the box ``[lo, hi]^dim``."""
    return (lo,) * dim, (hi,) * dim


_FRIEDMAN_BOX = ((0.0, 40.0 * _PI, 0.0, 1.0), (100.0, 560.0 * _PI, 1.0, 11.0))

_ALL = [
    Task("product", 2, _product, *_box(2), difficulty=1, description="x*y on [-1,1]^2"),
    Task(
        "ridge_tanh", 2, _ridge_tanh, *_box(2), difficulty=1,
        description="ridge tanh(3 (0.6 x + 0.8 y)) on [-1,1]^2",
    ),
    Task(
        "kink_abs", 2, _kink_abs, *_box(2), difficulty=1, has_kink=True,
        description="|x| + y on [-1,1]^2 (kink along x = 0)",
    ),
    Task(
        "sin_cos", 2, _sin_cos, *_box(2), difficulty=2,
        description="sin(pi x) cos(pi y) on [-1,1]^2",
    ),
    Task(
        "kan_exp", 2, _kan_exp, *_box(2), difficulty=2,
        description="exp(sin(pi x) + y^2) on [-1,1]^2 (the KAN paper's example)",
    ),
    Task(
        "radial_sin_2pi", 2, _radial_sin(2 * _PI), *_box(2), difficulty=2, has_kink=True,
        description="sin(2 pi r), r = |(x, y)|, on [-1,1]^2 (cone at the origin)",
    ),
    Task(
        "radial_sin_6pi", 2, _radial_sin(6 * _PI), *_box(2), difficulty=4, has_kink=True,
        description="sin(6 pi r), r = |(x, y)|, on [-1,1]^2 (cone at the origin)",
    ),
    Task(
        "smooth_3d", 3, _smooth_3d, *_box(3), difficulty=2,
        description="exp(-(x^2+y^2+z^2)/2) cos(pi (x+y+z)/2) on [-1,1]^3",
    ),
    Task(
        "abs_planes_3d", 3, _abs_planes_3d, *_box(3), difficulty=2, has_kink=True,
        description="|x + y| + |y - z| on [-1,1]^3 (kinks on two planes)",
    ),
    Task(
        "range_3d", 3, _range_3d, *_box(3), difficulty=3, has_kink=True,
        description="max(x,y,z) - min(x,y,z) on [-1,1]^3 (kinks on x=y, y=z, x=z)",
    ),
    Task(
        "friedman1_3d", 3, _friedman1_3d, *_box(3, 0.0, 1.0), difficulty=2,
        description="Friedman #1 on x1..x3 in [0,1], x4 = x5 = 0.5 fixed: "
        "10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 7.5, no noise",
    ),
    Task(
        "friedman2", 4, _friedman2, *_FRIEDMAN_BOX, difficulty=3,
        description="Friedman #2 (4-D, published box, no noise): "
        "sqrt(x1^2 + (x2 x3 - 1/(x2 x4))^2)",
    ),
    Task(
        "friedman3", 4, _friedman3, *_FRIEDMAN_BOX, difficulty=3,
        description="Friedman #3 (4-D, published box, no noise): "
        "atan((x2 x3 - 1/(x2 x4)) / x1)",
    ),
]

TASKS: dict[str, Task] = {t.name: t for t in _ALL}
"""All registered tasks by name, in order of the table above."""


def get_task(name_or_task: str | Task) -> Task:
    """Return a :class:`Task` given its registered name or the task itself."""
    if isinstance(name_or_task, Task):
        return name_or_task
    try:
        return TASKS[name_or_task]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown task {name_or_task!r}; known tasks: {', '.join(TASKS)}"
        ) from None

