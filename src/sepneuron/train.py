"""Training loop: ``fit(model, X, y, config) -> History``. No printing, no files unless asked.

The loss is the mean squared error ``E = mean((model(X) - y)^2)``. Weights (and, with
``rule="grad"`` or for plain models, every parameter) are updated by the named
optimizer; the scalar-nonlinear parameters of separated layers by a
:class:`~sepneuron.tuning.SeparatedTuner` with ``config.rule``.

Safety: inputs are validated; a non-finite loss restores the last good state, halves
the step sizes, records an event and retries (at most ``max_retries`` times in a row);
with ``checkpoint_path`` set, a checkpoint is written atomically every
``checkpoint_every`` steps and ``fit`` resumes from it when ``resume=True`` -- only a
checkpoint of the same data and settings (:mod:`sepneuron.fingerprint`). Training
``2N`` steps straight, or ``N`` steps, a checkpoint and ``N`` more in a fresh process,
gives identical parameters.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import resume
from .checkpoint import check_writable
from .conditioning import make_conditioners
from .diagnostics import dead_fractions, parameter_spread
from .fingerprint import combine_ranks, run_fingerprint
from .init import init_from_data_
from .layers import SeparatedActivation
from .settings import DEFAULT_LR, OPTIMIZERS, SCHEDULES, validate_config
from .solvers.training import (
    PlateauStop,
    check_solver_combination,
    first_order_closure_prefix,
    make_lm,
    step_size,
    trained_parameters,
)
from .tuning import SeparatedTuner

__all__ = ["TrainConfig", "History", "fit", "validate_data", "OPTIMIZERS", "SCHEDULES",
           "DEFAULT_LR"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Every field takes effect or is refused by :meth:`validate`: ``momentum`` applies to
    ``optimizer="sgd"`` only and the tuner's fields (``gamma``, ``max_step``,
    ``tune_curvature``, ``tune_every``) to a tuner rule only, so setting them to other than
    their defaults otherwise is an error; ``checkpoint_every`` needs ``checkpoint_path``.
    ``lr=None`` is replaced at construction by the optimizer's own default
    (:data:`DEFAULT_LR`). ``damping`` applies to ``optimizer="lm"`` only, ``ridge`` to
    ``output_layer="lstsq"`` only, ``min_improvement`` to a set ``patience`` only.

    The defaults are the best recipe measured on the benchmark's tasks (docs/varpro.md):
    Levenberg-Marquardt on the hidden weights, the output layer solved exactly at every
    step, q, c, d by the ``newton`` rule, kinks initialised inside the data, float64.
    The recipe before issue 12 is ``optimizer="adam", output_layer="optimizer",
    init="default"``.
    """

    optimizer: str = "lm"            # "lm" (Levenberg-Marquardt) | "adam" | "sgd" | "lbfgs"
    lr: float | None = None          # weight optimizer's step size; None: DEFAULT_LR[optimizer]
    momentum: float = 0.9            # SGD momentum (optimizer="sgd" only)
    schedule: str = "constant"       # "constant" | "cosine" (to 0 over `steps`) for the weights
    steps: int = 2000                # optimizer steps (at most)
    max_time: float | None = None    # stop after this many training seconds (eval not counted)
    patience: int | None = None      # stop after this many steps without a relative fall of
    min_improvement: float = 1e-4    # ... at least min_improvement in the best loss (None: never)
    output_layer: str = "lstsq"      # "lstsq" (exact least squares, docs/varpro.md) | "optimizer"
    init: str = "data"               # "data" (kinks inside the data, sepneuron.init) | "default"
    damping: float = 1e-3            # LM: initial damping lambda (Marquardt scaling, Nielsen)
    ridge: float = 1e-12             # "lstsq": relative ridge of the output-layer solve
    batch_size: int | None = None    # None: full batch; else mini-batches drawn with the seed
    rule: str | None = "newton"      # tuner rule for separated layers; None: q, c, d stay fixed
    gamma: float = 0.3               # tuner step fraction
    max_step: float = 0.2            # tuner trust region (see SeparatedTuner)
    tune_curvature: bool = True      # tune c of SoftPlus layers
    tune_every: int = 1              # tuner step every this many optimizer steps
    conditioning: tuple[str, ...] = ()  # optional components by name (sepneuron.conditioning)
    seed: int = 0                    # seeds the mini-batch sampler (and nothing global)
    dtype: str = "float64"           # "float32" | "float64"
    device: str = "cpu"
    eval_every: int = 50             # record test RMSE and diagnostics every this many steps
    diagnostics: bool = True         # record dead-neuron fractions and q, c, d spread
    max_retries: int = 8             # non-finite losses in a row before giving up
    checkpoint_path: str | None = None  # where to write checkpoints (atomically)
    checkpoint_every: int = 0        # steps between checkpoints; 0: only at the end
    resume: bool = False             # continue from checkpoint_path if it exists (same data
    #                                  and settings only: see sepneuron.fingerprint)

    def __post_init__(self) -> None:
        if self.lr is None and self.optimizer in DEFAULT_LR:
            self.lr = DEFAULT_LR[self.optimizer]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        validate_config(self)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass
