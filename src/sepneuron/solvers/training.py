"""How :func:`sepneuron.fit` uses the solvers: option checks, the parameters an optimizer
gets, and the exact output layer for the optimizers that do not solve it themselves.

Option values are checked with the rest of ``TrainConfig`` in :mod:`sepneuron.settings`;
the optimizers themselves are in :mod:`sepneuron.optimizers` (Levenberg-Marquardt included).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .jacobian import sequential_of
from .varpro import output_layer_of, solve_output_layer

__all__ = ["check_solver_combination", "output_solve_can_run", "resolve_output_layer",
           "trained_parameters", "OutputLayerSolve"]


def output_solve_can_run(cfg: Any, model: nn.Module, n_samples: int, ddp: bool) -> bool:
    """Whether ``output_layer="lstsq"`` can run here: full batches (``cfg.batch_size``
    ``None`` or at least ``n_samples``), no ``DistributedDataParallel``, and a stack that
    ends in an ``nn.Linear``."""
    seq = sequential_of(model)
    mini = cfg.batch_size is not None and cfg.batch_size < n_samples
    return not (mini or ddp or seq is None or len(seq) < 2 or not isinstance(seq[-1], nn.Linear))


def resolve_output_layer(cfg: Any, model: nn.Module, n_samples: int, ddp: bool) -> str:
    """What ``output_layer="auto"`` (the default) stands for; other values unchanged.

    ``"lstsq"`` (the exact least-squares output layer) where it applies and measured
    better, else ``"optimizer"``: with ``optimizer="lm"`` and more than one hidden layer,
    Levenberg-Marquardt on every parameter, the output layer included, reached a 1.2-3.7x
    lower test RMSE than the projected step on 8 of the 13 benchmark tasks with the
    ``[12, 12]`` tanh net, while with one hidden layer (``[64]``) the projected step was
    1.7-9x better on 5 of 8 (docs/varpro.md, "Projection by depth"). ``"optimizer"`` also
    where the solve cannot run: mini-batches, ``DistributedDataParallel``, or a model
    without an output ``nn.Linear`` at the end of a stack.
    """
    if cfg.output_layer != "auto":
        return str(cfg.output_layer)
    if not output_solve_can_run(cfg, model, n_samples, ddp):
        return "optimizer"
    seq = sequential_of(model)
    assert seq is not None
    hidden_layers = sum(isinstance(m, nn.Linear) for m in seq) - 1
    return "optimizer" if cfg.optimizer == "lm" and hidden_layers > 1 else "lstsq"


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
