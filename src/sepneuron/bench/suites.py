"""Benchmark suites (what ``sepneuron bench --suite NAME`` runs) and run budgets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..tasks import TASKS
from .methods import METHODS, ablation_methods, recipe_ablation

__all__ = ["Budget", "Suite", "SUITES", "parse_budget", "get_suite", "estimated_wall_s",
           "OVERHEAD_S"]


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
    "sep_softplus_gauss_newton", "softplus_adam",                 # the paper's comparison
    "sepneuron_default", "estimator_default",                     # the library as users get it
    "sep_softplus_vplm",                                          # separated, the same trainer
    "tanh_lbfgs", "tanh_adam_lbfgs", "sklearn_lbfgs_tanh_small", "relu_adam",  # best peers
)
"""9 methods: the paper's own comparison (the SoftPlus analog with its best rule against
the SoftPlus MLP + Adam), the headline (default recipe, estimator), the separated SoftPlus
net under the library's trainer (against the default recipe, a plain tanh MLP under the same
trainer: the report's paper-question section) and the best peers; scikit-learn's L-BFGS MLP
on the estimator's own hidden sizes (the estimator's target), the paper suite has both sizes."""

PAPER_METHODS = (
    # the paper's comparison: both analogs, the best rule, against the same MLP + Adam
    "sep_relu_gauss_newton", "sep_softplus_gauss_newton", "relu_adam", "softplus_adam",
    # today's peers
    "tanh_lbfgs", "tanh_adam_lbfgs", "tanh_lm", "kan", "sklearn_lbfgs_tanh",
    "sklearn_lbfgs_tanh_small",
    # the paper's question under the library's trainer (exact output layer + LM)
    "tanh_vplm", "softplus_vplm", "sep_softplus_vplm", "sep_relu_vplm",
    "sep_softplus_vplm_gauss_newton",
    # the library as users get it
    "sepneuron_default", "estimator_default",
)
"""17 methods; the SGD baselines, tanh + Adam alone (tanh_adam_lbfgs starts with it), the
other rules and the ablations are left to their own suites or ``--methods`` (the whole
suite must fit in 90 minutes on 2 cores)."""

ABLATION_METHODS = (*ablation_methods("relu", "newton"), *ablation_methods("softplus", "newton"))
"""Both analogs, rule ``newton``: none, each conditioning component alone, all (14)."""

RECIPE_METHODS = tuple(recipe_ablation().values())
"""The recipe's separated net and each option switched back (methods.RECIPE_VARIANTS)."""

PRECISION_METHODS = ("sepneuron_precision", "sepneuron_precision_coarse", "tanh_vplm_stages",
                     "tanh_lbfgs")
"""The precision recipe (the default recipe on one ``[20, 20]`` net, stages after plateaus),
the same coarse to fine (``coarse_fraction``: its first third on a fifth of the rows),
the plain tanh recipe in three stages that split the time (each stage's first record is the
single network's result), and float64 L-BFGS. ``sepneuron_stages`` (the default recipe in
three even stages on the suite's ``[32, 32]`` budget) ran here until the plateau schedule
beat it 5.6-21x (docs/varpro.md); ``--methods sepneuron_stages`` still runs it."""

QUICK_TASKS = ("kan_exp", "radial_sin_2pi", "kink_abs", "smooth_3d")
"""The quick suite's tasks (2-D smooth, radial, kink; 3-D smooth), also the recipe ablation's."""

SEEDS = (0, 1, 2)
"""Every suite's seeds but the paper suite's."""

PAPER_SEEDS = (0, 1, 2, 3)
"""The paper suite's seeds: four, because with three a verdict within about 3x of its
threshold flipped between two invocations of the same training code (README); the median
of four is the mean of the middle two. Five would not fit the suite's 90 minutes by
:func:`estimated_wall_s`."""

EIGHT_SECONDS = Budget(seconds=8.0)
"""The budget of the suites that compare methods at equal training time."""


def _suite(name: str, tasks: tuple[str, ...], methods: tuple[str, ...], budget: Budget,
           what: str, minutes: int, n_train: int = Suite.n_train,
           seeds: tuple[int, ...] = SEEDS) -> Suite:
    """A suite on ``seeds``; its description is ``what``, then the seeds, the budget and
    ``minutes``, its wall time with ``--jobs 2`` on 2 cores (measured, or for a suite not
    yet run in full, estimated)."""
    each = f"{budget.seconds:g} s each" if budget.seconds else f"{budget.steps} steps each"
    return Suite(name, tasks=tasks, methods=methods, seeds=seeds, budget=budget,
                 description=f"{what}; {len(seeds)} seeds, {each}; ~{minutes} min on 2 "
                 "cores with --jobs 2", n_train=n_train)


SUITES: dict[str, Suite] = {s.name: s for s in (
    _suite("quick", QUICK_TASKS, QUICK_METHODS, EIGHT_SECONDS,
           "4 tasks (2-D, 3-D): the paper's comparison (SoftPlus analog vs SoftPlus MLP + "
           "Adam), the default recipe and estimator, the best peers", 10),
    _suite("paper", tuple(TASKS), PAPER_METHODS, EIGHT_SECONDS,
           "every task; the paper's comparison, today's peers, the paper's question under the "
           "library's trainer, the defaults (17 methods)", 60, seeds=PAPER_SEEDS),
    _suite("ablation", ("kan_exp", "sin_cos", "abs_planes_3d"), ABLATION_METHODS,
           Budget(steps=1500), "conditioning components (docs/conditioning.md) on both "
           "analogs, rule newton: none, each alone, all; 3 tasks", 25),
    _suite("recipe", QUICK_TASKS, RECIPE_METHODS, EIGHT_SECONDS,
           "ablation of the recipe (VarPro, LM, init in the data, q, c, d in LM, stages) on "
           "the separated SoftPlus net; the quick tasks", 8),
    _suite("precision", ("kan_exp", "smooth_3d"), PRECISION_METHODS, Budget(seconds=120.0),
           "precision mode: residual stages in float64, 10,000 training points; 2 tasks", 20,
           n_train=10_000),
)}

# Seconds a run costs beyond its training budget with --jobs 2 on 2 cores: worker start,
# data, evaluations (not counted in the budget), the error grid, the store. The quick
# suite of commit 0efaa71 took 557 s for 108 runs of 8 s: (557 * 2 / 108) - 8 = 2.3 s;
# KAN's pykan setup and its last step's overshoot of the budget cost ~2 s more (one run,
# kan_exp, 4 s budget: 4.5 s training, 6.3 s wall); a Levenberg-Marquardt step (the
# recipe's, the defaults') overshoots by up to ~1 s on a loaded machine (4 s budget:
# 4.0-5.3 s training, 0.5 s a step at load ~8 on 2 cores).
OVERHEAD_S = {"default": 2.5, "kan": 4.5, "lm": 3.5}


def estimated_wall_s(suite: Suite, jobs: int | None = None) -> float | None:
    """Wall seconds of a whole suite: sum over runs of (budget + overhead) / jobs; None
    for a step budget (its time depends on the method)."""
    if suite.budget.seconds is None:
        return None
    def overhead(name: str) -> float:
        m = METHODS[name]
        lm = m.optimizer in ("lm", "vplm", "default") or m.model == "estimator"
        return OVERHEAD_S.get(name, OVERHEAD_S["lm" if lm else "default"])

    per_seed_task = sum(suite.budget.seconds + overhead(m) for m in suite.methods)
    return per_seed_task * len(suite.tasks) * len(suite.seeds) / (jobs or suite.jobs)


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}") from None
