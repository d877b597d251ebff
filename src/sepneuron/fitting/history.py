"""``History``: what happened during one :func:`sepneuron.fit` run (a dataclass of lists)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["History"]

_PER_EVALUATION = ("eval_step", "eval_time", "train_rmse", "test_rmse", "dead_fraction", "spread")


@dataclass
class History:
    """What happened during :func:`fit`. Per step: ``loss``, ``time``; per evaluation the rest."""

    loss: list[float] = field(default_factory=list)        # train loss (MSE) at each step
    time: list[float] = field(default_factory=list)        # cumulative training s after each step
    eval_step: list[int] = field(default_factory=list)     # steps done at each evaluation
    eval_time: list[float] = field(default_factory=list)   # training seconds at each evaluation
    train_rmse: list[float] = field(default_factory=list)  # on the whole training set
    test_rmse: list[float] = field(default_factory=list)   # when test data are given
    dead_fraction: list[list[float]] = field(default_factory=list)  # per activation layer
    spread: list[list[dict[str, float]]] = field(default_factory=list)  # per separated layer
    events: list[dict[str, Any]] = field(default_factory=list)  # non-finite losses, resumes
    stop_reason: str = ""       # "steps" | "max_time" | "plateau" | "callback" | a callback's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**d)

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    @property
    def final_test_rmse(self) -> float:
        return self.test_rmse[-1] if self.test_rmse else float("nan")

    def record(self, loss: float, time: float) -> None:
        """One more step: its loss (before the step) and the training seconds after it."""
        self.loss.append(loss)
        self.time.append(time)

    def truncate(self, steps: int) -> None:
        """Forget the entries beyond ``steps`` steps (after restoring an earlier state)."""
        del self.loss[steps:], self.time[steps:]
        keep = sum(1 for s in self.eval_step if s <= steps)
        for name in _PER_EVALUATION:
            del getattr(self, name)[keep:]  # lists not recorded stay empty
