r"""Subtask 8: normalise the activations ``A`` that flow forward, without changing the function.

For a hidden neuron with linear activation ``a = w . x + w0`` the component picks, from
the batch, a scale ``s > 0`` and shift ``t`` and sets ``a' = s a + t`` (row ``w`` and
``w0`` rescaled), so that ``a'`` has mean 0 and standard deviation 1 on the batch. The
separated neuron absorbs this exactly:

.. math::
    q' = s q - t,\quad c' = c / s,\quad d' = s d \;\Rightarrow\;
    v' = c'(a' + q') = v,\quad o' = a' + d' \mathrm{base}(v') = s\,o + t

(for the ReLU analog ``c`` and ``d`` may stay, since ``|s v| = s |v|``), and the next
layer undoes the affine map of ``o``: ``W' = W diag(1/s)``, ``b' = b - W' t``. The network
computes the same function after the edit, to rounding.

Plain activations: ``Identity`` (or none) is affine, so it is handled like the separated
neuron; ``ReLU``/``LeakyReLU``/``PReLU`` are positively homogeneous, so only the scale
is normalised (``t = 0``, RMS to 1); other activations are not reparametrisable and their
layers are left alone. The last hidden layer is left alone too: undoing its map would
need an edit of the output layer, which only ever moves by its gradient step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import SeparatedActivation
from ._common import HOMOGENEOUS, Block, Component, capture_inputs, find_blocks

__all__ = ["NormalizeActivations", "affine_reparametrize_"]


def _affine_ok(act: nn.Module | None) -> bool:
    return act is None or isinstance(act, (SeparatedActivation, nn.Identity))


@torch.no_grad()
def affine_reparametrize_(block: Block, nxt: nn.Linear, s: Tensor, t: Tensor) -> None:
    """Map the block's linear activation ``a -> s a + t`` (per neuron) keeping the function.

    ``s`` (positive) and ``t`` have shape ``(neurons,)``. ``t`` must be zero unless the
    block's activation is affine-equivariant (separated, identity or none).
    """
    lin, act = block.linear, block.act
    lin.weight.mul_(s.unsqueeze(1))                          # (out, in) rows scaled
    if lin.bias is not None:
        lin.bias.mul_(s).add_(t)
    if isinstance(act, SeparatedActivation):
        act.q.mul_(s).sub_(t)
        if act.kind == "softplus":                           # v = c (a + q) must not move
            act.log_c.sub_(s.log())
            act.d.mul_(s)
    nxt.weight.div_(s.unsqueeze(0))                          # (out_next, neurons) columns
    if nxt.bias is not None:
        nxt.bias.sub_(nxt.weight @ t)


class NormalizeActivations(Component):
    """``normalize_activations``: per-neuron mean 0 / std 1 of ``a`` by exact reparametrisation.

    Args:
        rate: fraction (in log scale) of the way to the target per application, in
            ``(0, 1]``: ``s = std^-rate``, ``t = -s rate mean``.
        center: also move the mean to 0 (where the activation allows it).
        max_scale: bound on ``s`` and ``1/s`` per application (``> 1``).
        every: apply every this many steps.

    Statistics come from the training forward pass of the step (the layer inputs one
    step old, corrected for the edits of earlier layers made in the same call).
    """

    name = "normalize_activations"
    order = 10

    def __init__(self, rate: float = 1.0, center: bool = True, max_scale: float = 10.0,
                 every: int = 1) -> None:
        super().__init__(every)
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        if not max_scale > 1:
            raise ValueError(f"max_scale must be > 1, got {max_scale!r}")
        self.rate, self.center, self.max_scale = float(rate), bool(center), float(max_scale)
        self._pairs: list[tuple[Block, nn.Linear]] = []
        self._inputs: dict[int, Tensor] = {}

    def options(self) -> dict[str, Any]:
        return {"rate": self.rate, "center": self.center, "max_scale": self.max_scale,
                **super().options()}

    def attach(self, model: nn.Module) -> None:
        blocks = find_blocks(model)
        hidden = blocks[:-1]
        self._pairs = [
            (blk, nxt.linear) for blk, nxt in zip(hidden[:-1], hidden[1:], strict=True)
            if _affine_ok(blk.act) or isinstance(blk.act, HOMOGENEOUS)
        ]
        self._handles += capture_inputs([b.linear for b, _ in self._pairs], self._inputs)

    def detach(self) -> None:
        super().detach()
        self._inputs.clear()

    def scales(self, a: Tensor, affine: bool) -> tuple[Tensor, Tensor]:
        """``(s, t)`` for linear activations ``a`` of shape ``(batch, neurons)``."""
        tiny = torch.finfo(a.dtype).eps ** 0.5
        if affine and self.center:
            mean = a.mean(0)
            spread = a.std(0, correction=0)
        else:
            mean = torch.zeros_like(a[0])
            spread = a.pow(2).mean(0).sqrt()
        s = spread.clamp_min(tiny).pow(-self.rate).clamp(1 / self.max_scale, self.max_scale)
        s = torch.where((spread > tiny) & torch.isfinite(spread), s, torch.ones_like(s))
        t = torch.where(torch.isfinite(mean), -s * self.rate * mean, torch.zeros_like(mean))
        return s, t

    @torch.no_grad()
    def after_update(self, model: nn.Module) -> None:
        if self.active:
            # The affine map applied to the output of the previous layer in this call.
            done: dict[int, tuple[Tensor, Tensor]] = {}
            for blk, nxt in self._pairs:
                x = self._inputs.get(id(blk.linear))
                if x is None or x.shape[0] < 2:
                    continue
                x = x.reshape(-1, blk.linear.in_features)
                if id(blk.linear) in done:                   # inputs moved with the edit upstream
                    s_in, t_in = done[id(blk.linear)]
                    x = x * s_in + t_in
                a = F.linear(x.to(blk.linear.weight.dtype), blk.linear.weight, blk.linear.bias)
                affine = (_affine_ok(blk.act) and blk.linear.bias is not None
                          and nxt.bias is not None)
                s, t = self.scales(a, affine)
                if not affine:
                    t = torch.zeros_like(t)
                affine_reparametrize_(blk, nxt, s, t)
                done[id(nxt)] = (s, t)
        super().after_update(model)
