"""PNG figures of the report (matplotlib's Agg canvas; pyplot and its global state unused;
each file written atomically).

* ``curves_<task>.png`` -- test RMSE against training time, every run (one colour per method);
* ``error_map_<task>.png`` -- ``|model - target|`` over the task's first two inputs for the
  best run overall, the best separated run and the best plain-Adam run, from the error
  grid each run saved when it finished (no re-training);
* ``headline.png`` -- per task, the best peer's median RMSE / the default recipe's (log
  scale), with the targets' 10x and 1/2x lines (from the stored runs);
* ``activations.png`` -- the shapes ``o(a)`` of both analogs for several ``c, d, q``
  (the paper's Figure 5);
* ``neuron_tuning.png`` -- one neuron fitted to ``relu(-2x + 0.3)`` from ``w = +1``: a plain
  ReLU neuron against a separated one, snapshots of the response during training (the
  paper's Figures 3 and 6). This small demo is trained when the figure is drawn, so
  ``sepneuron bench`` draws it (once per folder); the report only links it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["plot_curves", "plot_error_maps", "plot_activations", "plot_neuron_tuning",
           "plot_headline"]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _write(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (:func:`sepneuron.checkpoint.atomic_open`)."""
    from ..checkpoint import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return _write(fig, path)


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if len(methods) > 10 else colormaps["tab10"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def plot_curves(rows: Sequence[dict[str, Any]], folder: Path, methods: Sequence[str]) -> list[Path]:
    """One figure per task: test RMSE (log) against training seconds, every ok run."""
    colours = _colours(methods)
    paths = []
    for task in sorted({r["task"] for r in rows}):
        fig = _figure(8, 5)
        ax = fig.add_subplot()
        labelled = set()
        for r in rows:
            if r["task"] != task or r["status"] != "ok" or not r.get("curve"):
                continue
            c = r["curve"]
            t, e = c["eval_time"], c["test_rmse"]
            if len(t) == 1:  # KAN: only the final point
                ax.plot(t, e, "o", color=colours.get(r["method"]),
                        label=None if r["method"] in labelled else f"{r['method']} (final only)")
            else:
                ax.plot(t, e, color=colours.get(r["method"]), lw=1, alpha=0.8,
                        label=None if r["method"] in labelled else r["method"])
            labelled.add(r["method"])
        ax.set_yscale("log")
        ax.set_xlabel("training time, s (evaluation excluded)")
        ax.set_ylabel("test RMSE (standardised target)")
        ax.set_title(f"{task}: learning curves, every seed")
        ax.grid(True, which="both", alpha=0.3)
        if labelled:
            ax.legend(fontsize=7, ncol=2)
        paths.append(_save(fig, folder / f"curves_{task}.png"))
    return paths


def _best(rows: Sequence[dict[str, Any]], pred) -> dict[str, Any] | None:
    ok = [r for r in rows if r["status"] == "ok" and r.get("grid") is not None and pred(r)]
    return min(ok, key=lambda r: r["test_rmse"]) if ok else None


def plot_error_maps(rows: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Per task: log10 |model - target| on the saved grid for the best runs (see module)."""
    from matplotlib.colors import LogNorm

    from ..tasks import get_task

    paths = []
    for task_name in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == task_name]
        candidates = [
            ("best overall", _best(rs, lambda r: True)),
            ("best separated", _best(rs, lambda r: r["method"].startswith("sep_"))),
            ("best plain Adam", _best(rs, lambda r: r["method"].endswith("_adam"))),
        ]
        picks = [(t, r) for t, r in candidates if r is not None]
        if not picks:
            continue
        task = get_task(task_name)
        errs = [np.abs(r["grid"]).astype(np.float64) for _, r in picks]
        floor = max(min(float(e[e > 0].min()) if (e > 0).any() else 1e-12 for e in errs), 1e-12)
        top = max(float(e.max()) for e in errs)
        norm = LogNorm(vmin=floor, vmax=max(top, floor * 10))
        fig = _figure(4.2 * len(picks) + 1, 4.3)
        fig.set_layout_engine("constrained")
        axes = fig.subplots(1, len(picks), squeeze=False)[0]
        im = None
        for ax, (title, r), e in zip(axes, picks, errs, strict=True):
            im = ax.imshow(np.maximum(e, floor).T, origin="lower", norm=norm, cmap="viridis",
                           extent=(task.low[0], task.high[0], task.low[1], task.high[1]),
                           aspect="auto")
            ax.set_title(f"{title}: {r['method']} s{r['seed']}\ntest RMSE {r['test_rmse']:.2e}",
                         fontsize=8)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        fig.colorbar(im, ax=list(axes), label="|model - target| (standardised)")
        note = "" if task.dim == 2 else " (slice: other inputs at the box centre)"
        fig.suptitle(f"{task_name}: error over the domain{note}", fontsize=9)
        paths.append(_write(fig, folder / f"error_map_{task_name}.png"))
    return paths


def plot_activations(folder: Path) -> Path:
    """``o(a) = a + phi(c (a + q))`` for both analogs and several ``c, d, q`` (Figure 5)."""
    from ..functional import separated

    a = torch.linspace(-3, 3, 601, dtype=torch.float64)
    settings = [  # (label, q, c, d)
        ("d = 0 (identity)", 0.0, 1.0, 0.0),
        ("d = 0.5", 0.0, 1.0, 0.5),
        ("d = 1 (ReLU-like: 2 relu)", 0.0, 1.0, 1.0),
        ("d = -0.5", 0.0, 1.0, -0.5),
        ("d = 0.5, q = 1", 1.0, 1.0, 0.5),
        ("d = 0.5, c = 4", 0.0, 4.0, 0.5),
        ("d = 0.125, c = 4 (c d = 0.5)", 0.0, 4.0, 0.125),
    ]
    fig = _figure(11, 4.5)
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("relu", "softplus"), strict=True):
        for label, q, c, d in settings:
            t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
            o = separated(a.unsqueeze(1), t(q), t(c), t(d), kind).squeeze(1)
            ax.plot(a.numpy(), o.numpy(), label=label, lw=1.3)
        ax.set_title(f"{kind} analog: o = a + phi(c (a + q))")
        ax.set_xlabel("a")
        ax.set_ylabel("o")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, folder / "activations.png")


# The paper's Figure 3 case, as in tests/test_figure3.py: one neuron whose output is the
# network output, target relu(-2x + 0.3), starting from w = +1, b = 0.1 (the wrong way).
# Adam (lr 5e-2, cosine) on (w, b); the tuner (gamma 0.3, max_step 0.05) on q, c, d.
NEURON_SETTING: dict[str, Any] = dict(
    optimizer="adam", lr=5e-2, schedule="cosine", gamma=0.3, max_step=0.05,
    output_layer="optimizer", init="default")  # the paper's Figure 3 setup


def _single_neuron(kind: str | None, rule: str | None, steps: int):
    """Fit ``relu(-2x + 0.3)`` with one neuron from ``w = +1``; response snapshots."""
    from torch import nn

    from ..layers import SeparatedActivation
    from ..train import TrainConfig, fit

    x = torch.linspace(-1, 1, 201, dtype=torch.float64).unsqueeze(1)  # (201, 1)
    y = torch.relu(-2 * x + 0.3)
    lin = nn.Linear(1, 1, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(0.1)
    act = nn.ReLU() if kind is None else SeparatedActivation(1, kind, dtype=torch.float64)
    model = nn.Sequential(lin, act)
    marks = {0, steps // 40, steps // 10, steps // 4, steps}
    snaps: dict[int, np.ndarray] = {}

    def snapshot(step: int, history=None) -> None:
        if step in marks:
            with torch.no_grad():
                snaps[step] = model(x).squeeze(1).numpy().copy()

    snapshot(0)
    setting = dict(NEURON_SETTING)
    if rule in (None, "grad"):  # no tuner: its settings would be refused as ineffective
        setting.pop("gamma"), setting.pop("max_step")
    cfg = TrainConfig(steps=steps, rule=rule, eval_every=1, diagnostics=False, **setting)
    h = fit(model, x, y, cfg, callback=snapshot)
    return x.squeeze(1).numpy(), y.squeeze(1).numpy(), snaps, h


def plot_neuron_tuning(folder: Path, rule: str | None = None, *, steps: int = 2000) -> Path:
    """Plain ReLU neuron vs separated neurons on the paper's Figure 3 case.

    ``rule`` is shown for the SoftPlus analog (default ``gauss_newton``, the setting that
    reaches the target in ``tests/test_figure3.py``); the ReLU analog uses ``newton``.
    """
    rule = rule or "gauss_newton"
    fig = _figure(17, 4)
    axes = fig.subplots(1, 4)
    results = [("plain ReLU neuron (backprop)", None, None),
               ("separated ReLU analog, rule 'newton'", "relu", "newton"),
               (f"separated SoftPlus analog, rule {rule!r}", "softplus", rule)]
    for ax, (title, kind, r) in zip(axes[:3], results, strict=True):
        x, y, snaps, h = _single_neuron(kind, r, steps)
        ax.plot(x, y, "k--", lw=2, label="target relu(-2x + 0.3)")
        for i, (step, o) in enumerate(sorted(snaps.items())):
            ax.plot(x, o, lw=1.2, alpha=0.4 + 0.6 * i / max(1, len(snaps) - 1),
                    label=f"step {step}")
        ax.set_title(f"{title}\nfinal RMSE {h.train_rmse[-1] if h.train_rmse else math.nan:.3g}",
                     fontsize=9)
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        axes[3].semilogy(h.eval_step, h.train_rmse, label=title.split(",")[0])
    axes[3].set_title("training RMSE; Adam lr 5e-2 (cosine) on w, b", fontsize=9)
    axes[3].set_xlabel("step")
    axes[3].legend(fontsize=7)
    axes[3].grid(True, which="both", alpha=0.3)
    return _save(fig, folder / "neuron_tuning.png")


def plot_headline(table, folder: Path) -> list[Path]:
    """Bars of :func:`~sepneuron.bench.compare.headline`'s ratio per task (smooth tasks
    dark, kink tasks light); nothing if the table is empty."""
    from .compare import TARGET_BETTER, TARGET_WORSE

    if table.empty:
        return []
    ratio = table["ratio"].astype(float)
    t = table[np.isfinite(ratio) & (ratio > 0)]
    if t.empty:
        return []
    fig = _figure(max(5.0, 0.6 * len(t) + 2), 4)
    ax = fig.add_subplot()
    x = np.arange(len(t))
    ax.bar(x, t["ratio"], color=["tab:blue" if s else "lightsteelblue" for s in t["smooth"]])
    ax.axhline(TARGET_BETTER, color="tab:green", ls="--", lw=1,
               label=f"{TARGET_BETTER:g}x better (smooth-task target)")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(1 / TARGET_WORSE, color="tab:red", ls="--", lw=1,
               label=f"{TARGET_WORSE:g}x worse (limit)")
    ax.set_yscale("log")
    ax.set_xticks(x, t["task"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("best peer RMSE / default recipe RMSE")
    ax.set_title("default recipe vs the best peer per task (dark: smooth tasks)")
    ax.legend(fontsize=7)
    return [_save(fig, folder / "headline.png")]
