"""Validation of a :class:`~sepneuron.TrainConfig`: every field takes effect or is refused.

Each field is declared once in :data:`PARAMS` (a :class:`~sepneuron.params.Param`: type,
range, choices, help); the estimator's parameters and the ``sepneuron train`` flags derive
from the same declarations. :func:`validate_config` raises ``ValueError`` naming the first
bad field: a wrong type (``max_time="5"``, ``steps=True``), a value out of range, or a
setting that would be silently ignored in this combination (``momentum`` without SGD, the
tuner's fields without a tuner rule, ``checkpoint_every`` without ``checkpoint_path``, a
gradient-editing conditioning component with Levenberg-Marquardt, which takes no gradient
step).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .optimizers import DEFAULT_LR as _STEP_SIZES, NAMES as _NAMES
from .params import Param

__all__ = ["AUTO_HIDDEN_CANDIDATES", "DEFAULT_HIDDEN_SIZES", "DEFAULT_LR", "DEFAULT_PATIENCE",
           "DEFAULT_STAGES", "DTYPES", "MODEL_PARAMS", "OPTIMIZERS", "PARAMS", "SCHEDULES",
           "SELECT_MARGIN", "SELECT_SHARE", "SELECT_VALIDATION_FRACTION", "validate_config"]

DEFAULT_HIDDEN_SIZES = (12, 12)
"""The default recipe's first network (the first of :data:`AUTO_HIDDEN_CANDIDATES`, the
estimator's ``hidden_layer_sizes="auto"``): on the paper suite
(1000 points, 8 s) a [12, 12] tanh net under the recipe beat the [32, 32] one on 12 of 13
tasks (docs/results/paper/report.md and the README) -- LM steps cost O(n P^2), so ~200
parameters take ~15-20x the steps of ~1150 in the same time."""

AUTO_HIDDEN_CANDIDATES = ((12, 12), (64,))
"""The networks that the estimator's ``hidden_layer_sizes="auto"`` races
(:func:`sepneuron.selection.fit_select`): the default ``[12, 12]`` and one wide layer. On the
paper suite's smooth targets in 2-3 inputs ``[64]`` reached 3-16x lower test RMSE than
``[12, 12]`` in the same 8 s; on kinked ones and the most precise fits it was worse
(docs/varpro.md, "Choosing the network by a race")."""

SELECT_SHARE = 0.2
"""The share of the budget that each candidate of ``hidden_layer_sizes="auto"`` trains for in
the race (two candidates: 40 %, of which the winner's 20 % is kept)."""

SELECT_MARGIN = 10.0
"""``hidden_layer_sizes="auto"``: a candidate after the first (``[12, 12]``) wins the race only
with a validation MSE ten times lower; a deeper network's error keeps falling after the race
where one wide layer's has levelled off (``kan_exp``, ``product``)."""

SELECT_VALIDATION_FRACTION = 0.15
"""The share of the training rows that the race holds out to score the candidates."""

DEFAULT_STAGES = 3
"""The estimator's ``stages="auto"``: up to this many networks, each after a plateau of the one
before (``sepneuron.stages``, schedule ``"plateau"``), in the budget of one. On the paper suite's
tasks (1000 points, 8 s; ``benchmarks/recipes.py --recipes default default_stages_plateau``)
the median test RMSE of ``ridge_tanh`` fell 2.8x, where the first network plateaued on two of
three seeds; on the other tasks the first network took the whole budget (docs/varpro.md)."""

DEFAULT_PATIENCE = 50
"""The estimator's ``patience``: steps without a relative fall of the best training loss by
``min_improvement`` that end a network's training (and, with ``stages="auto"``, start the
next stage)."""

OPTIMIZERS = _NAMES  # the names in sepneuron.optimizers.REGISTRY (a live view)
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "float64")
DEFAULT_LR = _STEP_SIZES  # name -> the registered optimizer's default_lr (a live view)
"""The step size an optimizer gets when ``TrainConfig.lr`` is None (the default): Adam's
3e-3; Levenberg-Marquardt's 1 (the full damped Gauss-Newton step; its damping, not the
step scale, controls the step length -- 3e-3 would take 0.3% of each step)."""
_TUNER_FIELDS = ("gamma", "max_step", "tune_curvature", "tune_every")


def _rules() -> tuple[str, ...]:
    from .tuning import RULES

    return tuple(RULES)


