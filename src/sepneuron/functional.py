"""Pure forward maths of the separated ("decomposed") neuron, paper eqs. (13)-(16).

For one hidden neuron with linear activation ``a`` (the output of an ordinary
``nn.Linear``) and three scalar parameters -- offset ``q``, slope/curvature ``c > 0``
and angle ``d`` (any sign) -- the separated neuron computes::

    v = c (a + q)                                              (14)
    o = a + phi(v)                                             (13)
    phi_relu(v)     = d (2 max(v, 0) - v)            = d |v|                 (15)
    phi_softplus(v) = d (2 ln(1 + e^v) - 2 ln 2 - v) = 2 d ln cosh(v / 2)    (16)

Both ``phi`` are even in ``v`` and vanish at ``v = 0``. Every function here broadcasts:
``a`` has shape ``(..., neurons)`` and ``q``, ``c``, ``d`` have shape ``(neurons,)`` (or
anything that broadcasts against ``a``).

The SoftPlus analog is evaluated as ``|v| + 2 log1p(exp(-|v|)) - 2 ln 2``, which equals
``2 ln cosh(v/2)`` exactly, never overflows and is exactly zero at ``v = 0``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "KINDS",
    "check_kind",
    "relu_base",
    "softplus_base",
    "base",
    "base_slope",
    "separated_relu",
    "separated_softplus",
    "separated",
    "separated_slope",
]

KINDS = ("relu", "softplus")
_LN2 = math.log(2.0)


def check_kind(kind: str) -> str:
    """Return ``kind`` if it names an analog, else raise ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def relu_base(v: Tensor) -> Tensor:
    """``2 max(v, 0) - v = |v|``: the ReLU analog with ``d = 1``."""
    return v.abs()


def softplus_base(v: Tensor) -> Tensor:
    """``2 ln(1 + e^v) - 2 ln 2 - v = 2 ln cosh(v/2)``, computed without overflow."""
    av = v.abs()
    return av + 2.0 * torch.log1p(torch.exp(-av)) - 2.0 * _LN2


def base(v: Tensor, kind: str) -> Tensor:
    """``phi(v) / d`` for the named analog."""
    return relu_base(v) if check_kind(kind) == "relu" else softplus_base(v)


def base_slope(v: Tensor, kind: str) -> Tensor:
    """``d base / d v``: ``sign(v)`` (ReLU analog, ``+1`` at ``v = 0``) or ``tanh(v/2)``.

    The ReLU analog takes the right-hand slope at the kink, so that a sample with
    ``v = 0`` belongs to the right side, as in the tuner's side split (``v >= 0``).
    """
    if check_kind(kind) == "relu":
        return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))
    return torch.tanh(0.5 * v)


def separated_relu(a: Tensor, q: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """ReLU analog ``o = a + d |c (a + q)|``; slopes in ``a`` are ``1 - c d`` and ``1 + c d``.

    Shapes: ``a`` ``(..., N)``; ``q``, ``c``, ``d`` ``(N,)``; returns ``(..., N)``.
    """
    return a + d * relu_base(c * (a + q))


def separated_softplus(a: Tensor, q: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """SoftPlus analog ``o = a + 2 d ln cosh(c (a + q) / 2)``.

    Asymptotic slopes in ``a`` are ``1 -+ c d``; the curvature at the bend
    ``a = -q`` is ``c^2 d / 2``. Shapes as for :func:`separated_relu`.
    """
    return a + d * softplus_base(c * (a + q))


def separated(a: Tensor, q: Tensor, c: Tensor, d: Tensor, kind: str) -> Tensor:
    """Dispatch to :func:`separated_relu` or :func:`separated_softplus` by ``kind``."""
    if check_kind(kind) == "relu":
        return separated_relu(a, q, c, d)
    return separated_softplus(a, q, c, d)


def separated_slope(a: Tensor, q: Tensor, c: Tensor, d: Tensor, kind: str) -> Tensor:
    """``d o / d a = 1 + c d base'(c (a + q))``, shape of ``a``.

    It is zero only where ``c d base'(v) = -1`` exactly: the identity term leaves no
    dead neurons.
    """
    return 1.0 + c * d * base_slope(c * (a + q), kind)
