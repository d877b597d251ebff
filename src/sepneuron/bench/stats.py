"""What every analysis of stored runs shares (pure functions, no I/O): the runs as a pandas
table, a run's final RMSE, medians and geometric means that keep ``inf``, the time to a
target, and the registries' order for tasks and methods.

Conventions: a *failed* run (an error row, or one without a finite final test RMSE) has
final RMSE ``inf``; ``None`` and NaN mean "no value" and are dropped by :func:`median` and
:func:`geomean`; ``inf`` is kept (a median over seeds is ``inf`` when half or more are).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RUN_COLUMNS", "runs_frame", "final_rmse", "median", "spread", "geomean",
           "first_reach", "task_order", "method_order"]

RUN_COLUMNS = ("task", "method", "seed", "status", "test_rmse", "train_time", "steps",
               "n_params", "final")
"""The scalar columns of :func:`runs_frame` (``final``: :func:`final_rmse`); ``row`` holds
the stored row itself (its curve, metrics and config)."""


def final_rmse(row: dict[str, Any]) -> float:
    """Final test RMSE of a run; ``inf`` for a failed run (error, or no finite RMSE)."""
    v = row.get("test_rmse")
    if row.get("status") != "ok" or v is None or not math.isfinite(v):
        return math.inf
    return float(v)


def runs_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One line per stored row, in the rows' order: :data:`RUN_COLUMNS` (missing values as
    NaN) and ``row``, the row dict."""
    import pandas as pd  # the bench extra

    recs = [{**{c: r.get(c) for c in RUN_COLUMNS[:-1]}, "final": final_rmse(r), "row": r}
            for r in rows]
    df = pd.DataFrame(recs, columns=[*RUN_COLUMNS, "row"])
    for c in ("test_rmse", "train_time", "steps", "final"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _values(values: Iterable[float | None]) -> np.ndarray:
    """The values as floats, ``None`` and NaN dropped."""
    a = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return a[~np.isnan(a)]


def median(values: Iterable[float | None]) -> float:
    """Median without ``None`` / NaN (``inf`` kept); NaN if nothing is left. For an even
    count the mean of the two middle values."""
    a = _values(values)
    return float(np.median(a)) if a.size else math.nan


def spread(values: Iterable[float | None]) -> tuple[float, float]:
    """``(min, max)`` without ``None`` / NaN; ``(nan, nan)`` if nothing is left."""
    a = _values(values)
    return (float(a.min()), float(a.max())) if a.size else (math.nan, math.nan)


def geomean(values: Iterable[float | None]) -> float:
    """``exp(mean(log v))`` over the positive values (``None``, NaN and values <= 0
    dropped); ``inf`` if any value is ``inf``; NaN if none is usable."""
    a = _values(values)
    if np.isinf(a).any():
        return math.inf
    a = a[a > 0]
    return float(np.exp(np.log(a).mean())) if a.size else math.nan


def first_reach(curve: dict[str, Sequence[float]], target: float) -> tuple[float, int] | None:
    """``(training seconds, steps)`` at the first evaluation with test RMSE ``<= target``;
    ``None`` if no evaluation reaches it."""
    for t, s, r in zip(curve["eval_time"], curve["eval_step"], curve["test_rmse"], strict=True):
        if r is not None and r <= target:
            return float(t), int(s)
    return None


def task_order(name: str) -> int:
    """Position of a task in :data:`~sepneuron.tasks.TASKS` (unknown names last)."""
    from ..tasks import TASKS

    names = list(TASKS)
    return names.index(name) if name in names else len(names)


def method_order(name: str) -> int:
    """Position of a method in :data:`~sepneuron.bench.methods.METHODS` (unknown last)."""
    from .methods import METHODS

    names = list(METHODS)
    return names.index(name) if name in names else len(names)
