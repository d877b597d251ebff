"""Progress of a training run: a tqdm bar on a terminal, plain periodic lines elsewhere.

A :class:`TrainingProgress` is passed to :func:`sepneuron.fit` as ``progress=``; ``fit``
calls it with the :class:`~sepneuron.train.History` after every step and it decides, by
the clock, whether to draw. Each report shows the step, the last training loss (MSE),
the last evaluated train / test RMSE and the time left: ``(steps left) x (training
seconds per step so far)``, capped by what ``max_time`` leaves. Nothing is written unless
one is made; the library never makes one on its own (the estimator's ``verbose=True``
and ``sepneuron train`` do).
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

__all__ = ["TrainingProgress"]


def _g(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3e}"


def _secs(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class TrainingProgress:
    """Report on ``stream`` at most every ``every`` seconds (lines) or 0.2 s (bar).

    Parameters:
        steps: the run's total steps (``TrainConfig.steps``).
        max_time: its training-time limit in seconds, or ``None``.
        stream: where to write (default ``sys.stderr``).
        bar: ``True`` a tqdm bar (falls back to lines without tqdm), ``False`` lines,
            ``None`` a bar exactly when ``stream`` is a terminal.
        every: seconds between plain lines (``> 0``).
        on_eval: lines mode: also report each new evaluation (``TrainConfig.eval_every``).
        prefix: put before each line, e.g. ``"sepneuron train: "``.
    """

    def __init__(self, steps: int, max_time: float | None = None, *, stream: IO[str] | None = None,
                 bar: bool | None = None, every: float = 10.0, on_eval: bool = False,
                 prefix: str = "") -> None:
        if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
            raise ValueError(f"every must be a positive number of seconds, got {every!r}")
        self.steps, self.max_time = steps, max_time
        self.stream = sys.stderr if stream is None else stream
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = bool(isatty and isatty())
        self._tqdm = _tqdm_class() if bar else None
        self.every, self.on_eval, self.prefix = float(every), on_eval, prefix
        self._bar: Any = None
        self._last = time.monotonic()
        self._last_eval = -1
        self.lines = 0  # lines written (lines mode)

    def time_left(self, history: Any) -> float:
        """Estimated training seconds left, from the pace so far and ``max_time``."""
        done = history.steps_done
        spent = history.time[-1] if history.time else 0.0
        left = (self.steps - done) * spent / done if done else math.inf
        if self.max_time is not None:
            left = min(left, self.max_time - spent)
        return max(0.0, left)

    def _status(self, h: Any) -> str:
        loss = f"loss {_g(h.loss[-1] if h.loss else None)}"
        if not h.eval_step:
            return loss
        test = f" test {_g(h.test_rmse[-1])}" if h.test_rmse else ""
        return f"{loss}  RMSE at step {h.eval_step[-1]}: train {_g(h.train_rmse[-1])}{test}"

    def __call__(self, history: Any) -> None:
        now = time.monotonic()
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=self.steps, initial=history.steps_done, unit="step",
                                       file=self.stream, dynamic_ncols=True, leave=False,
                                       desc=self.prefix.rstrip(": ") or None)
            elif now - self._last >= 0.2:
                self._bar.n = history.steps_done
                left = self.time_left(history)
                self._bar.set_postfix_str(f"{self._status(history)}, ~{_secs(left)} left",
                                          refresh=False)
                self._bar.refresh()
                self._last = now
            return
        new_eval = bool(history.eval_step) and history.eval_step[-1] != self._last_eval
        due = now - self._last >= self.every or (self.on_eval and new_eval)
        if due:
            self._line(history)
            self._last = now

    def _line(self, h: Any) -> None:
        if h.eval_step:
            self._last_eval = h.eval_step[-1]
        spent = h.time[-1] if h.time else 0.0
        pct = f" ({100 * h.steps_done / self.steps:.0f}%)" if self.steps else ""
        print(f"{self.prefix}step {h.steps_done}/{self.steps}{pct}  {self._status(h)}  "
              f"{spent:.1f} s, ~{_secs(self.time_left(h))} left", file=self.stream, flush=True)
        self.lines += 1

    def close(self, history: Any = None, *, summary: bool = False) -> None:
        """Remove the bar; with ``summary``, write one closing line (steps, time, stop reason)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if summary and history is not None:
            spent = history.time[-1] if history.time else 0.0
            print(f"{self.prefix}done: {history.steps_done} steps in {spent:.1f} s of training "
                  f"(stopped by {history.stop_reason or 'steps'})  {self._status(history)}",
                  file=self.stream, flush=True)
            self.lines += 1


def _tqdm_class() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the bench extra: plain lines without it
        return None
    return tqdm
