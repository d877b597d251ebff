"""The weight optimizers of :func:`sepneuron.fit`, looked up by name (as torchdiffeq's ``SOLVERS``).

:data:`REGISTRY` maps a name (``TrainConfig.optimizer``) to a :class:`StepAdapter` class.
An adapter builds its optimizer from the parameters to train and the config, and takes
one training step on a batch ``(X, Y)`` through a :class:`StepContext` (the fit's run):

* first-order optimizers (``"adam"``, ``"sgd"``): one loss evaluation with its gradient
  (``context.closure(X, Y)``), then ``optimizer.step()`` -- only if the loss is finite on
  every rank;
* ``"lbfgs"``: ``optimizer.step(closure)``, which evaluates the loss as often as its line
  search needs;
* ``"lm"``: :class:`~sepneuron.solvers.NetworkLM` with its own analytic Jacobian; one
  gradient pass of ours only when a component reads gradients (the tuner).

Each step returns the mean squared error *before* the step, NaN when it was not finite
(then nothing was updated, except by L-BFGS's line search). The registry is the one source
of the optimizer names (:data:`NAMES`, ``sepneuron.settings.OPTIMIZERS``) and of their
default step sizes (:data:`DEFAULT_LR`, used for ``TrainConfig(lr=None)``); both are live
views, so an optimizer added with :func:`register_optimizer` is usable by name at once.
Nothing here imports the rest of the package at import time (``settings`` imports this).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, overload

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["StepAdapter", "StepContext", "REGISTRY", "NAMES", "DEFAULT_LR", "register_optimizer",
           "get_optimizer", "step_size"]


class StepContext(Protocol):
    """What an adapter may use of the run it steps (:class:`sepneuron.fitting.run.Run`)."""

    model: nn.Module

    @property
    def needs_gradient(self) -> bool:
        """Whether a component (the tuner) reads the loss's gradient after each step."""
        ...

    def closure(self, X: Tensor, Y: Tensor) -> Tensor:
        """Zero the gradients, solve the output layer if due, return ``mse(model(X), Y)``
        after its backward pass (and the ``on_after_backward`` hooks)."""
        ...

    def all_finite(self, loss: Tensor) -> bool:
        """Whether ``loss`` is finite on every rank."""
        ...

    def output_layer_solved(self) -> None:
        """The step left the output layer solved exactly for the current weights."""
        ...


def step_size(cfg: Any) -> float:
    """``cfg.lr``, or the optimizer's default (:data:`DEFAULT_LR`) when it is ``None``."""
    return get_optimizer(cfg.optimizer).default_lr if cfg.lr is None else float(cfg.lr)


def _nan_like(loss: Tensor) -> Tensor:
    return torch.full_like(loss.detach(), float("nan"))


class StepAdapter:
    """One optimizer as :func:`sepneuron.fit` uses it: built once, stepped once per batch.

    Subclasses set ``default_lr`` (the step size of ``lr=None``), ``distributed`` (whether
    its steps stay identical on every rank under ``DistributedDataParallel``) and
    :meth:`build`; the default :meth:`step` is the first-order one.
    """

    default_lr: ClassVar[float] = 3e-3
    distributed: ClassVar[bool] = False

    def __init__(self, params: list[nn.Parameter], cfg: Any) -> None:
        self.optimizer = self.build(params, step_size(cfg), cfg)

    def build(self, params: list[nn.Parameter], lr: float, cfg: Any) -> Optimizer:
        """The optimizer of ``params`` with step size ``lr`` (other options from ``cfg``)."""
        raise NotImplementedError

    def step(self, context: StepContext, X: Tensor, Y: Tensor) -> Tensor:
        """One evaluation of the loss and its gradient, then ``optimizer.step()``."""
        loss = context.closure(X, Y)
        if not context.all_finite(loss):
            return _nan_like(loss)
        self.optimizer.step()
        return loss.detach()


class AdamStep(StepAdapter):
    """``torch.optim.Adam(params, lr)``."""

    distributed = True

    def build(self, params: list[nn.Parameter], lr: float, cfg: Any) -> Optimizer:
        return torch.optim.Adam(params, lr=lr)


