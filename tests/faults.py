"""Fault injection shared by the tests of NaN recovery, checkpoints and DDP."""

import torch
from torch import nn


def inject_faults(model: nn.Module, at_calls, grad: bool = False) -> list[int]:
    """Make the ``k``-th training forward (k in ``at_calls``, 1-based) return +inf (or,
    with ``grad``, back-propagate NaN); evaluation passes (no grad) are not counted.
    Returns the one-element call counter."""
    calls = [0]

    def hook(module, inputs, out):
        if not torch.is_grad_enabled():
            return None
        calls[0] += 1
        if calls[0] > 10_000:
            raise RuntimeError("training does not end")  # rather than hang the test
        if calls[0] in at_calls:
            if grad:
                out.register_hook(lambda g: g * float("nan"))
                return None
            return out + float("inf")
        return None

    model.register_forward_hook(hook)
    return calls
