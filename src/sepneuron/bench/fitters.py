"""Benchmark runs that are not one :func:`sepneuron.fit` call.

* ``sklearn`` -- scikit-learn's ``MLPRegressor(solver="lbfgs")`` on the bench's standardised
  data. It has no time limit, so it is stopped by time in *warm-started chunks*: a probe of
  :data:`PROBE_ITER` iterations measures the seconds per iteration, then one call runs as
  many iterations as fit in :data:`FILL` of the time left, and so on while at least
  :data:`MIN_CHUNK` iterations' worth is left (2-4 calls per run). Each call restarts
  L-BFGS's curvature memory from the current weights; the run ends early when a call stops
  before its ``max_iter`` (scipy's own convergence test). Under a step budget, one call of
  ``max_iter = steps``. Its test RMSE is recorded after every call (evaluation not timed).
* ``estimator`` -- :class:`~sepneuron.SeparatedMLPRegressor` exactly as a user builds it
  (``max_time`` set, or ``max_steps`` under a step budget, and ``random_state``), fitted on
  the task's *raw* data; predictions are mapped to the bench's standardised units to score.
* :func:`fit_then` -- two :func:`~sepneuron.fit` calls on one model: the method's optimizer
  for a share of the budget, then another from where it stopped (``tanh_adam_lbfgs``).
* ``stages`` -- residual stages (:func:`sepneuron.stages.fit_stages`) with the test and
  train RMSE of the sum after each stage recorded (the report's precision section).
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..train import History, TrainConfig, fit

__all__ = ["external_train_spec", "EXTERNAL_FITTERS", "fitter_for", "fit_then", "PROBE_ITER",
           "FILL", "MIN_CHUNK"]

PROBE_ITER = 20   # iterations of the first, timing call
FILL = 0.9        # share of the time left that the next call is sized to fill
MIN_CHUNK = 5     # no further call when fewer iterations than this fit in the time left
_BIG_ITER = 1_000_000_000


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def external_train_spec(method, budget, seed: int,
                        model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model, train)`` parts of the spec of an ``sklearn`` or ``estimator`` method."""
    if method.model == "sklearn":
        return model, {"solver": "lbfgs", "activation": method.activation,
                       "steps": budget.steps, "max_time": budget.seconds,
                       "probe_iter": PROBE_ITER, "fill": FILL, "min_chunk": MIN_CHUNK}
    from ..estimator import SeparatedMLPRegressor

    # every default is in the spec (and the run key): a changed default re-runs the method
    defaults = {k: _jsonable(p.default) for k, p in
                inspect.signature(SeparatedMLPRegressor).parameters.items()}
    given: dict[str, Any] = {"random_state": int(seed)}
    if budget.seconds is not None:
        given["max_time"] = budget.seconds
    else:
        given["max_steps"] = budget.steps
    sizes = defaults["hidden_layer_sizes"]
    model = {**model, "activation": defaults.get("kind")}
    if sizes == "auto":  # a race (sepneuron.selection): its candidates and settings in the key
        from ..settings import (
            AUTO_HIDDEN_CANDIDATES,
            SELECT_MARGIN,
            SELECT_SHARE,
            SELECT_VALIDATION_FRACTION,
        )

        model["hidden"] = list(AUTO_HIDDEN_CANDIDATES[0])
        model["race"] = {"hidden": [list(c) for c in AUTO_HIDDEN_CANDIDATES],
                         "share": SELECT_SHARE, "margin": SELECT_MARGIN,
                         "validation_fraction": SELECT_VALIDATION_FRACTION}
    else:
        model["hidden"] = [sizes] if isinstance(sizes, int) else list(sizes)
    return model, {"defaults": defaults, "given": given}


# -- Adam then L-BFGS ------------------------------------------------------------------------


