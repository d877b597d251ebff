"""Training: ``fit(model, X, y, config) -> History``, its settings and its callbacks.

The pieces live in :mod:`sepneuron.fitting` (config, history, loop, run, callbacks, NaN
recovery, checkpoints) and :mod:`sepneuron.optimizers` (the optimizer registry); this
module is their public face.

Safety: inputs are validated; a non-finite loss restores the last good state, halves
the step sizes, records an event and retries (at most ``max_retries`` times in a row);
with ``checkpoint_path`` set (or a :class:`Checkpoint` callback), a checkpoint is written
atomically every ``checkpoint_every`` steps and ``fit`` resumes from it when
``resume=True`` -- only a checkpoint of the same data and settings
(:mod:`sepneuron.fingerprint`). Training ``2N`` steps straight, or ``N`` steps, a
checkpoint and ``N`` more in a fresh process, gives identical parameters.
"""

from __future__ import annotations

from .fitting.callbacks import Callback
from .fitting.checkpointing import Checkpoint
from .fitting.config import TrainConfig
from .fitting.history import History
from .fitting.loop import fit, validate_data
from .fitting.run import Run
from .optimizers import StepAdapter, get_optimizer, register_optimizer
from .settings import DEFAULT_LR, OPTIMIZERS, SCHEDULES

__all__ = ["TrainConfig", "History", "fit", "validate_data", "OPTIMIZERS", "SCHEDULES",
           "DEFAULT_LR", "Callback", "Checkpoint", "Run", "StepAdapter", "get_optimizer",
           "register_optimizer"]
