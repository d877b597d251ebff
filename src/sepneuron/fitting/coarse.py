r"""Coarse to fine: the first share of the budget on a random subset of the rows.

A Levenberg-Marquardt step costs ``O(n P^2)`` for ``n`` rows and ``P`` parameters (the
Gram matrix ``J^T J``). Far from a minimum a step computed from a random ``m = f n`` of the
rows moves the network about as far as one from all of them, at ``f`` of the cost; only near
the minimum does the fit need every row. With ``TrainConfig.coarse_fraction = f`` (and
``coarse_share = s``) :func:`~sepneuron.fit` therefore runs two phases:

1. ``m = max(1, round(f n))`` rows, drawn by ``torch.randperm(n,
   generator=torch.Generator().manual_seed(seed))``, for ``s`` of the budget: at most
   ``max(1, floor(s * steps))`` steps and ``s * max_time`` seconds; ``init`` as configured
   (``"data"`` places the kinks inside the subset), the plateau stop as configured;
2. every row, from where phase 1 left the parameters (``init="default"``), for the budget
   left (steps and seconds), with the test data, the callbacks and ``progress``.

The :class:`~sepneuron.train.History` returned is the two phases' in order: the losses of
phase 1 are on its subset, its evaluations are dropped (they scored the subset), phase 2's
times, evaluation steps and events' ``"step"`` continue after phase 1's, and an event
``{"event": "coarse phase", "rows": m, "steps": k, "seconds": t}`` sits between them. Refused with a
checkpoint (the phase switch is not checkpointed), with mini-batches and with
``DistributedDataParallel`` (both already step on part of the rows).

On 10,000 points (``benchmarks/precision.py``, a ``[20, 20]`` tanh net, LM + exact output
layer, 120 s) ``f = 0.2, s = 1/3`` lowered the relative test RMSE 2.3x (``kan_exp``) and
3.5x (``smooth_3d``) against one phase on all rows in the precision suite's run
(docs/results/precision/report.md; docs/varpro.md, "Coarse to fine"); on 1,000 points it
is off (the subset would hold fewer rows than the network has parameters).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .config import TrainConfig
from .history import History

__all__ = ["coarse_rows", "fit_coarse_to_fine"]

FitFn = Callable[..., History]


def coarse_rows(n: int, fraction: float, seed: int) -> Tensor:
    """The indices ``(m,)`` of phase 1's rows: the first ``max(1, round(fraction n))`` of a
    permutation of ``range(n)`` drawn from ``torch.Generator().manual_seed(seed)``."""
    m = max(1, round(fraction * n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m]


def _phase_budgets(cfg: TrainConfig) -> TrainConfig:
    share = cfg.coarse_share
    return dataclasses.replace(
        cfg, coarse_fraction=None, coarse_share=TrainConfig.coarse_share,
        steps=max(1, math.floor(share * cfg.steps)) if cfg.steps > 0 else 0,
        max_time=None if cfg.max_time is None else share * cfg.max_time)


def _merged(first: History, second: History, rows: int) -> History:
    """``first`` then ``second`` as one history (module docstring)."""
    offset_steps = first.steps_done
    offset_time = first.time[-1] if first.time else 0.0
    out = History(loss=first.loss + second.loss,
                  time=first.time + [t + offset_time for t in second.time],
                  eval_step=[s + offset_steps for s in second.eval_step],
                  eval_time=[t + offset_time for t in second.eval_time],
                  train_rmse=list(second.train_rmse), test_rmse=list(second.test_rmse),
                  dead_fraction=list(second.dead_fraction), spread=list(second.spread),
                  stop_reason=second.stop_reason)
    out.events = [*first.events,
                  {"event": "coarse phase", "rows": rows, "steps": offset_steps,
                   "seconds": offset_time, "stop": first.stop_reason},
                  *({**e, "step": e["step"] + offset_steps} if "step" in e else e
                    for e in second.events)]
    return out


def fit_coarse_to_fine(fit_fn: FitFn, model: nn.Module, X: Tensor, y: Tensor,
                       cfg: TrainConfig, **kwargs) -> History:
    """Train ``model`` in the two phases of the module docstring by ``fit_fn`` (``fit``).

    ``X`` ``(n, in)``, ``y`` ``(n, out)``; ``kwargs`` (test data, callbacks, ``progress``)
    go to phase 2 only. ``cfg.coarse_fraction`` must be set.
    """
    assert cfg.coarse_fraction is not None
    rows = coarse_rows(X.shape[0], cfg.coarse_fraction, cfg.seed).to(X.device)
    first_cfg = _phase_budgets(cfg)
    first = fit_fn(model, X[rows], y[rows], first_cfg)
    rest = dataclasses.replace(first_cfg, init="default",
                               steps=max(0, cfg.steps - first.steps_done))
    if cfg.max_time is not None:
        rest.max_time = max(cfg.max_time - (first.time[-1] if first.time else 0.0), 1e-9)
    if rest.steps == 0:
        return _merged(first, History(stop_reason="steps"), len(rows))
    second = fit_fn(model, X, y, rest, **kwargs)
    return _merged(first, second, len(rows))
