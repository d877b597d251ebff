"""Benchmark runs: a run is a plain-dict *spec*; :func:`run_one` trains it and returns a row.

``run_one(spec) -> dict`` is a top-level function of JSON-able input and output, so it
pickles to any executor: :func:`~sepneuron.bench.parallel.run_specs` runs specs in this
process, a ``ProcessPoolExecutor`` (spawn) or on a Dask cluster, and the same function
goes unchanged to ``joblib.Parallel`` with the Dask or Ray backend.

Every run of one ``(task, seed)`` gets the same data (``tasks.make_data`` with the seed),
inputs mapped affinely from the task's box to ``[-1, 1]^d`` and targets standardised with
the training mean and standard deviation; RMSEs are in those standardised units
(``rmse / std(y_train)`` of the raw target). The weights are drawn from a generator
seeded with the seed. Everything is float64 on one CPU thread by default.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import torch

from ..tasks import get_task
from .keys import run_key
from .methods import METHOD_CONFIG, get_method
from .result import base_row, utc_now
from .suites import Budget

__all__ = ["make_spec", "make_specs", "run_key", "run_one", "spec_label"]

_BIG_STEPS = 1_000_000_000  # "unlimited" steps under a time budget


def _hidden_for(method_model: str, dim: int, hidden: Sequence[int]) -> list[int]:
    """Hidden widths with the parameter count of a plain MLP of widths ``hidden``."""
    from ..baselines import PlainMLP, count_parameters, hidden_for_budget

    hidden = [int(h) for h in hidden]
    if method_model != "separated":
        return hidden
    if len(set(hidden)) != 1:
        raise ValueError("the separated nets' widths are matched for equal hidden widths only")
    n_params = count_parameters(PlainMLP(dim, hidden, 1))
    width = hidden_for_budget(dim, 1, len(hidden), n_params, per_neuron=3)
    return [width] * len(hidden)


def make_spec(
    task: str, method: str, seed: int, budget: Budget, *, n_train: int = 1000,
    n_test: int = 2000, hidden: Sequence[int] = (32, 32), grid_n: int = 64, threads: int = 1,
) -> dict[str, Any]:
    """The full, JSON-able description of one run (its hash is the run key)."""
    from ..train import TrainConfig

    t, m = get_task(task), get_method(method)
    widths = m.hidden if m.hidden is not None else _hidden_for(m.model, t.dim, hidden)
    spec: dict[str, Any] = {
        "task": t.name, "method": m.name, "seed": int(seed),
        "budget": budget.to_dict(),
        "data": {"n_train": int(n_train), "n_test": int(n_test), "standardise": True},
        "model": {"type": m.model, "activation": m.activation, "hidden": list(widths)},
        "grid_n": int(grid_n), "threads": int(threads),
    }
    if m.model == "kan":
        kan = dict(METHOD_CONFIG["kan"])
        spec["model"]["hidden"] = list(kan.pop("hidden"))
        spec["train"] = {**kan, "steps": budget.steps or _BIG_STEPS, "max_time": budget.seconds}
    elif m.model in ("sklearn", "estimator"):
        from .fitters import external_train_spec

        spec["model"], spec["train"] = external_train_spec(m, budget, seed, spec["model"])
    else:
        cfg = TrainConfig(**m.train_overrides())
        cfg.steps = budget.steps or _BIG_STEPS
        cfg.max_time = budget.seconds
        cfg.seed = int(seed)
        cfg.dtype = "float64"
        cfg.validate()
        spec["train"] = asdict(cfg)
        if m.then is not None:  # a second phase (tanh_adam_lbfgs): fitters.fit_then
            spec["then"] = m.then_overrides()
        if m.stages > 1:  # residual stages: fitters (sepneuron.stages.fit_stages)
            spec["stages"] = m.stages
            if m.stage_schedule != "even":  # (the even schedule's specs stay as they were)
                spec["stage_schedule"] = m.stage_schedule
        if m.select:  # a race of hidden sizes (sepneuron.selection.fit_select): fitters
            from ..settings import SELECT_MARGIN, SELECT_SHARE, SELECT_VALIDATION_FRACTION

            spec["select"] = {"hidden": [list(c) for c in m.select], "share": SELECT_SHARE,
                              "margin": SELECT_MARGIN,
                              "validation_fraction": SELECT_VALIDATION_FRACTION}
    return spec


def make_specs(
    tasks: Iterable[str], methods: Iterable[str], seeds: Iterable[int], budget: Budget, **kw: Any
) -> list[dict[str, Any]]:
    """Specs for every ``task x method x seed``, grouped by task and seed (shared data)."""
    tasks, methods, seeds = list(tasks), list(methods), list(seeds)
    return [make_spec(t, m, s, budget, **kw) for t in tasks for s in seeds for m in methods]


def spec_label(spec: dict[str, Any]) -> str:
    """``task/method/s<seed>``: how a run is named in the progress bar."""
    return f"{spec['task']}/{spec['method']}/s{spec['seed']}"


# -- one run -----------------------------------------------------------------------------------


def _data(spec: dict[str, Any]):
    """Standardised train, test and grid data of the spec's task and seed."""
    from ..tasks import grid, make_data

    task = get_task(spec["task"])
    f64 = torch.float64
    X, y, Xt, yt = make_data(task, spec["data"]["n_train"], spec["data"]["n_test"],
                             generator=spec["seed"], dtype=f64)
    Xg, yg = grid(task, spec["grid_n"], dtype=f64)
    low = torch.tensor(task.low, dtype=f64)
    high = torch.tensor(task.high, dtype=f64)

    def sx(x: torch.Tensor) -> torch.Tensor:  # box -> [-1, 1]^d
        return 2.0 * (x - low) / (high - low) - 1.0

    mu, sd = y.mean(), y.std()
    sd = sd if float(sd) > 0 else torch.ones((), dtype=f64)

    def sy(v: torch.Tensor) -> torch.Tensor:
        return (v - mu) / sd

    return (sx(X), sy(y), sx(Xt), sy(yt), sx(Xg), sy(yg)), float(mu), float(sd)


