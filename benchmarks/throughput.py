"""Training steps per second: separated MLP + tuner vs the same MLP with plain ReLU.

For each hidden width and batch size (two hidden layers, 2 inputs, 1 output, Adam):

* ``relu``: ``PlainMLP`` with ``nn.ReLU``, forward + backward + Adam;
* ``separated``: ``SeparatedMLP`` (SoftPlus analog), the same plus ``SeparatedTuner``
  (rule ``newton``) for ``q``, ``c``, ``d`` -- the recipe's hand-written loop;
* ``fit``: the separated MLP through :func:`sepneuron.fit` (adds the per-step snapshot
  for NaN recovery and the finiteness check; evaluation switched off).

``--breakdown`` adds where the separated step's time goes: forward + backward (with
capture), Adam, the statistics pass (``compute_stats``), the rule's batched solve, the
rest of the rule (sensitivities, trust region, updates) and fit's snapshot.

    python benchmarks/throughput.py --device cpu --widths 64 256 --batches 1000 8000 --threads 1
    python benchmarks/throughput.py --device cuda --widths 64 256 1024 --batches 1000 64000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sepneuron import SeparatedMLP, SeparatedTuner, TrainConfig, fit
from sepneuron.baselines import PlainMLP
from sepneuron.train import _Run, _snapshot
from sepneuron.tuning import compute_stats, get_rule
from sepneuron.tuning.rules import RuleContext, _damped_solve
from sepneuron.tuning.tuner import _trust_region

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_step(step: Callable[[], None], device: torch.device, steps: int, warmup: int,
             repeats: int = 3) -> float:
    """Median over ``repeats`` of the mean seconds per call of ``step`` (after warm-up)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def _data(batch: int, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 2, generator=g, dtype=dtype) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * x[:, 1:]
    return x.to(device), y.to(device)


def _separated(width: int, device, dtype):
    model = SeparatedMLP(2, [width, width], 1, dtype=dtype,
                         generator=torch.Generator().manual_seed(1)).to(device)
    opt = torch.optim.Adam(model.linear_parameters(), lr=1e-3)
    tuner = SeparatedTuner(model, rule="newton", gamma=0.3, max_step=0.05, distributed=False)
    return model, opt, tuner


def measure(width: int, batch: int, device: torch.device, dtype, steps: int, warmup: int,
            breakdown: bool) -> dict[str, float]:
    x, y = _data(batch, device, dtype)
    out: dict[str, float] = {}

    relu = PlainMLP(2, [width, width], 1, activation="relu", dtype=dtype,
                    generator=torch.Generator().manual_seed(1)).to(device)
    relu_opt = torch.optim.Adam(relu.parameters(), lr=1e-3)

    def relu_step():
        relu_opt.zero_grad()
        F.mse_loss(relu(x), y).backward()
        relu_opt.step()

    out["relu"] = per_step(relu_step, device, steps, warmup)

    model, opt, tuner = _separated(width, device, dtype)

    def sep_step():
        opt.zero_grad()
        tuner.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        tuner.step()

    out["separated"] = per_step(sep_step, device, steps, warmup)

    fit_model = SeparatedMLP(2, [width, width], 1, dtype=dtype,
                             generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(steps=warmup + steps, lr=1e-3, dtype=str(dtype).split(".")[-1],
                      device=str(device), eval_every=10**9, diagnostics=False, max_step=0.05)
    fit(fit_model, x, y, TrainConfig(**{**cfg.__dict__, "steps": warmup}))  # warm-up
    _sync(device)
    h = fit(fit_model, x, y, cfg)
    _sync(device)
    out["fit"] = (h.time[-1] - h.time[warmup - 1]) / steps if warmup else h.time[-1] / steps

    if breakdown:
        out.update(_breakdown(model, opt, tuner, x, y, device, steps, warmup))
    tuner.release()
    return out


def _breakdown(model, opt, tuner, x, y, device, steps, warmup) -> dict[str, float]:
    """Seconds per step of each part of the separated step."""
    t = {}

    def fwd_bwd():
        opt.zero_grad()
        tuner.zero_grad()
        F.mse_loss(model(x), y).backward()

    t["fwd+bwd"] = per_step(fwd_bwd, device, steps, warmup)
    fwd_bwd()
    t["adam"] = per_step(opt.step, device, steps, warmup)
    acts = tuner.activations
    caps = [(m, m.pop_captures()) for m in acts]

    def stats():
        return [compute_stats(a, g * a.shape[0], m.q.detach(), m.c.detach(), m.d.detach(),
                              m.kind) for m, cs in caps for a, g in cs]

    t["stats"] = per_step(stats, device, steps, warmup)
    sts = stats()
    group = tuner.param_groups[0]
    rule = get_rule(group["rule"])

    def rule_rest():
        sens = tuner._sensitivities(sts)
        for m, st, h in zip(acts, sts, sens, strict=True):
            q, c, d = m.q.detach(), m.c.detach(), m.d.detach()
            ctx = RuleContext(kind=m.kind, gamma=group["lr"], h=h, damping=group["damping"])
            _trust_region(*rule(st, q, c, d, ctx), st, c, d, group["max_step"])

    t["rule"] = per_step(rule_rest, device, steps, warmup)
    n = acts[0].num_neurons
    normal = torch.eye(3, dtype=x.dtype, device=device).expand(n, 3, 3).contiguous()
    rhs = torch.ones(n, 3, dtype=x.dtype, device=device)
    t["solve"] = per_step(lambda: [_damped_solve(normal, rhs, 1e-3) for _ in acts], device,
                          steps, warmup)
    run = _Run(model, opt, tuner, None, [], torch.Generator(), None)
    spare = _snapshot(run.state(with_history=False))
    t["snapshot"] = per_step(lambda: _snapshot(run.state(with_history=False), spare), device,
                             steps, warmup)
    return t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1000, 64000])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--breakdown", action="store_true", help="time the parts of the step")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"# {name}, {args.dtype}, torch {torch.__version__}, 2 hidden layers, Adam; "
          f"steps/s (median of 3 x {args.steps} steps)\n")
    rows = []
    print("| width | batch | relu MLP | separated + tuner | fit() | slowdown (separated / relu) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for width in args.widths:
        for batch in args.batches:
            r = measure(width, batch, device, dtype, args.steps, args.warmup, args.breakdown)
            rows.append((width, batch, r))
            print(f"| {width} | {batch} | {1 / r['relu']:.1f} | {1 / r['separated']:.1f} | "
                  f"{1 / r['fit']:.1f} | {r['separated'] / r['relu']:.1f}x |", flush=True)
    if args.breakdown:
        parts = ("fwd+bwd", "adam", "stats", "solve", "rule", "snapshot")
        print("\nms per separated step (rule includes solve):\n")
        print("| width | batch | relu step | " + " | ".join(parts) + " |")
        print("|---:|---:|---:|" + "---:|" * len(parts))
        for width, batch, r in rows:
            cells = " | ".join(f"{1e3 * r[k]:.2f}" for k in parts)
            print(f"| {width} | {batch} | {1e3 * r['relu']:.2f} | {cells} |")


if __name__ == "__main__":
    main()
