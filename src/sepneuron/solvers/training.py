"""How :func:`sepneuron.fit` uses the solvers: option checks, the LM optimizer, the exact
output layer for first-order optimizers, and the loss-plateau stop.

Option values are checked with the rest of ``TrainConfig`` in :mod:`sepneuron.settings`.
Kept out of ``train.py`` so that the training loop stays one idea; ``train.py`` calls these.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ..settings import DEFAULT_LR
from .network_lm import NetworkLM
from .varpro import output_layer_of

__all__ = ["check_solver_combination", "step_size",
           "make_lm", "trained_parameters", "PlateauStop"]


def check_solver_combination(cfg: Any, model: nn.Module, n_samples: int, ddp: bool) -> None:
    """Refuse option combinations the solvers do not support, naming both options."""
    mini = cfg.batch_size is not None and cfg.batch_size < n_samples
    if cfg.output_layer == "lstsq":
        if mini:
            raise ValueError("output_layer='lstsq' solves on the full batch: use batch_size=None "
                             "or output_layer='optimizer'")
        if ddp:
            raise ValueError("output_layer='lstsq' is not supported with DistributedDataParallel: "
                             "use output_layer='optimizer'")
        output_layer_of(model)  # ValueError naming both options if there is no output Linear
    if cfg.init == "data" and ddp:
        raise ValueError("init='data' would differ per rank under DistributedDataParallel: "
                         "use init='default'")


def step_size(cfg: Any) -> float:
    """``cfg.lr``, or the optimizer's own default (:data:`DEFAULT_LR`) when it is ``None``."""
    return DEFAULT_LR[cfg.optimizer] if cfg.lr is None else float(cfg.lr)


def make_lm(cfg: Any, params: list[nn.Parameter]) -> NetworkLM:
    """The :class:`NetworkLM` of a config (projected when ``output_layer='lstsq'``)."""
    return NetworkLM(params, lr=step_size(cfg), damping=cfg.damping,
                     projected=cfg.output_layer == "lstsq", ridge=cfg.ridge)


def trained_parameters(cfg: Any, model: nn.Module,
                       params: list[nn.Parameter]) -> list[nn.Parameter]:
    """``params`` without the output layer's when it is solved exactly (``"lstsq"``).

    If nothing else is trained (a frozen hidden part), an empty placeholder parameter is
    returned, so the optimizer exists and each step is the exact solve alone.
    """
    if cfg.output_layer != "lstsq":
        return params
    _, out = output_layer_of(model)
    solved = {id(p) for p in out.parameters()}
    kept = [p for p in params if id(p) not in solved]
    return kept or [nn.Parameter(out.weight.new_zeros(0))]


class PlateauStop:
    """Stop when the loss has not fallen below ``(1 - min_improvement)`` times its best
    for ``patience`` steps in a row (``patience=None``: never).

    The best value and its step are kept incrementally (``O(1)`` per step).
    """

    def __init__(self, patience: int | None, min_improvement: float, losses: list[float]) -> None:
        self.patience, self.min_improvement = patience, min_improvement
        self.best, self.best_step = math.inf, 0
        for i, v in enumerate(losses):
            self.update(i + 1, v)

    def update(self, step: int, loss: float) -> bool:
        """Record the loss after ``step`` steps; ``True`` when training should stop."""
        if loss < self.best * (1 - self.min_improvement):
            self.best, self.best_step = loss, step
        return self.patience is not None and step - self.best_step >= self.patience


def first_order_closure_prefix(cfg: Any, model: nn.Module, X: Tensor, Y: Tensor) -> None:
    """With ``output_layer='lstsq'``: solve the output layer for the current hidden
    parameters. ``fit`` calls it before each loss evaluation of a first-order optimizer
    (the gradient in the hidden parameters is then that of the reduced problem) and after
    each step that changed hidden parameters outside LM (so the model is always consistent)."""
    if cfg.output_layer == "lstsq":
        from .varpro import solve_output_layer

        solve_output_layer(model, X, Y, ridge=cfg.ridge)
