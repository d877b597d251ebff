"""What ``sepneuron train`` leaves: the ``--out`` model file and its history, the summary
on stdout, progress on stderr and the ``--plot`` pictures.

The ``--out`` file holds ``format`` (:data:`FORMAT`), the constructor arguments and state
dict of the model, the ``TrainConfig``, the data's description and the final RMSEs;
:func:`load_model` reads it back (:mod:`sepneuron.model_file` for ``predict`` and
``export``). ``<out>.history.json`` gets the :class:`~sepneuron.History`, as strict JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "history_path", "load_model", "plot", "progress_reporter", "report", "save"]

FORMAT = "sepneuron-train-model/1"  # the "format" entry of an --out file


def history_path(out: str | os.PathLike) -> Path:
    """Where the history of ``--out FILE`` goes: ``model.pt`` -> ``model.history.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".history.json")


def _json_safe(v: Any) -> Any:
    """NaN and Inf -> None, so the file is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically (:func:`sepneuron.checkpoint.atomic_open`)."""
    from ..checkpoint import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def save(out: Path, model, cfg, model_args: dict, data: dict, history) -> Path:
    """Write the model and config to ``out`` and the history beside it (both atomically);
    returns the history's path."""
    from ..checkpoint import atomic_save

    payload = {
        "format": FORMAT,
        "model_class": "SeparatedMLP",
        "model_args": model_args,  # SeparatedMLP(**model_args) rebuilds the architecture
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": asdict(cfg),
        "data": data,
        "steps": history.steps_done,
        "final": {"train_rmse": history.train_rmse[-1] if history.train_rmse else None,
                  "test_rmse": history.test_rmse[-1] if history.test_rmse else None},
    }
    atomic_save(payload, out)
    hist = history_path(out)
    _atomic_write_text(json.dumps(_json_safe(history.to_dict()), allow_nan=False) + "\n", hist)
    return hist


def load_model(path: str | os.PathLike, *, device: str = "cpu"):
    """The :class:`~sepneuron.layers.SeparatedMLP` saved by ``sepneuron train --out``.

    Built with the saved constructor arguments in the training dtype, on ``device``.
    """
    import torch

    from ..layers import SeparatedMLP

    d = torch.load(Path(path), map_location=device, weights_only=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path} is not a model written by `sepneuron train --out`")
    dtype = {"float32": torch.float32, "float64": torch.float64}[d["config"]["dtype"]]
    model = SeparatedMLP(**d["model_args"], dtype=dtype, device=device)
    model.load_state_dict(d["state_dict"])
    return model


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4e}"


def report(history, model, data: dict, ckpt: Path, resumed_at: int | None) -> None:
    """Print the summary of a finished run: data, model, steps, time, RMSEs, events."""
    from ..baselines.mlp import count_parameters

    h = history
    src = (f"task {data['task']} (seed {data['seed']})" if "task" in data
           else f"data {data['data']}")
    arch = ",".join(str(w) for w in model.hidden_sizes)
    print(f"sepneuron train: {src}, {data['n_train']} train / {data['n_test']} test points; "
          f"SeparatedMLP {model.in_features} -> {arch} -> {model.out_features} ({model.kind}), "
          f"{count_parameters(model)} parameters")
    start = "from scratch" if resumed_at is None else f"resumed at step {resumed_at}"
    train_s = h.time[-1] if h.time else 0.0
    print(f"steps       {h.steps_done} ({start}; stopped by {h.stop_reason or 'steps'})")
    print(f"time        {train_s:.2f} s training")
    print(f"train RMSE  {_fmt(h.train_rmse[-1] if h.train_rmse else None)}")
    print(f"test RMSE   {_fmt(h.test_rmse[-1] if h.test_rmse else None)}")
    events = h.events
    print(f"events      {len(events) or 'none'}")
    for e in events[:10]:
        extra = f": {e['action']}" if e.get("action") else ""
        print(f"  step {e.get('step')}: {e.get('event')}{extra}")
    if len(events) > 10:
        print(f"  ... and {len(events) - 10} more (see the history)")
    print(f"checkpoint  {ckpt}")


def progress_reporter(args: argparse.Namespace, cfg):
    """The progress reporter ``--progress`` asks for (on stderr), or None."""
    from ..progress import TrainingProgress

    if args.progress == "none":
        return None
    bar = {"auto": None, "bar": True, "lines": False}[args.progress]
    return TrainingProgress(cfg.steps, cfg.max_time, stream=sys.stderr, bar=bar,
                            every=args.progress_every, prefix="sepneuron train: ")


def plot(args: argparse.Namespace, model, history, X, y) -> list[Path]:
    """The pictures of ``--plot``: for a task, the error against its function on its box."""
    import numpy as np
    import torch

    from ..fit_plots import plot_run

    param = next(model.parameters())

    @torch.no_grad()
    def predict(a):
        out = model(torch.as_tensor(np.asarray(a), dtype=param.dtype, device=param.device))
        return out.to("cpu", torch.float64).numpy()

    target = bounds = None
    title = f"data {args.data}"
    if args.task is not None:
        from ..tasks import get_task

        task = get_task(args.task)
        target = lambda a: task(torch.from_numpy(np.asarray(a, np.float64))).numpy()  # noqa: E731
        bounds, title = (task.low, task.high), f"task {task.name}"
    return plot_run(args.plot, history, predict, X.cpu().double().numpy(),
                    y.cpu().double().numpy(), target=target, bounds=bounds, title=title)