def _inits() -> tuple[str, ...]:
    from .init import INITS

    return tuple(INITS)


def _output_layers() -> tuple[str, ...]:
    from .solvers.varpro import OUTPUT_LAYERS

    return tuple(OUTPUT_LAYERS)


def _kinds() -> tuple[str, ...]:
    from .functional import KINDS

    return tuple(KINDS)


def _conditioners() -> tuple[str, ...]:
    from .conditioning import CONDITIONERS

    return tuple(CONDITIONERS)


_POSITIVE: dict[str, Any] = {"kind": "real", "low": 0.0, "low_open": True, "finite": True}

PARAMS: dict[str, Param] = {
    "optimizer": Param("choice", "weight optimizer", choices=lambda: OPTIMIZERS),
    "lr": Param(**_POSITIVE, help="step size of the weight optimizer"),
    "momentum": Param("real", "SGD momentum (optimizer sgd only)", low=0.0, high=1.0,
                      high_open=True),
    "schedule": Param("choice", "step-size schedule of the weights (cosine: to 0 over steps)",
                      choices=lambda: SCHEDULES),
    "steps": Param("int", "optimizer steps (at most)", low=0),
    "max_time": Param("real", "stop after this many seconds of training", low=0.0,
                      low_open=True, none=True),
    "patience": Param("int", "stop after this many steps without a relative fall of the best "
                      "training loss by min_improvement", low=1, none=True),
    "min_improvement": Param("real", "see patience", low=0.0, high=1.0, high_open=True),
    "output_layer": Param("choice", "lstsq: the output layer solved exactly by least squares "
                          "every step; optimizer: trained like the other weights; auto: "
                          "optimizer for LM on more than one hidden layer, else lstsq",
                          choices=_output_layers),
    "init": Param("choice", "data: every neuron's kink inside the data", choices=_inits),
    "damping": Param(**_POSITIVE, help="Levenberg-Marquardt's initial damping (optimizer lm)"),
    "ridge": Param("real", "relative ridge of the exact output-layer solve (output_layer "
                   "lstsq)", low=0.0, finite=True),
    "weight_decay": Param("real", "Levenberg-Marquardt minimises MSE + weight_decay "
                          "||theta||^2 over its vector, the output layer left out "
                          "(optimizer lm)", low=0.0, finite=True),
    "relative_weight_decay": Param("real", "adds relative_weight_decay * MSE (at each step's "
                                   "start) to LM's weight_decay (optimizer lm)", low=0.0,
                                   finite=True),
    "batch_size": Param("int", "mini-batch size (None: the whole training set)", low=1,
                        none=True),
    "coarse_fraction": Param("real", "coarse to fine: train the first coarse_share of the "
                             "budget on this random share of the rows, then on all of them",
                             low=0.0, high=1.0, low_open=True, high_open=True, none=True),
    "coarse_share": Param("real", "the share of the budget (steps and max_time) on the "
                          "coarse_fraction rows", low=0.0, high=1.0, low_open=True,
                          high_open=True),
    "rule": Param("choice", "tuner rule for q, c, d; grad: trained by the optimizer; None: "
                  "fixed", choices=_rules, none=True),
    "gamma": Param(**_POSITIVE, help="tuner step fraction"),
    "max_step": Param(**_POSITIVE, help="tuner trust region"),
    "tune_curvature": Param("bool", "tune c of SoftPlus layers"),
    "tune_every": Param("int", "a tuner step every this many optimizer steps", low=1),
    "conditioning": Param("names", "optional components (sepneuron.conditioning)",
                          choices=_conditioners),
    "seed": Param("int", "seeds the mini-batch sampler"),
    "dtype": Param("choice", "precision of training", choices=lambda: DTYPES),
    "device": Param("str", "torch device, e.g. cpu, cuda, cuda:1"),
    "eval_every": Param("int", "record train/test RMSE every this many steps", low=1),
    "diagnostics": Param("bool", "record dead-neuron fractions and the spread of q, c, d"),
    "max_retries": Param("int", "non-finite losses in a row before giving up", low=0),
    "checkpoint_path": Param("path", "checkpoint file, written atomically", none=True),
    "checkpoint_every": Param("int", "steps between checkpoints; 0: only at the end", low=0),
    "resume": Param("bool", "continue from checkpoint_path if it exists"),
}
"""Each :class:`~sepneuron.TrainConfig` field's declaration (fields without one are not
checked here)."""


