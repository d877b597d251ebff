"""Validation of a :class:`~sepneuron.TrainConfig`: every field takes effect or is refused.

:func:`validate_config` raises ``ValueError`` naming the first bad field: a wrong type
(``max_time="5"``, ``steps=True``), a value out of range, or a setting that would be
silently ignored in this combination (``momentum`` without SGD, the tuner's fields
without a tuner rule, ``checkpoint_every`` without ``checkpoint_path``, a gradient-editing
conditioning component with Levenberg-Marquardt, which takes no gradient step).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import fields
from typing import Any

from .optimizers import DEFAULT_LR as _STEP_SIZES, NAMES as _NAMES

__all__ = ["DEFAULT_LR", "DTYPES", "OPTIMIZERS", "SCHEDULES", "validate_config"]

OPTIMIZERS = _NAMES  # the names in sepneuron.optimizers.REGISTRY (a live view)
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "float64")
DEFAULT_LR = _STEP_SIZES  # name -> the registered optimizer's default_lr (a live view)
"""The step size an optimizer gets when ``TrainConfig.lr`` is None (the default): Adam's
3e-3; Levenberg-Marquardt's 1 (the full damped Gauss-Newton step; its damping, not the
step scale, controls the step length -- 3e-3 would take 0.3% of each step)."""
_TUNER_FIELDS = ("gamma", "max_step", "tune_curvature", "tune_every")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _int_at_least(cfg: Any, name: str, lo: int, what: str) -> None:
    v = getattr(cfg, name)
    if not (_is_int(v) and v >= lo):
        raise ValueError(f"{name} must be {what}, got {v!r}")


def validate_config(cfg: Any) -> None:
    """Raise ``ValueError`` naming the first bad or ineffective field of ``cfg``."""
    from .tuning import RULES

    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if cfg.rule is not None and cfg.rule not in RULES:
        raise ValueError(f"rule must be None or one of {sorted(RULES)}, got {cfg.rule!r}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {cfg.dtype!r}")
    for name in ("lr", "gamma", "max_step"):
        v = getattr(cfg, name)
        if not (_is_real(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not (_is_real(cfg.momentum) and 0 <= cfg.momentum < 1):
        raise ValueError(f"momentum must be in [0, 1), got {cfg.momentum!r}")
    _int_at_least(cfg, "steps", 0, "a non-negative int")
    if cfg.max_time is not None and not (_is_real(cfg.max_time) and cfg.max_time > 0):
        raise ValueError(f"max_time must be None or > 0 (seconds), got {cfg.max_time!r}")
    if cfg.batch_size is not None:
        _int_at_least(cfg, "batch_size", 1, "None or a positive int")
    for name in ("tune_every", "eval_every"):
        _int_at_least(cfg, name, 1, "a positive int")
    for name in ("max_retries", "checkpoint_every"):
        _int_at_least(cfg, name, 0, ">= 0 (an int)")
    if not _is_int(cfg.seed):
        raise ValueError(f"seed must be an int, got {cfg.seed!r}")
    if not isinstance(cfg.tune_curvature, bool):
        raise ValueError(f"tune_curvature must be True or False, got {cfg.tune_curvature!r}")
    if cfg.checkpoint_path is not None and not str(cfg.checkpoint_path):
        raise ValueError("checkpoint_path must be None or a file path, got ''")
    if cfg.resume and not cfg.checkpoint_path:
        raise ValueError("resume=True needs checkpoint_path")
    if cfg.checkpoint_every and not cfg.checkpoint_path:
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
    """The exact output layer's, LM's and the plateau stop's fields: values, and settings
    that would be ignored in this combination."""
    from .init import INITS
    from .solvers.varpro import OUTPUT_LAYERS

    if cfg.output_layer not in OUTPUT_LAYERS:
        raise ValueError(f"output_layer must be one of {OUTPUT_LAYERS}, got {cfg.output_layer!r}")
    if cfg.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {cfg.init!r}")
    if not (_is_real(cfg.damping) and math.isfinite(cfg.damping) and cfg.damping > 0):
        raise ValueError(f"damping must be a positive finite number, got {cfg.damping!r}")
    if not (_is_real(cfg.ridge) and math.isfinite(cfg.ridge) and cfg.ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {cfg.ridge!r}")
    if cfg.patience is not None:
        _int_at_least(cfg, "patience", 1, "None or a positive int")
    if not (_is_real(cfg.min_improvement) and 0 <= cfg.min_improvement < 1):
        raise ValueError(f"min_improvement must be in [0, 1), got {cfg.min_improvement!r}")
    defaults = {f.name: f.default for f in fields(cfg)}
    if cfg.optimizer != "lm" and cfg.damping != defaults["damping"]:
        raise ValueError(f"damping={cfg.damping!r} applies to optimizer='lm' only, "
                         f"not {cfg.optimizer!r}")
    if cfg.output_layer != "lstsq" and cfg.ridge != defaults["ridge"]:
        raise ValueError(f"ridge={cfg.ridge!r} applies to output_layer='lstsq' only")
    if cfg.patience is None and cfg.min_improvement != defaults["min_improvement"]:
        raise ValueError(f"min_improvement={cfg.min_improvement!r} needs patience "
                         "(the plateau stop is off)")
