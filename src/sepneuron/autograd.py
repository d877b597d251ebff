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
``u`` (ReLU) or ``v``, ``base(v)``, ``tanh(v/2)`` (SoftPlus) and makes three passes forward
and seven back (the ReLU analog), on two fresh temporaries in the backward pass. The
SoftPlus analog evaluates one ``exp`` per element: with ``e = exp(-|v|)``,
``base = |v| - 2 ln 2 + 2 log1p(e)`` and ``tanh(v/2) = sign(v) (1 - e) / (1 + e)``. The
saved outputs get no materialised zero gradients. On the CPU a large batch goes through
in row blocks of about 64k elements, so that the temporaries stay in cache. The tuner
reads the saved tensors from the output's autograd node (:func:`saved_intermediates`) instead of
recomputing them. Under ``create_graph`` (double backward) they are recomputed from ``a``,
differentiably, so that second derivatives are right. It is a pure function (no side
effects) and works under ``torch.func`` transforms (``vmap``, ``jacrev``,
``functional_call``): its backward is written in differentiable torch operations, and
``generate_vmap_rule`` lets ``vmap`` batch it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor

from .functional import check_kind, softplus_base

__all__ = ["separated_activation", "saved_intermediates"]


def _sum_leading(t: Tensor) -> Tensor:
    """Sum over every dimension but the last: ``(..., N) -> (N,)``."""
    return t.sum(dim=tuple(range(t.ndim - 1))) if t.ndim > 1 else t


def _inner(a: Tensor, q: Tensor, log_c: Tensor, kind: str) -> tuple[Tensor, ...]:
    """What the backward reads: ``(u,)`` (ReLU analog) or ``(v, base(v), tanh(v/2))``.

    Out of place (differentiable), for the double-backward path.
    """
    u = a + q
    if kind == "relu":
        return (u,)
    v = u * log_c.exp()
    return v, softplus_base(v), torch.tanh(0.5 * v)


def _inner_no_grad(a: Tensor, q: Tensor, log_c: Tensor, kind: str) -> tuple[Tensor, ...]:
    """:func:`_inner` with in-place steps on fresh temporaries and one ``exp`` (same values
    to rounding): with ``e = exp(-|v|)``, ``base = |v| - 2 ln 2 + 2 log1p(e)`` and
    ``tanh(v/2) = sign(v) (1 - e) / (1 + e)``."""
    u = a + q
    if kind == "relu":
        return (u,)
    v = u.mul_(log_c.exp())
    base = v.abs()
    e = base.neg().exp_()
    base.sub_(_TWO_LN2).add_(e.log1p(), alpha=2.0)
    one_plus_e = e + 1.0
    t = e.neg_().add_(1.0).div_(one_plus_e).copysign_(v)
    return v, base, t


_TWO_LN2 = 2.0 * math.log(2.0)


_CPU_CHUNK_ELEMENTS = 1 << 16


def _row_slices(t: Tensor) -> list[slice] | None:
    """Row blocks of about 64k elements for a large 2-D CPU tensor (so that the
    temporaries of each block stay in cache), or ``None``: take the tensor whole."""
    if t.device.type != "cpu" or t.ndim != 2 or not t.is_contiguous():
        return None
    rows = max(1, _CPU_CHUNK_ELEMENTS // max(1, t.shape[1]))
    if t.shape[0] <= rows or torch._C._functorch.is_functorch_wrapped_tensor(t):
        return None
    return [slice(i, i + rows) for i in range(0, t.shape[0], rows)]


def _forward_block(a, q, c, cd, d, kind, out, u_or_v, base=None, t=None) -> None:
    """One block of the forward pass, written into ``out`` and the saved buffers."""
    torch.add(a, q, out=u_or_v)
    if kind == "relu":
        torch.add(a, u_or_v.abs().mul_(cd), out=out)        # o = a + c d |u|
        return
    u_or_v.mul_(c)                                            # v = c u
    torch.abs(u_or_v, out=base)
    torch.neg(base, out=t).exp_()                             # e = exp(-|v|)
    base.sub_(_TWO_LN2).add_(t.log1p(), alpha=2.0)
    one_plus_e = t + 1.0
    t.neg_().add_(1.0).div_(one_plus_e).copysign_(u_or_v)    # tanh(v/2)
    torch.addcmul(a, base, d, out=out)


def _backward_block(g, cd, kind, inner, grad_a, sums) -> None:
    """One block of the backward pass: ``grad_a`` written, the four sums added to."""
    if kind == "relu":
        (u,) = inner
        gu = g * u
        gs = torch.copysign(g, gu)                            # g s: |g| sign(g u)
        sums[1] += gs.sum(0)
        sums[2] += torch.copysign(gu, g).sum(0)               # g |u|
    else:
        v, base, t = inner
        gs = g * t
        sums[1] += gs.sum(0)
        sums[2] += (g * base).sum(0)
        sums[3] += (gs * v).sum(0)
    if grad_a is not None:
        torch.add(g, gs.mul_(cd), out=grad_a)


class _SeparatedFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, q: Tensor, log_c: Tensor, d: Tensor, kind: str):
        blocks = _row_slices(a)
        if blocks is None:
            inner = _inner_no_grad(a, q, log_c, kind)
            if kind == "relu":
                (u,) = inner
                return (u.abs().mul_(log_c.exp() * d).add_(a), *inner)  # d base(v) = c d |u|
            return (torch.addcmul(a, inner[1], d), *inner)
        c = log_c.exp()
        out = torch.empty_like(a)
        inner = tuple(torch.empty_like(a) for _ in range(1 if kind == "relu" else 3))
        for sl in blocks:
            _forward_block(a[sl], q, c, c * d, d, kind, out[sl], *(x[sl] for x in inner))
        return (out, *inner)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        a, q, log_c, d, kind = inputs
        inner = output[1:]            # u (ReLU) or v, base(v), tanh(v/2) (SoftPlus)
        ctx.mark_non_differentiable(*inner)
        ctx.set_materialize_grads(False)   # no (batch, N) zeros for the saved outputs' grads
        ctx.kind = kind
        ctx.save_for_backward(a, q, log_c, d, *inner)

    @staticmethod
    def backward(ctx: Any, g: Tensor | None, *_unused: Any):
        if g is None:                 # the output took no part in the loss
            return None, None, None, None, None
        need_a, need_q, need_c, need_d = ctx.needs_input_grad[:4]
        a, q, log_c, d, *inner = ctx.saved_tensors
        grad_enabled = torch.is_grad_enabled()
        if grad_enabled:   # double backward: recompute, differentiably
            inner = list(_inner(a, q, log_c, ctx.kind))
        c = log_c.exp()
        cd = c * d
        blocks = None if grad_enabled else _row_slices(g)
        if blocks is not None and all(x.shape == g.shape for x in inner):
            grad_a = torch.empty_like(g) if need_a else None
            sums = [None, *(torch.zeros_like(q) for _ in range(3))]
            for sl in blocks:
                _backward_block(g[sl], cd, ctx.kind, [x[sl] for x in inner],
                                None if grad_a is None else grad_a[sl], sums)
            sum_gs, second, third = sums[1], sums[2], sums[3]
        else:
            grad_a, sum_gs, second, third = _backward_whole(g, cd, ctx.kind, inner, need_a)
        grad_q = cd * sum_gs if need_q else None
        if ctx.kind == "relu":        # second = sum g |u|
            grad_d = c * second if need_d else None
            grad_c = cd * second if need_c else None
        else:                         # second = sum g base, third = sum g s v
            grad_d = second if need_d else None
            grad_c = d * third if need_c else None
        return grad_a, grad_q, grad_c, grad_d, None


