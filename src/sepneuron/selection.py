r"""Choose the network by a hold-out race, then train the winner on every point.

Which architecture fits a target best within a budget depends on the target: on the
benchmark's smooth targets in two or three inputs one wide tanh layer (``[64]``) reaches
3-30x lower test error than ``[12, 12]``; on kinked ones it is 2-20x worse
(``docs/varpro.md``). :func:`fit_select` lets the data decide, inside the budget:

1. a seeded split holds out ``validation_fraction`` of the rows ``(X_v, y_v)``;
2. each candidate ``k`` is trained by :func:`~sepneuron.fit` on the other rows for
   ``share`` of the budget (``share * config.max_time`` seconds and
   ``max(1, share * config.steps)`` steps), and scored by its validation MSE
   ``mean((f_k(X_v) - y_v)^2)``;
3. the candidate with the lowest validation MSE -- the first candidate unless another beats
   it by the factor ``margin`` -- is trained on, from where it is, on *all*
   rows for the budget left (time and steps), in residual stages as
   :func:`~sepneuron.stages.fit_stages` does (its later stages are fresh networks of the
   same candidate).

With ``config.output_layer="auto"`` (the default) every candidate races with the exact
output layer (``"lstsq"``, where it can run) and the winner goes on as ``"auto"`` says
(:func:`~sepneuron.solvers.training.resolve_output_layer`: Levenberg-Marquardt on every
parameter for a network of more than one hidden layer). The projected step gets further
in a short race (on ``product``, ``[12, 12]`` reached a 10x lower validation MSE with it
than without after 20 % of 8 s), so it judges each network by what it can do; Levenberg-
Marquardt on every parameter then goes further on the deeper network (docs/varpro.md,
"Projection by depth").

So the race costs ``len(candidates) * share`` of the budget, and the winner keeps what it
learnt in it. ``margin > 1`` says that the first candidate's error falls faster than the
others' after the race (a deeper network that a short race undersells), so it must be
beaten clearly. A candidate whose race ends in a non-finite loss scores ``inf``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .init import init_from_data_
from .settings import SELECT_SHARE, SELECT_VALIDATION_FRACTION
from .solvers.training import output_solve_can_run
from .stages import StagedModel, _mse, fit_stages
from .train import History, TrainConfig, fit

__all__ = ["Selection", "fit_select"]


@dataclass
class Selection:
    """What the race of :func:`fit_select` found.

    ``chosen``: the index of the winning candidate; ``validation_mse``: per candidate, its
    MSE on the held-out rows after the race (``inf`` if its race failed; empty when there
    was one candidate and no race); ``race``: per candidate, the :class:`~sepneuron.History`
    of its race (``None`` where it failed).
    """

    chosen: int = 0
    validation_mse: list[float] = field(default_factory=list)
    race: list[History | None] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Optimizer steps of the race, every candidate."""
        return sum(h.steps_done for h in self.race if h is not None)

    @property
    def seconds(self) -> float:
        """Training seconds of the race, every candidate."""
        return sum(h.time[-1] for h in self.race if h is not None and h.time)

    def ran_in_race(self, history: History) -> bool:
        """Whether ``history`` is one of the race's (the winner's, returned by
        :func:`fit_select` when the race used the whole budget)."""
        return any(history is h for h in self.race)

    def total_steps(self, histories: Sequence[History]) -> int:
        """Steps of the race and of ``histories`` after it (each counted once)."""
        return self.steps + sum(h.steps_done for h in histories if not self.ran_in_race(h))

    def total_seconds(self, histories: Sequence[History]) -> float:
        """Training seconds of the race and of ``histories`` after it (each counted once)."""
        return self.seconds + sum(h.time[-1] for h in histories
                                  if h.time and not self.ran_in_race(h))


