"""A scikit-learn regressor: :class:`SeparatedMLP` trained by :func:`sepneuron.fit`.

Works wherever a scikit-learn estimator does (``Pipeline``, ``GridSearchCV``,
``cross_val_score``) and passes ``sklearn.utils.estimator_checks.check_estimator``.
scikit-learn is an optional dependency (``pip install sepneuron[sklearn]``); importing
this module works without it, fitting does not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from .checkpoint import CheckpointWriteError
from .estimator_input import (
    ESTIMATOR_KINDS,
    PARAMETER_CONSTRAINTS,
    PLAIN_KINDS,
    check_kind_of_data,
    check_ndim,
    rename_mismatch,
)
from .fingerprint import CheckpointMismatchError
from .layers import SeparatedMLP
from .params import Param, is_int
from .progress import TrainingProgress
from .scaling import standardize, standardizer
from .selection import Selection, fit_select
from .settings import (
    AUTO_HIDDEN_CANDIDATES,
    DEFAULT_PATIENCE,
    DEFAULT_STAGES,
    SELECT_MARGIN,
    SELECT_SHARE,
    SELECT_VALIDATION_FRACTION,
)
from .stages import fit_stages
from .train import History, TrainConfig, fit

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted

    _HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    BaseEstimator = RegressorMixin = object
    _HAVE_SKLEARN = False

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sk_validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["ESTIMATOR_KINDS", "PARAMETER_CONSTRAINTS", "SeparatedMLPRegressor"]

_PREDICT_CHUNK = 65536  # rows per forward pass in predict (bounds memory)
# hidden_layer_sizes="auto" races only with enough rows to hold some out and enough steps
# to give each candidate a few; below, it is the first candidate
_RACE_MIN_ROWS, _RACE_MIN_STEPS = 20, 20


def _require_sklearn() -> None:
    if not _HAVE_SKLEARN:  # pragma: no cover
        raise ImportError(
            "SeparatedMLPRegressor needs scikit-learn: pip install sepneuron[sklearn]")


class SeparatedMLPRegressor(RegressorMixin, BaseEstimator):
    """Regression with a separated-neuron MLP and separate tuning of ``q``, ``c``, ``d``.

    The defaults are the best recipe measured on the benchmark's tasks (docs/varpro.md):
    Levenberg-Marquardt on the hidden weights in float64, the output layer solved
    exactly at every step (variable projection), kinks initialised inside the data, stop
    at ``max_steps``, ``max_time`` or a plateau -- on a plain *tanh* MLP
    (``kind="tanh"``), which under this trainer beat the separated SoftPlus analog on 3
    of the 4 benchmark tasks (docs/varpro.md has the table), of the hidden sizes that win a
    hold-out race inside the budget (``hidden_layer_sizes="auto"``). ``kind="softplus"`` or
    ``"relu"`` gives the separated neurons, with ``q, c, d`` by ``rule``.

    Inputs and targets are standardised internally (per column, without overflow or
    underflow at any scale: see :mod:`sepneuron.scaling`); predictions are in the
    units of ``y``. ``y`` of shape ``(n,)`` gives predictions ``(n,)``, ``(n, k)`` gives
    ``(n, k)``.

    Parameters:
        hidden_layer_sizes: widths of the hidden layers (positive ints), or ``"auto"`` (the
            default): race the networks of
            :data:`~sepneuron.settings.AUTO_HIDDEN_CANDIDATES` (``(12, 12)`` and ``(64,)``)
            on 85 % of the rows for 20 % of the budget each, score them on the other 15 %,
            and train the winner on all rows for the rest (:func:`sepneuron.fit_select`;
            ``(64,)`` must have a ten times lower validation MSE to be chosen). With
            ``checkpoint_path`` or ``resume``, fewer than 20 rows or ``max_steps < 20``,
            ``"auto"`` is ``(12, 12)`` without a race.
        kind: ``"softplus"`` or ``"relu"``: the separated analog of each hidden neuron;
            ``"tanh"``: a plain tanh MLP (``PlainMLP``) trained the same way.
        rule: tuner rule for ``q``, ``c``, ``d`` (a name of ``sepneuron.RULES``); ``"grad"``
            lets the weight optimizer learn them, ``None`` keeps them fixed.
        optimizer: weight optimizer, a name of ``sepneuron.settings.OPTIMIZERS``.
        learning_rate: its step size (``> 0``); ``None``: the optimizer's own default
            (``sepneuron.train.DEFAULT_LR``: 3e-3 for Adam, 1 for Levenberg-Marquardt).
        output_layer: ``"lstsq"`` (exact least squares every step, docs/varpro.md),
            ``"optimizer"`` (trained like the other weights) or ``"auto"`` (the default:
            ``"optimizer"`` for Levenberg-Marquardt on more than one hidden layer, else
            ``"lstsq"``; ``sepneuron.solvers.training.resolve_output_layer``).
        init: ``"data"`` (kinks inside the data, ``sepneuron.init``) or ``"default"``.
        stages: networks fitted one after another to the rescaled residual
            (``sepneuron.stages``). ``"auto"`` (the default): up to
            :data:`~sepneuron.settings.DEFAULT_STAGES` (3), a new one only when the one
            before stopped on a plateau (``patience``), all within ``max_steps`` and
            ``max_time`` -- one network where it keeps improving; one network without
            ``patience`` or with ``checkpoint_path`` / ``resume``. An int: that many, each
            with ``max_steps`` and an even share of ``max_time`` (the even split; for
            precision on 10,000 points one wider network given the whole time did better,
            docs/varpro.md); ``1``: one network.
        max_steps: optimizer steps (``>= 1``): in all with ``stages="auto"``, else per stage.
        max_time: stop after this many seconds of training (``None``: no limit), all stages.
        patience: stop a stage after this many steps without a relative fall of the best
            training loss by ``min_improvement`` (``None``: never).
        min_improvement: see ``patience``.
        batch_size: mini-batch size (``None``: the whole training set each step).
        dtype: ``"float64"`` or ``"float32"``: the precision of training.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        random_state: ``None``, an int or a ``numpy.random.RandomState``; it draws the seed
            of a ``torch.Generator`` for the initial weights and the seed of the mini-batch
            sampler. Nothing global is seeded. The same int gives the same predictions.
        verbose: print the step, loss, training RMSE (standardised) and time left to stdout
            at ten evaluations and at least every 2 s during ``fit``, then a summary line.
        checkpoint_path: write a checkpoint there (atomically) every ``checkpoint_every``
            steps and at the end; ``None``: none.
        checkpoint_every: steps between checkpoints (``0``: only at the end).
        resume: continue from ``checkpoint_path`` if it exists (same data and parameters
            give the same model as an uninterrupted fit). Only a checkpoint of the same
            data (after standardisation) and the same parameters is continued; one of other
            data or another ``kind``, ``hidden_layer_sizes``, ``rule``, ``optimizer``,
            ``learning_rate``, ``batch_size`` or ``dtype`` is refused with
            :class:`~sepneuron.fingerprint.CheckpointMismatchError` (a ``ValueError``)
            naming what differs -- so ``cross_validate`` with one shared checkpoint path
            refuses the second fold rather than give it the first fold's model.
            ``max_steps`` may grow (training continues to the new count); below the steps
            already in the checkpoint it is refused. With ``batch_size``, resuming needs an
            int ``random_state`` (it seeds the mini-batches).

    A checkpoint that cannot be written raises :class:`~sepneuron.checkpoint.CheckpointWriteError`
    (an ``OSError`` naming the path) after the fitted attributes are set: the trained
    model is kept (``model_``, ``n_iter_``) and ``predict`` works.

    Attributes after ``fit``: ``model_`` (the trained :class:`SeparatedMLP`, ``PlainMLP``
    for ``kind="tanh"``, or a :class:`~sepneuron.stages.StagedModel` of them when
    ``stages > 1``), ``history_`` (:class:`~sepneuron.History` of the first stage),
    ``histories_`` (one per stage), ``loss_curve_`` (training MSE per step of the first
    stage, in standardised units), ``n_iter_`` (steps done, all stages), ``n_features_in_``,
    ``n_outputs_``, ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``,
    ``hidden_layer_sizes_`` (the sizes trained: the race's winner under ``"auto"``) and
    ``selection_`` (the :class:`~sepneuron.selection.Selection`: validation MSEs, the
    race's histories; empty without a race). With ``stages="auto"`` or ``1``, ``model_`` is
    the network itself when no second stage was added. ``n_iter_`` counts the race's steps.

    The parameters are declared once (:data:`PARAMETER_CONSTRAINTS`, scikit-learn's
    ``_parameter_constraints``); ``fit`` checks them, ``__init__`` only stores them.
    """

    _parameter_constraints: ClassVar[dict[str, Param | str]] = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        hidden_layer_sizes="auto",
        kind="tanh",
        rule="newton",
        optimizer="lm",
        learning_rate=None,
        output_layer="auto",
        init="data",
        stages="auto",
        max_steps=1000,
        max_time=None,
        patience=DEFAULT_PATIENCE,
        min_improvement=1e-4,
        batch_size=None,
        dtype="float64",
        device="cpu",
        random_state=None,
        verbose=False,
        checkpoint_path=None,
        checkpoint_every=0,
        resume=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.kind = kind
        self.rule = rule
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.output_layer = output_layer
        self.init = init
        self.stages = stages
        self.max_steps = max_steps
        self.max_time = max_time
        self.patience = patience
        self.min_improvement = min_improvement
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.resume = resume

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    def _validate_params(self) -> None:
        """Raise ``ValueError`` naming the first parameter outside its declaration
        (:data:`PARAMETER_CONSTRAINTS`), or a combination that cannot work."""
        for name, param in self._parameter_constraints.items():
            if isinstance(param, Param):
                param.check(name, getattr(self, name))
        if self.resume and self.batch_size is not None and not is_int(self.random_state):
            raise ValueError(f"resume=True with batch_size needs an int random_state (it seeds "
                             f"the mini-batches), got random_state={self.random_state!r}")
        if self.stages != "auto" and self.stages > 1 and (
                self.checkpoint_path is not None or self.resume):
            raise ValueError("stages > 1 cannot be combined with checkpoint_path / resume "
                             "(a checkpoint holds one network): use stages=1")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device, got {self.device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available here")

    def _config(self, seed: int) -> TrainConfig:
        """The :class:`TrainConfig` of these (validated) parameters; ``ValueError`` names a
        bad combination."""
        lr = self.learning_rate
        steps = int(self.max_steps)
        cfg = TrainConfig(
            optimizer=self.optimizer,
            lr=None if lr is None else float(lr),
            output_layer=self.output_layer,
            init=self.init,
            steps=steps,
            max_time=None if self.max_time is None else float(self.max_time),
            patience=None if self.patience is None else int(self.patience),
            min_improvement=self.min_improvement,
            batch_size=None if self.batch_size is None else int(self.batch_size),
            rule=self.rule,
            seed=seed,
            dtype=self.dtype,
            device=str(self.device),
            eval_every=max(1, steps // 10) if self.verbose else steps,
            diagnostics=False,
            checkpoint_path=None if self.checkpoint_path is None else str(self.checkpoint_path),
            checkpoint_every=self.checkpoint_every,
            resume=bool(self.resume),
        )
        cfg.validate()  # combinations (lstsq with mini-batches, ...); the fields keep their names
        return cfg

    def _stage_plan(self) -> tuple[int, str]:
        """``(stages, schedule)`` of :func:`~sepneuron.stages.fit_stages` for ``stages``."""
        if self.stages != "auto":
            return int(self.stages), "even"
        if self.patience is None or self.checkpoint_path is not None or self.resume:
            return 1, "plateau"
        return DEFAULT_STAGES, "plateau"

    def _seeds(self) -> tuple[int, int]:
        """Seeds of the weight generator and of the sampler, drawn from ``random_state``."""
        try:
            rng = check_random_state(self.random_state)
        except ValueError:
            raise ValueError(f"random_state must be None, an int or a numpy RandomState, "
                             f"got {self.random_state!r}") from None
        weight_seed, fit_seed = rng.randint(np.iinfo(np.int32).max, size=2)
        return int(weight_seed), int(fit_seed)

    def fit(self, X, y) -> SeparatedMLPRegressor:
        """Standardise ``X`` ``(n, m)`` and ``y`` ``(n,)`` or ``(n, k)``, train; returns self."""
        _require_sklearn()
        self._validate_params()
        weight_seed, fit_seed = self._seeds()
        cfg = self._config(fit_seed)
        check_ndim(X, y)
        check_kind_of_data(X, y)
        X, y = _sk_validate_data(self, X, y, multi_output=True, y_numeric=True,
                                 dtype=np.float64, ensure_min_samples=2)
        y2 = np.asarray(y, dtype=np.float64)
        self._y_1d = y2.ndim == 1
        y2 = y2.reshape(len(y2), -1)                                  # (n, k)
        self.n_outputs_ = y2.shape[1]
        x_mean, x_scale = standardizer(X, "X")
        y_mean, y_scale = standardizer(y2, "y")
        Xs, ys = standardize(X, x_mean, x_scale, "X"), standardize(y2, y_mean, y_scale, "y")
        self.x_mean_, self.x_scale_, self.y_mean_, self.y_scale_ = x_mean, x_scale, y_mean, y_scale
        dt = cfg.torch_dtype
        n_in = X.shape[1]

        def factory(hidden: list[int]) -> Callable[[int], torch.nn.Module]:
            def make_model(stage: int) -> torch.nn.Module:
                # Built on the CPU with a CPU generator: every device starts from the same weights.
                gen = torch.Generator().manual_seed(weight_seed + stage)
                if self.kind in PLAIN_KINDS:
                    from .baselines.mlp import PlainMLP

                    return PlainMLP(n_in, hidden, self.n_outputs_, self.kind, dtype=dt,
                                    generator=gen)
                return SeparatedMLP(n_in, hidden, self.n_outputs_, kind=self.kind, dtype=dt,
                                    generator=gen)
            return make_model

        candidates = self._candidates(X.shape[0], cfg.steps)
        self.hidden_layer_sizes_ = candidates[0]
        self.selection_ = Selection()
        make_model = factory(list(candidates[0]))
        Xt, yt = torch.tensor(Xs, dtype=dt), torch.tensor(ys, dtype=dt)
        progress = None
        if self.verbose:  # a line per evaluation and at least every 2 s, then a summary
            progress = TrainingProgress(steps=cfg.steps, max_time=cfg.max_time, stream=sys.stdout,
                                        bar=False, every=2.0, on_eval=True)
        stages, schedule = self._stage_plan()
        if len(candidates) > 1 or stages > 1:
            if len(candidates) > 1:
                staged, histories, self.selection_ = fit_select(
                    [factory(list(c)) for c in candidates], Xt, yt, cfg, share=SELECT_SHARE,
                    validation_fraction=SELECT_VALIDATION_FRACTION, margin=SELECT_MARGIN,
                    stages=stages, schedule=schedule, progress=progress)
                self.hidden_layer_sizes_ = candidates[self.selection_.chosen]
            else:
                staged, histories = fit_stages(make_model, Xt, yt, cfg, stages=stages,
                                               schedule=schedule, progress=progress)
            first = staged.stages[0].net     # stage 1's scale is 1: the network alone
            assert isinstance(first, torch.nn.Module)
            single = len(staged.stages) == 1 and (stages == 1 or schedule == "plateau")
            self._set_fitted(first if single else staged, histories)
            if progress is not None:
                progress.close(histories[0], summary=True)
            return self
        model = make_model(0)
        try:
            history = fit(model, Xt, yt, cfg, progress=progress)
        except CheckpointWriteError as e:
            self._set_fitted(model, [e.history])  # keep what was trained, then say why it stopped
            raise
        except CheckpointMismatchError as e:
            raise rename_mismatch(e) from None
        self._set_fitted(model, [history])
        if progress is not None:
            progress.close(history, summary=True)
        return self

    def _candidates(self, n_rows: int, steps: int) -> tuple[tuple[int, ...], ...]:
        """The hidden sizes to train: one tuple, or the race's under ``"auto"``."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, str):     # "auto" (validated)
            if (self.checkpoint_path is not None or self.resume or n_rows < _RACE_MIN_ROWS
                    or steps < _RACE_MIN_STEPS):
                return AUTO_HIDDEN_CANDIDATES[:1]
            return AUTO_HIDDEN_CANDIDATES
        return (tuple(int(s) for s in ((sizes,) if is_int(sizes) else sizes)),)

    def _set_fitted(self, model: torch.nn.Module, histories: list[History]) -> None:
        self.model_ = model
        self.histories_: list[History] = histories
        self.history_: History = histories[0]
        self.loss_curve_ = list(histories[0].loss)
        self.n_iter_ = self.selection_.total_steps(histories)

    # -- prediction -------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Predictions for ``X`` ``(n, m)``, in the units and shape convention of ``y``."""
        check_is_fitted(self)
        check_ndim(X)
        check_kind_of_data(X)
        X = _sk_validate_data(self, X, reset=False, dtype=np.float64)
        Xs = standardize(X, self.x_mean_, self.x_scale_, "X")
        param = next(self.model_.parameters())
        outs = []
        with torch.no_grad():
            for i in range(0, Xs.shape[0], _PREDICT_CHUNK):
                xb = torch.tensor(Xs[i:i + _PREDICT_CHUNK], dtype=param.dtype, device=param.device)
                outs.append(self.model_(xb).to("cpu", torch.float64).numpy())
        pred = np.concatenate(outs) * self.y_scale_ + self.y_mean_    # (n, k)
        return pred[:, 0] if self._y_1d else pred

    # -- export -----------------------------------------------------------------------------
    def export_onnx(self, path, *, dtype: str | None = None):
        """Write the fitted model to ``path`` as ONNX: raw ``X`` ``(batch, n_features_in_)``
        in, predictions in the units and shape of ``y`` out (standardisation included).

        ``dtype``: ``"float64"`` or ``"float32"``, the graph's precision (default: the
        training dtype). The file's metadata hold the names, sizes, sepneuron version and
        the final training RMSE (standardised units). Needs ``onnx``
        (``pip install sepneuron[onnx]``); see :mod:`sepneuron.export`. Returns the path.
        """
        from .export import save_onnx, to_onnx

        check_is_fitted(self)
        h = self.history_
        meta: dict[str, Any] = {
            "train_rmse": h.train_rmse[-1] if h.train_rmse else float("nan"),
            "rmse_units": "standardised (fraction of the target's standard deviation)",
            "steps": self.n_iter_,
        }
        if hasattr(self, "feature_names_in_"):
            meta["feature_names"] = ",".join(map(str, self.feature_names_in_))
        proto = to_onnx(self.model_, x_mean=self.x_mean_, x_scale=self.x_scale_,
                        y_mean=self.y_mean_, y_scale=self.y_scale_,
                        dtype=self.dtype if dtype is None else dtype,
                        squeeze_output=self._y_1d, metadata=meta)
        return save_onnx(proto, path)
