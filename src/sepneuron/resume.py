"""The checks :func:`sepneuron.fit` makes before training and around its checkpoints.

* :func:`check_model_fits_data`: one forward pass on the first row; the model must take
  ``X``'s width and give ``y``'s (no broadcasting of a wrong-width ``y`` into the loss).
* :func:`load_for_resume`: the checkpoint is read (:class:`CheckpointError` naming the
  file when it cannot be), must match this run's data and settings
  (:class:`CheckpointMismatchError`, see :mod:`sepneuron.fingerprint`) and hold at most
  ``steps`` steps.
* :func:`save`: writes the state with its fingerprint; an ``OSError`` becomes
  :class:`CheckpointWriteError` naming the path given, carrying the history so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    FIT_KEYS,
    FORMAT,
    CheckpointError,
    CheckpointWriteError,
    atomic_save,
    load_checkpoint,
)
from .fingerprint import check_matches

__all__ = ["check_model_fits_data", "load_for_resume", "save"]


def check_model_fits_data(model: nn.Module, X: Tensor, y: Tensor) -> None:
    """``ValueError`` when ``model`` cannot take ``X`` ``(n, in)`` or does not give ``y``'s
    shape ``(n, out)`` (checked on the first row, without gradients)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel: no collective here
    was_training = inner.training
    inner.eval()  # no side effects (batch-norm statistics) and no batch-of-1 errors
    try:
        with torch.no_grad():
            out = inner(X[:1])
    except RuntimeError as e:
        raise ValueError(f"the model cannot take X of shape {tuple(X.shape)} "
                         f"({str(e).splitlines()[0]})") from None
    finally:
        inner.train(was_training)
    if out.ndim != 2 or out.shape[1] != y.shape[1]:
        raise ValueError(f"y has {y.shape[1]} column(s) but the model gives outputs of shape "
                         f"{tuple(out.shape[1:])} per sample; give y of shape "
                         f"(n_samples, {out.shape[-1]}) or a model with {y.shape[1]} outputs")


def load_for_resume(path: Path, given: Any, fingerprint: dict[str, Any], steps: int,
                    map_location: Any) -> dict[str, Any]:
    """The checkpoint at ``path`` if it belongs to this run (``given``: the path as the
    user wrote it, for messages), else :class:`CheckpointError`."""
    state = load_checkpoint(path, map_location=map_location, required=FIT_KEYS)
    check_matches(given, state, fingerprint)
    done = len(state["history"]["loss"])
    if done > steps:
        raise CheckpointError(f"checkpoint {given} holds {done} steps, more than steps={steps}; "
                              f"ask for at least {done} steps to resume it")
    return state


def apply_state(run: Any, state: dict[str, Any], given: Any) -> None:
    """``run.load(state)``, with any failure named as a :class:`CheckpointError`."""
    try:
        run.load(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        raise CheckpointError(f"checkpoint {given} does not fit this model and optimizer "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def save(state: dict[str, Any], path: Path, given: Any, fingerprint: dict[str, Any],
         history: Any) -> None:
    """Write ``state`` with its fingerprint to ``path`` atomically."""
    try:
        atomic_save({**state, "format": FORMAT, "fingerprint": fingerprint}, path, checksum=True)
    except OSError as e:
        reason = e.strerror or str(e)
        raise CheckpointWriteError(
            f"could not write the checkpoint {given} after step {history.steps_done}: {reason}; "
            "the trained parameters are in the model", history) from None
