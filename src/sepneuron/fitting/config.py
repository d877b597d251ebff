"""``TrainConfig``: the settings of one :func:`sepneuron.fit` run (a dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import DEFAULT_LR, validate_config

__all__ = ["TrainConfig"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Every field takes effect or is refused by :meth:`validate`: ``momentum`` applies to
    ``optimizer="sgd"`` only and the tuner's fields (``gamma``, ``max_step``,
    ``tune_curvature``, ``tune_every``) to a tuner rule only, so setting them to other than
    their defaults otherwise is an error; ``checkpoint_every`` needs ``checkpoint_path``.
    ``lr=None`` is replaced at construction by the optimizer's own default
    (:data:`~sepneuron.optimizers.DEFAULT_LR`). ``damping``, ``weight_decay`` and
    ``relative_weight_decay`` apply to ``optimizer="lm"`` only, ``ridge`` to
    ``output_layer="lstsq"`` only, ``min_improvement`` to a set ``patience`` only,
    ``coarse_share`` to a set ``coarse_fraction`` only (:mod:`sepneuron.fitting.coarse`:
    the first ``coarse_share`` of the budget on a random ``coarse_fraction`` of the rows;
    refused with mini-batches and checkpoints).
    ``optimizer`` is any name in :data:`sepneuron.optimizers.REGISTRY`.

    The defaults are the best recipe measured on the benchmark's tasks (docs/varpro.md):
    Levenberg-Marquardt on the hidden weights with a Tikhonov weight ``1e-4 * MSE`` that
    fades with the residual, the output layer solved exactly at every step for a network of
    one hidden layer and in LM's vector for a deeper one (``output_layer="auto"``), q, c, d by
    the ``newton`` rule, kinks initialised inside the data, float64.
    The recipe before issue 12 is ``optimizer="adam", output_layer="optimizer",
    init="default"``.

    The last five fields configure callbacks rather than the optimisation; they are a
    shorthand that :func:`~sepneuron.fit` turns into its callbacks (evaluation, NaN recovery and
    :class:`~sepneuron.train.Checkpoint`) (a
    ``Checkpoint(path, every, resume)`` may be passed in ``callbacks=`` instead).
    """

    optimizer: str = "lm"            # "lm" (Levenberg-Marquardt) | "adam" | "sgd" | "lbfgs"
    lr: float | None = None          # weight optimizer's step size; None: DEFAULT_LR[optimizer]
    momentum: float = 0.9            # SGD momentum (optimizer="sgd" only)
    schedule: str = "constant"       # "constant" | "cosine" (to 0 over `steps`) for the weights
    steps: int = 2000                # optimizer steps (at most)
    max_time: float | None = None    # stop after this many training seconds (eval not counted)
    patience: int | None = None      # stop after this many steps without a relative fall of
    min_improvement: float = 1e-4    # ... at least min_improvement in the best loss (None: never)
    output_layer: str = "auto"       # "auto" | "lstsq" (exact least squares, docs/varpro.md)
    #                                  | "optimizer" (solvers.training.resolve_output_layer)
    init: str = "data"               # "data" (kinks inside the data, sepneuron.init) | "default"
    damping: float = 1e-3            # LM: initial damping lambda (Marquardt scaling, Nielsen)
    ridge: float = 1e-12             # "lstsq": relative ridge of the output-layer solve
    weight_decay: float = 0.0        # LM: minimise MSE + w ||theta||^2 (Tikhonov on the LM
    #                                  vector but the output layer),
    #                                  w = weight_decay + relative_weight_decay * MSE
    relative_weight_decay: float = 1e-4  # LM: ... with the MSE at each step's start (fades
    #                                  with the residual; docs/varpro.md)
    batch_size: int | None = None    # None: full batch; else mini-batches drawn with the seed
    coarse_fraction: float | None = None  # coarse to fine: the first coarse_share of the
    coarse_share: float = 1 / 3      # budget on this share of the rows (sepneuron.fitting.coarse)
    rule: str | None = "newton"      # tuner rule for separated layers; None: q, c, d stay fixed
    gamma: float = 0.3               # tuner step fraction
    max_step: float = 0.2            # tuner trust region (see SeparatedTuner)
    tune_curvature: bool = True      # tune c of SoftPlus layers
    tune_every: int = 1              # tuner step every this many optimizer steps
    conditioning: tuple[str, ...] = ()  # optional components by name (sepneuron.conditioning)
    seed: int = 0                    # seeds the mini-batch sampler (and nothing global)
    dtype: str = "float64"           # "float32" | "float64"
    device: str = "cpu"
    # -- callbacks' shorthand (see the class docstring) --
    eval_every: int = 50             # Evaluation: test RMSE and diagnostics every this many steps
    diagnostics: bool = True         # Evaluation: dead-neuron fractions and q, c, d spread
    max_retries: int = 8             # Recovery: non-finite losses in a row before giving up
    checkpoint_path: str | None = None  # Checkpoint: where to write checkpoints (atomically)
    checkpoint_every: int = 0        # Checkpoint: steps between checkpoints; 0: only at the end
    resume: bool = False             # Checkpoint: continue from checkpoint_path if it exists
    #                                  (same data and settings only: see sepneuron.fingerprint)

    def __post_init__(self) -> None:
        if self.lr is None and self.optimizer in DEFAULT_LR:
            self.lr = DEFAULT_LR[self.optimizer]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        validate_config(self)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]
