"""The protocol of the optional training components (paper sec. 8, 12-14)."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["Conditioner"]


class Conditioner:
    """A named component that hooks into :func:`sepneuron.fit` around each update.

    Order within one training step::

        loss.backward()
        for c in conditioners: c.before_update(model)   # may edit .grad of hidden layers
        optimizer.step(); tuner.step()
        for c in conditioners: c.after_update(model)    # may edit weights, under no_grad

    No component may change the output layer's update away from the negative gradient
    of the loss. :func:`~sepneuron.conditioning.make_conditioners` sorts components by
    ``order`` (stable), so a component that must see the others' edits (``compensate``)
    runs last whatever order the names were given in.
    """

    name = "conditioner"
    order = 0  # position in the step: lower runs first

    def attach(self, model: nn.Module) -> None:
        """Called once before training (register hooks here)."""

    def before_update(self, model: nn.Module) -> None:
        """Called after the backward pass, before the optimizer and tuner steps."""

    def after_update(self, model: nn.Module) -> None:
        """Called after the optimizer and tuner steps."""

    def detach(self) -> None:
        """Called once after training (remove hooks here)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
