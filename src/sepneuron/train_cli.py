"""``sepneuron train``: train one separated MLP from the command line, with checkpoints.

    sepneuron train (--task NAME | --data FILE.npz) --checkpoint PATH [--checkpoint-every N]
                    [--resume] [--steps N] [--out model.pt] [--plot DIR]
                    [--progress auto|bar|lines|none] [model and optimizer options]

Data: a registered task (``tasks.make_data`` with ``--seed``), or an ``.npz`` file with
arrays ``X`` ``(n, features)``, ``y`` ``(n, outputs)`` (1-D arrays are read as one
column) and optionally ``X_test``, ``y_test``. Data are used as given (no scaling).
The weights are drawn from ``torch.Generator().manual_seed(seed)``, as in the bench.

``fit`` writes the checkpoint (atomically) every ``--checkpoint-every`` steps and at the
end; ``--resume`` continues from it, so ``--steps N`` then ``--steps 2N --resume`` ends
with the same parameters, bit for bit, as ``--steps 2N`` straight. ``--out`` gets the final
model (:func:`load_model` reads it back) and ``<out>.history.json`` the :class:`History`.
Progress goes to stderr (a tqdm bar on a terminal, a line every ``--progress-every``
seconds otherwise; :mod:`sepneuron.progress`); ``--plot DIR`` draws the run
(:mod:`sepneuron.fit_plots`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily, for a fast --help
    from torch import Tensor

__all__ = ["add_parser", "history_path", "load_model", "run"]

FORMAT = "sepneuron-train-model/1"  # the "format" entry of an --out file
_RULES = ("newton", "paper", "gauss_newton", "grad", "none")  # "none": q, c, d stay fixed


class _Fail(Exception):
    """A problem to report as ``sepneuron train: <message>`` with an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# -- argument types: argparse turns their ValueError / ArgumentTypeError into a usage error ----


