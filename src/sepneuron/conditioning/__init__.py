"""Optional components for the paper's other subtasks, looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import Conditioner as Conditioner

__all__ = ["CONDITIONERS", "Conditioner", "make_conditioners"]

# name -> factory taking keyword options; filled in by the component modules.
CONDITIONERS: dict[str, Callable[..., Conditioner]] = {}


def make_conditioners(names: Sequence[str | Conditioner]) -> list[Conditioner]:
    """Build components from names (or pass instances through)."""
    out = []
    for n in names:
        if isinstance(n, Conditioner):
            out.append(n)
        elif n in CONDITIONERS:
            out.append(CONDITIONERS[n]())
        else:
            raise ValueError(f"unknown conditioning component {n!r}; known: {sorted(CONDITIONERS)}")
    return out
