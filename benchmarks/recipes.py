"""Training recipes at equal wall time on the quick suite's tasks (issue 12's measurements).

Each recipe is a model (plain or separated MLP of the parameter count of a [32, 32] MLP)
and a TrainConfig; every (task, seed) gets the bench's data (1000 train / 2000 test points,
inputs mapped to [-1, 1]^d, targets standardised, as ``sepneuron.bench.runner._data``).
Prints median test RMSE (over seeds) per task and recipe, the median step count, and the
ratio of each recipe to the first one named. Recipes are run interleaved (for each task and
seed, every recipe), so machine load hits them alike; one thread per run.

    PYTHONPATH=src python benchmarks/recipes.py --time 8 --seeds 0 1 2 \
        --recipes tanh_lbfgs tanh_lm_lstsq sep_softplus_lm_lstsq_grad
    PYTHONPATH=src python benchmarks/recipes.py --list

Precision mode (residual stages) is ``benchmarks/precision.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import types
from typing import Any

import torch

import sepneuron.fitting.loop as fit_loop
from sepneuron.baselines import PlainMLP, count_parameters, hidden_for_budget
from sepneuron.bench.fitters import fit_then
from sepneuron.bench.runner import _data
from sepneuron.layers import SeparatedMLP
from sepneuron.selection import fit_select
from sepneuron.stages import fit_stages
from sepneuron.tasks import TASKS as ALL_TASKS
from sepneuron.train import Callback, TrainConfig, fit

TASKS = ("kan_exp", "radial_sin_2pi", "kink_abs", "smooth_3d")
TASK_GROUPS = {"quick": TASKS, "paper": tuple(ALL_TASKS),
               "smooth": tuple(n for n, t in ALL_TASKS.items() if t.smooth)}

# name -> (model: "tanh" | "softplus" | "sep_softplus" | "sep_relu", TrainConfig fields)
_LM = {"optimizer": "lm", "output_layer": "lstsq"}
_RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "tanh_lbfgs": ("tanh", {"optimizer": "lbfgs", "lr": 1.0, "rule": None}),
    "tanh_lbfgs_lstsq": ("tanh", {"optimizer": "lbfgs", "lr": 1.0, "rule": None,
                                  "output_layer": "lstsq"}),
    "tanh_lm": ("tanh", {"optimizer": "lm", "rule": None, "weight_decay": 0.0,  # bench's
                         "relative_weight_decay": 0.0}),
    "tanh_lm_lstsq": ("tanh", {**_LM, "rule": None}),
    "tanh_lm_lstsq_data": ("tanh", {**_LM, "rule": None, "init": "data"}),
    "softplus_lm_lstsq": ("softplus", {**_LM, "rule": None}),
    "softplus_lm_lstsq_data": ("softplus", {**_LM, "rule": None, "init": "data"}),
    "sep_softplus_lm_lstsq_grad": ("sep_softplus", {**_LM, "rule": "grad"}),
    "sep_softplus_lm_lstsq_grad_data": ("sep_softplus", {**_LM, "rule": "grad", "init": "data"}),
    "sep_softplus_lm_lstsq_gauss_newton": ("sep_softplus", {**_LM, "rule": "gauss_newton"}),
    "sep_softplus_lm_lstsq_gauss_newton_data": ("sep_softplus", {**_LM, "rule": "gauss_newton",
                                                                 "init": "data"}),
    "sep_softplus_lm_lstsq_newton_data": ("sep_softplus", {**_LM, "rule": "newton",
                                                           "init": "data"}),
    "sep_softplus_lm_lstsq_fixed_data": ("sep_softplus", {**_LM, "rule": None, "init": "data"}),
    "sep_relu_lm_lstsq_grad_data": ("sep_relu", {**_LM, "rule": "grad", "init": "data"}),
    "sep_softplus_adam_gauss_newton": ("sep_softplus", {"optimizer": "adam",
                                                        "rule": "gauss_newton"}),
    # the same with a tuner step (and its statistics) every k-th Adam step only
    **{f"sep_softplus_adam_gauss_newton_every{k}": (
        "sep_softplus", {"optimizer": "adam", "rule": "gauss_newton", "tune_every": k})
       for k in (2, 4)},
    # the bench's strongest peer: Adam for 30 % of the budget, then float64 L-BFGS
    "tanh_adam_lbfgs": ("tanh", {"optimizer": "adam", "lr": 3e-3, "rule": None,
                                 "then": {"optimizer": "lbfgs", "lr": 1.0, "share": 0.3}}),
    "tanh_lm_lstsq_default_init": ("tanh", {**_LM, "rule": None, "init": "default"}),
}

# the headline's residual stages (the estimator's stages="auto")
_PLATEAU = {"stages": 3, "stage_schedule": "plateau", "patience": 50}

# the hidden sizes of the race recipes (default_select*)
_RACE = ((12, 12), (64,))

# TrainConfig() exactly as it is (the library's default recipe), and variants of it
DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("tanh", {}),
    "default_init_default": ("tanh", {"init": "default"}),
    # the Tikhonov term of LM: w = weight_decay + relative_weight_decay * MSE (default 0, 1e-4)
    "default_wd0": ("tanh", {"weight_decay": 0.0, "relative_weight_decay": 0.0}),
    "default_wd1e-9": ("tanh", {"weight_decay": 1e-9, "relative_weight_decay": 0.0}),  # before
    "default_wd1e-8": ("tanh", {"weight_decay": 1e-8, "relative_weight_decay": 0.0}),
    "default_rel1e-3": ("tanh", {"relative_weight_decay": 1e-3}),
    # LM on every parameter, the output layer included (no variable projection)
    "default_no_projection": ("tanh", {"output_layer": "optimizer"}),
    "default_no_projection_wd0": ("tanh", {"output_layer": "optimizer", "weight_decay": 0.0,
                                           "relative_weight_decay": 0.0}),
    # the relative ridge of the exact output layer's solve (default 1e-12)
    "default_ridge1e-14": ("tanh", {"ridge": 1e-14}),
    "default_ridge1e-16": ("tanh", {"ridge": 1e-16}),
    # residual stages (sepneuron.stages.fit_stages): up to 3 after plateaus in one budget
    # (the estimator's stages="auto"), or 2 that split the time evenly
    "default_stages_plateau": ("tanh", _PLATEAU),
    "default_stages_even2": ("tanh", {"stages": 2}),
    # the headline recipe (plateau stages) with a stronger Tikhonov term in LM
    **{f"default_stages_plateau_rel{r}": ("tanh", {**_PLATEAU, "relative_weight_decay": r})
       for r in (1e-3, 1e-2, 1e-1)},
    # one network on 90 % of the data; the other 10 % sets LM's Tikhonov weight:
    # rho * clip(MSE_val / MSE_train, 1, cap) (cap 0: held out, not used)
    "default_holdout": ("tanh", {"gap_cap": 0}),
    **{f"default_gap{c}": ("tanh", {"gap_cap": c}) for c in (100, 1000)},
    # the headline recipe on inputs of unit variance (the estimator's z-scores), not [-1, 1]
    "default_stages_plateau_zscore": ("tanh", {**_PLATEAU, "input_scale": 3 ** 0.5}),
    # choose the network by a hold-out race: each candidate trained for `share` of the time
    # on 85 % of the points, the one with the lowest validation MSE continued on all points
    # (plateau stages) for the time left
    **{f"default_select{int(100 * s)}": ("tanh", {**_PLATEAU, "select": _RACE, "select_share": s})
       for s in (0.1, 0.2, 0.3, 0.4)},
    # the same, but [64] must beat [12, 12] by a factor 10 in validation MSE to be chosen
    **{f"default_select{int(100 * s)}_m10": ("tanh", {**_PLATEAU, "select": _RACE,
                                                      "select_share": s, "select_margin": 10.0})
       for s in (0.1, 0.2)},
    # the headline (race share 0.2, margin 10) with LM on every parameter, no projection,
    # and with the projected step on both candidates (the default before output_layer="auto")
    **{f"default_select20_m10_{name}": ("tanh", {**_PLATEAU, "select": _RACE,
                                                 "select_share": 0.2, "select_margin": 10.0,
                                                 "output_layer": layer})
       for name, layer in (("noproj", "optimizer"), ("lstsq", "lstsq"))},
    # the race with the projected step, the winner trained on as output_layer="auto" says
    "default_select20_m10_race_lstsq": ("tanh", {**_PLATEAU, "select": _RACE,
                                                 "select_share": 0.2, "select_margin": 10.0,
                                                 "race_output_layer": "lstsq"}),
}


# Every recipe names output_layer and init (TrainConfig's defaults are themselves a recipe).
RECIPES = {name: (model, {"output_layer": "optimizer", "init": "default", **fields})
           for name, (model, fields) in _RECIPES.items()}
RECIPES.update(DEFAULTS)


def build(model: str, dim: int, seed: int, hidden=(32, 32)) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    if model.startswith("sep_"):
        n_params = count_parameters(PlainMLP(dim, list(hidden), 1))
        width = hidden_for_budget(dim, 1, len(hidden), n_params, per_neuron=3)
        return SeparatedMLP(dim, [width] * len(hidden), 1, model[4:], dtype=f64, generator=gen)
    return PlainMLP(dim, list(hidden), 1, model, dtype=f64, generator=gen)


class _GapDecay(Callback):
    """Before each LM step: ``rho_step = rho * clip(MSE_val / MSE_train, 1, cap)``."""

    def __init__(self, Xv, yv, rho: float, cap: float) -> None:
        self.Xv, self.yv, self.rho, self.cap = Xv, yv, rho, cap

    def on_step_begin(self, run) -> None:
        with torch.no_grad():
            mv = float((run.model(self.Xv) - self.yv).pow(2).mean())
            mt = float((run.model(run.X) - run.y).pow(2).mean())
        ratio = min(max(mv / max(mt, 1e-300), 1.0), self.cap)
        for group in run.optimizer.param_groups:
            group["relative_weight_decay"] = self.rho * ratio


def _run_select(model_name: str, fields: dict[str, Any], X, y, Xt, yt, seed: int,
                seconds: float) -> tuple[float, int]:
    """The hold-out race of the ``default_select*`` recipes (sepneuron.fit_select)."""
    candidates, share = fields.pop("select"), fields.pop("select_share")
    race_layer = fields.pop("race_output_layer", None)  # ad hoc: the race's own output layer
    if race_layer is not None:
        import sepneuron.selection as selection_module
        plain_race_config = selection_module._race_config
        selection_module._race_config = lambda c, s: dataclasses.replace(
            plain_race_config(c, s), output_layer=race_layer)
    margin = fields.pop("select_margin", 1.0)
    stages, schedule = fields.pop("stages"), fields.pop("stage_schedule")
    cfg = TrainConfig(**{"steps": 10**9, "max_time": seconds, "eval_every": 10**9,
                         "diagnostics": False, "seed": seed, **fields})
    makers = [lambda i, h=h: build(model_name, X.shape[1], seed + 100 * i, h) for h in candidates]
    staged, hs, sel = fit_select(makers, X, y, cfg, share=share, margin=margin, stages=stages,
                                 schedule=schedule)
    with torch.no_grad():
        rmse = float((staged(Xt) - yt).pow(2).mean().sqrt())
    print(f"#   chose {list(candidates[sel.chosen])} (validation MSEs "
          + ", ".join(f"{list(h)}: {v:.2e}" for h, v in zip(candidates, sel.validation_mse,
                                                                   strict=True))
          + ")", file=sys.stderr, flush=True)
    return rmse, sel.steps + sum(h.steps_done for h in hs)


def run_one(recipe: str, task: str, seed: int, seconds: float,
            hidden: tuple[int, ...] = (32, 32)) -> tuple[float, int]:
    spec = {"task": task, "seed": seed, "grid_n": 8, "data": {"n_train": 1000, "n_test": 2000}}
    (X, y, Xt, yt, _, _), _, _ = _data(spec)
    model_name, fields = RECIPES[recipe]
    model = build(model_name, X.shape[1], seed, hidden)
    fields = dict(fields)
    if "select" in fields:
        return _run_select(model_name, fields, X, y, Xt, yt, seed, seconds)
    then = fields.pop("then", None)
    stages, schedule = fields.pop("stages", 1), fields.pop("stage_schedule", "even")
    scale = fields.pop("input_scale", 1.0)  # inputs on [-scale, scale]^d instead of [-1, 1]^d
    X, Xt = X * scale, Xt * scale
    gap_cap = fields.pop("gap_cap", None)  # LM's rho times the validation gap (capped)
    if gap_cap is not None and (stages > 1 or then is not None):
        raise ValueError(f"{recipe}: gap_cap is for one network fitted by fit()")
    if gap_cap is not None:
        perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
        n_val = X.shape[0] // 10
        Xv, yv, X, y = X[perm[:n_val]], y[perm[:n_val]], X[perm[n_val:]], y[perm[n_val:]]
    cfg = TrainConfig(**{"steps": 10**9, "max_time": seconds, "eval_every": 10**9,
                         "diagnostics": False, "seed": seed, **fields})
    callbacks = [_GapDecay(Xv, yv, cfg.relative_weight_decay, gap_cap)] \
        if gap_cap is not None and gap_cap > 0 else []
    if stages > 1:
        def make_model(i: int) -> torch.nn.Module:
            return model if i == 0 else build(model_name, X.shape[1], seed + 100 * i, hidden)

        staged, hs = fit_stages(make_model, X, y, cfg, stages=stages, schedule=schedule)
        with torch.no_grad():
            rmse = float((staged(Xt) - yt).pow(2).mean().sqrt())
        return rmse, sum(h.steps_done for h in hs)
    if then is not None:
        h = fit_then(model, X, y, cfg, then, X_test=Xt, y_test=yt)
    else:
        h = fit(model, X, y, cfg, X_test=Xt, y_test=yt, callbacks=callbacks)
    return h.final_test_rmse, h.steps_done


def use_thread_clock() -> None:
    """Make ``fit``'s ``max_time`` count this thread's CPU time (``time.thread_time``), not
    wall time, so that runs on a shared machine get the same compute whatever the load."""
    fit_loop.time = types.SimpleNamespace(perf_counter=time.thread_time)  # type: ignore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["tanh_lbfgs", "tanh_lm_lstsq"])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS),
                    help="task names, or a group: " + ", ".join(TASK_GROUPS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--time", type=float, default=8.0, help="seconds of training per run")
    ap.add_argument("--hidden", nargs="+", type=int, default=[32, 32],
                    help="hidden widths of the plain nets (separated ones: same parameter count)")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="what --time counts: wall time, or this thread's CPU time "
                    "(time.thread_time; for a shared machine)")
    args = ap.parse_args(argv)
    args.tasks = [t for name in args.tasks for t in TASK_GROUPS.get(name, (name,))]
    if args.clock == "thread":
        use_thread_clock()
    if args.list:
        for name, (model, fields) in RECIPES.items():
            print(f"{name:42s} {model:13s} {fields}")
        return 0
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        ap.error(f"unknown recipes {unknown}; --list shows them")
    torch.set_num_threads(1)
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    t0 = time.perf_counter()
    for task in args.tasks:
        for seed in args.seeds:
            for recipe in args.recipes:
                rmse, steps = run_one(recipe, task, seed, args.time, tuple(args.hidden))
                results.setdefault((recipe, task), []).append((rmse, steps))
                print(f"# {task} seed {seed} {recipe}: test RMSE {rmse:.3e}, {steps} steps",
                      file=sys.stderr, flush=True)
    print(f"median test RMSE over seeds {args.seeds} at {args.time:g} s "
          f"on hidden {args.hidden} (median steps in brackets); ratio: first recipe / this one "
          f"({time.perf_counter() - t0:.0f} s in all)\n")
    print("| recipe | " + " | ".join(f"`{t}`" for t in args.tasks) + " |")
    print("|---|" + "---|" * len(args.tasks))
    ref = args.recipes[0]
    for recipe in args.recipes:
        cells = []
        for task in args.tasks:
            rows = results[(recipe, task)]
            med = statistics.median(r for r, _ in rows)
            steps = int(statistics.median(s for _, s in rows))
            base = statistics.median(r for r, _ in results[(ref, task)])
            cells.append(f"{med:.2e} ({steps}) {base / med:.2g}x")
        print(f"| `{recipe}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
