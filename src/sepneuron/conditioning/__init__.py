"""Optional components for the paper's other subtasks (sec. 8, 12-14), looked up by name.

=========================  =====  ==========================================================
name                       task   what it does
=========================  =====  ==========================================================
``spread_directions``      (3)    steers hidden weight axes to a SOM-like spread over inputs
``compensate``             (7)    puts the output layer's step on the gradient at the new
                                  features (after all other edits of the step)
``normalize_activations``  (8)    mean 0 / std 1 linear activations by exact
                                  reparametrisation (function unchanged)
``normalize_deltas``       (9)    scales hidden gradients so every layer's deltas have the
                                  output delta's scale
``orthogonalize``          (10)   steers hidden weights to decorrelate neurons' activities
=========================  =====  ==========================================================

All are off unless named in :attr:`sepneuron.TrainConfig.conditioning`. None writes the
output layer or its gradient, except ``compensate``, whose write makes the output layer's
step the negative gradient at the point it moves from. See ``docs/conditioning.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .activations import NormalizeActivations as NormalizeActivations
from .base import Conditioner as Conditioner
from .compensate import Compensate as Compensate
from .deltas import NormalizeDeltas as NormalizeDeltas
from .orthogonalize import Orthogonalize as Orthogonalize
from .spread import SpreadDirections as SpreadDirections

__all__ = [
    "CONDITIONERS", "Conditioner", "make_conditioners", "get_conditioner",
    "Compensate", "NormalizeActivations", "NormalizeDeltas", "Orthogonalize", "SpreadDirections",
]

# name -> factory taking keyword options. The names are stable (the benchmark uses them).
CONDITIONERS: dict[str, Callable[..., Conditioner]] = {
    cls.name: cls
    for cls in (SpreadDirections, Compensate, NormalizeActivations, NormalizeDeltas, Orthogonalize)
}


def get_conditioner(name: str | Conditioner, **options) -> Conditioner:
    """A component by name (with keyword options), or the instance itself."""
    if isinstance(name, Conditioner):
        if options:
            raise ValueError("options are only accepted with a component name")
        return name
    if name not in CONDITIONERS:
        raise ValueError(f"unknown conditioning component {name!r}; known: {sorted(CONDITIONERS)}")
    return CONDITIONERS[name](**options)


def make_conditioners(names: Sequence[str | Conditioner]) -> list[Conditioner]:
    """Build components from names (or pass instances through), in the order they run.

    Components are sorted by their ``order`` (stable); a registered component given twice
    is an error (its hooks would run twice).
    """
    if isinstance(names, str):
        names = (names,)
    out = [get_conditioner(n) for n in names]
    seen: set[str] = set()
    for c in out:
        if c.name in seen and c.name in CONDITIONERS:
            raise ValueError(f"conditioning component {c.name!r} given twice")
        seen.add(c.name)
    return sorted(out, key=lambda c: c.order)
