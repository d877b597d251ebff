"""Benchmark suites (what ``sepneuron bench --suite NAME`` runs) and run budgets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..tasks import TASKS
from .methods import METHODS, ablation_methods

__all__ = ["Budget", "Suite", "SUITES", "parse_budget", "get_suite"]


@dataclass(frozen=True)
class Budget:
    """What every run of a benchmark gets: training seconds, or optimizer steps."""

    steps: int | None = None      # optimizer steps; None: unlimited (time budget)
    seconds: float | None = None  # training seconds (evaluation excluded); None: unlimited

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.seconds is None):
            raise ValueError("a budget is either steps or seconds")
        if self.steps is not None and not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")

    @property
    def label(self) -> str:
        """``"8s"`` or ``"2000 steps"``: how the report states it."""
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return f"{self.steps} steps"

    def to_dict(self) -> dict[str, float | int | None]:
        return {"steps": self.steps, "seconds": self.seconds}


def parse_budget(text: str | int | float | Budget) -> Budget:
    """``"30s"`` / ``"2.5s"`` -> seconds; ``"2000"`` -> steps."""
    if isinstance(text, Budget):
        return text
    s = str(text).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*s(?:ec(?:onds?)?)?", s)
    if m:
        return Budget(seconds=float(m.group(1)))
    if re.fullmatch(r"\d+", s):
        return Budget(steps=int(s))
    raise ValueError(f"budget must be steps (e.g. 2000) or seconds (e.g. 30s), got {text!r}")


@dataclass(frozen=True)
class Suite:
    """A named selection of tasks x methods x seeds with its budget and data sizes."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: Budget
    n_train: int = 1000          # training points per (task, seed)
    n_test: int = 2000           # held-out test points per (task, seed)
    hidden: tuple[int, ...] = (32, 32)  # plain-MLP widths that fix the parameter budget
    jobs: int = 2                # default parallel processes
    grid_n: int = 64             # points per axis of the saved error map
    description: str = ""


QUICK_METHODS = (
    "sep_relu_paper", "sep_relu_newton", "sep_relu_gauss_newton",
    "sep_softplus_paper", "sep_softplus_newton", "sep_softplus_gauss_newton",
    "relu_adam", "softplus_adam", "tanh_lbfgs",
)

PAPER_METHODS = tuple(name for name, m in METHODS.items() if m.family != "ablation")
"""Every method except the conditioning variants (those are the ``ablation`` suite's)."""

ABLATION_METHODS = (*ablation_methods("relu", "newton"), *ablation_methods("softplus", "newton"))
"""Both analogs, rule ``newton``: none, each conditioning component alone, all (14)."""

SUITES: dict[str, Suite] = {
    "quick": Suite(
        "quick",
        tasks=("kan_exp", "radial_sin_2pi", "kink_abs", "smooth_3d"),
        methods=QUICK_METHODS,
        seeds=(0, 1, 2),
        budget=Budget(seconds=8.0),
        description="4 tasks (2-D, 3-D), both analogs with 3 rules, ReLU/SoftPlus Adam "
        "baselines, L-BFGS; 3 seeds, 8 s each; ~10 min on 2 cores with --jobs 2",
    ),
    "paper": Suite(
        "paper",
        tasks=tuple(TASKS),
        methods=PAPER_METHODS,
        seeds=(0, 1, 2, 3, 4),
        budget=Budget(seconds=30.0),
        description="every task and method (but the ablation variants), 5 seeds, 30 s each "
        "(hours)",
    ),
    "ablation": Suite(
        "ablation",
        tasks=("kan_exp", "sin_cos", "abs_planes_3d"),
        methods=ABLATION_METHODS,
        seeds=(0, 1, 2),
        budget=Budget(steps=1500),
        description="conditioning components (docs/conditioning.md) on both analogs, rule "
        "newton: none, each alone, all; 3 tasks, 3 seeds, 1500 steps each; "
        "~25 min on 2 cores with --jobs 2",
    ),
}


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}") from None