def _hidden(text: str) -> tuple[int, ...]:
    """``"32,32"`` -> ``(32, 32)``; every width a positive int."""
    try:
        sizes = tuple(int(s) for s in text.replace(" ", ",").split(",") if s)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers like 32,32, "
                                         f"got {text!r}")
    return sizes


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    parse.__name__ = f"int >= {lo}"
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return v


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the subparsers ``sub``; returns its parser."""
    from .functional import KINDS
    from .train import DEFAULT_LR, OPTIMIZERS, TrainConfig

    d = TrainConfig()
    t = sub.add_parser(
        "train", help="train one separated MLP, with checkpoints and resume",
        description="Train a SeparatedMLP on a task or an .npz file with fit(), writing a "
        "checkpoint atomically every N steps; --resume continues from it. Prints the final "
        "train/test RMSE, steps, time and events; --out writes the model and its history.",
    )
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", metavar="NAME", help="a registered task (see `sepneuron tasks`)")
    src.add_argument("--data", metavar="FILE.npz",
                     help="arrays X, y and optionally X_test, y_test (used as given)")
    t.add_argument("--n-train", type=_int_at_least(1), metavar="N",
                   help="training points of --task (default 1000)")
    t.add_argument("--n-test", type=_int_at_least(0), metavar="N",
                   help="test points of --task (default 2000; 0: none)")
    t.add_argument("--seed", type=int, default=0,
                   help="seeds the --task data, the weights and the mini-batches (default 0)")
    t.add_argument("--kind", default="softplus", choices=KINDS,
                   help="separated nonlinearity (default softplus)")
    t.add_argument("--hidden", type=_hidden, default=(32, 32), metavar="W,W",
                   help="hidden widths, comma separated (default 32,32)")
    t.add_argument("--rule", default=d.rule, choices=_RULES,
                   help=f"tuner rule for q, c, d; grad: trained by the optimizer; none: fixed "
                   f"(default {d.rule})")
    t.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                   help=f"weight optimizer (default {d.optimizer})")
    t.add_argument("--output-layer", default=d.output_layer, choices=("lstsq", "optimizer"),
                   help=f"lstsq: exact least squares every step (default {d.output_layer})")
    t.add_argument("--init", default=d.init, choices=("data", "default"),
                   help=f"data: kinks inside the data (default {d.init})")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="step size of the weight optimizer (default: the optimizer's own, "
                   + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    t.add_argument("--gamma", type=_positive_float, default=d.gamma,
                   help=f"tuner step fraction (default {d.gamma:g})")
    t.add_argument("--max-step", type=_positive_float, default=d.max_step,
                   help=f"tuner trust region (default {d.max_step:g})")
    t.add_argument("--steps", type=_int_at_least(0), default=d.steps, metavar="N",
                   help=f"total optimizer steps, counting those of a resumed run "
                   f"(default {d.steps})")
    t.add_argument("--max-time", type=_positive_float, metavar="S",
                   help="stop after S seconds of training in all (default: no limit)")
    t.add_argument("--batch-size", type=_int_at_least(1), metavar="B",
                   help="mini-batch size (default: full batch)")
    t.add_argument("--eval-every", type=_int_at_least(1), default=d.eval_every, metavar="N",
                   help=f"record train/test RMSE every N steps (default {d.eval_every})")
    t.add_argument("--dtype", default=d.dtype, choices=("float32", "float64"),
                   help=f"(default {d.dtype})")
    t.add_argument("--device", default=d.device,
                   help=f"e.g. cpu, cuda, cuda:1 (default {d.device})")
    t.add_argument("--threads", type=_int_at_least(1), metavar="T",
                   help="torch CPU threads (default: torch's)")
    t.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint file, written atomically")
    t.add_argument("--checkpoint-every", type=_int_at_least(0), default=100, metavar="N",
                   help="steps between checkpoints (default 100; 0: only at the end)")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists; a checkpoint of other data "
                   "or other model or optimizer options is refused (the optimizer's saved "
                   "state, step sizes included, is used)")
    t.add_argument("--out", metavar="FILE",
                   help="write the final model here and its history to <FILE>.history.json")
    t.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help="progress on stderr: a bar (step, loss, RMSE, time left), plain lines, "
                   "or none (default auto: a bar on a terminal, else lines)")
    t.add_argument("--progress-every", type=_positive_float, default=10.0, metavar="S",
                   help="seconds between plain progress lines (default 10)")
    t.add_argument("--plot", metavar="DIR",
                   help="write learning_curve.png and, for 1-D/2-D inputs, fit.png and error.png "
                   "to DIR (needs matplotlib)")
    return t


# -- data, model, config -------------------------------------------------------------------------


def _task_data(args: argparse.Namespace, dtype) -> tuple[tuple, dict[str, Any]]:
    from .tasks import get_task, make_data

    try:
        task = get_task(args.task)
    except ValueError as e:
        raise _Fail(str(e)) from None
    n_train = 1000 if args.n_train is None else args.n_train
    n_test = 2000 if args.n_test is None else args.n_test
    X, y, Xt_, yt_ = make_data(task, n_train, n_test, generator=args.seed, dtype=dtype)
    Xt, yt = (None, None) if n_test == 0 else (Xt_, yt_)
    desc = {"task": task.name, "n_train": n_train, "n_test": n_test, "seed": args.seed}
    return (X, y, Xt, yt), desc


def _npz_data(path: str, dtype) -> tuple[tuple, dict[str, Any]]:
    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise _Fail(f"--data {path}: no such file")
    if not zipfile.is_zipfile(p):
        raise _Fail(f"--data {path}: not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated, corrupt ...
        raise _Fail(f"--data {path}: cannot read it as .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise _Fail(f"--data {path}: no array {' or '.join(missing)} (it has: "
                    f"{', '.join(sorted(arrays)) or 'nothing'})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise _Fail(f"--data {path}: give both X_test and y_test, or neither")
    keys = ("X", "y", "X_test", "y_test")
    tensors: dict[str, Tensor] = {}
    for k in keys:
        if k not in arrays:
            continue
        a = arrays[k]
        if a.dtype.kind not in "biuf":
            raise _Fail(f"--data {path}: array {k} is not numeric (dtype {a.dtype})")
        if a.ndim not in (1, 2) or a.shape[0] == 0:
            raise _Fail(f"--data {path}: array {k} must have shape (n,) or (n, columns) with "
                        f"n >= 1, got shape {a.shape}")
        a64 = np.asarray(a, dtype=np.float64)
        t = torch.from_numpy(a64).to(dtype)
        if np.isfinite(a64).all() and not torch.isfinite(t).all():
            raise _Fail(f"--data {path}: array {k} has values beyond the range of {dtype} "
                        f"(largest |value| {np.abs(a64).max():.3g}); use --dtype float64 "
                        "or scale it")
        tensors[k] = t.reshape(-1, 1) if t.ndim == 1 else t  # (n,) -> (n, 1)
    desc = {"data": str(p), "n_train": int(tensors["X"].shape[0]),
            "n_test": int(tensors["X_test"].shape[0]) if "X_test" in tensors else 0}
    return tuple(tensors.get(k) for k in keys), desc


def _config(args: argparse.Namespace):
    from .train import TrainConfig

    cfg = TrainConfig(
        optimizer=args.optimizer, lr=args.lr, steps=args.steps, max_time=args.max_time,
        output_layer=args.output_layer, init=args.init,
        batch_size=args.batch_size, rule=None if args.rule == "none" else args.rule,
        gamma=args.gamma, max_step=args.max_step, seed=args.seed, dtype=args.dtype,
        device=args.device, eval_every=args.eval_every, checkpoint_path=args.checkpoint,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
    )
    try:
        cfg.validate()
    except ValueError as e:
        raise _Fail(str(e)) from None
    return cfg


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise _Fail(f"--device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _Fail(f"--device {device!r}: CUDA is not available")


def _check_resume(path: Path, model, X, y, cfg) -> int | None:
    """Steps stored in the checkpoint at ``path``, or None when there is none; raises
    :class:`_Fail` when it cannot be read or belongs to another run (other data, model,
    optimizer, rule, ...: see :mod:`sepneuron.fingerprint`)."""
    from .checkpoint import FIT_KEYS, CheckpointError, load_checkpoint
    from .fingerprint import check_matches, run_fingerprint

    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, required=FIT_KEYS)
        check_matches(path, state, run_fingerprint(model, X, y, cfg))
    except CheckpointError as e:
        raise _Fail(str(e)) from None
    steps = len(state["history"]["loss"])
    if steps > cfg.steps:
        raise _Fail(f"--checkpoint {path} holds {steps} steps, more than --steps {cfg.steps}")
    return steps


# -- output ------------------------------------------------------------------------------------


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
    from .checkpoint import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _save(out: Path, model, cfg, model_args: dict, data: dict, history) -> Path:
    from .checkpoint import atomic_save

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

    from .layers import SeparatedMLP

    d = torch.load(Path(path), map_location=device, weights_only=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path} is not a model written by `sepneuron train --out`")
    dtype = {"float32": torch.float32, "float64": torch.float64}[d["config"]["dtype"]]
    model = SeparatedMLP(**d["model_args"], dtype=dtype, device=device)
    model.load_state_dict(d["state_dict"])
    return model


# -- the command ---------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4e}"


def _report(history, model, data: dict, ckpt: Path, resumed_at: int | None) -> None:
    from .baselines.mlp import count_parameters

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


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


def _last_checkpoint(ckpt: Path, before: tuple[int, int] | None, resumed_at: int | None) -> str:
    """Where a stopped run can be resumed from, for the message."""
    if _stamp(ckpt) == before and resumed_at is None:  # stale or absent: not this run's
        return "no checkpoint was written yet (see --checkpoint-every)"
    try:
        from .checkpoint import load_checkpoint

        steps = len(load_checkpoint(ckpt)["history"]["loss"])
    except Exception:  # noqa: BLE001 - only for a message
        return f"the last checkpoint is at {ckpt}"
    return f"{ckpt} holds step {steps}"


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron train``; returns the exit status (2: bad input, 1: training failed)."""
    try:
        return _run(args)
    except _Fail as e:
        print(f"sepneuron train: {e}", file=sys.stderr)
        return e.status
    except ValueError as e:  # bad input found deeper down: one line, no traceback
        print(f"sepneuron train: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import CheckpointWriteError
    from .layers import SeparatedMLP
    from .train import fit, validate_data

    if args.data is not None and (args.n_train is not None or args.n_test is not None):
        raise _Fail("--n-train and --n-test apply to --task only (--data gives the points)")
    cfg = _config(args)
    _check_device(cfg.device)
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - fail before training, not after it
        except ImportError:
            raise _Fail("--plot needs matplotlib: pip install sepneuron[bench]") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = cfg.torch_dtype
    (X, y, Xt, yt), data = (_task_data(args, dtype) if args.task is not None
                            else _npz_data(args.data, dtype))
    try:
        validate_data(X, y)  # fit checks again; the shapes are needed first, for the model
        model_args = {"in_features": int(X.shape[1]), "hidden_sizes": list(args.hidden),
                      "out_features": int(y.shape[1]), "kind": args.kind}
        gen = torch.Generator().manual_seed(args.seed)
        model = SeparatedMLP(**model_args, dtype=dtype, generator=gen)  # on CPU: fit moves it
    except ValueError as e:
        raise _Fail(str(e)) from None

    from .checkpoint import check_writable

    try:  # before training, not after it
        ckpt = check_writable(args.checkpoint, "--checkpoint")
        if args.out:
            check_writable(args.out, "--out")
            check_writable(history_path(args.out), "--out history")
        if args.plot:
            check_writable(Path(args.plot) / "learning_curve.png", "--plot")
    except ValueError as e:
        raise _Fail(str(e)) from None
    resumed_at = None
    if args.resume:
        resumed_at = _check_resume(ckpt, model, X, y, cfg)
        if resumed_at is None:
            print(f"sepneuron train: no checkpoint at {ckpt} yet; starting from scratch",
                  file=sys.stderr)
    elif ckpt.exists():
        print(f"sepneuron train: {ckpt} exists and will be overwritten (--resume continues "
              "from it)", file=sys.stderr)
    before = _stamp(ckpt)
    progress = _progress(args, cfg)
    try:
        history = fit(model, X, y, cfg, X_test=Xt, y_test=yt, progress=progress)
    except ValueError as e:
        raise _Fail(str(e)) from None
    except FloatingPointError as e:
        raise _Fail(f"{e}; {_last_checkpoint(ckpt, before, resumed_at)}", status=1) from None
    except CheckpointWriteError as e:
        if args.out and e.history is not None:
            _save(Path(args.out), model, cfg, model_args, data, e.history)
            raise _Fail(f"{e}; wrote the model to {args.out}", status=1) from None
        raise _Fail(str(e), status=1) from None
    except KeyboardInterrupt:
        print(f"\nsepneuron train: interrupted; {_last_checkpoint(ckpt, before, resumed_at)} "
              "(--resume continues from the checkpoint)", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    _report(history, model, data, ckpt, resumed_at)
    if args.out:
        hist = _save(Path(args.out), model, cfg, model_args, data, history)
        print(f"wrote {args.out} and {hist}")
    if args.plot:
        try:
            paths = _plot(args, model, history, X, y)
        except OSError as e:  # the folder was checked before training: gone since
            raise _Fail(f"--plot {args.plot}: {e}") from None
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _progress(args: argparse.Namespace, cfg):
    """The progress reporter ``--progress`` asks for (on stderr), or None."""
    from .progress import TrainingProgress

    if args.progress == "none":
        return None
    bar = {"auto": None, "bar": True, "lines": False}[args.progress]
    return TrainingProgress(cfg.steps, cfg.max_time, stream=sys.stderr, bar=bar,
                            every=args.progress_every, prefix="sepneuron train: ")


def _plot(args: argparse.Namespace, model, history, X, y) -> list[Path]:
    """The pictures of ``--plot``: for a task, the error against its function on its box."""
    import numpy as np
    import torch

    from .fit_plots import plot_run

    param = next(model.parameters())

    @torch.no_grad()
    def predict(a):
        out = model(torch.as_tensor(np.asarray(a), dtype=param.dtype, device=param.device))
        return out.to("cpu", torch.float64).numpy()

    target = bounds = None
    title = f"data {args.data}"
    if args.task is not None:
        from .tasks import get_task

        task = get_task(args.task)
        target = lambda a: task(torch.from_numpy(np.asarray(a, np.float64))).numpy()  # noqa: E731
        bounds, title = (task.low, task.high), f"task {task.name}"
    return plot_run(args.plot, history, predict, X.cpu().double().numpy(),
                    y.cpu().double().numpy(), target=target, bounds=bounds, title=title)