def _shift(h: History, first: History) -> History:
    """``h`` (the second phase) continued after ``first``: steps and times offset, its
    evaluation at step 0 (the same state as ``first``'s last one) dropped."""
    n, t = first.steps_done, (first.time[-1] if first.time else 0.0)
    out = History(
        loss=first.loss + h.loss, time=first.time + [x + t for x in h.time],
        eval_step=first.eval_step + [s + n for s in h.eval_step[1:]],
        eval_time=first.eval_time + [x + t for x in h.eval_time[1:]],
        train_rmse=first.train_rmse + h.train_rmse[1:],
        test_rmse=first.test_rmse + h.test_rmse[1:],
        dead_fraction=first.dead_fraction + h.dead_fraction[1:],
        spread=first.spread + h.spread[1:],
        events=first.events + [{**e, "step": e.get("step", 0) + n} for e in h.events],
        stop_reason=h.stop_reason,
    )
    return out


def fit_then(model: torch.nn.Module, X, y, cfg: TrainConfig, then: dict[str, Any], *,
             X_test=None, y_test=None) -> History:
    """Train with ``cfg`` for ``then["share"]`` of its budget (``max_time``, else ``steps``),
    then with ``cfg`` changed by the rest of ``then`` for what is left; one History."""
    share = float(then["share"])
    rest = {k: v for k, v in then.items() if k != "share"}
    if cfg.max_time is not None:
        first_cfg = replace(cfg, max_time=cfg.max_time * share)
    else:
        first_cfg = replace(cfg, steps=max(1, round(cfg.steps * share)))
    first = fit(model, X, y, first_cfg, X_test=X_test, y_test=y_test)
    used = first.time[-1] if first.time else 0.0
    steps_left = cfg.steps - first.steps_done
    time_left = None if cfg.max_time is None else cfg.max_time - used
    if steps_left <= 0 or (time_left is not None and time_left <= 0):
        return first
    second = fit(model, X, y, replace(cfg, **rest, steps=steps_left, max_time=time_left),
                 X_test=X_test, y_test=y_test)
    return _shift(second, first)


# -- scikit-learn ----------------------------------------------------------------------------


def _rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred.reshape(-1) - target.reshape(-1)) ** 2)))


def _fit_sklearn(spec: dict[str, Any], data) -> dict[str, Any]:
    from .runner import _Skipped

    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise _Skipped("scikit-learn is not installed (pip install 'sepneuron[sklearn]')") from None
    X, y, Xt, yt, Xg, yg = (a.numpy() for a in data)
    y = y[:, 0]
    tr = spec["train"]
    reg = MLPRegressor(hidden_layer_sizes=tuple(spec["model"]["hidden"]),
                       activation=tr["activation"], solver=tr["solver"], warm_start=True,
                       random_state=spec["seed"])
    curve: dict[str, list] = {"eval_step": [], "eval_time": [], "test_rmse": [], "train_rmse": []}
    spent, steps, converged = 0.0, 0, False
    with threadpool_limits(limits=int(spec.get("threads", 1))), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while not converged:
            if tr["max_time"] is None:
                n = tr["steps"]
            elif steps == 0:
                n = tr["probe_iter"]
            else:
                n = int(tr["fill"] * (tr["max_time"] - spent) / (spent / max(steps, 1)))
                if n < tr["min_chunk"]:
                    break
            reg.set_params(max_iter=n, max_fun=max(15000, 50 * n))
            t0 = time.perf_counter()
            reg.fit(X, y)
            spent += time.perf_counter() - t0
            steps += reg.n_iter_
            converged = reg.n_iter_ < n or tr["max_time"] is None
            curve["eval_step"].append(steps)
            curve["eval_time"].append(spent)
            curve["test_rmse"].append(_rmse(reg.predict(Xt), yt))
            curve["train_rmse"].append(_rmse(reg.predict(X), y))
    n = spec["grid_n"]
    err = (reg.predict(Xg) - yg[:, 0]).reshape(n, n).astype(np.float32)
    return {
        "test_rmse": curve["test_rmse"][-1], "train_rmse": curve["train_rmse"][-1],
        "train_time": spent, "steps": steps,
        "n_params": int(sum(c.size for c in reg.coefs_) + sum(b.size for b in reg.intercepts_)),
        "dead_fraction": [], "curve": curve,
        "metrics": {"stop_reason": "converged" if converged and tr["max_time"] is not None
                    else ("steps" if tr["max_time"] is None else "max_time"),
                    "calls": len(curve["eval_step"])},
        "grid": err.tobytes(),
    }