class SGDStep(StepAdapter):
    """``torch.optim.SGD(params, lr, momentum=cfg.momentum)``."""

    distributed = True

    def build(self, params: list[nn.Parameter], lr: float, cfg: Any) -> Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)


class LBFGSStep(StepAdapter):
    """``torch.optim.LBFGS`` with a strong-Wolfe line search, 20 iterations per step.

    ``max_iter=1`` stalls for good (the loss stays constant after a few steps, seen on
    kan_exp with a tanh MLP); torch's default 20 iterations per step does not.
    """

    def build(self, params: list[nn.Parameter], lr: float, cfg: Any) -> Optimizer:
        return torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=20,
                                 line_search_fn="strong_wolfe")

    def step(self, context: StepContext, X: Tensor, Y: Tensor) -> Tensor:
        lbfgs: Any = self.optimizer  # its step returns the closure's first loss (a tensor)
        loss = lbfgs.step(lambda: context.closure(X, Y))
        return loss.detach() if context.all_finite(loss) else _nan_like(loss)


class LMStep(StepAdapter):
    """:class:`~sepneuron.solvers.NetworkLM` (projected, i.e. with the output layer solved
    exactly at every trial point, when ``output_layer="lstsq"``). Its default step size
    is 1, the full damped Gauss-Newton step: the damping controls the step length."""

    default_lr = 1.0

    def build(self, params: list[nn.Parameter], lr: float, cfg: Any) -> Optimizer:
        from .solvers.network_lm import NetworkLM

        return NetworkLM(params, lr=lr, damping=cfg.damping,
                         projected=cfg.output_layer == "lstsq", ridge=cfg.ridge,
                         weight_decay=cfg.weight_decay,
                         relative_weight_decay=cfg.relative_weight_decay)

    def step(self, context: StepContext, X: Tensor, Y: Tensor) -> Tensor:
        # LM takes no backward pass of ours: make one for the tuner, before the LM step (one
        # taken after it, at the accepted point, measured worse: median test RMSE 2.2e-2
        # against 3.8e-4 on kan_exp with rule "newton", benchmarks/recipes.py, 3 seeds)
        if context.needs_gradient:
            context.closure(X, Y)
        lm: Any = self.optimizer  # NetworkLM: step(model, X, Y) -> the MSE before the step
        loss = lm.step(context.model, X, Y)
        if lm.param_groups[0]["projected"]:
            context.output_layer_solved()  # NetworkLM solves it at the point it accepts
        return loss.detach() if context.all_finite(loss) else _nan_like(loss)


REGISTRY: dict[str, type[StepAdapter]] = {
    "adam": AdamStep,
    "sgd": SGDStep,
    "lbfgs": LBFGSStep,
    "lm": LMStep,
}


def get_optimizer(name: str) -> type[StepAdapter]:
    """The adapter registered as ``name``; ``ValueError`` listing the known names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(REGISTRY)}") from None


def register_optimizer(name: str, adapter: type[StepAdapter], *, replace: bool = False) -> None:
    """Make ``adapter`` usable as ``TrainConfig(optimizer=name)``.

    ``ValueError`` for a name that is empty or taken (unless ``replace``), an adapter that
    is not a :class:`StepAdapter` subclass, or a ``default_lr`` that is not positive.
    """
    if not (isinstance(name, str) and name):
        raise ValueError(f"an optimizer name must be a non-empty str, got {name!r}")
    if not (isinstance(adapter, type) and issubclass(adapter, StepAdapter)):
        raise ValueError(f"adapter must be a StepAdapter subclass, got {adapter!r}")
    lr = adapter.default_lr
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{adapter.__name__}.default_lr must be a positive number, got {lr!r}")
    if name in REGISTRY and not replace:
        raise ValueError(f"optimizer {name!r} is registered already (replace=True to replace it)")
    REGISTRY[name] = adapter


class _Names(Sequence[str]):
    """The registered names, in registration order (a live, read-only view)."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return tuple(REGISTRY)[i]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


class _StepSizes(Mapping[str, float]):
    """name -> the adapter's ``default_lr`` (a live, read-only view)."""

    def __getitem__(self, name: str) -> float:
        return REGISTRY[name].default_lr

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


NAMES: Sequence[str] = _Names()
DEFAULT_LR: Mapping[str, float] = _StepSizes()
