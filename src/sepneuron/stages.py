r"""Residual stages (precision mode): ``f = f_1 + s_2 f_2 + ... + s_m f_m``.

After the first network ``f_1`` has been trained on ``(X, y)`` (until ``max_time``, a
plateau or its steps), stage ``i`` trains a fresh small network ``f_i`` on the *rescaled
residual* of the sum so far,

.. math::
    y_i = (y - F_{i-1}(X)) / s_i, \qquad s_i = \operatorname{rms}(y - F_{i-1}(X))
    \text{ per output column}, \qquad F_i = F_{i-1} + s_i f_i,

so each stage sees targets of unit size whatever precision the previous ones reached
(Michaud, Liu and Tegmark 2023; Wang and Lai 2024). Work in float64: the residuals are
small differences. A stage whose sum has a higher training loss than the sum without it
is not added (``History.events`` of that stage says so), so the training loss never rises
when a stage is added. Two schedules share the budget:

* ``"even"``: each stage gets ``config.steps``, and (with ``max_time``, seconds of training
  as in ``fit``) the time left divided by the stages left, so a stage that plateaus early
  hands its time on; every stage runs.
* ``"plateau"``: the stages share ``config.steps`` and ``max_time`` as one network would
  use them, and the next stage starts only when a stage stopped on a plateau
  (``config.patience``); a stage stopped by its steps or time ends the fit. A fit never
  costs more than one network under the same config, and a network that keeps improving
  keeps the whole budget.

The result is a :class:`StagedModel`: an ``nn.Module`` whose forward is the sum of its
stages, each a network followed by a constant per-output scale (a buffer), so it is saved,
loaded, predicted with and exported like any module made of ``Linear`` layers, activations,
constant scalings and a sum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .train import History, TrainConfig, fit

__all__ = ["STAGE_SCHEDULES", "ScaledStage", "StagedModel", "fit_stages"]

STAGE_SCHEDULES = ("even", "plateau")
"""The ways stages share the budget (``fit_stages(schedule=...)``); not the learning-rate
``sepneuron.train.SCHEDULES``."""


class ScaledStage(nn.Module):
    """``net(x) * scale``; ``scale`` ``(out,)`` is a buffer (saved, not trained)."""

    def __init__(self, net: nn.Module, scale: Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * self.scale


class StagedModel(nn.Module):
    """``sum_i scale_i * net_i(x)``: the networks of :func:`fit_stages` and their scales.

    Shapes: input ``(batch, in)``, output ``(batch, out)``. Built empty or from
    ``(net, scale)`` pairs; :meth:`add_stage` appends one.
    """

    def __init__(self, stages: Sequence[tuple[nn.Module, Tensor]] = ()) -> None:
        super().__init__()
        self.stages = nn.ModuleList(ScaledStage(n, s) for n, s in stages)

    def add_stage(self, net: nn.Module, scale: Tensor) -> StagedModel:
        """Append ``scale * net`` (``scale`` ``(out,)``, on ``net``'s device and dtype)."""
        p = next(net.parameters())
        self.stages.append(ScaledStage(net, scale.to(p.device, p.dtype)))
        return self

    def forward(self, x: Tensor) -> Tensor:
        if len(self.stages) == 0:
            raise ValueError("StagedModel has no stages")
        out = self.stages[0](x)
        for stage in self.stages[1:]:
            out = out + stage(x)
        return out


def _stage_config(cfg: TrainConfig, i: int, stages: int, schedule: str,
                  histories: list[History]) -> TrainConfig | None:
    """Stage ``i``'s config under ``schedule``, or ``None``: the budget is spent (or, under
    ``"plateau"``, the stage before stopped on its steps or time, not a plateau)."""
    out = dataclasses.replace(cfg, seed=cfg.seed + i)
    if schedule == "plateau":
        if histories and histories[-1].stop_reason != "plateau":
            return None
        out.steps = cfg.steps - sum(h.steps_done for h in histories)
        if out.steps < 1:
            return None
    if cfg.max_time is not None:
        left = cfg.max_time - sum(h.time[-1] for h in histories if h.time)
        if left <= 0:
            return None
        out.max_time = left if schedule == "plateau" else left / (stages - i)
    return out


@torch.no_grad()
def _mse(model: nn.Module, X: Tensor, y: Tensor) -> float:
    return float(((model(X) - y) ** 2).mean())


def fit_stages(
    make_model: Callable[[int], nn.Module],
    X: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    *,
    stages: int = 2,
    schedule: str = "even",
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: Callable[[History], None] | None = None,
) -> tuple[StagedModel, list[History]]:
    """Train up to ``stages`` networks, each on the rescaled residual of the ones before.

    ``make_model(i)`` returns a fresh network for stage ``i`` (``0``-based). Each stage is
    trained by :func:`~sepneuron.fit` with ``config`` (seed ``config.seed + i``; steps and
    ``max_time`` shared as ``schedule`` says: ``"even"`` or ``"plateau"``, see the module
    docstring; ``"plateau"`` needs ``config.patience``). ``progress`` is passed to the first
    stage's ``fit``. Returns the :class:`StagedModel` and one :class:`~sepneuron.History`
    per trained stage (its losses in that stage's rescaled units); stage ``i``'s
    ``History.test_rmse`` is of the rescaled test residual. Training stops early when the
    residual is exactly zero.
    """
    cfg = config or TrainConfig()
    if not (isinstance(stages, int) and not isinstance(stages, bool) and stages >= 1):
        raise ValueError(f"stages must be a positive int, got {stages!r}")
    if schedule not in STAGE_SCHEDULES:
        raise ValueError(f"schedule must be one of {STAGE_SCHEDULES}, got {schedule!r}")
    if schedule == "plateau" and cfg.patience is None:
        raise ValueError("schedule='plateau' needs config.patience (a plateau starts the next "
                         "stage; without one the first network takes the whole budget)")
    if cfg.checkpoint_path or cfg.resume:
        raise ValueError("checkpoint_path / resume apply to one network: use stages=1 "
                         "or save the StagedModel's state_dict yourself")
    cfg.validate()
    dev, dt = torch.device(cfg.device), cfg.torch_dtype
    X, y = X.to(dev, dt), y.to(dev, dt)
    if X_test is not None and y_test is not None:
        X_test, y_test = X_test.to(dev, dt), y_test.to(dev, dt)
    model = StagedModel()
    histories: list[History] = []
    loss = float("inf")
    for i in range(stages):
        stage_cfg = _stage_config(cfg, i, stages, schedule, histories)
        if stage_cfg is None:
            break
        if i == 0:
            scale = torch.ones(y.shape[1], dtype=dt, device=dev)
            target, test_target = y, y_test
        else:
            with torch.no_grad():
                resid = y - model(X)
                scale = resid.pow(2).mean(dim=0).sqrt()
                if not bool((scale > 0).any()):
                    break
                scale = torch.where(scale > 0, scale, torch.ones_like(scale))
                target = resid / scale
                test_target = None if X_test is None or y_test is None else \
                    (y_test - model(X_test)) / scale
        net = make_model(i)
        history = fit(net, X, target, stage_cfg, X_test=X_test if test_target is not None else None,
                      y_test=test_target, progress=progress if i == 0 else None)
        histories.append(history)
        model.add_stage(net, scale)
        new_loss = _mse(model, X, y)
        if not new_loss <= loss:  # the stage made the sum worse (or non-finite): leave it out
            del model.stages[-1]
            history.events.append({
                "step": history.steps_done, "event": "stage not added",
                "action": f"training MSE {new_loss:.3e} > {loss:.3e} without it"})
            continue
        loss = new_loss
    if len(model.stages) == 0:
        raise FloatingPointError("the first stage did not reach a finite training loss")
    return model, histories
