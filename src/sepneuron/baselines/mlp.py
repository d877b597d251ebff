r"""Plain MLP baseline: ``Linear -> activation`` per hidden layer, then a plain ``Linear``.

This is the paper's own point of comparison: the same architecture as
:class:`sepneuron.layers.SeparatedMLP` with a fixed activation in place of the separated
neuron. With ``L`` hidden layers of width ``h``, ``in_features = m`` and
``out_features = k`` it has

.. math::
    P(h) = (m + 1) h + (L - 1)(h + 1) h + (h + 1) k

parameters; a separated MLP adds three (``q``, ``log c``, ``d``) per hidden neuron, which
:func:`hidden_for_budget` accounts for through ``per_neuron``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers import LinearStack, check_sizes, init_linear_

__all__ = ["ACTIVATIONS", "PlainMLP", "hidden_for_budget", "count_parameters"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01
    "silu": nn.SiLU,  # Swish with beta = 1
    "tanh": nn.Tanh,
}
"""Activations of :class:`PlainMLP` by name: zero-argument factories of ``nn.Module``."""


def _make_activation(activation: str | Callable[[], nn.Module]) -> nn.Module:
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        return ACTIVATIONS[activation]()
    if callable(activation):
        module = activation()
        if not isinstance(module, nn.Module):
            raise ValueError("an activation factory must return an nn.Module")
        return module
    raise ValueError(f"activation must be a name or a factory, got {activation!r}")


class PlainMLP(LinearStack):
    """``Linear -> activation`` for each hidden layer, then a plain ``Linear``.

    Shapes: input ``(batch, in_features)``, output ``(batch, out_features)``.
    ``activation`` is a name in :data:`ACTIVATIONS` or a zero-argument factory returning
    an ``nn.Module`` (called once per hidden layer). Linear weights are drawn with
    PyTorch's default init from ``generator`` (:func:`sepneuron.layers.init_linear_`),
    so equal generators give equal networks; the global RNG is never drawn.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        activation: str | Callable[[], nn.Module] = "relu",
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(in_features, hidden_sizes, out_features,
                         lambda width: _make_activation(activation), device=device, dtype=dtype)
        self.activation = activation if isinstance(activation, str) else "custom"
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every linear layer from ``generator``."""
        for m in self.net:
            if isinstance(m, nn.Linear):
                init_linear_(m, generator)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _mlp_count(m: int, k: int, n_layers: int, h: int, per_neuron: int) -> int:
    """``P(h)`` of the module docstring plus ``per_neuron`` per hidden neuron."""
    return (m + 1) * h + (n_layers - 1) * (h + 1) * h + (h + 1) * k + per_neuron * n_layers * h


def hidden_for_budget(
    in_features: int, out_features: int, n_layers: int, n_params: int, *, per_neuron: int = 0
) -> int:
    """Width ``h >= 1`` of ``n_layers`` equal hidden layers whose count is closest to ``n_params``.

    The count is ``P(h)`` of the module docstring plus ``per_neuron * n_layers * h``
    (use ``per_neuron=3`` for a :class:`~sepneuron.layers.SeparatedMLP`). ``P`` is
    quadratic in ``h``; the positive root is computed and its two integer neighbours
    compared, ties going to the smaller width.
    """
    check_sizes(in_features, (), out_features)
    for name, v in (("n_layers", n_layers), ("n_params", n_params)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(per_neuron, int) or per_neuron < 0:
        raise ValueError(f"per_neuron must be a non-negative int, got {per_neuron!r}")
    m, k, L = in_features, out_features, n_layers
    a = L - 1  # P(h) = a h^2 + b h + k
    b = m + 1 + (L - 1) + k + per_neuron * L
    c = k - n_params
    root = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(
        sorted(candidates),
        key=lambda h: abs(_mlp_count(m, k, L, h, per_neuron) - n_params),
    )
