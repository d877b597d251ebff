"""Per-column standardisation that cannot overflow or underflow.

For a column ``a`` (``n`` values, all finite) with ``m = max |a|``:

    b = a / m                       (|b| <= 1: no square below can overflow)
    mean  = m * mean(b)
    c = b - mean(b),  s = max |c|
    scale = m * s * sqrt(mean((c / s)^2))      (the population standard deviation)

so the sums run over numbers of size at most 1 (or 2), whatever the units: columns of
size 1e300 or 1e-300 are standardised as well as columns of size 1. A column is treated
as constant (scale 1, standardised to 0) only when it is exactly constant (``s == 0``).
Refused, with a ``ValueError`` naming the column: a spread whose scale is not a normal
float64 (below about 2.2e-308, or values near the largest float64 whose differences
overflow) -- their standardised values cannot be represented.
"""

from __future__ import annotations

import numpy as np

__all__ = ["standardize", "standardizer"]

_TINY = np.finfo(np.float64).tiny  # smallest normal float64, about 2.2e-308


def standardizer(a: np.ndarray, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``a`` ``(n, k)`` (finite float64), computed
    without overflow or underflow; an exactly constant column gets scale 1. ``ValueError``
    naming ``name`` and the column when a spread cannot be represented."""
    a = np.asarray(a, dtype=np.float64)
    m = np.abs(a).max(axis=0)                                # (k,)
    m_safe = np.where(m > 0, m, 1.0)
    b = a / m_safe                                           # |b| <= 1
    mean_b = b.mean(axis=0)
    c = b - mean_b
    s = np.abs(c).max(axis=0)                                # (k,), 0 only if exactly constant
    s_safe = np.where(s > 0, s, 1.0)
    rms = np.sqrt(np.mean((c / s_safe) ** 2, axis=0))        # in (0, 1]
    with np.errstate(over="ignore", under="ignore"):
        mean = m * mean_b
        scale = m * (s * rms)
    constant = s == 0
    bad = ~constant & ~((scale >= _TINY) & np.isfinite(scale))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} column {j}: its spread ({scale[j]:.3g}, values up to "
                         f"{m[j]:.3g} in size) cannot be represented in float64 after "
                         "standardisation; rescale that column")
    scale = np.where(constant, 1.0, scale)
    standardize(a, mean, scale, name)  # refuses values whose differences overflow
    return mean, scale


def standardize(a: np.ndarray, mean: np.ndarray, scale: np.ndarray, name: str = "X") -> np.ndarray:
    """``(a - mean) / scale`` per column; ``ValueError`` naming the column if a value
    overflows (only for values beyond about 1e308 whose difference from the mean does)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = (a - mean) / scale
    if not np.isfinite(z).all():
        j = int(np.flatnonzero(~np.isfinite(z).all(axis=0))[0])
        raise ValueError(f"{name} column {j}: values too large to standardise (their "
                         "distance from the column mean overflows float64); rescale that column")
    return z
