r"""Subtask 9: normalise the deltas that flow backward.

The delta of layer ``l`` is ``delta^l = dE/da^l``, one vector of ``N_l`` entries per
sample; its scale is ``nu_l = sqrt(mean_k |delta^l_k|^2)`` (root mean square over the
batch of the vector norm). Back-propagation multiplies it by ``W^T`` and the slopes at
each layer, so it can grow or fade with depth. The component replaces, for every hidden
layer, ``delta^l`` by ``delta^l nu_L / nu_l``, where ``nu_L`` is the scale of the output
layer's delta ``dE/df``: all layers then learn from deltas of one scale. Since the
weight gradient is ``delta^T O^{l-1}`` (and the bias gradient ``sum delta``), this is
exactly a multiplication of the hidden layer's weight and bias gradients by
``nu_L / nu_l``; the output layer and the tuner's captured deltas are not touched.

The edit is a per-layer scalar, so it changes the direction of plain (S)GD and leaves
optimizers that normalise each parameter's step (Adam) almost unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._common import Component, capture_output_grads, find_blocks, layer_params

__all__ = ["NormalizeDeltas", "delta_scale"]


def delta_scale(delta: Tensor) -> Tensor:
    """``sqrt(mean_k |delta_k|^2)`` of deltas of shape ``(..., neurons)``."""
    d = delta.reshape(-1, delta.shape[-1])
    return (d.double().pow(2).sum() / max(d.shape[0], 1)).sqrt()


class NormalizeDeltas(Component):
    """``normalize_deltas``: scale each hidden layer's gradient so its deltas match the output's.

    Args:
        max_factor: bound on the factor and its inverse (``> 1``).
        every: apply every this many steps.

    After each :meth:`before_update`, :attr:`last_scales` holds the measured ``nu_l``
    of every layer (output last) and :attr:`last_factors` the factors applied to the
    hidden layers.
    """

    name = "normalize_deltas"
    order = 20

    def __init__(self, max_factor: float = 1e3, every: int = 1) -> None:
        super().__init__(every)
        if not max_factor > 1:
            raise ValueError(f"max_factor must be > 1, got {max_factor!r}")
        self.max_factor = float(max_factor)
        self._linears: list[nn.Linear] = []
        self._scales: dict[int, Tensor] = {}
        self.last_scales: list[float] = []
        self.last_factors: list[float] = []

    def options(self) -> dict[str, Any]:
        return {"max_factor": self.max_factor, **super().options()}

    def attach(self, model: nn.Module) -> None:
        self._linears = [b.linear for b in find_blocks(model)]
        self._handles += capture_output_grads(self._linears, delta_scale, self._scales)

    def detach(self) -> None:
        super().detach()
        self._scales.clear()

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        popped = [self._scales.pop(id(lin), None) for lin in self._linears]
        scales = [s for s in popped if s is not None]
        if not self.active or len(popped) < 2 or len(scales) != len(popped):
            return
        target = scales[-1]
        self.last_scales = [float(s) for s in scales]
        self.last_factors = []
        for lin, nu in zip(self._linears[:-1], scales[:-1], strict=True):
            ok = bool(torch.isfinite(nu) & torch.isfinite(target) & (nu > 0) & (target > 0))
            factor = float((target / nu).clamp(1 / self.max_factor, self.max_factor)) if ok else 1.0
            for p in layer_params(lin):
                if p.grad is not None:
                    p.grad.mul_(factor)
            self.last_factors.append(factor)
