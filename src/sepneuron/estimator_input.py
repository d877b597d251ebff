"""What :class:`~sepneuron.SeparatedMLPRegressor` accepts: its parameters' declarations
(:data:`PARAMETER_CONSTRAINTS`, derived from :data:`sepneuron.settings.PARAMS`) and the
checks of ``X`` and ``y`` that name the argument where scikit-learn's do not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .fingerprint import CheckpointMismatchError
from .functional import KINDS
from .params import Param
from .settings import MODEL_PARAMS, PARAMS

__all__ = ["ESTIMATOR_KINDS", "PARAMETER_CONSTRAINTS", "PLAIN_KINDS", "check_kind_of_data",
           "check_ndim", "rename_mismatch"]

PLAIN_KINDS = ("tanh",)  # plain activations the estimator offers (a PlainMLP)
ESTIMATOR_KINDS = (*KINDS, *PLAIN_KINDS)

_SAME = ("rule", "optimizer", "output_layer", "init", "max_time", "patience",
         "min_improvement", "batch_size", "dtype", "checkpoint_path", "checkpoint_every",
         "resume")
PARAMETER_CONSTRAINTS: dict[str, Param | str] = {
    "hidden_layer_sizes": replace(MODEL_PARAMS["hidden_sizes"], also=("auto",)),
    "kind": replace(MODEL_PARAMS["kind"], help="the separated analog of each hidden neuron, "
                    "or a plain activation", choices=lambda: ESTIMATOR_KINDS),
    "learning_rate": replace(PARAMS["lr"], none=True),
    "stages": Param("int", "networks fitted one after another to the residual", low=1,
                    also=("auto",)),
    "max_steps": replace(PARAMS["steps"], low=1),
    **{name: PARAMS[name] for name in _SAME},
    # checked where they are used: by torch.device, check_random_state; any truth value
    "device": "no_validation", "random_state": "no_validation", "verbose": "no_validation",
}
"""The estimator's parameters, declared by :data:`sepneuron.settings.PARAMS` where they are
``TrainConfig`` fields (``learning_rate`` is ``lr`` with ``None`` allowed, ``max_steps`` is
``steps`` from 1), in the role of scikit-learn's ``_parameter_constraints``."""


def check_kind_of_data(X: Any, y: Any = None) -> None:
    """Refuse sparse targets and complex values by name (scikit-learn's messages do not
    say which argument, or drop the imaginary part of some inputs)."""
    from scipy import sparse

    if y is not None and sparse.issparse(y):
        raise ValueError("y is a scipy sparse matrix; give dense targets (y.toarray())")
    for name, v in (("X", X), ("y", y)):
        if v is None or sparse.issparse(v):
            continue  # sparse X: scikit-learn refuses it by name
        if isinstance(v, torch.Tensor):
            is_complex = v.is_complex()
        else:
            try:
                arr = np.asarray(v)
            except (ValueError, TypeError):
                continue  # ragged and the like: scikit-learn names the problem
            is_complex = arr.dtype.kind == "c" or (
                arr.dtype == object and any(isinstance(e, complex) for e in arr.ravel()))
        if is_complex:
            raise ValueError(f"Complex data not supported: {name} has complex values; give real "
                             "numbers (e.g. the real and imaginary parts as separate columns)")


def check_ndim(X: Any, y: Any = None) -> None:
    """Name the argument in shape errors (scikit-learn's own messages do not)."""
    x_nd = getattr(X, "ndim", 2)  # lists and other array-likes: scikit-learn checks them
    if x_nd != 2:
        hint = (". Reshape your data with X.reshape(-1, 1) for a single feature or "
                "X.reshape(1, -1) for a single sample") if x_nd == 1 else ""
        raise ValueError(f"X must have shape (n_samples, n_features), got {X.ndim}-D "
                         f"input of shape {X.shape}{hint}")
    if getattr(y, "ndim", 1) not in (1, 2):
        raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_outputs), got "
                         f"{y.ndim}-D input of shape {y.shape}")


_ESTIMATOR_NAMES = {"lr": "learning_rate", "steps": "max_steps", "seed": "random_state"}


def rename_mismatch(e: CheckpointMismatchError) -> CheckpointMismatchError:
    """Name the estimator's parameters in a fingerprint mismatch (``lr`` -> ``learning_rate``)."""
    names = [f"{k} is {_ESTIMATOR_NAMES[k]}" for k in e.fields if k in _ESTIMATOR_NAMES]
    if not names:
        return e
    return CheckpointMismatchError(f"{e} ({'; '.join(names)} here)", e.fields)
