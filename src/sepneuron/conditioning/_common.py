"""What the components share: the layer chain of a model, batch capture, gradient steering."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..diagnostics import ELEMENTWISE_ACTIVATIONS
from ..functional import separated
from ..layers import SeparatedActivation
from .base import Conditioner

__all__ = ["Block", "Component", "find_blocks", "activation_output", "steer_", "capture_inputs"]

_ACTS = (*ELEMENTWISE_ACTIVATIONS, nn.Identity)
# Activations with act(s a) = s act(a) for s > 0 (scale can be moved to the next layer).
HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)


@dataclass(frozen=True)
class Block:
    """One ``Linear`` and the elementwise activation applied to its output (``None``: none)."""

    linear: nn.Linear
    act: nn.Module | None


def find_blocks(model: nn.Module) -> list[Block]:
    """The ``Linear`` layers of ``model`` with their activations, input side first.

    The last block is the output layer. Works for any model whose leaf modules,
    in registration order, are ``Linear`` layers each followed by at most one
    elementwise activation (``nn.Sequential`` of them, :class:`~sepneuron.SeparatedMLP`,
    :class:`~sepneuron.baselines.PlainMLP`); anything else raises ``ValueError``.
    """
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    blocks: list[list[Any]] = []
    for m in leaves:
        if isinstance(m, nn.Linear):
            blocks.append([m, None])
        elif isinstance(m, _ACTS) and blocks and blocks[-1][1] is None:
            blocks[-1][1] = m
        elif isinstance(m, nn.Dropout) and m.p == 0:
            continue
        else:
            raise ValueError(
                "conditioning needs a chain of nn.Linear layers, each followed by at most one "
                f"elementwise activation; found {type(m).__name__} where that does not hold"
            )
    if not blocks:
        raise ValueError("conditioning found no nn.Linear layer in the model")
    for (prev, _), (nxt, _) in zip(blocks[:-1], blocks[1:], strict=True):
        if nxt.in_features != prev.out_features:
            raise ValueError(
                f"Linear layers do not form a chain: {prev.out_features} outputs feed "
                f"{nxt.in_features} inputs"
            )
    return [Block(lin, act) for lin, act in blocks]


def activation_output(act: nn.Module | None, a: Tensor) -> Tensor:
    """``act(a)`` for a block; separated layers through the functional form.

    The functional form keeps the tuner's hooks (on the module) out of the component's
    own autograd passes.
    """
    if act is None:
        return a
    if isinstance(act, SeparatedActivation):
        return separated(a, act.q.detach(), act.c.detach(), act.d.detach(), act.kind)
    return act(a)


def capture_inputs(linears: Sequence[nn.Linear], store: dict[int, Tensor]) -> list[RemovableHandle]:
    """Record, on each forward with autograd on, the input ``(batch, in)`` of each layer.

    ``store`` maps ``id(linear)`` to the detached input of its latest such forward.
    Forwards under ``torch.no_grad()`` (evaluation) are not recorded.
    """

    def hook(mod: nn.Module, args: tuple[Tensor, ...]) -> None:
        if torch.is_grad_enabled():
            store[id(mod)] = args[0].detach()

    return [lin.register_forward_pre_hook(hook) for lin in linears]


def capture_output_grads(
    linears: Sequence[nn.Linear], reduce: Callable[[Tensor], Tensor], store: dict[int, Tensor]
) -> list[RemovableHandle]:
    """Record ``reduce(dE/d output)`` of each layer on every back-propagated forward."""

    def hook(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        if torch.is_grad_enabled() and out.requires_grad:
            key = id(mod)

            def record(g: Tensor) -> None:
                store[key] = reduce(g.detach())

            out.register_hook(record)

    return [lin.register_forward_hook(hook) for lin in linears]


def layer_params(linear: nn.Linear) -> list[Tensor]:
    """The layer's weight and (if any) bias."""
    return [p for p in (linear.weight, linear.bias) if p is not None]


def _norm(ts: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of all of ``ts`` together, in float64."""
    return torch.sqrt(torch.stack([(t.double() ** 2).sum() for t in ts]).sum())


@torch.no_grad()
def steer_(params: Sequence[Tensor], direction: Sequence[Tensor], strength: float) -> float:
    """Add ``strength * |g| * direction / |direction|`` to the gradients ``g`` of ``params``.

    Norms are taken over all of ``params`` together (one layer's weight and bias).
    The added term vanishes where the loss gradient vanishes, so every stationary
    point of the loss stays one, and its size is a fixed fraction of the gradient
    whatever the scale of the loss. Returns the multiplier used (0 when skipped:
    no gradient, a zero or non-finite direction).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if len(grads) != len(params):
        return 0.0
    g_norm, d_norm = _norm(grads), _norm(direction)
    if not (torch.isfinite(g_norm) and torch.isfinite(d_norm)) or g_norm == 0 or d_norm == 0:
        return 0.0
    scale = float(strength * g_norm / d_norm)
    for g, d in zip(grads, direction, strict=True):
        g.add_(d.to(g.dtype), alpha=scale)
    return scale


class Component(Conditioner):
    """A :class:`Conditioner` with a step counter, an ``every`` option and hook bookkeeping."""

    def __init__(self, every: int = 1) -> None:
        if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.every = every
        self.steps = 0  # after_update calls so far (saved in the state dict)
        self._handles: list[RemovableHandle] = []

    @property
    def active(self) -> bool:
        """Whether this step is one of every ``every`` steps."""
        return self.steps % self.every == 0

    def options(self) -> dict[str, Any]:
        return {"every": self.every}

    def after_update(self, model: nn.Module) -> None:
        self.steps += 1

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, **self.options()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state of {state.get('name')!r} given to {self.name!r}")
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class SteeringComponent(Component):
    """A component that adds a push along ``direction`` to the gradients of hidden layers.

    For each hidden block it keeps (:meth:`wants`), ``before_update`` computes
    ``direction(block, x)`` from the block's layer inputs ``x`` ``(batch, in)`` of the last
    forward pass and hands it to :func:`steer_`, which adds ``strength * |g|`` along it.
    The output layer is never steered.

    Args:
        strength: size of the push relative to the loss gradient (``>= 0``).
        every: apply every this many steps.
    """

    def __init__(self, strength: float = 0.2, every: int = 1) -> None:
        super().__init__(every)
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength!r}")
        self.strength = float(strength)
        self._blocks: list[Block] = []
        self._inputs: dict[int, Tensor] = {}

    def options(self) -> dict[str, Any]:
        return {"strength": self.strength, **super().options()}

    def wants(self, block: Block) -> bool:
        """Whether to steer this hidden block."""
        return True

    def direction(self, block: Block, x: Tensor) -> list[Tensor] | None:
        """The push for ``(W, w0)`` of the block, or ``None`` to leave it alone."""
        raise NotImplementedError

    def attach(self, model: nn.Module) -> None:
        self._blocks = [b for b in find_blocks(model)[:-1] if self.wants(b)]
        self._handles += capture_inputs([b.linear for b in self._blocks], self._inputs)

    def detach(self) -> None:
        super().detach()
        self._inputs.clear()

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        if not self.active or self.strength == 0:
            return
        for blk in self._blocks:
            x = self._inputs.get(id(blk.linear))
            params = layer_params(blk.linear)
            if x is None or any(p.grad is None or not p.requires_grad for p in params):
                continue
            x = x.reshape(-1, blk.linear.in_features).to(blk.linear.weight.dtype)
            push = self.direction(blk, x)
            if push is not None:
                steer_(params, push, self.strength)