# -- the estimator ---------------------------------------------------------------------------


def _fit_estimator(spec: dict[str, Any], data) -> dict[str, Any]:
    from ..baselines import count_parameters
    from ..estimator import SeparatedMLPRegressor
    from ..tasks import get_task, grid, make_data
    from .runner import _Skipped

    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise _Skipped("scikit-learn is not installed (pip install 'sepneuron[sklearn]')") from None
    _, _, _, yt_std, _, yg_std = data
    task, f64 = get_task(spec["task"]), torch.float64
    X, y, Xt, _ = make_data(task, spec["data"]["n_train"], spec["data"]["n_test"],
                            generator=spec["seed"], dtype=f64)
    Xg, _ = grid(task, spec["grid_n"], dtype=f64)
    mu, sd = y.mean(), y.std()  # the bench's standardisation (runner._data)
    sd = sd if float(sd) > 0 else torch.ones((), dtype=f64)
    reg = SeparatedMLPRegressor(**spec["train"]["given"])
    reg.fit(X.numpy(), y[:, 0].numpy())

    def std_pred(A: torch.Tensor) -> np.ndarray:
        return (reg.predict(A.numpy()) - float(mu)) / float(sd)

    y_std = ((y - mu) / sd)[:, 0].numpy()
    h = reg.history_
    train_time = reg.selection_.total_seconds(reg.histories_)  # the race, every stage after
    test_rmse, train_rmse = _rmse(std_pred(Xt), yt_std.numpy()), _rmse(std_pred(X), y_std)
    n = spec["grid_n"]
    err = (std_pred(Xg) - yg_std[:, 0].numpy()).reshape(n, n).astype(np.float32)
    return {
        "test_rmse": test_rmse, "train_rmse": train_rmse, "train_time": train_time,
        "steps": reg.n_iter_, "n_params": count_parameters(reg.model_), "dead_fraction": [],
        "curve": {"eval_step": [reg.n_iter_], "eval_time": [train_time],
                  "test_rmse": [test_rmse], "train_rmse": [train_rmse],
                  "train_loss_time": list(h.time), "train_loss": list(h.loss)},
        "metrics": {"stop_reason": reg.histories_[-1].stop_reason,
                    "stages_trained": len(reg.histories_),
                    "hidden": list(reg.hidden_layer_sizes_),
                    "events": [e for hh in reg.histories_ for e in hh.events]},
        "grid": err.tobytes(),
    }


# -- residual stages -------------------------------------------------------------------------


