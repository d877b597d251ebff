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

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import Block, SteeringComponent, activation_output, layer_params

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


class Orthogonalize(SteeringComponent):
    """``orthogonalize``: steer hidden weights to decorrelate each layer's activity vectors.

    Args:
        strength: size of the push relative to the loss gradient (``>= 0``).
        every: apply every this many steps.
    """

    name = "orthogonalize"
    order = 30

    def wants(self, block: Block) -> bool:
        return block.linear.out_features > 1

    def direction(self, block: Block, x: Tensor) -> list[Tensor] | None:
        """``dP/d(W, w0)`` of the block on layer inputs ``x`` ``(batch, in)``."""
        if x.shape[0] < 2:
            return None
        params = layer_params(block.linear)
        with torch.enable_grad():
            o = activation_output(block.act, F.linear(x, block.linear.weight, block.linear.bias))
            penalty = decorrelation_penalty(o.reshape(-1, o.shape[-1]))
            return list(torch.autograd.grad(penalty, params))
