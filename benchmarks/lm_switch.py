"""The default recipe's LM on every parameter, from the race or from scratch, per task.

``--race``: :func:`~sepneuron.fit_select` as the bench's ``sepneuron_default`` calls it
(``[12, 12]`` and ``[64]``, share 0.2, margin 10, up to 3 stages after plateaus of 50
steps); without it, ``fit`` of one ``[12, 12]`` tanh MLP with ``TrainConfig()``'s defaults
(``output_layer="auto"``: LM on every parameter). Prints, per task, the median over seeds
of the test RMSE (the task's own units: ``tasks.make_data``, 1000 training and 2000 test
points) and on how many seeds the winner's first fit after the race raised its training
MSE by more than 1 % above where it started on all rows (``rose``). Run it at two commits
to compare them (docs/varpro.md: the Tikhonov term and the output layer):

    PYTHONPATH=src python benchmarks/lm_switch.py --race --time 8 --seeds 0 1 2 3
    PYTHONPATH=src python benchmarks/lm_switch.py --time 8 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import statistics

import torch

from sepneuron import TrainConfig, fit, fit_select
from sepneuron.baselines import PlainMLP
from sepneuron.tasks import TASKS, get_task, make_data


def _run(task: str, seed: int, args) -> tuple[float, bool]:
    X, y, Xt, yt = make_data(get_task(task), 1000, 2000, generator=seed)

    def factory(hidden):
        return lambda i: PlainMLP(X.shape[1], hidden, 1, "tanh", dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(seed + 1000 * i))
    cfg = TrainConfig(max_time=args.time, steps=10**9, seed=seed)
    rose = False
    if args.race:
        cfg.patience = 50
        model, histories, _ = fit_select([factory([12, 12]), factory([64])], X, y, cfg,
                                           share=0.2, margin=10, stages=3, schedule="plateau")
        first = histories[0].loss if histories else []   # the winner on all rows
        rose = bool(first) and max(first) > 1.01 * first[0]
    else:
        model = factory([12, 12])(0)
        fit(model, X, y, cfg)
    with torch.no_grad():
        return float(((model(Xt) - yt) ** 2).mean().sqrt()), rose


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--race", action="store_true", help="fit_select as the default recipe")
    ap.add_argument("--time", type=float, default=8.0, help="seconds per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for task in args.tasks:
        runs = [_run(task, s, args) for s in args.seeds]
        print(f"{task:16s} median test RMSE {statistics.median(r for r, _ in runs):.3g}  "
              f"rose on {sum(rose for _, rose in runs)}/{len(runs)} seeds", flush=True)


if __name__ == "__main__":
    main()
