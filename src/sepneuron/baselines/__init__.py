"""Peer baselines: plain MLPs, Levenberg–Marquardt, and an optional pykan adapter."""

from .kan import fit_kan as fit_kan, kan_available as kan_available
from .levenberg_marquardt import (
    LevenbergMarquardt as LevenbergMarquardt,
    ResidualClosure as ResidualClosure,
    residual_closure as residual_closure,
)
from .mlp import (
    ACTIVATIONS as ACTIVATIONS,
    PlainMLP as PlainMLP,
    count_parameters as count_parameters,
    hidden_for_budget as hidden_for_budget,
)

__all__ = [
    "ACTIVATIONS",
    "LevenbergMarquardt",
    "PlainMLP",
    "ResidualClosure",
    "count_parameters",
    "fit_kan",
    "hidden_for_budget",
    "kan_available",
    "residual_closure",
]