def _check(n_candidates: int, n_rows: int, share: float, validation_fraction: float,
           margin: float) -> int:
    """The number of held-out rows; ``ValueError`` for bad arguments."""
    if not (isinstance(margin, (int, float)) and margin >= 1 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 1, got {margin!r}")
    if n_candidates < 1:
        raise ValueError("candidates must name at least one network factory")
    if not (isinstance(share, (int, float)) and share > 0 and n_candidates * share < 1):
        raise ValueError(f"share must be > 0 with len(candidates) * share < 1 (the winner needs "
                         f"budget left), got share={share!r} for {n_candidates} candidates")
    if not (isinstance(validation_fraction, (int, float)) and 0 < validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    n_val = max(1, round(validation_fraction * n_rows))
    if n_candidates > 1 and n_rows - n_val < 2:
        raise ValueError(f"a race over {n_candidates} candidates needs at least 2 training rows "
                         f"besides {n_val} held out; X has {n_rows}")
    return n_val


def _race_config(cfg: TrainConfig, share: float) -> TrainConfig:
    return dataclasses.replace(cfg, steps=max(1, int(share * cfg.steps)), checkpoint_path=None,
                               max_time=None if cfg.max_time is None else share * cfg.max_time)


def fit_select(
    candidates: Sequence[Callable[[int], nn.Module]],
    X: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    *,
    share: float = SELECT_SHARE,
    validation_fraction: float = SELECT_VALIDATION_FRACTION,
    margin: float = 1.0,
    stages: int = 1,
    schedule: str = "even",
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: Callable[[History], None] | None = None,
) -> tuple[StagedModel, list[History], Selection]:
    """Race ``candidates`` on a hold-out split, train the winner on all rows (module doc).

    ``candidates[k](i)`` returns a fresh network of candidate ``k`` for stage ``i``
    (``0``-based), as ``make_model`` of :func:`~sepneuron.stages.fit_stages`. ``X``
    ``(n, in)``, ``y`` ``(n, out)``. ``config`` is the whole budget (steps and
    ``max_time``); the split is drawn from ``torch.Generator().manual_seed(config.seed)``.
    ``share`` and ``validation_fraction`` default to the estimator's (0.2, 0.15); its
    ``margin`` of 10 (:data:`~sepneuron.settings.SELECT_MARGIN`) is for its candidates'
    order (the deeper network first), so the default here is 1: no preference.
    ``stages`` and ``schedule`` are :func:`~sepneuron.stages.fit_stages`'; later stages
    start with ``config.init``. ``progress`` goes to the winner's first ``fit`` after the
    race. With one candidate there is no race. Returns the
    :class:`~sepneuron.stages.StagedModel` (its first stage the winner), the winner's
    :class:`~sepneuron.History` per stage trained after the race (or, when the race used
    the whole budget, its race's history: :meth:`Selection.total_steps` and
    :meth:`Selection.total_seconds` count that once), and the :class:`Selection`.
    """
    cfg = config or TrainConfig()
    n_val = _check(len(candidates), X.shape[0] if X.ndim else 0, share, validation_fraction,
                   margin)
    if cfg.checkpoint_path or cfg.resume:
        raise ValueError("checkpoint_path / resume apply to one network fitted by fit(): "
                         "fit_select trains several")
    cfg.validate()
    dev, dt = torch.device(cfg.device), cfg.torch_dtype
    X, y = X.to(dev, dt), y.to(dev, dt)
    selection = Selection()
    if len(candidates) == 1:
        model, histories = fit_stages(candidates[0], X, y, cfg, stages=stages, schedule=schedule,
                                      X_test=X_test, y_test=y_test, progress=progress)
        return model, histories, selection
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(cfg.seed))
    val, train = perm[:n_val].to(dev), perm[n_val:].to(dev)
    nets: list[nn.Module] = []
    race_cfg = _race_config(cfg, share)
    for make in candidates:
        net = make(0)
        race_net_cfg = race_cfg
        if cfg.output_layer == "auto" and output_solve_can_run(cfg, net, len(train), False):
            race_net_cfg = dataclasses.replace(race_cfg, output_layer="lstsq")
        try:
            h: History | None = fit(net, X[train], y[train], race_net_cfg)
            score = _mse(net, X[val], y[val])
            score = score if math.isfinite(score) else math.inf
        except FloatingPointError:   # its race never reached a finite loss
            h, score = None, math.inf
        nets.append(net)
        selection.race.append(h)
        selection.validation_mse.append(score)
    if all(math.isinf(s) for s in selection.validation_mse):
        raise FloatingPointError("no candidate reached a finite validation loss in its race")
    chosen = min(range(len(nets)),
                 key=lambda k: selection.validation_mse[k] * (1.0 if k == 0 else margin))
    selection.chosen = chosen
    rest = dataclasses.replace(cfg, init="default", steps=cfg.steps - selection.steps)
    if cfg.max_time is not None:
        rest.max_time = cfg.max_time - selection.seconds
    if rest.steps < 1 or (rest.max_time is not None and rest.max_time <= 0):
        winner = selection.race[chosen]    # the race used the whole budget
        assert winner is not None
        return StagedModel([(nets[chosen], torch.ones(y.shape[1], dtype=dt, device=dev))]), \
            [winner], selection
    make_chosen = candidates[chosen]

    def make_model(i: int) -> nn.Module:
        if i == 0:
            return nets[chosen]
        net = make_chosen(i)
        if cfg.init == "data":  # what fit would draw for stage i (seed config.seed + i)
            gen = torch.Generator().manual_seed(cfg.seed + i)
            init_from_data_(net.to(dev, dt), X, generator=gen)
        return net

    model, histories = fit_stages(make_model, X, y, rest, stages=stages, schedule=schedule,
                                  X_test=X_test, y_test=y_test, progress=progress)
    return model, histories, selection
