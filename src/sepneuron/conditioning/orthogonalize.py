r"""Subtask 10: orthogonalise a layer's activity vectors, so neurons respond to different inputs.

The activity vector of neuron ``i`` is its output over the batch, ``A_i = (o_{1i}, ...,
o_{Ni})``, centred. Two neurons whose centred activity vectors are parallel carry the
same signal: the next layer cannot tell their weights apart, and its gradient descent is
ill-conditioned along their difference. The component measures the coupling of a layer
as the mean squared cosine between the centred activity vectors of its neurons,

.. math::
    P = \frac{1}{N_l (N_l - 1)} \sum_{i \ne j} \cos^2(A_i, A_j),

and steers the layer's weights down ``P``: the hidden layer's gradient ``g`` becomes
``g + strength |g| p / |p|`` with ``p = dP/d(W, w0)`` computed on the step's batch
(:func:`~sepneuron.conditioning._common.steer_`). The push is a fixed fraction of the
loss gradient, so it fades where the loss gradient does, and a stationary point of the
loss stays one. Only hidden layers are steered.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import Block, Component, activation_output, capture_inputs, find_blocks, layer_params
from ._common import steer_

__all__ = ["Orthogonalize", "activity_cosines", "mean_abs_cosine", "decorrelation_penalty"]


def activity_cosines(o: Tensor) -> Tensor:
    """Cosines between the centred columns of ``o`` ``(batch, neurons)``: ``(neurons, neurons)``."""
    z = o - o.mean(0, keepdim=True)
    z = z / (z.norm(dim=0, keepdim=True) + torch.finfo(o.dtype).tiny ** 0.5)
    return z.T @ z


def _off_diagonal(m: Tensor) -> Tensor:
    n = m.shape[0]
    return m[~torch.eye(n, dtype=torch.bool, device=m.device)]


def mean_abs_cosine(o: Tensor) -> float:
    """Mean ``|cos|`` over pairs of distinct neurons (0 for one neuron)."""
    if o.shape[-1] < 2:
        return 0.0
    return float(_off_diagonal(activity_cosines(o)).abs().mean())


def decorrelation_penalty(o: Tensor) -> Tensor:
    """``P``: mean squared cosine over pairs of distinct neurons (differentiable)."""
    return _off_diagonal(activity_cosines(o)).pow(2).mean()


class Orthogonalize(Component):
    """``orthogonalize``: steer hidden weights to decorrelate each layer's activity vectors.

    Args:
        strength: size of the push relative to the loss gradient (``>= 0``).
        every: apply every this many steps.
    """

    name = "orthogonalize"
    order = 30

    def __init__(self, strength: float = 0.2, every: int = 1) -> None:
        super().__init__(every)
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength!r}")
        self.strength = float(strength)
        self._blocks: list[Block] = []
        self._inputs: dict[int, Tensor] = {}

    def options(self) -> dict[str, Any]:
        return {"strength": self.strength, **super().options()}

    def attach(self, model: nn.Module) -> None:
        self._blocks = [b for b in find_blocks(model)[:-1] if b.linear.out_features > 1]
        self._handles += capture_inputs([b.linear for b in self._blocks], self._inputs)

    def detach(self) -> None:
        super().detach()
        self._inputs.clear()

    def direction(self, block: Block, x: Tensor) -> list[Tensor]:
        """``dP/d(W, w0)`` of the block on layer inputs ``x`` ``(batch, in)``."""
        params = layer_params(block.linear)
        with torch.enable_grad():
            o = activation_output(block.act, F.linear(x, block.linear.weight, block.linear.bias))
            penalty = decorrelation_penalty(o.reshape(-1, o.shape[-1]))
            return list(torch.autograd.grad(penalty, params))

    def before_update(self, model: nn.Module) -> None:
        if not self.active or self.strength == 0:
            return
        for blk in self._blocks:
            x = self._inputs.get(id(blk.linear))
            params = layer_params(blk.linear)
            if x is None or x.reshape(-1, x.shape[-1]).shape[0] < 2 or any(
                    p.grad is None or not p.requires_grad for p in params):
                continue
            steer_(params, self.direction(blk, x), self.strength)
