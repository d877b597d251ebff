"""What a checkpoint belongs to: the training data and every setting that shapes the run.

:func:`run_fingerprint` is stored in each checkpoint that :func:`sepneuron.fit` writes;
on resume, :func:`differences` lists what changed, and ``fit`` refuses to continue when
anything did (:class:`CheckpointMismatchError`). The data part is a BLAKE2b hash of the
bytes of ``X`` and ``y`` (after conversion to the training dtype) with their shapes and
dtype: one pass over the data, computed once per ``fit`` and only when
``checkpoint_path`` is set.

Settings that may change between a run and its resume (they do not change what the
steps compute): ``steps`` (more steps continue; with ``schedule="cosine"`` it sets the
schedule's length and must stay), ``max_time``, ``eval_every``, ``diagnostics``,
``max_retries``, ``device``, the checkpoint options, and ``seed`` without mini-batches
(it seeds only the mini-batch sampler, whose state the checkpoint holds anyway).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from torch import Tensor, nn

from .checkpoint import CheckpointError

__all__ = [
    "CheckpointMismatchError",
    "check_matches",
    "combine_ranks",
    "data_fingerprint",
    "differences",
    "run_fingerprint",
]


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written by a run with other data or settings. ``fields`` names
    what differs (``"X"``, ``"y"``, ``"model"`` or a :class:`~sepneuron.TrainConfig` field)."""

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.fields = fields


def _tensor_digest(t: Tensor) -> str:
    """``"shape dtype hash"`` of a tensor's values (on any device)."""
    a = np.ascontiguousarray(t.detach().cpu().numpy())
    h = hashlib.blake2b(a.view(np.uint8).reshape(-1).data, digest_size=16).hexdigest()
    return f"{tuple(a.shape)} {a.dtype} {h}"


def data_fingerprint(X: Tensor, y: Tensor) -> dict[str, str]:
    """``{"X": ..., "y": ...}``: shape, dtype and a hash of the values of each."""
    return {"X": _tensor_digest(X), "y": _tensor_digest(y)}


def _component(c: Any) -> str:
    """A conditioning component by name, or an instance by its class and options."""
    if isinstance(c, str):
        return c
    options = c.options() if callable(getattr(c, "options", None)) else {}
    return f"{type(c).__name__}({options})"


def combine_ranks(data: dict[str, str]) -> dict[str, str]:
    """Under ``torch.distributed``: one data fingerprint of every rank's shard (in rank
    order), the same on all ranks, so that a shared checkpoint matches on each of them."""
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, data)
    return {k: f"{len(parts)} shards " + hashlib.blake2b(
        "|".join(p[k] for p in parts).encode(), digest_size=16).hexdigest() for k in data}


def _settings(cfg: Any) -> dict[str, Any]:
    """The :class:`~sepneuron.TrainConfig` fields that change what the steps compute."""
    out: dict[str, Any] = {"optimizer": cfg.optimizer, "lr": cfg.lr,
                           "schedule": cfg.schedule, "batch_size": cfg.batch_size,
                           "rule": cfg.rule, "dtype": cfg.dtype,
                           "conditioning": [_component(c) for c in cfg.conditioning]}
    if cfg.optimizer == "sgd":
        out["momentum"] = cfg.momentum
    if cfg.schedule == "cosine":
        out["steps"] = cfg.steps
    if cfg.batch_size is not None:
        out["seed"] = cfg.seed
    if cfg.rule not in (None, "grad"):
        for name in ("gamma", "max_step", "tune_curvature", "tune_every"):
            out[name] = getattr(cfg, name)
    return out


def run_fingerprint(model: nn.Module, X: Tensor, y: Tensor, cfg: Any) -> dict[str, Any]:
    """The fingerprint a checkpoint stores: data, model architecture (its ``repr``, which
    names every layer's sizes and each separated layer's kind) and settings."""
    inner = getattr(model, "module", model)  # DistributedDataParallel -> the model
    return {"data": data_fingerprint(X, y), "model": repr(inner), "settings": _settings(cfg)}


def _first_line_diff(a: str, b: str) -> tuple[str, str]:
    for la, lb in zip(a.splitlines(), b.splitlines(), strict=False):
        if la != lb:
            return la.strip(), lb.strip()
    return a.splitlines()[-1].strip() if a else "", b.splitlines()[-1].strip() if b else ""


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(field, "what the checkpoint has, what this run has"), ...]``; empty if equal."""
    out = []
    for k in ("X", "y"):
        a, b = saved["data"].get(k), now["data"][k]
        if a != b:
            sa, sb = (a or "").rsplit(" ", 1)[0], b.rsplit(" ", 1)[0]
            what = (f"other values (shape, dtype {sb} in both)" if sa == sb
                    else f"{sa} in the checkpoint, {sb} now")
            out.append((k, f"the training data {k} differ: {what}"))
    if saved["model"] != now["model"]:
        a, b = _first_line_diff(saved["model"], now["model"])
        out.append(("model", f"another model: {a!r} in the checkpoint, {b!r} now"))
    s, n = saved["settings"], now["settings"]
    changed = [k for k in sorted(s.keys() | n.keys()) if s.get(k) != n.get(k)]
    both = [k for k in changed if k in s and k in n]
    for k in both or changed:  # a setting used on one side only follows from another change
        a = s.get(k, "(not used)")
        b = n.get(k, "(not used)")
        out.append((k, f"{k} {a!r} in the checkpoint, {b!r} now"))
    return out


def check_matches(path: Any, state: dict[str, Any], now: dict[str, Any]) -> None:
    """Raise :class:`CheckpointMismatchError` naming ``path`` and every difference."""
    saved = state.get("fingerprint")
    if not isinstance(saved, dict) or not {"data", "model", "settings"} <= saved.keys():
        raise CheckpointMismatchError(
            f"checkpoint {path} has no fingerprint of its data and settings (written by an "
            "older sepneuron?), so resuming cannot be checked; delete it or train with "
            "resume=False", ["fingerprint"])
    diff = differences(saved, now)
    if diff:
        raise CheckpointMismatchError(
            f"checkpoint {path} belongs to another run: {'; '.join(d for _, d in diff)}. "
            "Resume with the same data and settings, or use another checkpoint path "
            "(or start without resuming, which overwrites it)", [k for k, _ in diff])


def describe_steps(state: dict[str, Any]) -> int:
    """Optimizer steps stored in a checkpoint."""
    return len(state["history"]["loss"])

