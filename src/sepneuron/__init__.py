"""sepneuron: the separated formal neuron and separate tuning of its nonlinear parameters."""

from .functional import separated_relu as separated_relu, separated_softplus as separated_softplus
from .layers import SeparatedActivation as SeparatedActivation, SeparatedMLP as SeparatedMLP
from .tuning import RULES as RULES, SeparatedTuner as SeparatedTuner, get_rule as get_rule

__version__ = "0.1.0"
from .train import History as History, TrainConfig as TrainConfig, fit as fit
from .estimator import SeparatedMLPRegressor as SeparatedMLPRegressor
