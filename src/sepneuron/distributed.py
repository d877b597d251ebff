"""Data-parallel training with ``torch.distributed``: DDP for the weights, all-reduced
statistics for the separate tuner.

Launch one process per device with ``torchrun``; in each::

    from sepneuron import SeparatedMLP, TrainConfig
    from sepneuron.distributed import init_from_env, fit_distributed

    rank, world = init_from_env()                  # gloo on CPU, nccl with CUDA
    model = SeparatedMLP(2, [64, 64], 1, generator=torch.Generator().manual_seed(0))
    history = fit_distributed(model, X, y, TrainConfig(optimizer="adam", output_layer="optimizer",
                                                       init="default", steps=2000))  # adam or sgd

Each rank trains on its own contiguous, equal share of ``(X, y)``. DDP averages the weight
gradients of the per-rank mean losses, and the tuner sums its statistics over the ranks
(``SeparatedTuner`` all-reduces them), so with full batches every rank ends with the same
parameters as one process on the whole data (to rounding). See ``docs/scaling.md``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .layers import SeparatedActivation
from .train import History, TrainConfig, fit

__all__ = ["init_from_env", "shard", "fit_distributed"]


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun``'s environment describes; ``(rank, world)``.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. ``backend``
    defaults to ``"nccl"`` when CUDA is available and ``"gloo"`` otherwise; it must suit
    the training device (NCCL needs CUDA tensors: pass ``"gloo"`` to train on the CPU of
    a GPU machine). Does nothing (but return the rank and size) if the group is already
    initialised.
    """
    if not torch.distributed.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if not torch.distributed.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if k not in os.environ]
        if missing:
            raise ValueError(f"environment variables {missing} are not set: launch with torchrun")
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def shard(t: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's contiguous share of the rows of ``t`` ``(n, ...)``: ``(n / world, ...)``.

    ``n`` must divide evenly: ranks then average equal-sized means, which is the mean
    over all rows (unequal shares would weight their samples unequally).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
    n = t.shape[0]
    if n % world_size:
        raise ValueError(f"{n} samples do not split evenly over {world_size} ranks; "
                         f"drop {n % world_size} of them")
    size = n // world_size
    return t[rank * size:(rank + 1) * size]


def _local_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        local = int(os.environ.get("LOCAL_RANK", torch.distributed.get_rank()))
        dev = torch.device("cuda", local % torch.cuda.device_count())
    return dev


def fit_distributed(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    **fit_kwargs: Any,
) -> History:
    """:func:`sepneuron.fit` of ``model`` wrapped in DDP, on this rank's :func:`shard`.

    Call it on every rank with the same ``model`` initialisation and the same full
    ``(X, y)`` (DDP also broadcasts rank 0's parameters at the start). ``config.device``
    ``"cuda"`` means this rank's GPU (``LOCAL_RANK``). ``batch_size`` is per rank. The
    returned history holds this rank's losses; ``X_test``/``y_test`` (in ``fit_kwargs``)
    are evaluated whole on every rank. Every rank writes ``checkpoint_path`` (the states
    are identical; the write is atomic) and can resume from it.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError("torch.distributed is not initialised: call init_from_env() first")
    cfg = config or TrainConfig(optimizer="adam", output_layer="optimizer", init="default")
    cfg.validate()
    dev = _local_device(cfg.device)
    cfg = dataclasses.replace(cfg, device=str(dev))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model.to(device=dev, dtype=cfg.torch_dtype)
    if cfg.rule is None:  # fit freezes q, c, d; DDP must not wait for their gradients
        for m in model.modules():
            if isinstance(m, SeparatedActivation):
                m.requires_grad_(False)
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return fit(ddp, shard(X, rank, world), shard(y, rank, world), cfg, **fit_kwargs)
