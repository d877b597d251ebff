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
import sys
from pathlib import Path
from typing import Any

from ..params import Param
from ..settings import MODEL_PARAMS, PARAMS
from .train_data import Fail, npz_data, task_data
from .train_output import history_path, load_model, plot, progress_reporter, report, save

__all__ = ["CONFIG_FLAGS", "add_parser", "history_path", "load_model", "run"]

CONFIG_FLAGS: dict[str, dict[str, Any]] = {
    "rule": {"none_name": "none", "help": "tuner rule for q, c, d; grad: trained by the "
             "optimizer; none: fixed"},
    "optimizer": {}, "output_layer": {}, "init": {},
    "lr": {"default": None},  # each optimizer's own (DEFAULT_LR)
    "gamma": {}, "max_step": {},
    "steps": {"metavar": "N", "help": "total optimizer steps, counting those of a resumed run"},
    "max_time": {"metavar": "S", "help": "stop after S seconds of training in all (default: "
                 "no limit)"},
    "batch_size": {"metavar": "B", "help": "mini-batch size (default: full batch)"},
    "eval_every": {"metavar": "N"}, "dtype": {}, "device": {},
    "seed": {"help": "seeds the --task data, the weights and the mini-batches"},
    "checkpoint_every": {"metavar": "N", "default": 100},
}
"""The ``TrainConfig`` fields that are flags (``--output-layer`` for ``output_layer``),
with what differs from their declaration in :data:`sepneuron.settings.PARAMS`: type,
choices and help come from there, defaults from ``TrainConfig()``."""
_AT_LEAST_1 = Param("int", low=1)
_AT_LEAST_0 = Param("int", low=0)
_SECONDS = Param("real", low=0.0, low_open=True, finite=True)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the subparsers ``sub``; returns its parser."""
    from ..settings import DEFAULT_LR
    from ..train import TrainConfig

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
    t.add_argument("--n-train", type=_AT_LEAST_1.parse, metavar="N",
                   help="training points of --task (default 1000)")
    t.add_argument("--n-test", type=_AT_LEAST_0.parse, metavar="N",
                   help="test points of --task (default 2000; 0: none)")
    t.add_argument("--kind", **MODEL_PARAMS["kind"].argparse("softplus"))
    t.add_argument("--hidden", **MODEL_PARAMS["hidden_sizes"].argparse((32, 32)), metavar="W,W")
    own_lr = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
    for name, changes in CONFIG_FLAGS.items():
        kw = dict(changes)
        default = kw.pop("default", getattr(d, name))
        text = kw.pop("help", None)
        if name == "lr":
            text = f"{PARAMS['lr'].help} (default: the optimizer's own, {own_lr})"
        t.add_argument("--" + name.replace("_", "-"), **PARAMS[name].argparse(
            default, help=text, none_name=kw.pop("none_name", None)), **kw)
    t.add_argument("--threads", type=_AT_LEAST_1.parse, metavar="T",
                   help="torch CPU threads (default: torch's)")
    t.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint file, written atomically")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists; a checkpoint of other data "
                   "or other model or optimizer options is refused (the optimizer's saved "
                   "state, step sizes included, is used)")
    t.add_argument("--out", metavar="FILE",
                   help="write the final model here and its history to <FILE>.history.json")
    t.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help="progress on stderr: a bar (step, loss, RMSE, time left), plain lines, "
                   "or none (default auto: a bar on a terminal, else lines)")
    t.add_argument("--progress-every", type=_SECONDS.parse, default=10.0, metavar="S",
                   help="seconds between plain progress lines (default 10)")
    t.add_argument("--plot", metavar="DIR",
                   help="write learning_curve.png and, for 1-D/2-D inputs, fit.png and error.png "
                   "to DIR (needs matplotlib)")
    return t


# -- data, model, config -------------------------------------------------------------------------


def _config(args: argparse.Namespace):
    """The :class:`TrainConfig` of the flags (:data:`CONFIG_FLAGS`), validated."""
    from ..train import TrainConfig

    values = {name: getattr(args, name) for name in CONFIG_FLAGS}
    if values["rule"] == CONFIG_FLAGS["rule"]["none_name"]:
        values["rule"] = None
    cfg = TrainConfig(**values, checkpoint_path=args.checkpoint, resume=args.resume)
    try:
        cfg.validate()
    except ValueError as e:
        raise Fail(str(e)) from None
    return cfg


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise Fail(f"--device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Fail(f"--device {device!r}: CUDA is not available")


def _check_resume(path: Path, model, X, y, cfg) -> int | None:
    """Steps stored in the checkpoint at ``path``, or None when there is none; raises
    :class:`Fail` when it cannot be read or belongs to another run (other data, model,
    optimizer, rule, ...: see :mod:`sepneuron.fingerprint`)."""
    from ..checkpoint import FIT_KEYS, CheckpointError, load_checkpoint
    from ..fingerprint import check_matches, run_fingerprint

    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, required=FIT_KEYS)
        check_matches(path, state, run_fingerprint(model, X, y, cfg))
    except CheckpointError as e:
        raise Fail(str(e)) from None
    steps = len(state["history"]["loss"])
    if steps > cfg.steps:
        raise Fail(f"--checkpoint {path} holds {steps} steps, more than --steps {cfg.steps}")
    return steps


# -- the command ---------------------------------------------------------------------------------


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
        from ..checkpoint import load_checkpoint

        steps = len(load_checkpoint(ckpt)["history"]["loss"])
    except Exception:  # noqa: BLE001 - only for a message
        return f"the last checkpoint is at {ckpt}"
    return f"{ckpt} holds step {steps}"


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron train``; returns the exit status (2: bad input, 1: training failed)."""
    try:
        return _run(args)
    except Fail as e:
        print(f"sepneuron train: {e}", file=sys.stderr)
        return e.status
    except ValueError as e:  # bad input found deeper down: one line, no traceback
        print(f"sepneuron train: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import CheckpointWriteError
    from ..layers import SeparatedMLP
    from ..train import fit, validate_data

    if args.data is not None and (args.n_train is not None or args.n_test is not None):
        raise Fail("--n-train and --n-test apply to --task only (--data gives the points)")
    cfg = _config(args)
    _check_device(cfg.device)
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - fail before training, not after it
        except ImportError:
            raise Fail("--plot needs matplotlib: pip install sepneuron[bench]") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = cfg.torch_dtype
    (X, y, Xt, yt), data = (task_data(args, dtype) if args.task is not None
                            else npz_data(args.data, dtype))
    try:
        validate_data(X, y)  # fit checks again; the shapes are needed first, for the model
        model_args = {"in_features": int(X.shape[1]), "hidden_sizes": list(args.hidden),
                      "out_features": int(y.shape[1]), "kind": args.kind}
        gen = torch.Generator().manual_seed(args.seed)
        model = SeparatedMLP(**model_args, dtype=dtype, generator=gen)  # on CPU: fit moves it
    except ValueError as e:
        raise Fail(str(e)) from None

    from ..checkpoint import check_writable

    try:  # before training, not after it
        ckpt = check_writable(args.checkpoint, "--checkpoint")
        if args.out:
            check_writable(args.out, "--out")
            check_writable(history_path(args.out), "--out history")
        if args.plot:
            check_writable(Path(args.plot) / "learning_curve.png", "--plot")
    except ValueError as e:
        raise Fail(str(e)) from None
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
    progress = progress_reporter(args, cfg)
    try:
        history = fit(model, X, y, cfg, X_test=Xt, y_test=yt, progress=progress)
    except ValueError as e:
        raise Fail(str(e)) from None
    except FloatingPointError as e:
        raise Fail(f"{e}; {_last_checkpoint(ckpt, before, resumed_at)}", status=1) from None
    except CheckpointWriteError as e:
        if args.out and e.history is not None:
            save(Path(args.out), model, cfg, model_args, data, e.history)
            raise Fail(f"{e}; wrote the model to {args.out}", status=1) from None
        raise Fail(str(e), status=1) from None
    except KeyboardInterrupt:
        print(f"\nsepneuron train: interrupted; {_last_checkpoint(ckpt, before, resumed_at)} "
              "(--resume continues from the checkpoint)", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    report(history, model, data, ckpt, resumed_at)
    if args.out:
        hist = save(Path(args.out), model, cfg, model_args, data, history)
        print(f"wrote {args.out} and {hist}")
    if args.plot:
        try:
            paths = plot(args, model, history, X, y)
        except OSError as e:  # the folder was checked before training: gone since
            raise Fail(f"--plot {args.plot}: {e}") from None
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


