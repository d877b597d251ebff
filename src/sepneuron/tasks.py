r"""Registry of analytic regression targets of graded difficulty, and their sampling.

Each :class:`Task` is a noiseless function ``f: R^dim -> R`` on a box
``[low_j, high_j]``; ``task.fn`` maps a ``(n, dim)`` tensor to ``(n, 1)`` and is exact in
float64. Tasks are looked up by name (:data:`TASKS`, :func:`get_task`) or passed as
objects. :func:`make_data` draws uniform train and test sets from an explicit
``torch.Generator``; nothing here touches the global RNGs.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

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


# -- sampling --------------------------------------------------------------------------------


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
