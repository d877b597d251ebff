"""Ablation of the conditioning components (paper subtasks 3, 7-10) on separated networks.

For each task, separated kind (ReLU / SoftPlus analog) and seed, trains the same network
with rule "newton" and TrainConfig defaults (Adam, lr 3e-3, float64, full batch) under:
no component, each component alone, and all of them together. Reports, per cell, the
median over seeds of the final test RMSE, and the time (and steps) to reach the
no-component run's final test RMSE of the same seed ("time-to-target"; a run that never
gets there, or stops on repeated non-finite losses, counts as infinite). Writes a
markdown table to --out (atomically) and prints it.

    python benchmarks/ablation_conditioning.py --out runs/ablation_conditioning.md
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sepneuron import History, SeparatedMLP, TrainConfig, fit
from sepneuron.conditioning import CONDITIONERS
from sepneuron.tasks import make_data

NAMES = ("spread_directions", "compensate", "normalize_activations", "normalize_deltas",
         "orthogonalize")
CONFIGS: dict[str, tuple[str, ...]] = {"none": (), **{n: (n,) for n in NAMES}, "all": NAMES}


def run_one(spec: dict) -> dict:
    """Train one network; returns the test-RMSE curve against training time and steps."""
    torch.set_num_threads(1)
    X, y, Xt, yt = make_data(spec["task"], spec["n_train"], spec["n_test"],
                             generator=1000 + spec["seed"])
    model = SeparatedMLP(X.shape[1], spec["hidden"], 1, spec["kind"], dtype=torch.float64,
                         generator=torch.Generator().manual_seed(spec["seed"]))
    cfg = TrainConfig(steps=spec["steps"], eval_every=spec["eval_every"], diagnostics=False,
                      conditioning=CONFIGS[spec["config"]], seed=spec["seed"], **spec["opt"])
    seen: list = []

    def keep(step: int, hist) -> None:
        seen[:] = [hist]

    try:
        h, failed = fit(model, X, y, cfg, X_test=Xt, y_test=yt, callback=keep), False
    except FloatingPointError:  # gave up after repeated non-finite losses: counts as never
        h, failed = (seen[0] if seen else History()), True
    return {**spec, "rmse": h.test_rmse, "time": h.eval_time, "step": h.eval_step,
            "final": math.inf if failed else h.final_test_rmse, "failed": failed,
            "train_time": h.time[-1] if h.time else 0.0}


def first_reach(run: dict, target: float) -> tuple[float, float]:
    """(time, step) of the first evaluation with test RMSE <= target; inf if never."""
    for r, t, s in zip(run["rmse"], run["time"], run["step"], strict=True):
        if math.isfinite(r) and r <= target:
            return t, float(s)
    return math.inf, math.inf


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def _ratio(x: float, base: float | None) -> float:
    """x / base; inf if x is; nan if base is not a positive finite number."""
    if base is None or not (math.isfinite(base) and base > 0):
        return math.nan
    return x / base


def _geomean(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else math.inf


def _fmt(x: float, spec: str = ".3g") -> str:
    return "never" if x == math.inf else ("nan" if math.isnan(x) else format(x, spec))


def table(runs: list[dict], args: argparse.Namespace, wall: float) -> str:
    by = {(r["task"], r["kind"], r["config"], r["seed"]): r for r in runs}
    lines = [
        "| task | kind | components | final test RMSE (median) | vs none | "
        "time-to-target s (median) | vs none | steps-to-target (median) | reached | failed | "
        "s/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CONFIGS}
    for task in args.tasks:
        for kind in args.kinds:
            base_rmse = _median([by[task, kind, "none", s]["final"] for s in args.seeds])
            base_ttt = base_stt = None
            for config in CONFIGS:
                rs = [by[task, kind, config, s] for s in args.seeds]
                reach = [first_reach(r, by[task, kind, "none", r["seed"]]["final"]) for r in rs]
                ttt = _median([t for t, _ in reach])
                stt = _median([s for _, s in reach])
                rmse = _median([r["final"] for r in rs])
                per_step = _median([r["train_time"] / max(r["step"][-1] if r["step"] else 0, 1)
                                    for r in rs])
                if config == "none":
                    base_ttt, base_stt = ttt, stt
                ratio_t, ratio_s = _ratio(ttt, base_ttt), _ratio(stt, base_stt)
                summary[config].append((rmse / base_rmse, ratio_t, ratio_s))
                n_reach = sum(math.isfinite(t) for t, _ in reach)
                n_fail = sum(r["failed"] for r in rs)
                lines.append(
                    f"| {task} | {kind} | {config} | {_fmt(rmse)} | "
                    f"{_fmt(rmse / base_rmse, '.2f')} | "
                    f"{_fmt(ttt, '.2f')} | {_fmt(ratio_t, '.2f')} | {_fmt(stt, '.0f')} | "
                    f"{n_reach}/{len(rs)} | {n_fail} | {per_step * 1e3:.2f} ms |"
                )
    lines += ["", "Summary over the task x kind cells (geometric mean of the median ratios to "
              "'none'; < 1 is better; time and step ratios over the cells where the median run "
              "reached the target):",
              "", "| components | RMSE ratio | time-to-target ratio | steps-to-target ratio | "
              "cells better RMSE | cells reached |",
              "|---|---|---|---|---|---|"]
    for config, cells in summary.items():
        gm = _geomean([r for r, _, _ in cells])
        fin = [(t, s) for _, t, s in cells if math.isfinite(t) and math.isfinite(s)]
        better = sum(r < 1 for r, _, _ in cells)
        lines.append(f"| {config} | {gm:.2f} | {_fmt(_geomean([t for t, _ in fin]), '.2f')} | "
                     f"{_fmt(_geomean([s for _, s in fin]), '.2f')} | {better}/{len(cells)} | "
                     f"{len(fin)}/{len(cells)} |")
    opt = ", ".join(f"{k}={v}" for k, v in _optimizer_options(args).items()) or "Adam lr 3e-3"
    lines += ["", f"Setup: SeparatedMLP(in, {list(args.hidden)}, 1), rule 'newton', TrainConfig "
              f"defaults ({opt}; full batch, float64), {args.steps} steps, test RMSE every "
              f"{args.eval_every} steps; n_train {args.n_train}, n_test {args.n_test}; seeds "
              f"{list(args.seeds)} (data and init); {args.workers} worker processes, "
              f"1 thread each; "
              f"wall time {wall:.0f} s. torch {torch.__version__}."]
    return "\n".join(lines) + "\n"


def _optimizer_options(args: argparse.Namespace) -> dict:
    """TrainConfig fields given on the command line (the rest stay at their defaults)."""
    keys = ("optimizer", "lr", "momentum")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="markdown file to write (atomically)")
    p.add_argument("--tasks", nargs="+", default=["sin_cos", "kan_exp", "abs_planes_3d"])
    p.add_argument("--kinds", nargs="+", default=["relu", "softplus"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-test", type=int, default=1024)
    p.add_argument("--hidden", nargs="+", type=int, default=[24, 24])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--optimizer", default=None, help="TrainConfig.optimizer (default: its default)")
    p.add_argument("--lr", type=float, default=None, help="TrainConfig.lr (default: its default)")
    p.add_argument("--momentum", type=float, default=None, help="TrainConfig.momentum")
    args = p.parse_args(argv)
    assert set(NAMES) == set(CONDITIONERS), "a component is missing from the ablation"
    specs = [dict(task=t, kind=k, config=c, seed=s, steps=args.steps, eval_every=args.eval_every,
                  n_train=args.n_train, n_test=args.n_test, hidden=list(args.hidden),
                  opt=_optimizer_options(args))
             for t in args.tasks for k in args.kinds for s in args.seeds for c in CONFIGS]
    t0 = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = list(pool.imap_unordered(run_one, specs))
    else:
        runs = [run_one(s) for s in specs]
    text = table(runs, args, time.perf_counter() - t0)
    if args.out is not None:
        write_atomic(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
