"""``Run``: the state of one :func:`sepneuron.fit` call, its loss closure and one training step.

Every callback hook gets the run. What defines the next step is its *training state*
(:meth:`Run.state` without history: model, optimizer, tuner, scheduler, conditioning
components, mini-batch sampler); a checkpoint adds the history and the state of each
callback that has a ``state_key`` (NaN recovery's).

One step on a batch ``(X, Y)`` (:meth:`Run.step`)::

    loss = adapter.step(run, X, Y)       # the optimizer (sepneuron.optimizers); it calls
                                         # run.closure(X, Y) for each loss evaluation
    on_after_update hooks (no_grad)      # tuner step, conditioning edits of the weights
    the exact output layer, if the weights moved since it was last solved
    scheduler.step()

The loss is the mean squared error ``mse(model(X), Y)`` (shapes ``(n, out)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..optimizers import StepAdapter
from ..solvers.training import OutputLayerSolve
from ..tuning import SeparatedTuner
from .history import History

if TYPE_CHECKING:
    from ..conditioning import Conditioner
    from .callbacks import Callback
    from .config import TrainConfig

__all__ = ["Run"]


class Run:
    """One training run, as the callbacks see it.

    Attributes: ``cfg``, ``model``, the data ``X``, ``y`` (and ``X_test``, ``y_test`` or
    ``None``) on the run's device and dtype, ``adapter`` and its ``optimizer``, ``tuner``
    (or ``None``), ``scheduler`` (or ``None``), ``conditioners``, ``sampler`` (the
    mini-batch generator), ``output_layer`` (:class:`OutputLayerSolve`), ``history``,
    ``elapsed`` (training seconds so far), ``callbacks`` and ``stop_reason`` (``None``
    until :meth:`stop` is called).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: Sequence[Tensor | None],
                 adapter: StepAdapter, tuner: SeparatedTuner | None,
                 scheduler: Any, conditioners: list[Conditioner],
                 sampler: torch.Generator, output_layer: OutputLayerSolve) -> None:
        self.cfg, self.model = cfg, model
        X, y, self.X_test, self.y_test = data
        assert X is not None and y is not None
        self.X, self.y = X, y
        self.adapter, self.optimizer = adapter, adapter.optimizer
        self.tuner, self.scheduler, self.conditioners = tuner, scheduler, conditioners
        self.sampler, self.output_layer = sampler, output_layer
        self.history = History()
        self.elapsed = 0.0
        self.callbacks: list[Callback] = []
        self.stop_reason: str | None = None
        self.ddp = isinstance(model, DistributedDataParallel)

    # -- for callbacks ----------------------------------------------------------------
    @property
    def steps_done(self) -> int:
        return self.history.steps_done

    def stop(self, reason: str) -> None:
        """End training after the current step; the first reason given is kept."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def weights_moved(self) -> None:
        """Say that the weights changed outside the optimizer (an ``on_after_update`` edit),
        so the exact output layer is solved again before the next use."""
        self.output_layer.moved()

    def dispatch(self, hook: str) -> None:
        """Call ``hook(self)`` on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, hook)(self)

    # -- for the optimizer adapters (sepneuron.optimizers.StepContext) ----------------------
    @property
    def needs_gradient(self) -> bool:
        return self.tuner is not None

    def closure(self, X: Tensor, Y: Tensor) -> Tensor:
        """Zero the gradients, solve the output layer if it is not current, and return the
        loss after its backward pass and the ``on_after_backward`` hooks (which may edit
        the hidden layers' ``.grad``). Only the last evaluation of a step feeds the tuner."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.tuner is not None:
            self.tuner.zero_grad()
        self.output_layer.ensure(self.model, X, Y)
        loss = F.mse_loss(self.model(X), Y)
        loss.backward()
        self.dispatch("on_after_backward")
        self.output_layer.moved()  # the optimizer may move the weights after any evaluation
        return loss

    def all_finite(self, loss: Tensor) -> bool:
        """Whether ``loss`` is finite -- on every rank under DDP, so all take the same branch."""
        if not self.ddp:
            return bool(torch.isfinite(loss))
        flag = torch.isfinite(loss.detach()).reshape(1).to(loss.dtype)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def output_layer_solved(self) -> None:
        self.output_layer.solved()

    # -- the step -------------------------------------------------------------------------
    def batch(self) -> tuple[Tensor, Tensor]:
        """The full data, or a mini-batch of ``cfg.batch_size`` rows drawn with ``sampler``."""
        n, size = self.X.shape[0], self.cfg.batch_size
        if size is None or size >= n:
            return self.X, self.y
        idx = torch.randint(n, (size,), generator=self.sampler).to(self.X.device)
        return self.X[idx], self.y[idx]

    def step(self, X: Tensor, Y: Tensor) -> Tensor:
        """One training step on ``(X, Y)`` (module doc); the loss before it, NaN when it
        was not finite on some rank (then the updates after the optimizer are skipped)."""
        loss = self.adapter.step(self, X, Y)
        if not torch.isfinite(loss):
            return loss
        with torch.no_grad():
            self.dispatch("on_after_update")
        self.output_layer.ensure(self.model, X, Y)  # what evaluation and checkpoints see
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    # -- state ----------------------------------------------------------------------------
    def state(self, with_history: bool = True) -> dict[str, Any]:
        """The training state; ``with_history``: also the history and the callbacks' state."""
        out: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "tuner": None if self.tuner is None else self.tuner.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "conditioners": [c.state_dict() for c in self.conditioners],
            "sampler": self.sampler.get_state(),
        }
        if with_history:
            out["history"] = self.history.to_dict()
            for cb in self.callbacks:
                if cb.state_key is not None:
                    out[cb.state_key] = cb.state_dict()
        return out

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (a checkpoint, or a snapshot without history)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.tuner is not None and state["tuner"] is not None:
            self.tuner.load_state_dict(state["tuner"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for c, s in zip(self.conditioners, state["conditioners"], strict=True):
            c.load_state_dict(s)
        self.sampler.set_state(state["sampler"].cpu())  # map_location may have moved it
        self.output_layer.moved()
        if "history" in state:
            self.history = History.from_dict(state["history"])
            self.elapsed = self.history.time[-1] if self.history.time else 0.0
        for cb in self.callbacks:
            if cb.state_key is not None and cb.state_key in state:
                cb.load_state_dict(state[cb.state_key])
