"""How :func:`sepneuron.fit` uses the solvers: option checks, the parameters an optimizer
gets, and the exact output layer for the optimizers that do not solve it themselves.

Option values are checked with the rest of ``TrainConfig`` in :mod:`sepneuron.settings`;
the optimizers themselves are in :mod:`sepneuron.optimizers` (Levenberg-Marquardt included).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .varpro import output_layer_of, solve_output_layer

__all__ = ["check_solver_combination", "trained_parameters", "OutputLayerSolve"]


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


class OutputLayerSolve:
    """The exact output layer of ``output_layer="lstsq"``, solved once per set of weights.

    :meth:`ensure` solves it (:func:`~sepneuron.solvers.solve_output_layer`, on the full
    batch ``X`` ``(n, in)``, ``Y`` ``(n, out)``) unless it is *current*: already solved
    for the weights as they are. :meth:`moved` marks the weights as changed since (an
    optimizer or tuner step, a conditioning edit, a restored state; also the end of each
    loss evaluation, after which an optimizer may move them), :meth:`solved` as solved by
    someone else (Levenberg-Marquardt's projected step). ``fit`` calls ``ensure`` at each
    loss evaluation of a first-order optimizer (its gradient is then that of the reduced
    problem) and after each step's updates, so the model between steps -- what evaluation
    and checkpoints see -- always has the layer solved for its weights. With
    ``enabled=False`` (``output_layer="optimizer"``) nothing is ever solved.
    """

    def __init__(self, enabled: bool, ridge: float = 1e-12) -> None:
        self.enabled, self.ridge = enabled, ridge
        self.current = False

    def ensure(self, model: nn.Module, X: Tensor, Y: Tensor) -> None:
        if self.enabled and not self.current:
            solve_output_layer(model, X, Y, ridge=self.ridge)
            self.current = True

    def moved(self) -> None:
        self.current = False

    def solved(self) -> None:
        self.current = self.enabled