def _fit_torch(spec, data) -> dict[str, Any]:
    from ..baselines import PlainMLP, count_parameters
    from ..layers import SeparatedMLP
    from ..train import TrainConfig, fit

    X, y, Xt, yt, Xg, yg = data
    m = spec["model"]
    gen = torch.Generator().manual_seed(spec["seed"])
    dim = X.shape[1]
    model: torch.nn.Module
    if m["type"] == "separated":
        model = SeparatedMLP(dim, m["hidden"], 1, m["activation"], dtype=torch.float64,
                             generator=gen)
    else:
        model = PlainMLP(dim, m["hidden"], 1, m["activation"], dtype=torch.float64,
                         generator=gen)
    train = dict(spec["train"])
    train["conditioning"] = tuple(train.get("conditioning", ()))
    cfg = TrainConfig(**train)
    if "then" in spec:
        from .fitters import fit_then

        h = fit_then(model, X, y, cfg, spec["then"], X_test=Xt, y_test=yt)
    else:
        h = fit(model, X, y, cfg, X_test=Xt, y_test=yt)
    with torch.no_grad():
        err = (model(Xg) - yg).reshape(spec["grid_n"], spec["grid_n"])
    dead = h.dead_fraction[-1] if h.dead_fraction else []
    dead_max = max((max(d) for d in h.dead_fraction if d), default=None)
    return {
        "test_rmse": h.final_test_rmse,
        "train_rmse": h.train_rmse[-1] if h.train_rmse else math.nan,
        "train_time": h.time[-1] if h.time else 0.0,
        "steps": h.steps_done,
        "n_params": count_parameters(model),
        "dead_fraction": dead,
        "curve": {"eval_step": h.eval_step, "eval_time": h.eval_time,
                  "test_rmse": h.test_rmse, "train_rmse": h.train_rmse,
                  "dead_fraction": h.dead_fraction},
        "metrics": {"stop_reason": h.stop_reason, "events": h.events,
                    "dead_max": dead_max, "spread": h.spread[-1] if h.spread else []},
        "grid": err.to(torch.float32).numpy().tobytes(),
    }


def _fit_kan(spec, data) -> dict[str, Any]:
    from ..baselines import fit_kan, kan_available

    if not kan_available():
        raise _Skipped("pykan is not installed (pip install 'sepneuron[kan]')")
    X, y, Xt, yt, Xg, yg = data
    tr = dict(spec["train"])
    width = [X.shape[1], *spec["model"]["hidden"], 1]
    out = fit_kan(X, y, Xt, yt, width=width, grid=tr["grid"], k=tr["k"], steps=tr["steps"],
                  opt=tr["opt"], lr=tr["lr"], seed=spec["seed"], max_time=tr["max_time"])
    model = out["model"]
    with torch.no_grad():
        err = (model(Xg) - yg).reshape(spec["grid_n"], spec["grid_n"])
    times = torch.tensor(out["step_time"], dtype=torch.float64).cumsum(0).tolist()
    return {
        "test_rmse": out["test_rmse"], "train_rmse": out["train_rmse"],
        "train_time": out["wall_time"], "steps": out["steps_done"],
        "n_params": out["n_params"], "dead_fraction": [],
        # pykan evaluates the test set only at the end: a one-point test curve
        "curve": {"eval_step": [out["steps_done"]], "eval_time": [out["wall_time"]],
                  "test_rmse": [out["test_rmse"]], "train_rmse": [out["train_rmse"]],
                  "train_loss_time": times, "train_loss": out["train_loss"]},
        "metrics": {"stop_reason": "max_time" if out["timed_out"] else "steps"},
        "grid": err.to(torch.float32).numpy().tobytes(),
    }


class _Skipped(Exception):
    """The method cannot run here (an optional dependency is missing)."""


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run; return its result row (never raises for a failing run).

    The row has the spec's ``task``, ``method``, ``seed``, ``key`` and ``config`` (the
    spec), ``status`` (``"ok"``, ``"error"`` with ``error`` set, or ``"skipped"``), the
    metrics (``test_rmse``, ``train_rmse``, ``train_time``, ``wall_time``, ``steps``,
    ``n_params``, ``dead_fraction``), the ``curve``, the error map ``grid`` (float32 bytes,
    ``grid_n x grid_n``), ``versions`` and ``threads``.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(int(spec.get("threads", 1)))
    row = {**base_row(spec), "status": "ok", "metrics": {},
           "threads": torch.get_num_threads()}
    try:
        data, mu, sd = _data(spec)
        from .fitters import fitter_for

        kind = spec["model"]["type"]
        fitter = fitter_for(spec) or (_fit_kan if kind == "kan" else _fit_torch)
        row.update(fitter(spec, data))
        row["metrics"] = {**row["metrics"], "y_mean": mu, "y_std": sd}
    except _Skipped as e:
        row["status"], row["error"] = "skipped", str(e)
    except Exception as e:  # noqa: BLE001 - a failing run is a result, not a crash
        tb = traceback.format_exc(limit=6)
        row["status"], row["error"] = "error", f"{type(e).__name__}: {e}\n{tb}"
    row["wall_time"] = time.perf_counter() - t0
    row["finished_at"] = utc_now()
    return row
