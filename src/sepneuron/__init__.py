"""sepneuron: the separated formal neuron and separate tuning of its nonlinear parameters."""

from typing import Any

from .functional import separated_relu as separated_relu, separated_softplus as separated_softplus
from .layers import SeparatedActivation as SeparatedActivation, SeparatedMLP as SeparatedMLP
from .selection import Selection as Selection, fit_select as fit_select
from .stages import StagedModel as StagedModel, fit_stages as fit_stages
from .train import (
    Callback as Callback,
    Checkpoint as Checkpoint,
    History as History,
    TrainConfig as TrainConfig,
    fit as fit,
)
from .tuning import RULES as RULES, SeparatedTuner as SeparatedTuner, get_rule as get_rule

__version__ = "0.1.0"

__all__ = [
    "Callback", "Checkpoint", "History", "RULES", "SeparatedActivation", "SeparatedMLP",
    "SeparatedMLPRegressor", "SeparatedTuner", "Selection", "StagedModel", "TrainConfig", "fit",
    "fit_select", "fit_stages", "get_rule", "separated_relu", "separated_softplus",
]


def __getattr__(name: str) -> Any:
    # The estimator imports scikit-learn (about a second): load it on first use only.
    if name == "SeparatedMLPRegressor":
        from .estimator import SeparatedMLPRegressor

        return SeparatedMLPRegressor
    raise AttributeError(f"module 'sepneuron' has no attribute {name!r}")
