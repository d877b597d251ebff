"""Time per training step: separated MLP + tuner vs the plain MLP of the same family.

For each analog (``--kinds``) and size (hidden width x batch; two hidden layers, 2 inputs,
1 output, Adam):

* ``plain``: ``PlainMLP`` with the plain activation of the same family (``nn.ReLU`` for the
  ReLU analog, ``nn.Softplus`` for the SoftPlus analog): forward + backward + Adam;
* ``separated``: ``SeparatedMLP`` with Adam on the weights and ``SeparatedTuner`` (rule
  ``--rule``, default ``gauss_newton``) on ``q``, ``c``, ``d``: the README's loop.

The two are timed in alternating repeats (plain, separated, plain, ...) and the medians
compared, so that the ratio holds under a changing machine load. On the CPU the clock is
the thread's CPU time (``time.thread_time``): other processes on a shared machine then
slow a step only through the caches and memory bandwidth, not by taking the core.
``--compile`` is refused: the tuner's hooks record nothing inside a compiled graph (a
compiled separated step would leave the tuner's statistics out, and ``SeparatedTuner.step``
raises). The table says whether ``q, c, d`` moved in the first step.

``--tune-every K`` mirrors ``TrainConfig.tune_every = K``: the tuner records statistics and
steps on every ``K``-th step only (the separated time is then the mean over steps; the
breakdown's parts are those of a tuned step).

``--breakdown`` adds where the separated step's time goes: forward + backward without
the tuner, the same with the tuner's hooks (statistics included), Adam, and the rest
(``tuner.step``: the separated step less those).

    python benchmarks/throughput.py --device cpu --dtype float64 --threads 1 \
        --sizes 32x1000 256x8000 --breakdown
    python benchmarks/throughput.py --device cpu --dtype float64 --threads 1 \
        --sizes 32x1000 256x8000 --tune-every 4
    python benchmarks/throughput.py --device cuda --widths 64 256 1024 --batches 1000 64000
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sepneuron import SeparatedMLP, SeparatedTuner
from sepneuron.baselines import PlainMLP

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> Callable[[], float]:
    """CPU time of this thread on the CPU (robust to other processes' load on a shared
    machine; equal to wall time on an idle one with one thread), wall time on a GPU."""
    return time.thread_time if device.type == "cpu" else time.perf_counter


def _timed(step: Callable[[], object], device: torch.device, steps: int) -> float:
    clock = _clock(device)
    _sync(device)
    t0 = clock()
    for _ in range(steps):
        step()
    _sync(device)
    return (clock() - t0) / steps


def alternating(steps_by_name: dict[str, Callable[[], object]], device: torch.device,
                steps: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, timed in alternating repeats after warm-up."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps_by_name}
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            times[name].append(_timed(step, device, steps))
    return {k: statistics.median(v) for k, v in times.items()}


def _data(batch: int, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 2, generator=g, dtype=dtype) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * x[:, 1:]
    return x.to(device), y.to(device)


def _train_step(model, opt, x, y, tuner=None, every: int = 1) -> Callable[[], None]:
    """One Adam step; with a tuner, its step on every ``every``-th call (counted from 0),
    recording statistics only then (what ``fit`` does with ``tune_every``)."""
    calls = itertools.count()

    def step() -> None:
        tune = tuner is not None and next(calls) % every == 0
        opt.zero_grad()
        if tuner is not None:
            tuner.zero_grad()
            tuner.recording = tune
        F.mse_loss(model(x), y).backward()
        opt.step()
        if tune:
            tuner.step()

    return step


def measure(kind: str, width: int, batch: int, device: torch.device, dtype, args) -> dict:
    """Seconds per step of the plain and the separated net (and parts, with breakdown)."""
    x, y = _data(batch, device, dtype)
    gen = torch.Generator().manual_seed(1)
    plain = PlainMLP(2, [width, width], 1, activation=kind, dtype=dtype, generator=gen).to(device)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    sep = SeparatedMLP(2, [width, width], 1, kind, dtype=dtype,
                       generator=torch.Generator().manual_seed(1)).to(device)
    sep_opt = torch.optim.Adam(sep.linear_parameters(), lr=1e-3)
    tuner = SeparatedTuner(sep, rule=args.rule, gamma=0.3, max_step=0.05, distributed=False)
    steps = {"plain": _train_step(plain, plain_opt, x, y),
             "separated": _train_step(sep, sep_opt, x, y, tuner, args.tune_every)}
    before = [p.detach().clone() for p in sep.activation_parameters()]
    for step in steps.values():
        step()
    # a step whose tuner recorded no statistics leaves q, c, d where they are (and its
    # time leaves the tuner's work out): the table says whether they moved
    moved = any(not torch.equal(b, p) for b, p in zip(before, sep.activation_parameters(),
                                                       strict=True))
    out: dict = {"tuned": moved}
    if args.breakdown:
        bare = SeparatedMLP(2, [width, width], 1, kind, dtype=dtype,
                            generator=torch.Generator().manual_seed(1)).to(device)

        def fwd_bwd(model):
            def run():
                model.zero_grad()
                if model is sep:
                    tuner.zero_grad()
                    tuner.recording = True
                F.mse_loss(model(x), y).backward()
            return run

        steps |= {"plain fwd+bwd": fwd_bwd(plain), "sep fwd+bwd": fwd_bwd(bare),
                  "sep fwd+bwd+hooks": fwd_bwd(sep), "adam": sep_opt.step}
    out |= alternating(steps, device, args.steps, args.warmup, args.repeats)
    if args.breakdown:
        out["tuner.step"] = out["separated"] - out["sep fwd+bwd+hooks"] - out["adam"]
    tuner.release()
    return out


def _sizes(args) -> list[tuple[int, int]]:
    if args.sizes:
        return [tuple(int(v) for v in s.split("x")) for s in args.sizes]  # type: ignore[misc]
    return [(w, b) for w in args.widths for b in args.batches]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--kinds", nargs="+", default=["relu", "softplus"],
                   choices=["relu", "softplus"])
    p.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1000])
    p.add_argument("--sizes", nargs="+", default=None,
                   help="WIDTHxBATCH pairs (instead of widths x batches), e.g. 32x1000 256x8000")
    p.add_argument("--rule", default="gauss_newton")
    p.add_argument("--tune-every", type=int, default=1,
                   help="a tuner step (and its statistics) every this many Adam steps, as "
                   "TrainConfig.tune_every; the separated time is the mean over steps")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true",
                   help="refused: the tuner does not work inside torch.compile")
    p.add_argument("--breakdown", action="store_true", help="time the parts of the step")
    args = p.parse_args(argv)
    if args.tune_every < 1:
        p.error(f"--tune-every must be a positive int, got {args.tune_every}")
    if args.compile:
        p.error("--compile: the tuner records no statistics inside torch.compile (its hooks do "
                "nothing there and SeparatedTuner.step refuses), so a compiled separated step "
                "would leave its work out; see docs/scaling.md")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"# {name}, {args.dtype}, torch {torch.__version__}, 2 hidden layers, Adam, "
          f"rule {args.rule}, tuner every {args.tune_every} step(s); ms per step "
          f"(median of {args.repeats} alternating repeats x {args.steps} steps)\n")
    rows = []
    print("| analog | width | batch | plain MLP | separated + tuner | ratio | q, c, d moved |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind in args.kinds:
        for width, batch in _sizes(args):
            r = measure(kind, width, batch, device, dtype, args)
            rows.append((kind, width, batch, r))
            print(f"| {kind} | {width} | {batch} | {1e3 * r['plain']:.2f} | "
                  f"{1e3 * r['separated']:.2f} | {r['separated'] / r['plain']:.2f}x | "
                  f"{'yes' if r['tuned'] else '**no: the tuner got no statistics**'} |",
                  flush=True)
    if not all(r["tuned"] for *_, r in rows):
        print("\nWhere q, c, d did not move, the tuner recorded no statistics: that time "
              "leaves the tuner's work out.")
    if args.breakdown:
        parts = ("plain fwd+bwd", "sep fwd+bwd", "sep fwd+bwd+hooks", "adam", "tuner.step")
        print("\nms per part of the separated step (hooks: the tuner's, statistics included):\n")
        print("| analog | width | batch | " + " | ".join(parts) + " |")
        print("|---|---:|---:|" + "---:|" * len(parts))
        for kind, width, batch, r in rows:
            cells = " | ".join(f"{1e3 * r[k]:.2f}" for k in parts)
            print(f"| {kind} | {width} | {batch} | {cells} |")


if __name__ == "__main__":
    main()
