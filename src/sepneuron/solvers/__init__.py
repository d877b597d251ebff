"""Solvers: Levenberg-Marquardt (closure form and for networks), the exact output layer
(variable projection) and fast per-sample Jacobians. See docs/varpro.md."""

from .jacobian import (
           has_analytic_jacobian as has_analytic_jacobian,
           network_jacobian as network_jacobian,
           normal_equations as normal_equations,
)
from .levenberg_marquardt import LevenbergMarquardt as LevenbergMarquardt
from .network_lm import NetworkLM as NetworkLM
from .varpro import (
           OUTPUT_LAYERS as OUTPUT_LAYERS,
           output_layer_of as output_layer_of,
           solve_output_layer as solve_output_layer,
)

__all__ = ["LevenbergMarquardt", "NetworkLM", "OUTPUT_LAYERS", "has_analytic_jacobian",
           "network_jacobian", "normal_equations", "output_layer_of", "solve_output_layer"]