def _backward_whole(g, cd, kind, inner, need_a):
    """The backward pass in one go (any shape; differentiable for double backward)."""
    if not torch.is_grad_enabled():
        return _backward_in_place(g, cd, kind, inner, need_a)
    if kind == "relu":
        (u,) = inner
        gu = g * u
        gs = torch.copysign(g, gu)                            # g s: |g| sign(g u)
        second, third = _sum_leading(torch.copysign(gu, g)), None
    else:
        v, base, t = inner
        gs = g * t
        second, third = _sum_leading(g * base), _sum_leading(gs * v)
    grad_a = g + gs * cd if need_a else None
    return grad_a, _sum_leading(gs), second, third


def _backward_in_place(g, cd, kind, inner, need_a):
    """:func:`_backward_whole` on two fresh temporaries, updated in place (no autograd)."""
    if kind == "relu":
        (u,) = inner
        gu = g * u
        gs = torch.copysign(g, gu)                            # g s: |g| sign(g u)
        second, third = _sum_leading(gu.copysign_(g)), None   # g |u|
    else:
        v, base, t = inner
        gs = g * t
        gb = g * base
        second = _sum_leading(gb)
        third = _sum_leading(gb.copy_(gs).mul_(v))
    sum_gs = _sum_leading(gs)
    grad_a = gs.mul_(cd).add_(g) if need_a else None
    return grad_a, sum_gs, second, third


def separated_activation(a: Tensor, q: Tensor, log_c: Tensor, d: Tensor, kind: str) -> Tensor:
    """``o = a + d base(e^{log_c} (a + q))`` with the fused backward of this module.

    Shapes: ``a`` ``(..., N)``; ``q``, ``log_c``, ``d`` ``(N,)``; returns ``(..., N)``.
    Equal to :func:`sepneuron.functional.separated` with ``c = log_c.exp()``.
    """
    kind = check_kind(kind)
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return _SeparatedFunction.apply(a, q, log_c, d, kind)[0]
    # Function.apply binds default arguments through inspect.signature on every call (a
    # function with setup_context); with no transform active it then calls the C apply,
    # which is what this does directly (forward has no defaults to bind).
    args = _unwrap_dead_wrappers((a, q, log_c, d, kind))
    return _c_apply(*args)[0]


_c_apply = super(torch.autograd.Function, _SeparatedFunction).apply
_unwrap_dead_wrappers = torch._functorch.utils.unwrap_dead_wrappers


def saved_intermediates(node: Any) -> tuple[Tensor, ...] | None:
    """``(u,)`` or ``(v, base(v), tanh(v/2))`` saved by the autograd node ``node``.

    ``node`` is the ``grad_fn`` of an output of :func:`separated_activation`; ``None`` if
    it is not one (or its saved tensors are freed). Each tensor has the output's shape;
    read them before the node's backward has run.
    """
    if not isinstance(node, _SeparatedFunction._backward_cls):
        return None
    try:
        return tuple(cast(Any, node).saved_tensors[4:])
    except RuntimeError:
        return None