class History:
    """What happened during :func:`fit`. Per step: ``loss``, ``time``; per evaluation the rest."""

    loss: list[float] = field(default_factory=list)        # train loss (MSE) at each step
    time: list[float] = field(default_factory=list)        # cumulative training s after each step
    eval_step: list[int] = field(default_factory=list)     # steps done at each evaluation
    eval_time: list[float] = field(default_factory=list)   # training seconds at each evaluation
    train_rmse: list[float] = field(default_factory=list)  # on the whole training set
    test_rmse: list[float] = field(default_factory=list)   # when test data are given
    dead_fraction: list[list[float]] = field(default_factory=list)  # per activation layer
    spread: list[list[dict[str, float]]] = field(default_factory=list)  # per separated layer
    events: list[dict[str, Any]] = field(default_factory=list)  # non-finite losses, resumes
    stop_reason: str = ""                                   # "steps" | "max_time" | "plateau"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**d)

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    @property
    def final_test_rmse(self) -> float:
        return self.test_rmse[-1] if self.test_rmse else float("nan")


def validate_data(X: Any, y: Any, *, name_x: str = "X", name_y: str = "y") -> None:
    """Raise ``ValueError`` for bad shapes, lengths or non-finite values."""
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"{name_x} and {name_y} must be torch tensors")
    if X.ndim != 2:
        raise ValueError(f"{name_x} must have shape (n_samples, n_features), got {tuple(X.shape)}")
    if y.ndim != 2:
        raise ValueError(f"{name_y} must have shape (n_samples, n_outputs), got {tuple(y.shape)}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{name_x} has {X.shape[0]} samples but {name_y} has {y.shape[0]}")
    if X.shape[0] < 1:
        raise ValueError(f"{name_x} has no samples")
    for n, t in ((name_x, X), (name_y, y)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{n} contains NaN or Inf")


def _has_separated(model: nn.Module) -> bool:
    return any(isinstance(m, SeparatedActivation) for m in model.modules())


def _split_parameters(model: nn.Module, use_tuner: bool) -> list[nn.Parameter]:
    """Parameters for the weight optimizer: all but q, log c, d when a tuner owns them."""
    if not use_tuner:
        return [p for p in model.parameters() if p.requires_grad]
    owned = {id(p) for m in model.modules() if isinstance(m, SeparatedActivation)
             for p in m.parameters()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in owned]


def _make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    lr = step_size(cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "lbfgs":
        # max_iter=1 stalls for good (the loss stays constant after a few steps, seen on
        # kan_exp with a tanh MLP); torch's default 20 iterations per step does not.
        return torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=20,
                                 line_search_fn="strong_wolfe")
    return make_lm(cfg, params)


def _rmse(model: nn.Module, X: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(X), y).sqrt())


def _scale_steps(opt, tuner, factor: float) -> None:
    for group in opt.param_groups:
        group["lr"] *= factor
    if tuner is not None:
        for group in tuner.param_groups:
            group["lr"] *= factor


def _snapshot(src: Any, into: Any = None) -> Any:
    """A deep copy of a nested state (dicts, lists, tuples, tensors, scalars).

    Tensors are copied into the tensors at the same place in ``into`` (an older snapshot
    of the same structure) when shape, dtype and device agree, so a snapshot per step
    allocates nothing; several times cheaper than ``copy.deepcopy`` of a state dict.
    """
    if isinstance(src, Tensor):
        if (isinstance(into, Tensor) and into.shape == src.shape and into.dtype == src.dtype
                and into.device == src.device):
            return into.copy_(src)
        return src.detach().clone()
    if isinstance(src, dict):
        old = into if isinstance(into, dict) else {}
        out = {k: _snapshot(v, old.get(k)) for k, v in src.items()}
        if hasattr(src, "_metadata"):  # a module's state dict: keep its version metadata
            out = OrderedDict(out)
            out._metadata = src._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(src, (list, tuple)):
        same = isinstance(into, (list, tuple)) and len(into) == len(src)
        prev = into if same else [None] * len(src)
        return type(src)(_snapshot(v, o) for v, o in zip(src, prev, strict=True))
    if src is None or isinstance(src, (bool, int, float, complex, str, bytes)) or callable(src):
        return src
    return copy.deepcopy(src)


