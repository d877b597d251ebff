"""Per-layer diagnostics recorded during training: dead neurons and the spread of q, c, d."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .functional import separated_slope
from .layers import SeparatedActivation

__all__ = ["ELEMENTWISE_ACTIVATIONS", "dead_fractions", "parameter_spread"]

# Activation modules whose derivative is taken element by element.
ELEMENTWISE_ACTIVATIONS = (
    SeparatedActivation, nn.ReLU, nn.LeakyReLU, nn.Softplus, nn.SiLU, nn.Tanh, nn.ELU,
    nn.GELU, nn.Sigmoid, nn.PReLU,
)


def _activation_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, ELEMENTWISE_ACTIVATIONS)]


def dead_fractions(model: nn.Module, x: Tensor, *, tol: float = 1e-10) -> list[float]:
    """Fraction of neurons of each activation layer whose derivative is zero on all of ``x``.

    A neuron is dead when ``|d o / d a| <= tol`` for every sample of the batch ``x``
    (shape ``(batch, in_features)``): it then passes no gradient back. One value per
    elementwise activation module, input side first.
    """
    acts = _activation_modules(model)
    inputs: list[Tensor] = []
    handles = [m.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach())) for m in acts]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for m, a in zip(acts, inputs, strict=True):
        if isinstance(m, SeparatedActivation):  # the formula; no module call, no hooks run
            slope = separated_slope(a, m.q.detach(), m.c.detach(), m.d.detach(), m.kind)
        else:
            with torch.enable_grad():
                a = a.clone().requires_grad_(True)
                (slope,) = torch.autograd.grad(m(a).sum(), a)
        dead = (slope.abs() <= tol).reshape(-1, slope.shape[-1]).all(0)
        out.append(float(dead.to(torch.float64).mean()))
    return out


def parameter_spread(model: nn.Module) -> list[dict[str, float]]:
    """Mean, std, min and max of ``q``, ``c``, ``d`` for each separated layer."""
    out = []
    for m in model.modules():
        if isinstance(m, SeparatedActivation):
            row: dict[str, float] = {}
            for name, t in (("q", m.q), ("c", m.c), ("d", m.d)):
                t = t.detach().to(torch.float64)
                row[f"{name}_mean"] = float(t.mean())
                row[f"{name}_std"] = float(t.std(unbiased=False))
                row[f"{name}_min"] = float(t.min())
                row[f"{name}_max"] = float(t.max())
            out.append(row)
    return out
