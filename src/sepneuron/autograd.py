r"""The separated activation as one autograd function: fewer passes, fewer saved tensors.

Forward, per element (``a`` ``(..., N)``; ``q``, ``log_c``, ``d`` ``(N,)``; ``c = e^{log c}``):

.. math::
    u = a + q,\quad v = c u,\quad o = a + d\,\mathrm{base}(v),\qquad
    \mathrm{base}_{relu}(v) = |v| = c|u|,\quad \mathrm{base}_{softplus}(v) = 2\ln\cosh(v/2).

Backward, with ``g = dE/do`` and ``s = base'(v)`` (``sign v``, ``+1`` at 0, or ``tanh(v/2)``):

.. math::
    \frac{dE}{da} = g + c d\, g s,\quad
    \frac{dE}{dq} = c d \sum g s,\quad
    \frac{dE}{dd} = \sum g\,\mathrm{base}(v),\quad
    \frac{dE}{d\log c} = d \sum g\, v s,

sums over every leading dimension. Autograd of the composed expression saves five tensors
and makes about twelve passes over ``(batch, N)`` for the ReLU analog; this keeps ``a`` and
``u`` (ReLU) or ``v`` and ``base(v)`` (SoftPlus) and makes three passes forward and seven
back (the ReLU analog). Under ``create_graph`` (double backward) it recomputes them from
``a`` so that second derivatives are right.
It is a pure function (no side effects) and works under ``torch.func`` transforms
(``vmap``, ``jacrev``, ``functional_call``): its backward is written in differentiable torch
operations, and ``generate_vmap_rule`` lets ``vmap`` batch it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .functional import check_kind, softplus_base

__all__ = ["separated_activation"]


def _sum_leading(t: Tensor) -> Tensor:
    """Sum over every dimension but the last: ``(..., N) -> (N,)``."""
    return t.sum(dim=tuple(range(t.ndim - 1))) if t.ndim > 1 else t


def _inner(a: Tensor, q: Tensor, log_c: Tensor, kind: str) -> tuple[Tensor, ...]:
    """What the backward reads: ``(u,)`` (ReLU analog) or ``(v, base(v))`` (SoftPlus)."""
    u = a + q
    if kind == "relu":
        return (u,)
    v = u * log_c.exp()
    return v, softplus_base(v)


class _SeparatedFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, q: Tensor, log_c: Tensor, d: Tensor, kind: str):  # type: ignore[override]
        inner = _inner(a, q, log_c, kind)
        if kind == "relu":
            (u,) = inner
            return (torch.addcmul(a, u.abs(), log_c.exp() * d), *inner)  # base(v) = c |u|
        return (torch.addcmul(a, inner[1], d), *inner)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        a, q, log_c, d, kind = inputs
        inner = output[1:]            # u (ReLU) or v, base(v) (SoftPlus)
        ctx.mark_non_differentiable(*inner)
        ctx.kind = kind
        ctx.save_for_backward(a, q, log_c, d, *inner)

    @staticmethod
    def backward(ctx: Any, g: Tensor, *_unused: Any):  # type: ignore[override]
        need_a, need_q, need_c, need_d = ctx.needs_input_grad[:4]
        a, q, log_c, d, *inner = ctx.saved_tensors
        if torch.is_grad_enabled():   # double backward: recompute, differentiably
            inner = list(_inner(a, q, log_c, ctx.kind))
        if ctx.kind == "relu":
            (u,) = inner
            c = log_c.exp()
            cd = c * d
            gs = torch.where(u >= 0, g, -g)                     # g s
            grad_a = torch.addcmul(g, gs, cd) if need_a else None
            grad_q = cd * _sum_leading(gs) if need_q else None
            g_abs_u = _sum_leading(gs * u) if (need_c or need_d) else None   # sum g |u|
            grad_d = c * g_abs_u if need_d else None
            grad_c = cd * g_abs_u if need_c else None
            return grad_a, grad_q, grad_c, grad_d, None
        v, base = inner
        cd = log_c.exp() * d
        gs = g * torch.tanh(0.5 * v)                            # g s
        grad_a = torch.addcmul(g, gs, cd) if need_a else None
        grad_q = cd * _sum_leading(gs) if need_q else None
        grad_d = _sum_leading(g * base) if need_d else None
        grad_c = d * _sum_leading(gs * v) if need_c else None
        return grad_a, grad_q, grad_c, grad_d, None


def separated_activation(a: Tensor, q: Tensor, log_c: Tensor, d: Tensor, kind: str) -> Tensor:
    """``o = a + d base(e^{log_c} (a + q))`` with the fused backward of this module.

    Shapes: ``a`` ``(..., N)``; ``q``, ``log_c``, ``d`` ``(N,)``; returns ``(..., N)``.
    Equal to :func:`sepneuron.functional.separated` with ``c = log_c.exp()``.
    """
    return _SeparatedFunction.apply(a, q, log_c, d, check_kind(kind))[0]