class _Run:
    """The mutable state of one :func:`fit` call (what a checkpoint saves)."""

    def __init__(self, model, opt, tuner, scheduler, conditioners, sampler, history):
        self.model, self.opt, self.tuner = model, opt, tuner
        self.scheduler, self.conditioners, self.sampler = scheduler, conditioners, sampler
        self.history = history
        self.ddp = isinstance(model, DistributedDataParallel)
        # NaN recovery: the last state whose loss was finite (a snapshot) and its step count;
        # non-finite losses in a row, the step count of the last one, and halvings of the
        # step sizes since ``good`` was taken. Saved in checkpoints so that a resumed run
        # recovers exactly as a straight one would.
        self.good: dict[str, Any] | None = None
        self.good_steps = 0
        self.retries = 0
        self.fail_step = -1
        self.halvings = 0

    def state(self, with_history: bool = True) -> dict[str, Any]:
        out = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "tuner": None if self.tuner is None else self.tuner.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "conditioners": [c.state_dict() for c in self.conditioners],
            "sampler": self.sampler.get_state(),
        }
        if with_history:
            out["history"] = self.history.to_dict()
            out["recovery"] = {"good": self.good, "good_steps": self.good_steps,
                               "retries": self.retries, "fail_step": self.fail_step,
                               "halvings": self.halvings}
        return out

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.tuner is not None and state["tuner"] is not None:
            self.tuner.load_state_dict(state["tuner"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for c, s in zip(self.conditioners, state["conditioners"], strict=True):
            c.load_state_dict(s)
        self.sampler.set_state(state["sampler"].cpu())  # map_location may have moved it
        if "history" in state:
            self.history = History.from_dict(state["history"])
        if "recovery" in state:
            rec = state["recovery"]
            self.good, self.good_steps = rec["good"], rec["good_steps"]
            self.retries, self.fail_step = rec["retries"], rec["fail_step"]
            self.halvings = rec["halvings"]


def fit(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    *,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    callback: Callable[[int, History], bool | None] | None = None,
    progress: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` on ``(X, y)`` (shapes ``(n, in)``, ``(n, out)``) as ``config`` says.

    ``model`` is moved to ``config.device`` and ``config.dtype`` in place. ``callback(step,
    history)`` runs after each evaluation; returning ``True`` stops training.
    ``progress(history)`` runs after every step (keep it cheap; e.g.
    :class:`sepneuron.progress.TrainingProgress`).
    Returns the :class:`History`; the trained parameters are in ``model``.

    ``model`` may be a ``DistributedDataParallel`` wrapper (built on ``config.device`` and
    ``config.dtype``) with each rank's own ``(X, y)`` shard: the tuner's statistics are
    then all-reduced and a loss counts as non-finite when it is so on any rank, so all
    ranks stay identical (see ``docs/scaling.md``; "adam" and "sgd" only).
    """
    cfg = config or TrainConfig()
    cfg.validate()
    ddp = isinstance(model, DistributedDataParallel)
    if ddp and cfg.optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd' with DistributedDataParallel, "
                         f"got {cfg.optimizer!r}")
    validate_data(X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None and y_test is not None:
        validate_data(X_test, y_test, name_x="X_test", name_y="y_test")
        if X_test.shape[1] != X.shape[1] or y_test.shape[1] != y.shape[1]:
            raise ValueError("X_test / y_test must have as many columns as X / y")
    dev, dt = torch.device(cfg.device), cfg.torch_dtype
    model.to(device=dev, dtype=dt)
    X, y = X.to(dev, dt), y.to(dev, dt)
    if X_test is not None and y_test is not None:  # both or neither, checked above
        X_test, y_test = X_test.to(dev, dt), y_test.to(dev, dt)
    resume.check_model_fits_data(model, X, y)
    ckpt = None
    if cfg.checkpoint_path:  # fail now, not after training, if it cannot be written
        ckpt = check_writable(cfg.checkpoint_path)
        fingerprint = run_fingerprint(model, X, y, cfg)
        if ddp:  # each rank holds a shard: fingerprint them all, the same on every rank
            fingerprint["data"] = combine_ranks(fingerprint["data"])

    check_solver_combination(cfg, model, X.shape[0], ddp)
    use_tuner = cfg.rule is not None and cfg.rule != "grad" and _has_separated(model)
    resuming = cfg.resume and cfg.checkpoint_path and Path(cfg.checkpoint_path).exists()
    if cfg.init == "data" and not resuming:  # a resumed run has its initial state already
        init_from_data_(model, X, generator=torch.Generator().manual_seed(cfg.seed))
    # rule=None: q, c, d stay fixed, so no optimizer gets them (LM would move them anyway)
    params = _split_parameters(model, use_tuner or cfg.rule is None)
    opt = _make_optimizer(cfg, trained_parameters(cfg, model, params))
    tuner = None
    if use_tuner:
        tuner = SeparatedTuner(model, rule=cfg.rule, gamma=cfg.gamma, max_step=cfg.max_step,
                               tune_curvature=cfg.tune_curvature, distributed=ddp)
    scheduler = None
    if cfg.schedule == "cosine" and cfg.steps > 0:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    conditioners = make_conditioners(cfg.conditioning)
    sampler = torch.Generator(device="cpu").manual_seed(cfg.seed)
    run = _Run(model, opt, tuner, scheduler, conditioners, sampler, History())
    save: Callable[[], None] | None = None
    if ckpt is not None:
        given, path = cfg.checkpoint_path, ckpt
        if cfg.resume and ckpt.exists():
            state = resume.load_for_resume(ckpt, given, fingerprint, cfg.steps, dev)
            resume.apply_state(run, state, given)
            run.history.events.append({"step": run.history.steps_done, "event": "resumed"})

        def _save() -> None:
            resume.save(run.state(), path, given, fingerprint, run.history)
        save = _save
    for c in conditioners:
        c.attach(model)
    try:
        _train(run, cfg, X, y, X_test, y_test, callback, save, progress)
    finally:
        for c in conditioners:
            c.detach()
        if tuner is not None:
            tuner.release()
    return run.history


def _loss_fn(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
    return F.mse_loss(model(xb), yb)


def _all_finite(loss: Tensor, ddp: bool) -> bool:
    """Whether ``loss`` is finite -- on every rank under DDP, so that all take the same branch."""
    if not ddp:
        return bool(torch.isfinite(loss))
    flag = torch.isfinite(loss.detach()).reshape(1).to(loss.dtype)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item() > 0)


def _one_step(run: _Run, cfg: TrainConfig, xb: Tensor, yb: Tensor) -> Tensor:
    """One optimizer (and tuner) step on the batch; returns the loss before the step
    (NaN when it was non-finite on any rank: then nothing was updated)."""
    model, opt, tuner = run.model, run.opt, run.tuner
    if cfg.optimizer == "lm":
        if tuner is not None:  # LM takes no backward pass of ours: make one for the tuner
            first_order_closure_prefix(cfg, model, xb, yb)
            tuner.zero_grad()
            _loss_fn(model, xb, yb).backward()
        loss = opt.step(model, xb, yb)  # the MSE before the step (analytic Jacobian, no autograd)
        ok = _all_finite(loss, run.ddp)
    else:
        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            if tuner is not None:
                tuner.zero_grad()  # only the last evaluation feeds the tuner
            first_order_closure_prefix(cfg, model, xb, yb)  # "lstsq": the exact output layer
            out = _loss_fn(model, xb, yb)
            out.backward()
            for c in run.conditioners:
                c.before_update(model)
            return out

        if cfg.optimizer == "lbfgs":
            loss = opt.step(closure)
            ok = _all_finite(loss, run.ddp)
        else:
            loss = closure()
            ok = _all_finite(loss, run.ddp)
            if ok:
                opt.step()
    if not ok:
        return torch.full_like(loss.detach(), float("nan"))
    if tuner is not None and run.history.steps_done % cfg.tune_every == 0:
        tuner.step()
    if tuner is not None or cfg.optimizer != "lm":
        first_order_closure_prefix(cfg, model, xb, yb)  # "lstsq": the layer for the new state
    with torch.no_grad():
        for c in run.conditioners:
            c.after_update(model)
    if run.scheduler is not None:
        run.scheduler.step()
    return loss.detach()


def _evaluate(run: _Run, cfg: TrainConfig, X, y, X_test, y_test, elapsed: float) -> None:
    h = run.history
    h.eval_step.append(h.steps_done)
    h.eval_time.append(elapsed)
    h.train_rmse.append(_rmse(run.model, X, y))
    if X_test is not None:
        h.test_rmse.append(_rmse(run.model, X_test, y_test))
    if cfg.diagnostics:
        h.dead_fraction.append(dead_fractions(run.model, X[:4096]))
        h.spread.append(parameter_spread(run.model))


def _give_up_message(retries: int, step: int, X: Tensor, y: Tensor, cfg: TrainConfig) -> str:
    """Why training gave up: at step 0 the step sizes cannot be the cause."""
    head = f"loss was non-finite {retries} times in a row at step {step}; gave up"
    if step > 0:
        return f"{head} (lower lr or gamma)"
    big = max(float(X.abs().max()), float(y.abs().max()))
    return (f"{head}: the loss is not finite at the starting parameters, before any step, so "
            f"smaller steps cannot help; the data may be too large for {cfg.dtype} (largest "
            f"|X| or |y| is {big:.3g}): scale X and y (SeparatedMLPRegressor standardises them)")


def _truncate(h: History, steps: int) -> None:
    """Forget history entries beyond ``steps`` steps (after restoring an earlier state)."""
    del h.loss[steps:], h.time[steps:]
    keep = sum(1 for s in h.eval_step if s <= steps)
    for name in ("eval_step", "eval_time", "train_rmse", "test_rmse", "dead_fraction", "spread"):
        del getattr(h, name)[keep:]  # lists not recorded stay empty


def _train(run: _Run, cfg: TrainConfig, X, y, X_test, y_test, callback, save,
           progress=None) -> None:
    h = run.history
    n = X.shape[0]
    elapsed = h.time[-1] if h.time else 0.0
    if run.good is None:  # else resumed with the recovery state of the checkpoint
        run.good, run.good_steps = _snapshot(run.state(with_history=False)), h.steps_done
    spare = None  # a snapshot no longer needed, whose tensors the next one reuses
    if not h.eval_step:
        _evaluate(run, cfg, X, y, X_test, y_test, elapsed)
    h.stop_reason = "steps"
    plateau = PlateauStop(cfg.patience, cfg.min_improvement, h.loss)
    while h.steps_done < cfg.steps:
        if cfg.max_time is not None and elapsed >= cfg.max_time:
            h.stop_reason = "max_time"
            break
        t0 = time.perf_counter()
        before = _snapshot(run.state(with_history=False), spare)
        if cfg.batch_size is None or cfg.batch_size >= n:
            xb, yb = X, y
        else:
            idx = torch.randint(n, (cfg.batch_size,), generator=run.sampler).to(X.device)
            xb, yb = X[idx], y[idx]
        loss = _one_step(run, cfg, xb, yb)
        elapsed += time.perf_counter() - t0
        if not torch.isfinite(loss):
            # The state after ``steps_done`` steps is bad: go back to ``good`` (one step
            # earlier, or the same state if that one failed) with half the step sizes of
            # the previous try. ``retries`` counts failures until training gets past
            # ``fail_step``; replaying the steps before it does not reset the count.
            run.retries += 1
            run.fail_step = h.steps_done
            run.halvings += 1
            h.events.append({"step": h.steps_done, "event": "non-finite loss",
                             "action": f"restored the state after step {run.good_steps}, "
                                       "halved step sizes"})
            if run.retries > cfg.max_retries:
                raise FloatingPointError(_give_up_message(run.retries, h.steps_done, X, y, cfg))
            run.load(_snapshot(run.good))  # a fresh copy: the optimizer must not alias good
            _truncate(h, run.good_steps)
            _scale_steps(run.opt, run.tuner, 0.5 ** run.halvings)
            spare = before
            continue
        if h.steps_done >= run.fail_step:
            run.retries = 0
        spare, run.good, run.good_steps, run.halvings = run.good, before, h.steps_done, 0
        h.loss.append(float(loss))
        h.time.append(elapsed)
        step = h.steps_done
        if step % cfg.eval_every == 0 or step >= cfg.steps:
            _evaluate(run, cfg, X, y, X_test, y_test, elapsed)
            if callback is not None and callback(step, h):
                h.stop_reason = "callback"
                break
        if save is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save()
        if progress is not None:
            progress(h)
        if plateau.update(step, float(loss)):
            h.stop_reason = "plateau"
            break
    if h.eval_step[-1] != h.steps_done:
        _evaluate(run, cfg, X, y, X_test, y_test, elapsed)
    if save is not None:
        save()
