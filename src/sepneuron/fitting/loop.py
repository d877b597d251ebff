"""``fit(model, X, y, config) -> History``: builds a run and runs the short training loop.

The loss is the mean squared error ``E = mean((model(X) - y)^2)``. Weights (and, with
``rule="grad"`` or for plain models, every parameter) are updated by the named optimizer
(:mod:`sepneuron.optimizers`); the scalar-nonlinear parameters of separated layers by a
:class:`~sepneuron.tuning.SeparatedTuner` with ``config.rule``. Everything else --
evaluation, the tuner's step, conditioning, NaN recovery, checkpoints, progress, the
plateau stop -- is a callback (:mod:`.callbacks`). No printing, no files unless asked.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .. import resume
from ..conditioning import make_conditioners
from ..init import init_from_data_
from ..layers import SeparatedActivation, activation_parameter_ids
from ..optimizers import REGISTRY, get_optimizer
from ..solvers.training import (
    OutputLayerSolve,
    check_solver_combination,
    resolve_output_layer,
    trained_parameters,
)
from ..tuning import SeparatedTuner
from .callbacks import (
    AfterEvaluation,
    Callback,
    Conditioning,
    Evaluation,
    EveryStep,
    PlateauStop,
    TunerStep,
)
from .checkpointing import Checkpoint
from .coarse import fit_coarse_to_fine
from .config import TrainConfig
from .history import History
from .recovery import Recovery
from .run import Run

__all__ = ["fit", "validate_data"]


def validate_data(X: Any, y: Any, *, name_x: str = "X", name_y: str = "y") -> None:
    """Raise ``ValueError`` for bad shapes, lengths or non-finite values."""
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"{name_x} and {name_y} must be torch tensors")
    if X.ndim != 2:
        raise ValueError(f"{name_x} must have shape (n_samples, n_features), got {tuple(X.shape)}")
    if y.ndim != 2:
        raise ValueError(f"{name_y} must have shape (n_samples, n_outputs), got {tuple(y.shape)}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{name_x} has {X.shape[0]} samples but {name_y} has {y.shape[0]}")
    if X.shape[0] < 1:
        raise ValueError(f"{name_x} has no samples")
    for n, t in ((name_x, X), (name_y, y)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{n} contains NaN or Inf")


def _check_inputs(X: Tensor, y: Tensor, X_test: Tensor | None, y_test: Tensor | None) -> None:
    validate_data(X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None and y_test is not None:
        validate_data(X_test, y_test, name_x="X_test", name_y="y_test")
        if X_test.shape[1] != X.shape[1] or y_test.shape[1] != y.shape[1]:
            raise ValueError("X_test / y_test must have as many columns as X / y")


def _check_callbacks(callbacks: Sequence[Callback], cfg: TrainConfig) -> list[Callback]:
    if isinstance(callbacks, Callback):
        raise ValueError("callbacks must be a list of Callback objects; got one: use [callback]")
    out = list(callbacks)
    for cb in out:
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks must be sepneuron.train.Callback instances, got {cb!r}")
    if cfg.checkpoint_path and any(isinstance(cb, Checkpoint) for cb in out):
        raise ValueError("give either TrainConfig.checkpoint_path or a Checkpoint callback, "
                         "not both")
    return out


def _weight_parameters(model: nn.Module, tuner_owns: bool) -> list[nn.Parameter]:
    """Parameters for the weight optimizer: all but q, log c, d when a tuner owns them."""
    if not tuner_owns:
        return [p for p in model.parameters() if p.requires_grad]
    owned = activation_parameter_ids(model)
    return [p for p in model.parameters() if p.requires_grad and id(p) not in owned]


def _build_run(cfg: TrainConfig, model: nn.Module, data: tuple[Tensor | None, ...],
               ddp: bool) -> Run:
    X = data[0]
    assert X is not None
    use_tuner = (cfg.rule is not None and cfg.rule != "grad"
                 and any(isinstance(m, SeparatedActivation) for m in model.modules()))
    if cfg.init == "data":  # a resumed run's state replaces what this draws
        init_from_data_(model, X, generator=torch.Generator().manual_seed(cfg.seed))
    # rule=None: q, c, d stay fixed, so no optimizer gets them (LM would move them anyway)
    params = _weight_parameters(model, use_tuner or cfg.rule is None)
    adapter = get_optimizer(cfg.optimizer)(trained_parameters(cfg, model, params), cfg)
    tuner = None
    if use_tuner:
        tuner = SeparatedTuner(model, rule=cfg.rule, gamma=cfg.gamma, max_step=cfg.max_step,
                               tune_curvature=cfg.tune_curvature, distributed=ddp)
    scheduler = None
    if cfg.schedule == "cosine" and cfg.steps > 0:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(adapter.optimizer, T_max=cfg.steps)
    return Run(cfg, model, data, adapter, tuner, scheduler, make_conditioners(cfg.conditioning),
               torch.Generator(device="cpu").manual_seed(cfg.seed),
               OutputLayerSolve(cfg.output_layer == "lstsq", cfg.ridge))


def _own_callbacks(run: Run, callback: Callable[[int, History], bool | None] | None,
                   progress: Callable[[History], None] | None) -> list[Callback]:
    """fit's callbacks, in the order their hooks run (before the user's)."""
    cfg = run.cfg
    out: list[Callback] = []
    if run.tuner is not None:
        out.append(TunerStep(cfg.tune_every))
    if run.conditioners:
        out.append(Conditioning(run.conditioners))
    out += [Recovery(cfg.max_retries), Evaluation(cfg.eval_every, cfg.diagnostics)]
    if callback is not None:
        out.append(AfterEvaluation(callback))
    if cfg.checkpoint_path:
        out.append(Checkpoint(cfg.checkpoint_path, cfg.checkpoint_every, cfg.resume))
    if progress is not None:
        out.append(EveryStep(progress))
    if cfg.patience is not None:
        out.append(PlateauStop(cfg.patience, cfg.min_improvement))
    return out


def fit(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    *,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    callback: Callable[[int, History], bool | None] | None = None,
    progress: Callable[[History], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Train ``model`` on ``(X, y)`` (shapes ``(n, in)``, ``(n, out)``) as ``config`` says.

    ``model`` is moved to ``config.device`` and ``config.dtype`` in place. ``callback(step,
    history)`` runs after each evaluation; returning ``True`` stops training.
    ``progress(history)`` runs after every step (keep it cheap; e.g.
    :class:`sepneuron.progress.TrainingProgress`). ``callbacks``: more
    :class:`~sepneuron.train.Callback` objects (e.g. a :class:`~sepneuron.train.Checkpoint`),
    whose hooks run after fit's own. Returns the :class:`History`; the trained parameters
    are in ``model``.

    ``model`` may be a ``DistributedDataParallel`` wrapper (built on ``config.device`` and
    ``config.dtype``) with each rank's own ``(X, y)`` shard: the tuner's statistics are
    then all-reduced and a loss counts as non-finite when it is so on any rank, so all
    ranks stay identical (see ``docs/scaling.md``; "adam" and "sgd" only).

    With ``config.coarse_fraction`` set, the first ``config.coarse_share`` of the budget
    trains on a random subset of the rows and the rest on all of them
    (:mod:`sepneuron.fitting.coarse`); ``callback``, ``progress``, ``callbacks`` and the
    test data see the second phase only.
    """
    cfg = config or TrainConfig()
    cfg.validate()
    ddp = isinstance(model, DistributedDataParallel)
    if ddp and not get_optimizer(cfg.optimizer).distributed:
        ok = " or ".join(repr(n) for n, a in REGISTRY.items() if a.distributed)
        raise ValueError(f"optimizer must be {ok} with DistributedDataParallel, "
                         f"got {cfg.optimizer!r}")
    _check_inputs(X, y, X_test, y_test)
    user = _check_callbacks(callbacks, cfg)
    if cfg.coarse_fraction is not None:
        if ddp:
            raise ValueError("coarse_fraction is not supported with DistributedDataParallel "
                             "(each rank already trains on its shard of the rows)")
        if any(isinstance(cb, Checkpoint) for cb in user):
            raise ValueError("coarse_fraction: the switch from the coarse phase to all rows "
                             "is not checkpointed; use it without a Checkpoint callback")
        return fit_coarse_to_fine(fit, model, X, y, cfg, X_test=X_test, y_test=y_test,
                                  callback=callback, progress=progress, callbacks=user)
    dev, dt = torch.device(cfg.device), cfg.torch_dtype
    model.to(device=dev, dtype=dt)
    data = tuple(None if t is None else t.to(dev, dt) for t in (X, y, X_test, y_test))
    resume.check_model_fits_data(model, data[0], data[1])  # type: ignore[arg-type]
    cfg = dataclasses.replace(
        cfg, output_layer=resolve_output_layer(cfg, model, X.shape[0], ddp))
    check_solver_combination(cfg, model, X.shape[0], ddp)
    run = _build_run(cfg, model, data, ddp)
    run.callbacks = _own_callbacks(run, callback, progress) + user
    _train(run)
    return run.history


def _train(run: Run) -> None:
    """The loop: hooks around each step until ``steps``, ``max_time`` or a stop request."""
    cfg, h = run.cfg, run.history
    try:
        run.dispatch("setup")
        h = run.history  # setup may have restored another one
        h.stop_reason = "steps"
        run.dispatch("on_train_begin")
        while run.stop_reason is None and h.steps_done < cfg.steps:
            if cfg.max_time is not None and run.elapsed >= cfg.max_time:
                run.stop("max_time")
                break
            t0 = time.perf_counter()
            run.dispatch("on_step_begin")
            loss = run.step(*run.batch())
            run.elapsed += time.perf_counter() - t0
            if not torch.isfinite(loss):
                run.dispatch("on_step_failed")  # NaN recovery restores an earlier state
                continue
            h.record(float(loss), run.elapsed)
            run.dispatch("on_step_end")
        h.stop_reason = run.stop_reason or "steps"
        run.dispatch("on_train_end")
    finally:
        run.dispatch("teardown")
