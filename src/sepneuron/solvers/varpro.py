r"""Variable projection: the output ``Linear`` as the exact least-squares solution.

A network ``f(x) = W h(x; theta) + b`` whose last layer is linear is, for fixed hidden
parameters ``theta``, linear in ``(W, b)``. With ``H~ = [h(X), 1]`` ``(n, h + 1)`` and the
targets ``Y`` ``(n, k)``, :func:`solve_output_layer` sets ``[W, b]^T`` to

.. math::
    \hat{B}(\theta) = \arg\min_B \|\tilde H B - Y\|^2 + \alpha \|B\|^2
                    = (\tilde H^T \tilde H + \alpha I)^{-1} \tilde H^T Y,
    \qquad \alpha = \text{ridge} \cdot \operatorname{tr}(\tilde H^T \tilde H) / (h + 1),

solved in float64 by a chunked QR factorisation (no normal equations).
The exact minimiser is what the paper asks of the output layer ("follow the loss"): it
*is* the loss's minimum over the output layer at every step. The remaining problem,
``min_theta ||Y - f(X; theta, B(theta))||^2`` (the *reduced* residual), is fitted by
any optimizer: its gradient at ``B(theta)`` is the ordinary gradient in ``theta``
(the output layer's own gradient vanishes there), and its Gauss-Newton matrix in Kaufman's
approximation is the Schur complement used by :class:`~sepneuron.solvers.NetworkLM`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .jacobian import sequential_of

__all__ = ["output_layer_of", "solve_output_layer", "half_sse", "OUTPUT_LAYERS"]

OUTPUT_LAYERS = ("auto", "optimizer", "lstsq")


def output_layer_of(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """``(features, output Linear)`` of a ``LinearStack`` or an ``nn.Sequential`` ending in one.

    ``ValueError`` for any other model (``output_layer="lstsq"`` needs to find the layer).
    """
    seq = sequential_of(model)
    if seq is None or len(seq) < 2 or not isinstance(seq[-1], nn.Linear):
        raise ValueError(
            f"output_layer='lstsq' needs a model whose last module is an nn.Linear "
            f"(a SeparatedMLP, PlainMLP or nn.Sequential); got {type(model).__name__}: "
            f"use output_layer='optimizer'"
        )
    return seq[:-1], seq[-1]


@torch.no_grad()
def solve_output_layer(model: nn.Module, X: Tensor, Y: Tensor, *, ridge: float = 1e-12,
                       chunk_size: int = 65536, alpha: float | None = None) -> float:
    r"""Set the output layer of ``model`` to :math:`\hat B` (module doc); returns ``alpha``.

    ``X`` ``(n, in)``, ``Y`` ``(n, k)``. Without a bias the ones column is left out.
    ``alpha`` (absolute, ``>= 0``) replaces the relative ``ridge`` when given: the solver
    of :class:`~sepneuron.solvers.NetworkLM` keeps one ``alpha`` through a step, so that
    every trial minimises the same objective.
    Solved by a chunked QR factorisation of ``[H~ | Y]`` (the ``R`` of each chunk stacked
    on the ``R`` so far), with ``sqrt(alpha) I`` rows appended for the ridge, then a
    triangular solve: no normal equations, so the accuracy is that of least squares on
    ``H~`` itself (a minimum-norm solve if ``R`` is singular).
    """
    features, out = output_layer_of(model)
    f64 = torch.float64
    width = out.in_features + (out.bias is not None)
    k = Y.shape[1]
    r_mat: Tensor | None = None
    for start in range(0, X.shape[0], chunk_size):
        h = features(X[start:start + chunk_size]).to(f64)
        if out.bias is not None:
            h = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)
        block = torch.cat([h, Y[start:start + chunk_size].to(f64)], dim=1)  # (c, width + k)
        if r_mat is not None:
            block = torch.cat([r_mat, block])
        r_mat = torch.linalg.qr(block, mode="r").R
    assert r_mat is not None
    if not torch.isfinite(r_mat).all():
        return 0.0  # non-finite features: leave the layer as it is (the loss will say so)
    r_h = r_mat[:, :width]
    if alpha is None:
        alpha = ridge * float((r_h * r_h).sum()) / width   # ridge * mean diagonal of H~^T H~
    extra = []
    if alpha > 0:
        extra.append(torch.cat([alpha ** 0.5 * torch.eye(width, dtype=f64, device=X.device),
                                r_mat.new_zeros(width, k)], dim=1))
    if r_mat.shape[0] < width + k:  # fewer samples than unknowns: pad to square
        extra.append(r_mat.new_zeros(width + k - r_mat.shape[0], width + k))
    if extra:
        r_mat = torch.linalg.qr(torch.cat([r_mat, *extra]), mode="r").R
    r_hh, r_hy = r_mat[:width, :width], r_mat[:width, width:]
    sol = torch.linalg.solve_triangular(r_hh, r_hy, upper=True)
    if not torch.isfinite(sol).all():  # singular: the minimum-norm least-squares solution
        try:
            sol = torch.linalg.pinv(r_hh) @ r_hy
        except torch.linalg.LinAlgError:  # the SVD overflows on extreme (finite) features
            return alpha  # leave the layer: the loss says so and fit's recovery steps back
        if not torch.isfinite(sol).all():
            return alpha  # nothing finite to set: leave the layer (the loss will say so)
    out.weight.copy_(sol[:out.in_features].T.to(out.weight.dtype))
    if out.bias is not None:
        out.bias.copy_(sol[out.in_features].to(out.bias.dtype))
    return alpha


@torch.no_grad()
def half_sse(model: nn.Module, X: Tensor, Y: Tensor, *, chunk_size: int = 65536) -> float:
    """``0.5 ||model(X) - Y||^2`` in float64, ``chunk_size`` rows per forward pass."""
    total = 0.0
    for start in range(0, X.shape[0], chunk_size):
        r = (model(X[start:start + chunk_size]) - Y[start:start + chunk_size]).to(torch.float64)
        total += 0.5 * float((r * r).sum())
    return total
