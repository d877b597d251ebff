"""``Checkpoint``: the callback that writes a run's state and resumes from it.

``fit(model, X, y, cfg, callbacks=[Checkpoint("ck.pt", every=500, resume=True)])`` is the
same as ``TrainConfig(checkpoint_path="ck.pt", checkpoint_every=500, resume=True)`` (fit
turns those fields into this callback). The file holds the training state, the history,
the callbacks' states (NaN recovery's) and a fingerprint of the data and settings
(:mod:`sepneuron.fingerprint`); it is written atomically with a checksum. Training ``2N``
steps straight, or ``N`` steps, a checkpoint and ``N`` more in a fresh process, gives
identical parameters.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import resume as _resume
from ..checkpoint import check_writable
from ..fingerprint import combine_ranks, run_fingerprint
from .callbacks import Callback

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Checkpoint"]


class Checkpoint(Callback):
    """Write the run to ``path`` every ``every`` steps (``0``: only at the end) and after
    the last step; with ``resume=True`` continue from ``path`` when it exists.

    Before training (``setup``) the path is checked (a folder, or a folder that cannot
    be written, raises ``ValueError`` naming it) and, when resuming, the checkpoint must
    belong to this run: same data and settings (``CheckpointMismatchError``), at most
    ``steps`` steps done (``CheckpointError``). A failed write raises
    ``CheckpointWriteError`` naming the path and carrying the history.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 0, resume: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"path must be a file path, got {path!r}")
        if not (isinstance(every, numbers.Integral) and not isinstance(every, bool)
                and every >= 0):
            raise ValueError(f"every must be >= 0 (an int), got {every!r}")
        if not isinstance(resume, bool):
            raise ValueError(f"resume must be True or False, got {resume!r}")
        self.path: str | os.PathLike[str] = path
        self.every: int = int(every)
        self.resume: bool = resume
        self._file: Path | None = None
        self._fingerprint: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, every={self.every}, resume={self.resume})"

    def setup(self, run: Run) -> None:
        self._file = check_writable(self.path)  # fail now, not after training
        fingerprint = run_fingerprint(run.model, run.X, run.y, run.cfg)
        if run.ddp:  # each rank holds a shard: fingerprint them all, the same on every rank
            fingerprint["data"] = combine_ranks(fingerprint["data"])
        self._fingerprint = fingerprint
        if self.resume and self._file.exists():
            state = _resume.load_for_resume(self._file, self.path, fingerprint, run.cfg.steps,
                                            torch.device(run.cfg.device))
            _resume.apply_state(run, state, self.path)
            run.history.events.append({"step": run.steps_done, "event": "resumed"})

    def save(self, run: Run) -> None:
        """Write the run's state now (atomically)."""
        if self._file is None:
            raise RuntimeError("Checkpoint.save before setup: pass the callback to fit")
        _resume.save(run.state(), self._file, self.path, self._fingerprint, run.history)

    def on_step_end(self, run: Run) -> None:
        if self.every and run.steps_done % self.every == 0:
            self.save(run)

    def on_train_end(self, run: Run) -> None:
        self.save(run)
