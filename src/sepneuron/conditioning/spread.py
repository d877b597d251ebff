r"""Subtask 3: spread the directions of a layer's weight vectors over its input state space.

The direction ``u_i = w_i / |w_i|`` of a hidden neuron's weight vector is the normal of
its kink ridge ``w_i . x + w0_i + q_i = 0``; only the axis matters (``u`` and ``-u`` give
the same family of ridges), so directions live on the projective sphere. Neurons whose
directions crowd together waste capacity; directions along which the data do not vary
are useless. The component is a self-organising map of these axes over the layer's
inputs, with a zero-width neighbourhood (Kohonen's rule without a grid, i.e. competitive
learning, in the form of spherical k-means on axes):

1. centre the layer's inputs on the batch mean ``m`` and normalise each:
   ``xhat_k = (x_k - m) / |x_k - m|``;
2. each sample picks the winning neuron ``i*(k) = argmax_i |u_i . xhat_k|``;
3. each neuron's target axis is the mean of the samples it won, each flipped to the
   neuron's side: ``t_i ~ sum_{k: i*(k)=i} sign(u_i . xhat_k) xhat_k``; a neuron that won
   nothing takes one of the worst-covered samples (lowest ``max_i |u_i . xhat_k|``), so no
   neuron stays stranded ("conscience");
4. the target weights keep the length of ``w_i`` and the value of ``a_i`` at the batch mean:
   ``w_i^T = |w_i| t_i``, ``w0_i^T = w0_i + (w_i - w_i^T) . m``.

Iterating step 1-4 spreads the axes like the data's own directions (evenly for data
spread evenly over angles). In training the component steers instead of jumping: the
hidden layer's gradient ``g`` becomes ``g + strength |g| p / |p|`` with ``p = (w - w^T,
w0 - w0^T)``, a fixed fraction of the loss gradient (fading with it, so stationary points
of the loss stay). Only hidden layers are steered.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import Block, SteeringComponent

__all__ = ["SpreadDirections", "spread_targets", "direction_cosines", "coverage_angle"]


def _unit_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    norm = w.norm(dim=1)
    return w / norm.clamp_min(torch.finfo(w.dtype).tiny ** 0.5).unsqueeze(1), norm


def _centred_directions(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(xhat, mean)``: unit centred samples ``(M, in)`` (near-zero rows dropped) and the mean."""
    mean = x.mean(0)
    xc = x - mean
    norm = xc.norm(dim=1)
    keep = norm > torch.finfo(x.dtype).eps ** 0.5 * norm.max().clamp_min(torch.finfo(x.dtype).tiny)
    return xc[keep] / norm[keep].unsqueeze(1), mean


def _sign(t: Tensor) -> Tensor:
    s = torch.sign(t)
    return torch.where(s == 0, torch.ones_like(s), s)


@torch.no_grad()
def spread_targets(weight: Tensor, bias: Tensor | None, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """One competitive-learning step of the axes of ``weight``'s rows on inputs ``x``.

    Shapes: ``weight`` ``(neurons, in)``, ``bias`` ``(neurons,)`` or ``None``, ``x``
    ``(batch, in)``. Returns the target ``(weight, bias)`` (steps 1-4 of the module
    docstring); rows of zero length are returned unchanged.
    """
    u, length = _unit_rows(weight)                           # (n, in), (n,)
    xhat, mean = _centred_directions(x)                      # (M, in), (in,)
    if xhat.shape[0] == 0:
        return weight.clone(), None if bias is None else bias.clone()
    sim = xhat @ u.T                                         # (M, n) signed cosines
    win = sim.abs().argmax(1)                                # (M,)
    sign = _sign(sim.gather(1, win.unsqueeze(1)).squeeze(1))
    resp = torch.zeros_like(sim).scatter_(1, win.unsqueeze(1), sign.unsqueeze(1))
    pull = resp.T @ xhat                                     # (n, in) side-aligned sums
    dead = (resp != 0).sum(0) == 0                           # (n,)
    if bool(dead.any()):
        dead_idx = dead.nonzero().squeeze(1)
        k = min(dead_idx.numel(), xhat.shape[0])
        worst = sim.abs().max(1).values.topk(k, largest=False).indices
        cand = xhat[worst]                                   # (k, in)
        dead_idx = dead_idx[:k]
        pull[dead_idx] = cand * _sign((cand * u[dead_idx]).sum(1)).unsqueeze(1)
    target, pull_norm = _unit_rows(pull)
    ok = (pull_norm > 0) & (length > 0)
    new_w = torch.where(ok.unsqueeze(1), target * length.unsqueeze(1), weight)
    new_b = None if bias is None else bias + (weight - new_w) @ mean
    return new_w, new_b


def direction_cosines(weight: Tensor) -> Tensor:
    """``|cos|`` between the rows of ``weight`` over distinct pairs (flattened)."""
    u, _ = _unit_rows(weight)
    n = u.shape[0]
    m = (u @ u.T).abs()
    return m[~torch.eye(n, dtype=torch.bool, device=m.device)]


def coverage_angle(weight: Tensor, x: Tensor) -> float:
    """Largest angle (radians) between a centred sample axis and its nearest weight axis."""
    u, _ = _unit_rows(weight)
    xhat, _ = _centred_directions(x)
    best = (xhat @ u.T).abs().max(1).values.clamp(max=1.0)
    return float(torch.arccos(best).max())


class SpreadDirections(SteeringComponent):
    """``spread_directions``: steer hidden weight axes toward a SOM-like spread over the inputs.

    Args:
        strength: size of the push relative to the loss gradient (``>= 0``).
        every: apply every this many steps.
    """

    name = "spread_directions"
    order = 40

    def wants(self, block: Block) -> bool:
        return block.linear.in_features > 1

    def direction(self, block: Block, x: Tensor) -> list[Tensor]:
        """From the weights toward their SOM targets (:func:`spread_targets`) on ``x``."""
        lin = block.linear
        new_w, new_b = spread_targets(lin.weight, lin.bias, x)
        return [lin.weight - new_w] + ([] if new_b is None else [lin.bias - new_b])
