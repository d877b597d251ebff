r"""Initialisation that puts every hidden neuron's kink inside the data (paper, subtask 3).

``init="data"`` (:func:`init_from_data_`): for each hidden layer ``l`` of a
``Linear -> activation`` stack, in order, on the training data propagated through the
layers before it (``H_{l-1}``, shape ``(n, fan_in)``), neuron ``i`` gets

* a direction ``u_i`` uniform on the unit sphere of ``R^{fan_in}``;
* a weight ``w_i = u_i s_i / std(H_{l-1} u_i)``, so that its linear activation
  ``a = w_i . h + b_i`` has standard deviation ``s_i`` over the data, ``s_i`` drawn
  log-uniformly from ``[spread / 2, 2 spread]``;
* a bias that puts the centre of the nonlinearity at a random training sample ``x_j``:
  ``a(x_j) = -q_i`` for a separated neuron (its kink ``a = -q``), ``a(x_j) = 0`` for a
  plain activation (the centre of tanh, SoftPlus, ReLU, SiLU).

So no neuron starts with all samples on one side of its kink, and the kinks are spread
over the data as the samples are. The output layer keeps its default draw (it is solved
exactly with ``output_layer="lstsq"``). Everything random comes from ``generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import SeparatedActivation

__all__ = ["INITS", "init_from_data_"]

INITS = ("default", "data")


def _stack(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Module]]:
    """``(hidden linears, their activations)`` of a ``Linear -> activation -> ... -> Linear``."""
    seq = getattr(model, "net", model)
    mods: list[nn.Module] = list(seq) if isinstance(seq, nn.Sequential) else []
    linears = [m for m in mods[::2] if isinstance(m, nn.Linear)]
    if not mods or len(mods) % 2 != 1 or len(linears) != len(mods[::2]):
        raise ValueError(f"init='data' needs a Linear -> activation stack (SeparatedMLP, PlainMLP "
                         f"or nn.Sequential), got {type(model).__name__}: use init='default'")
    return linears[:-1], mods[1::2]


@torch.no_grad()
def init_from_data_(model: nn.Module, X: Tensor, *, generator: torch.Generator | None = None,
                    spread: float = 1.0, max_samples: int = 20000) -> nn.Module:
    """Re-draw the hidden layers of ``model`` from the data ``X`` ``(n, in)`` (module doc).

    At most ``max_samples`` rows (drawn with ``generator``) are used. Returns ``model``.
    """
    linears, acts = _stack(model)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must have shape (n_samples, n_features), got {tuple(X.shape)}")
    if not spread > 0:
        raise ValueError(f"spread must be > 0, got {spread!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if X.shape[0] > max_samples:
        X = X[torch.randperm(X.shape[0], generator=gen)[:max_samples].to(X.device)]
    h = X
    for lin, act in zip(linears, acts, strict=True):
        fan_out, fan_in = lin.weight.shape
        dt = lin.weight.dtype
        u = torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64)
        u = (u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)).to(h.device, dt)
        proj_std = (h.to(dt) @ u.T).std(dim=0, unbiased=False) if h.shape[0] > 1 else \
            torch.ones(fan_out, dtype=dt, device=h.device)
        s = spread * torch.exp(torch.empty(fan_out, dtype=torch.float64).uniform_(
            -0.6931471805599453, 0.6931471805599453, generator=gen)).to(h.device, dt)
        w = u * (s / proj_std.clamp_min(1e-12)).unsqueeze(1)
        centre = h[torch.randint(h.shape[0], (fan_out,), generator=gen).to(h.device)].to(dt)
        offset = act.q.detach().to(dt) if isinstance(act, SeparatedActivation) else 0.0
        lin.weight.copy_(w)
        if lin.bias is not None:
            lin.bias.copy_(-(w * centre).sum(dim=1) - offset)
        h = act(lin(h.to(dt)))
    return model
