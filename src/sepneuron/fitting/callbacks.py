"""The callback protocol of :func:`sepneuron.fit` and its small built-in callbacks.

A :class:`Callback` (as skorch's ``callbacks/base.py`` or Lightning's ``Callback``) has
one no-op method per hook; each gets the :class:`~sepneuron.fitting.run.Run`. The order::

    setup                        once: check resources, restore a checkpoint (Checkpoint)
    on_train_begin               once, before the first step (the first evaluation)
    until cfg.steps steps, cfg.max_time seconds, or run.stop(reason):
        on_step_begin            training time counts from here (NaN recovery's snapshot)
        on_after_backward        after each loss evaluation's backward (may edit .grad)
        on_after_update          after the optimizer's step, under no_grad (tuner step,
                                 weight edits: call run.weights_moved() after editing)
        -- the loss was non-finite on some rank: on_step_failed (restore or raise), next
        on_step_end              the loss is recorded; evaluation, checkpoints, stops
    on_evaluate                  after each evaluation is recorded (called by Evaluation)
    on_train_end                 after the last step (not after an error)
    teardown                     always, also after an error (remove hooks)

Within a hook, callbacks run in the order of ``Run.callbacks``: fit's own (tuner step,
conditioning, NaN recovery, evaluation, then the ``callback=`` function, a checkpoint from
the config, ``progress=``, the plateau stop), then those passed in ``callbacks=``.
``run.stop(reason)`` ends training after the current step (all of its hooks still run);
the first reason given becomes ``History.stop_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..diagnostics import dead_fractions, parameter_spread

if TYPE_CHECKING:
    from ..conditioning import Conditioner
    from .history import History
    from .run import Run

__all__ = ["Callback", "Evaluation", "TunerStep", "Conditioning", "PlateauStop", "AfterEvaluation",
           "EveryStep", "HOOKS"]

HOOKS = ("setup", "on_train_begin", "on_step_begin", "on_after_backward", "on_after_update",
         "on_step_failed", "on_step_end", "on_evaluate", "on_train_end", "teardown")


class Callback:
    """Hooks into :func:`sepneuron.fit` (module doc); every hook does nothing by default.

    A callback with a ``state_key`` has its :meth:`state_dict` saved in checkpoints under
    that key and given back to :meth:`load_state_dict` on resume.
    """

    state_key: str | None = None

    def setup(self, run: Run) -> None:
        """Once, before anything else; may restore the run's state."""

    def on_train_begin(self, run: Run) -> None:
        """Once, before the first step."""

    def on_step_begin(self, run: Run) -> None:
        """Before each step (counted as training time)."""

    def on_after_backward(self, run: Run) -> None:
        """After each loss evaluation's backward pass; may edit hidden layers' ``.grad``."""

    def on_after_update(self, run: Run) -> None:
        """After the optimizer's step, under ``torch.no_grad()``; may edit weights."""

    def on_step_failed(self, run: Run) -> None:
        """After a step whose loss was not finite (nothing was recorded)."""

    def on_step_end(self, run: Run) -> None:
        """After a step whose loss and time ``run.history`` has recorded."""

    def on_evaluate(self, run: Run) -> None:
        """After an evaluation was recorded in ``run.history``."""

    def on_train_end(self, run: Run) -> None:
        """Once, after the last step, when training ended without an error."""

    def teardown(self, run: Run) -> None:
        """Once, at the very end, also after an error."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _rmse(model: nn.Module, X: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(X), y).sqrt())


class Evaluation(Callback):
    """Records the train (and test) RMSE, with ``diagnostics`` also the dead-neuron
    fractions and the q, c, d spread, before the first step, every ``every`` steps,
    after the last one (``cfg.steps``) and at the end; then calls ``on_evaluate``."""

    def __init__(self, every: int, diagnostics: bool) -> None:
        self.every, self.diagnostics = every, diagnostics

    def evaluate(self, run: Run) -> None:
        h = run.history
        h.eval_step.append(h.steps_done)
        h.eval_time.append(run.elapsed)
        h.train_rmse.append(_rmse(run.model, run.X, run.y))
        if run.X_test is not None and run.y_test is not None:
            h.test_rmse.append(_rmse(run.model, run.X_test, run.y_test))
        if self.diagnostics:
            h.dead_fraction.append(dead_fractions(run.model, run.X[:4096]))
            h.spread.append(parameter_spread(run.model))
        run.dispatch("on_evaluate")

    def on_train_begin(self, run: Run) -> None:
        if not run.history.eval_step:  # a resumed run has its evaluations already
            self.evaluate(run)

    def on_step_end(self, run: Run) -> None:
        step = run.steps_done
        if step % self.every == 0 or step >= run.cfg.steps:
            self.evaluate(run)

    def on_train_end(self, run: Run) -> None:
        if not run.history.eval_step or run.history.eval_step[-1] != run.steps_done:
            self.evaluate(run)


class TunerStep(Callback):
    """The q, c, d step of ``run.tuner`` after every ``every``-th optimizer step (counted
    from 0); the tuner records statistics only in those steps (``SeparatedTuner.recording``:
    the passes of the others would be cleared unread), and its hooks are released at the
    end."""

    def __init__(self, every: int) -> None:
        self.every = every

    def _due(self, run: Run) -> bool:
        """Whether this step ends with a tuner step (``steps_done`` stays put in between)."""
        return run.steps_done % self.every == 0

    def on_step_begin(self, run: Run) -> None:
        if run.tuner is not None:
            run.tuner.recording = self._due(run)

    def on_after_update(self, run: Run) -> None:
        if run.tuner is not None and self._due(run):
            run.tuner.step()
            run.weights_moved()

    def teardown(self, run: Run) -> None:
        if run.tuner is not None:
            run.tuner.release()


class Conditioning(Callback):
    """The conditioning components' hooks (:class:`~sepneuron.conditioning.Conditioner`):
    ``attach`` before the first step, ``before_update`` after each backward pass,
    ``after_update`` after each update, ``detach`` at the end."""

    def __init__(self, components: list[Conditioner]) -> None:
        from ..conditioning import Conditioner

        self.components = components
        # components with an after_update of their own move the weights after each step
        self.moves = any(type(c).after_update is not Conditioner.after_update
                         for c in components)

    def on_train_begin(self, run: Run) -> None:
        for c in self.components:
            c.attach(run.model)

    def on_after_backward(self, run: Run) -> None:
        for c in self.components:
            c.before_update(run.model)

    def on_after_update(self, run: Run) -> None:
        for c in self.components:
            c.after_update(run.model)
        if self.moves:
            run.weights_moved()

    def teardown(self, run: Run) -> None:
        for c in self.components:
            c.detach()


class PlateauStop(Callback):
    """Stop when the loss has not fallen below ``(1 - min_improvement)`` times its best
    for ``patience`` steps in a row (``patience=None``: never); reason ``"plateau"``.

    The best value and its step are kept incrementally (``O(1)`` per step); a resumed run
    replays its recorded losses first.
    """

    def __init__(self, patience: int | None, min_improvement: float) -> None:
        self.patience, self.min_improvement = patience, min_improvement
        self.best, self.best_step = math.inf, 0

    def update(self, step: int, loss: float) -> bool:
        """Record the loss after ``step`` steps; ``True`` when training should stop."""
        if loss < self.best * (1 - self.min_improvement):
            self.best, self.best_step = loss, step
        return self.patience is not None and step - self.best_step >= self.patience

    def on_train_begin(self, run: Run) -> None:
        self.best, self.best_step = math.inf, 0
        for i, v in enumerate(run.history.loss):
            self.update(i + 1, v)

    def on_step_end(self, run: Run) -> None:
        if self.update(run.steps_done, run.history.loss[-1]):
            run.stop("plateau")


class AfterEvaluation(Callback):
    """``fit(callback=fn)``: ``fn(step, history)`` after each step that was evaluated;
    a true result stops training (reason ``"callback"``)."""

    def __init__(self, fn: Callable[[int, History], bool | None]) -> None:
        self.fn = fn

    def on_step_end(self, run: Run) -> None:
        h = run.history
        if h.eval_step and h.eval_step[-1] == h.steps_done and self.fn(h.steps_done, h):
            run.stop("callback")


class EveryStep(Callback):
    """``fit(progress=fn)``: ``fn(history)`` after every step (keep it cheap)."""

    def __init__(self, fn: Callable[[History], None]) -> None:
        self.fn = fn

    def on_step_end(self, run: Run) -> None:
        self.fn(run.history)