def _fit_stages(spec: dict[str, Any], data) -> dict[str, Any]:
    """``spec["stages"]`` networks of the spec's architecture, each on the rescaled residual
    of the ones before (:func:`sepneuron.stages.fit_stages`, one shared time budget, its
    schedule ``spec["stage_schedule"]``, default ``"even"``); with ``spec["select"]``, the
    architecture is the winner of a hold-out race of its hidden sizes
    (:func:`sepneuron.selection.fit_select`; ``metrics["selection"]`` says who won), whose
    time and steps count in the budget.
    ``metrics["stages"]``: per stage trained, the test and train RMSE of the sum so far,
    the training seconds at its end and whether it was added (a stage that would raise the
    training loss is not). The curve is the first stage's, then one point per later stage."""
    from ..baselines import PlainMLP, count_parameters
    from ..layers import SeparatedMLP
    from ..selection import Selection, fit_select
    from ..stages import fit_stages

    X, y, Xt, yt, Xg, yg = data
    m = spec["model"]
    cls = SeparatedMLP if m["type"] == "separated" else PlainMLP

    def factory(hidden: list[int]):
        def make_model(i: int) -> torch.nn.Module:
            gen = torch.Generator().manual_seed(spec["seed"] + 1000 * i)
            return cls(X.shape[1], hidden, 1, m["activation"], dtype=torch.float64,
                       generator=gen)
        return make_model

    train = dict(spec["train"])
    train["conditioning"] = tuple(train.get("conditioning", ()))
    cfg, stages = TrainConfig(**train), int(spec.get("stages", 1))
    schedule = spec.get("stage_schedule", "even")
    selection, race = Selection(), spec.get("select")
    if race:
        model, histories, selection = fit_select(
            [factory(h) for h in race["hidden"]], X, y, cfg, share=race["share"],
            margin=race["margin"], validation_fraction=race["validation_fraction"],
            stages=stages, schedule=schedule, X_test=Xt, y_test=yt)
    else:
        model, histories = fit_stages(factory(m["hidden"]), X, y, cfg, stages=stages,
                                      schedule=schedule, X_test=Xt, y_test=yt)
    with torch.no_grad():
        parts = [(st(X), st(Xt)) for st in model.stages]
        err = (model(Xg) - yg).reshape(spec["grid_n"], spec["grid_n"])
    records: list[dict[str, Any]] = []
    # the race's time and steps come first (unless the winner's race is the only history)
    raced = bool(race) and not selection.ran_in_race(histories[0])
    t0, k0 = (selection.seconds, selection.steps) if raced else (0.0, 0)
    used, added, steps = t0, 0, k0
    fx, ft = torch.zeros_like(y), torch.zeros_like(yt)
    for h in histories:
        used += h.time[-1] if h.time else 0.0
        steps += h.steps_done
        ok = not any(e.get("event") == "stage not added" for e in h.events)
        if ok:
            fx, ft = fx + parts[added][0], ft + parts[added][1]
            added += 1
        records.append({"test_rmse": float((ft - yt).pow(2).mean().sqrt()),
                        "train_rmse": float((fx - y).pow(2).mean().sqrt()),
                        "time": used, "steps": steps, "added": ok,
                        "stop_reason": h.stop_reason})
    first = histories[0]
    curve: dict[str, list[Any]] = {
        # after a race, the first stage's clock and steps start where the race ended
        "eval_step": [k + k0 for k in first.eval_step],
        "eval_time": [t + t0 for t in first.eval_time],
        "test_rmse": list(first.test_rmse), "train_rmse": list(first.train_rmse)}
    for rec in records[1:]:
        curve["eval_step"].append(rec["steps"])
        curve["eval_time"].append(rec["time"])
        curve["test_rmse"].append(rec["test_rmse"])
        curve["train_rmse"].append(rec["train_rmse"])
    return {
        "test_rmse": records[-1]["test_rmse"], "train_rmse": records[-1]["train_rmse"],
        "train_time": used, "steps": steps, "n_params": count_parameters(model),
        "dead_fraction": [], "curve": curve,
        "metrics": {"stop_reason": histories[-1].stop_reason, "stages": records,
                    "events": [e for h in histories for e in h.events],
                    **({"selection": {"hidden": race["hidden"][selection.chosen],
                                      "validation_mse": selection.validation_mse,
                                      "race_seconds": selection.seconds,
                                      "race_steps": selection.steps}} if race else {})},
        "grid": err.to(torch.float32).numpy().tobytes(),
    }


EXTERNAL_FITTERS = {"sklearn": _fit_sklearn, "estimator": _fit_estimator}
"""Spec model type -> fitter ``(spec, standardised data) -> result fields``."""


def fitter_for(spec: dict[str, Any]):
    """The fitter of a spec that is not one :func:`~sepneuron.fit` call, else None."""
    if spec["model"]["type"] in EXTERNAL_FITTERS:
        return EXTERNAL_FITTERS[spec["model"]["type"]]
    if int(spec.get("stages", 1)) > 1 or spec.get("select"):
        return _fit_stages
    return None
