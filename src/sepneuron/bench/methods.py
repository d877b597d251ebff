"""The benchmark's methods, by name: what model each builds and how it is trained.

Every method is a :class:`Method` in :data:`METHODS`. Hyper-parameters live in one table,
:data:`METHOD_CONFIG` (per optimizer family); everything not named there -- in particular
the tuner's ``gamma`` and ``max_step`` -- is :class:`~sepneuron.train.TrainConfig`'s
default, read when the run is specified, so retuned defaults are picked up (and change
the run keys, so the store re-runs them).

Families:

* ``separated`` -- :class:`~sepneuron.layers.SeparatedMLP` (ReLU or SoftPlus analog);
  weights by Adam, ``q, c, d`` by the named tuner rule (``grad``: by Adam as well).
* ``baseline`` -- the paper's comparison: :class:`~sepneuron.baselines.PlainMLP` with a
  fixed activation, SGD (momentum) or Adam, same parameter count.
* ``peer`` -- what a user would pick instead: float64 L-BFGS (tanh MLP, same count),
  Levenberg-Marquardt (small tanh MLP), KAN (pykan; optional).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Method", "METHODS", "METHOD_CONFIG", "RULE_NAMES", "get_method", "analog_methods"]

RULE_NAMES = ("paper", "newton", "gauss_newton", "grad")
"""Tuner rules benchmarked for each analog (names of :data:`sepneuron.tuning.RULES`)."""

# One place for every hyper-parameter the bench sets. Keys are TrainConfig fields (or,
# for "kan", fit_kan arguments). Chosen once, not per task: Adam keeps TrainConfig's lr;
# SGD's lr was the best of {3e-3, 1e-2, 3e-2, 1e-1} for ReLU and tanh MLPs on kan_exp
# (seed 0, 3 s); L-BFGS and LM take full steps (lr 1), their natural setting.
METHOD_CONFIG: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "adam"},
    "sgd": {"optimizer": "sgd", "lr": 3e-2, "momentum": 0.9},
    "separated": {"optimizer": "adam"},  # + rule; gamma, max_step: TrainConfig defaults
    "lbfgs": {"optimizer": "lbfgs", "lr": 1.0},
    "lm": {"optimizer": "lm", "lr": 1.0},
    "kan": {"grid": 5, "k": 3, "opt": "LBFGS", "lr": 1.0, "hidden": [10]},
}

# Evaluations every this many steps: roughly one evaluation per 20-60 ms of training on
# the quick suite's networks, so that time-to-target is resolved to ~1% of the budget.
EVAL_EVERY = {"adam": 20, "sgd": 20, "separated": 5, "lbfgs": 5, "lm": 2}

LM_HIDDEN = [12, 12]  # the small MLP for Levenberg-Marquardt: 205 parameters in 2-D, 217 in 3-D


@dataclass(frozen=True)
class Method:
    """One benchmarked method."""

    name: str                  # registry key, e.g. "sep_relu_newton"
    family: str                # "separated" | "baseline" | "peer"
    model: str                 # "separated" | "plain" | "kan"
    activation: str            # analog kind ("relu", "softplus") or PlainMLP activation
    optimizer: str             # key of METHOD_CONFIG
    rule: str | None = None    # tuner rule (separated only)
    hidden: list[int] | None = None  # fixed hidden sizes; None: the suite's parameter budget
    description: str = ""      # one line for `sepneuron methods` and the report
    extra: dict[str, Any] = field(default_factory=dict)  # overrides on top of METHOD_CONFIG

    def train_overrides(self) -> dict[str, Any]:
        """TrainConfig fields this method sets (the rest are TrainConfig defaults)."""
        if self.model == "kan":
            return {}
        out = dict(METHOD_CONFIG[self.optimizer])
        out["rule"] = self.rule  # None for plain models: nothing to tune
        out["eval_every"] = EVAL_EVERY[self.optimizer]
        out.update(self.extra)
        return out


def _registry() -> dict[str, Method]:
    methods: list[Method] = []
    for kind in ("relu", "softplus"):
        for rule in RULE_NAMES:
            what = "q, c, d by Adam with the weights" if rule == "grad" else f"q, c, d by the {rule!r} rule"
            methods.append(Method(
                f"sep_{kind}_{rule}", "separated", "separated", kind, "separated", rule=rule,
                description=f"separated {kind} analog MLP; weights by Adam, {what}",
            ))
    for act in ("relu", "softplus", "leaky_relu", "silu", "tanh"):
        for opt, words in (("sgd", "SGD with momentum"), ("adam", "Adam")):
            methods.append(Method(
                f"{act}_{opt}", "baseline", "plain", act, opt,
                description=f"plain {act} MLP, {words} (same parameter count)",
            ))
    methods.append(Method(
        "tanh_lbfgs", "peer", "plain", "tanh", "lbfgs",
        description="tanh MLP, full-batch float64 L-BFGS (strong Wolfe; same parameter count)",
    ))
    methods.append(Method(
        "tanh_lm", "peer", "plain", "tanh", "lm", hidden=list(LM_HIDDEN),
        description=f"small tanh MLP {LM_HIDDEN} (~200 parameters), Levenberg-Marquardt",
    ))
    methods.append(Method(
        "kan", "peer", "kan", "kan", "kan",
        description="KAN (pykan MultKAN [d, 10, 1], grid 5, LBFGS); skipped without pykan",
    ))
    return {m.name: m for m in methods}


METHODS: dict[str, Method] = _registry()
"""Every benchmarked method by name."""


def get_method(name_or_method: str | Method) -> Method:
    """A :class:`Method` from its name (or the method itself); ``ValueError`` if unknown."""
    if isinstance(name_or_method, Method):
        return name_or_method
    try:
        return METHODS[name_or_method]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown method {name_or_method!r}; known methods: {', '.join(METHODS)}"
        ) from None


def analog_methods(kind: str) -> list[str]:
    """Names of the separated methods of one analog, one per rule, in :data:`RULE_NAMES` order."""
    return [f"sep_{kind}_{rule}" for rule in RULE_NAMES]
