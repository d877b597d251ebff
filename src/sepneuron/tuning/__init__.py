"""Separate tuning of the scalar-nonlinear parameters (paper sec. 10-11)."""

from .rules import RULES as RULES, RuleContext as RuleContext, get_rule as get_rule
from .statistics import STAT_NAMES as STAT_NAMES, Stats as Stats, compute_stats as compute_stats
from .tuner import (
    SeparatedTuner as SeparatedTuner,
    downstream_sensitivity as downstream_sensitivity,
)

__all__ = ["RULES", "RuleContext", "get_rule", "STAT_NAMES", "Stats", "compute_stats",
           "SeparatedTuner", "downstream_sensitivity"]
