"""Precision mode: residual stages in float64 (issue 12, item 4).

For each task: 10,000 training and 10,000 test points (the bench's scaling: inputs in
[-1, 1]^d, targets standardised, so the test RMSE is relative to the target's spread),
``fit_stages`` with LM on the hidden weights and the exact output layer, ``init="data"``,
a plateau stop, ``--time`` seconds for all stages together. Prints the relative test and
training RMSE of the sum after each stage, with the steps and seconds each stage used.

    PYTHONPATH=src python benchmarks/precision.py --time 120 --stages 3 --hidden 24 24
    PYTHONPATH=src python benchmarks/precision.py --time 120 --stages 3 --hidden 12 12 \
        --schedule plateau
    PYTHONPATH=src python benchmarks/precision.py --time 120 --hidden 20 20 --estimator
    PYTHONPATH=src python benchmarks/precision.py --time 120 --stages 3 --hidden 20 20 \
        --schedule plateau --coarse-fraction 0.2
"""

from __future__ import annotations

import argparse
import time

import torch

from sepneuron.baselines import PlainMLP
from sepneuron.bench.runner import _data
from sepneuron.stages import fit_stages
from sepneuron.train import TrainConfig


def _task_data(task: str, args) -> tuple[torch.Tensor, ...]:
    """``(X, y, X_test, y_test)``: ``--n`` points each, the bench's scaling."""
    spec = {"task": task, "seed": args.seed, "grid_n": 8,
            "data": {"n_train": args.n, "n_test": args.n}}
    (X, y, Xt, yt, _, _), _, _ = _data(spec)
    return X, y, Xt, yt


def _rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(((pred - target) ** 2).mean().sqrt())


def _header(count: str) -> None:
    print(f"| task | {count} | steps | seconds | stop | train RMSE (rel.) | test RMSE (rel.) |")
    print("|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["kan_exp", "smooth_3d"])
    ap.add_argument("--time", type=float, default=120.0, help="seconds for all stages")
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--hidden", nargs="+", type=int, default=[24, 24])
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--n", type=int, default=10_000, help="training (and test) points")
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-layer", choices=("lstsq", "optimizer", "auto"), default="lstsq",
                    help="TrainConfig.output_layer of each stage (lstsq: the exact output "
                    "layer, what docs/varpro.md measured; optimizer: LM on every parameter)")
    ap.add_argument("--schedule", choices=("even", "plateau"), default="even",
                    help="even: each stage gets time/stages; plateau: the stages share the "
                    "time and a next one starts only after a plateau (sepneuron.stages)")
    ap.add_argument("--coarse-fraction", type=float, default=None,
                    help="TrainConfig.coarse_fraction of each stage: its first third on this "
                    "random share of the rows (sepneuron.fitting.coarse); default: off")
    ap.add_argument("--estimator", action="store_true",
                    help="SeparatedMLPRegressor(kind=--activation, hidden_layer_sizes=--hidden, "
                    "max_time=--time, max_steps=10**9) with its other defaults "
                    "(stages='auto', patience 50, its own z-scores of the inputs) instead of "
                    "fit_stages; --stages, --patience and "
                    "--schedule are then unused")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.estimator:
        return _estimator(args)
    print(f"stages={args.stages} hidden={args.hidden} {args.activation} n={args.n} "
          f"time={args.time:g} s patience={args.patience} seed={args.seed} "
          f"schedule={args.schedule} output_layer={args.output_layer} "
          f"coarse_fraction={args.coarse_fraction}\n")
    _header("stage")
    for task in args.tasks:
        X, y, Xt, yt = _task_data(task, args)

        def make(stage: int, dim: int = X.shape[1]) -> PlainMLP:
            return PlainMLP(dim, args.hidden, 1, args.activation, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1000 * args.seed + stage))

        cfg = TrainConfig(optimizer="lm", output_layer=args.output_layer, init="data", rule=None,
                          steps=10**9, max_time=args.time, patience=args.patience,
                          eval_every=10**9, diagnostics=False, seed=args.seed,
                          coarse_fraction=args.coarse_fraction)
        t0 = time.perf_counter()
        model, histories = fit_stages(make, X, y, cfg, stages=args.stages, X_test=Xt, y_test=yt,
                                       schedule=args.schedule)
        wall = time.perf_counter() - t0
        out_tr, out_te = torch.zeros_like(y), torch.zeros_like(yt)
        with torch.no_grad():
            kept = [h for h in histories
                    if not any(e.get("event") == "stage not added" for e in h.events)]
            for i, (stage, h) in enumerate(zip(model.stages, kept, strict=True)):
                out_tr, out_te = out_tr + stage(X), out_te + stage(Xt)
                tr, te = _rmse(out_tr, y), _rmse(out_te, yt)
                secs = h.time[-1] if h.time else 0.0
                print(f"| `{task}` | {i + 1} | {h.steps_done} | {secs:.0f} | {h.stop_reason} "
                      f"| {tr:.2e} | {te:.2e} |", flush=True)
        if len(histories) > len(model.stages):
            print(f"| `{task}` | (stages left out: {len(histories) - len(model.stages)}) "
                  f"| | | | | |")
        print(f"<!-- {task}: {wall:.0f} s wall in all -->")
    return 0


def _estimator(args) -> int:
    from sepneuron import SeparatedMLPRegressor

    print(f"SeparatedMLPRegressor(kind={args.activation!r}, hidden_layer_sizes="
          f"{tuple(args.hidden)}, max_time={args.time:g}, max_steps=10**9, "
          f"random_state={args.seed}) "
          f"n={args.n}\n")
    _header("stages")
    for task in args.tasks:
        X, y, Xt, yt = _task_data(task, args)
        reg = SeparatedMLPRegressor(kind=args.activation, hidden_layer_sizes=tuple(args.hidden),
                                    max_time=args.time, max_steps=10**9,
                                    random_state=args.seed)
        reg.fit(X.numpy(), y[:, 0].numpy())
        tr = _rmse(torch.from_numpy(reg.predict(X.numpy())), y[:, 0])
        te = _rmse(torch.from_numpy(reg.predict(Xt.numpy())), yt[:, 0])
        secs = sum(h.time[-1] for h in reg.histories_ if h.time)
        print(f"| `{task}` | {len(reg.histories_)} | {reg.n_iter_} | {secs:.0f} | "
              f"{reg.histories_[-1].stop_reason} | {tr:.2e} | {te:.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
