"""How the report writes numbers and tables (markdown): the shared formatters.

* :func:`times` -- a ratio as ``3.1x`` (``never`` for 0, ``inf``, ``n/a`` for NaN);
* :func:`ratio` -- the same, with words of the caller's for 0 and inf (a failed run);
* :func:`sci` -- an RMSE as ``1.23e-02``;
* :func:`plain` -- a ratio, time or step count as ``%.3g``, ``never`` for inf;
* :func:`value_range` -- ``lo-hi`` of some values in one of those formats;
* :func:`md_table` -- a markdown table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["KIND_NAMES", "times", "ratio", "sci", "plain", "value_range", "md_table"]

KIND_NAMES = {"relu": "ReLU", "softplus": "SoftPlus"}
"""The analogs' names in prose."""


def _missing(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def times(v: float | None) -> str:
    """``3.1x``; ``never`` for 0 (a target never reached), ``inf``, ``n/a`` for NaN."""
    if v is None or _missing(v):
        return "n/a"
    if v == 0:
        return "never"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}x"


def ratio(v: float | None, zero: str = "0 (failed)", inf: str = "inf") -> str:
    """A ratio of RMSEs: ``zero`` when the method below the line failed (infinite RMSE),
    ``inf`` when the one above did; NaN as n/a; else :func:`times`."""
    if v is None or _missing(v):
        return "n/a"
    if math.isinf(v):
        return inf
    return zero if v == 0 else times(v)


def sci(v: float | None) -> str:
    """``1.23e-02``; ``n/a`` for None or NaN."""
    return "n/a" if v is None or _missing(v) else f"{v:.2e}"


def plain(v: float | None) -> str:
    """A ratio (or a time, steps) as ``%.3g``: ``never`` for inf (never reached the
    target, or every run failed); ``n/a`` for NaN."""
    if v is None or _missing(v):
        return "n/a"
    if math.isinf(v):
        return "never"
    return f"{v:.3g}"


def value_range(vals: Sequence[float], fmt: Callable[[float], str] = times) -> str:
    """``fmt(min)-fmt(max)`` over the values that are not None or NaN; ``n/a`` if none."""
    vals = [v for v in vals if not _missing(v)]
    return f"{fmt(min(vals))}-{fmt(max(vals))}" if vals else "n/a"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table: header, rule, one line per row (cells as ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out