MODEL_PARAMS: dict[str, Param] = {
    "hidden_sizes": Param("sizes", "widths of the hidden layers"),
    "kind": Param("choice", "the separated analog of each hidden neuron", choices=_kinds),
}
"""The network's settings shared by the estimator and ``sepneuron train`` (not TrainConfig's)."""


def validate_config(cfg: Any) -> None:
    """Raise ``ValueError`` naming the first bad or ineffective field of ``cfg``."""
    for f in fields(cfg):
        if f.name in PARAMS:
            PARAMS[f.name].check(f.name, getattr(cfg, f.name))
    path = getattr(cfg, "checkpoint_path", None)
    if getattr(cfg, "resume", False) and not path:
        raise ValueError("resume=True needs checkpoint_path")
    if getattr(cfg, "checkpoint_every", 0) and not path:
        raise ValueError(f"checkpoint_every={cfg.checkpoint_every} needs checkpoint_path "
                         "(nothing would be written)")
    _check_ineffective(cfg)
    _check_solver_fields(cfg)


def _check_ineffective(cfg: Any) -> None:
    """Settings that would be ignored in this combination."""
    defaults = {f.name: f.default for f in fields(cfg)}
    if cfg.optimizer != "sgd" and cfg.momentum != defaults["momentum"]:
        raise ValueError(f"momentum={cfg.momentum!r} applies to optimizer='sgd' only, "
                         f"not {cfg.optimizer!r}")
    if cfg.rule in (None, "grad"):
        for name in _TUNER_FIELDS:
            if getattr(cfg, name) != defaults[name]:
                raise ValueError(f"{name}={getattr(cfg, name)!r} is a setting of the tuner, "
                                 f"which rule={cfg.rule!r} does not use")
    if cfg.optimizer == "lm" and cfg.conditioning:
        from .conditioning import Conditioner, make_conditioners

        for c in make_conditioners(cfg.conditioning):
            if type(c).before_update is not Conditioner.before_update:
                raise ValueError(f"conditioning component {c.name!r} edits gradients before "
                                 "each step; optimizer='lm' takes no gradient step")


def _check_solver_fields(cfg: Any) -> None:
    """The exact output layer's, LM's and the plateau stop's fields: settings that would be
    ignored in this combination."""
    defaults = {f.name: f.default for f in fields(cfg)}
    if cfg.optimizer != "lm" and cfg.damping != defaults["damping"]:
        raise ValueError(f"damping={cfg.damping!r} applies to optimizer='lm' only, "
                         f"not {cfg.optimizer!r}")
    if cfg.optimizer != "lm" and cfg.weight_decay != defaults["weight_decay"]:
        raise ValueError(f"weight_decay={cfg.weight_decay!r} applies to optimizer='lm' only, "
                         f"not {cfg.optimizer!r}")
    if cfg.optimizer != "lm" and cfg.relative_weight_decay != defaults["relative_weight_decay"]:
        raise ValueError(f"relative_weight_decay={cfg.relative_weight_decay!r} applies to "
                         f"optimizer='lm' only, not {cfg.optimizer!r}")
    if cfg.output_layer == "optimizer" and cfg.ridge != defaults["ridge"]:
        raise ValueError(f"ridge={cfg.ridge!r} applies to output_layer='lstsq' (or 'auto') "
                         "only")
    if cfg.coarse_fraction is None and cfg.coarse_share != defaults["coarse_share"]:
        raise ValueError(f"coarse_share={cfg.coarse_share!r} needs coarse_fraction "
                         "(the coarse phase is off)")
    if cfg.coarse_fraction is not None:
        if cfg.batch_size is not None:
            raise ValueError("coarse_fraction trains full-batch steps on a share of the rows; "
                             "with batch_size each step already uses part of them: give one")
        if getattr(cfg, "checkpoint_path", None):
            raise ValueError("coarse_fraction: the switch from the coarse phase to all rows is "
                             "not checkpointed; use it without checkpoint_path")
    if cfg.patience is None and cfg.min_improvement != defaults["min_improvement"]:
        raise ValueError(f"min_improvement={cfg.min_improvement!r} needs patience "
                         "(the plateau stop is off)")
