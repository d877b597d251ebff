"""NaN recovery: a non-finite loss restores the last good state and halves the step sizes.

:class:`Recovery` snapshots the training state before each step. When the loss of a
step is non-finite (on any rank), the state after ``steps_done`` steps is bad: it goes
back to ``good`` -- the state before the last successful step (one step earlier, or the
same state if that one failed) -- forgets the history after it, and sets the step sizes
of the optimizer and the tuner to ``0.5 ** k`` of theirs, ``k`` the failures since
``good`` was taken. After ``max_retries`` failures in a row it raises
``FloatingPointError``; replaying the steps before the failed one does not reset the
count, getting past it does. Its state is saved in checkpoints (``"recovery"``), so a
resumed run recovers exactly as a straight one would.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .callbacks import Callback

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Recovery", "snapshot"]


def snapshot(src: Any, into: Any = None) -> Any:
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
        out = {k: snapshot(v, old.get(k)) for k, v in src.items()}
        if hasattr(src, "_metadata"):  # a module's state dict: keep its version metadata
            out = OrderedDict(out)
            out._metadata = src._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(src, (list, tuple)):
        same = isinstance(into, (list, tuple)) and len(into) == len(src)
        prev = into if same else [None] * len(src)
        return type(src)(snapshot(v, o) for v, o in zip(src, prev, strict=True))
    if src is None or isinstance(src, (bool, int, float, complex, str, bytes)) or callable(src):
        return src
    return copy.deepcopy(src)


def _give_up_message(retries: int, step: int, run: Run) -> str:
    """Why training gave up: at step 0 the step sizes cannot be the cause."""
    head = f"loss was non-finite {retries} times in a row at step {step}; gave up"
    if step > 0:
        return f"{head} (lower lr or gamma)"
    big = max(float(run.X.abs().max()), float(run.y.abs().max()))
    return (f"{head}: the loss is not finite at the starting parameters, before any step, so "
            f"smaller steps cannot help; the data may be too large for {run.cfg.dtype} (largest "
            f"|X| or |y| is {big:.3g}): scale X and y (SeparatedMLPRegressor standardises them)")


class Recovery(Callback):
    """Restore, halve, retry (module doc); at most ``max_retries`` failures in a row."""

    state_key = "recovery"

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        # the last state whose loss was finite and its step count; failures in a row, the
        # step count of the last one, and halvings of the step sizes since good was taken
        self.good: dict[str, Any] | None = None
        self.good_steps = 0
        self.retries = 0
        self.fail_step = -1
        self.halvings = 0
        self._before: Any = None  # the state before the current step
        self._spare: Any = None   # a snapshot no longer needed, whose tensors the next reuses

    def state_dict(self) -> dict[str, Any]:
        return {"good": self.good, "good_steps": self.good_steps, "retries": self.retries,
                "fail_step": self.fail_step, "halvings": self.halvings}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.good, self.good_steps = state["good"], state["good_steps"]
        self.retries, self.fail_step = state["retries"], state["fail_step"]
        self.halvings = state["halvings"]

    def on_train_begin(self, run: Run) -> None:
        if self.good is None:  # else resumed with the recovery state of the checkpoint
            self.good, self.good_steps = snapshot(run.state(with_history=False)), run.steps_done

    def on_step_begin(self, run: Run) -> None:
        self._before = snapshot(run.state(with_history=False), self._spare)

    def on_step_end(self, run: Run) -> None:
        done_before = run.steps_done - 1  # the step just recorded started there
        if done_before >= self.fail_step:
            self.retries = 0
        self._spare, self.good, self.good_steps = self.good, self._before, done_before
        self.halvings = 0

    def on_step_failed(self, run: Run) -> None:
        h = run.history
        self.retries += 1
        self.fail_step = h.steps_done
        self.halvings += 1
        h.events.append({"step": h.steps_done, "event": "non-finite loss",
                         "action": f"restored the state after step {self.good_steps}, "
                                   "halved step sizes"})
        if self.retries > self.max_retries:
            raise FloatingPointError(_give_up_message(self.retries, h.steps_done, run))
        run.load(snapshot(self.good))  # a fresh copy: the optimizer must not alias good
        h.truncate(self.good_steps)
        factor = 0.5 ** self.halvings
        groups = [*run.optimizer.param_groups,
                  *(run.tuner.param_groups if run.tuner is not None else [])]
        for group in groups:
            group["lr"] *= factor
        self._spare = self._before
