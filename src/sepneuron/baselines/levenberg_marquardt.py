"""Re-export of :mod:`sepneuron.solvers.levenberg_marquardt` (its old place, kept importable)."""

from ..solvers.levenberg_marquardt import (
    DAMPING_MODES,
    LevenbergMarquardt,
    ResidualClosure,
    damped_solve,
    jacobian,
    residual_closure,
)

__all__ = ["DAMPING_MODES", "LevenbergMarquardt", "ResidualClosure", "damped_solve", "jacobian",
           "residual_closure"]
