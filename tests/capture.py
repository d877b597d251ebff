"""Test helper: record ``(a, dE/do)`` of every back-propagated pass of each separated layer.

The library's layers record nothing; tests that check the reference statistics
(``compute_stats``) against autograd, or CPU against CUDA, record the passes themselves
with this forward hook + tensor hook (the mechanism the tuner used to build in).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from sepneuron import SeparatedActivation


@contextmanager
def recorded_passes(model: nn.Module):
    """Yield ``{layer: [(a, g), ...]}``, filled by each backward pass inside the block.

    ``a`` and ``g`` are ``(batch, N)``: leading dimensions are flattened.
    """
    store: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def on_forward(m, args, out):
        if torch.is_grad_enabled() and out.requires_grad:
            a = args[0].detach().reshape(-1, m.num_neurons)
            out.register_hook(lambda g: store.setdefault(m, []).append(
                (a, g.detach().reshape(-1, m.num_neurons))))

    acts = [m for m in model.modules() if isinstance(m, SeparatedActivation)]
    handles = [m.register_forward_hook(on_forward) for m in acts]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
