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
* ``ablation`` -- a separated method with conditioning components switched on
  (:mod:`sepneuron.conditioning`): ``sep_<kind>_<rule>+<component>`` for each component
  alone and ``sep_<kind>_<rule>+all`` for all of them, for the rules in
  :data:`CONDITIONING_RULES`. The "none" variant is the plain ``sep_<kind>_<rule>``. The
  components go into the run's ``TrainConfig.conditioning`` (and so into its key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Method", "METHODS", "METHOD_CONFIG", "RULE_NAMES", "get_method", "analog_methods",
    "CONDITIONING_COMPONENTS", "ABLATION_VARIANTS", "CONDITIONING_RULES", "ablation_methods",
    "ablation_parts",
]

RULE_NAMES = ("paper", "newton", "gauss_newton", "grad")
"""Tuner rules benchmarked for each analog (names of :data:`sepneuron.tuning.RULES`)."""

# One place for every hyper-parameter the bench sets. Keys are TrainConfig fields (or,
# for "kan", fit_kan arguments). Chosen once, not per task: Adam keeps lr 3e-3 (pinned);
# SGD's lr was the best of {3e-3, 1e-2, 3e-2, 1e-1} for ReLU and tanh MLPs on kan_exp
# (seed 0, 3 s); L-BFGS and LM take full steps (lr 1), their natural setting.
# The methods below train every weight by their optimizer from PyTorch's initialisation
# (output_layer="optimizer", init="default": pinned, as TrainConfig's defaults moved to
# the exact output layer and init="data" in issue 12).
_AS_BEFORE = {"output_layer": "optimizer", "init": "default"}
METHOD_CONFIG: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "adam", "lr": 3e-3, **_AS_BEFORE},
    "sgd": {"optimizer": "sgd", "lr": 3e-2, "momentum": 0.9, **_AS_BEFORE},
    "separated": {"optimizer": "adam", "lr": 3e-3, **_AS_BEFORE},  # + rule; gamma, max_step:
    # TrainConfig's defaults
    "lbfgs": {"optimizer": "lbfgs", "lr": 1.0, **_AS_BEFORE},
    "lm": {"optimizer": "lm", "lr": 1.0, **_AS_BEFORE},
    "kan": {"grid": 5, "k": 3, "opt": "LBFGS", "lr": 1.0, "hidden": [10]},
}

# Evaluations every this many steps: roughly one evaluation per 20-60 ms of training on
# the quick suite's networks, so that time-to-target is resolved to ~1% of the budget.
EVAL_EVERY = {"adam": 20, "sgd": 20, "separated": 5, "lbfgs": 5, "lm": 2}

LM_HIDDEN = [12, 12]  # the small MLP for Levenberg-Marquardt: 205 parameters in 2-D, 217 in 3-D

CONDITIONING_COMPONENTS = (
    "spread_directions", "compensate", "normalize_activations", "normalize_deltas",
    "orthogonalize",
)
"""The names of :data:`sepneuron.conditioning.CONDITIONERS` (a test checks they agree)."""

ABLATION_VARIANTS: dict[str, tuple[str, ...]] = {
    "none": (), **{c: (c,) for c in CONDITIONING_COMPONENTS}, "all": CONDITIONING_COMPONENTS,
}
"""Variant label -> the ``TrainConfig.conditioning`` it runs with ("none": the base method)."""

CONDITIONING_RULES = ("newton", "gauss_newton")
"""Tuner rules with registered conditioning variants (the ``ablation`` suite runs ``newton``)."""


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
    conditioning: tuple[str, ...] = ()  # TrainConfig.conditioning (ablation methods only)

    def train_overrides(self) -> dict[str, Any]:
        """TrainConfig fields this method sets (the rest are TrainConfig defaults)."""
        if self.model == "kan":
            return {}
        out = dict(METHOD_CONFIG[self.optimizer])
        out["rule"] = self.rule  # None for plain models: nothing to tune
        out["eval_every"] = EVAL_EVERY[self.optimizer]
        if self.conditioning:  # only then: the other methods' specs (and keys) stay as they were
            out["conditioning"] = tuple(self.conditioning)
        out.update(self.extra)
        return out


def _registry() -> dict[str, Method]:
    methods: list[Method] = []
    for kind in ("relu", "softplus"):
        for rule in RULE_NAMES:
            what = ("q, c, d by Adam with the weights" if rule == "grad"
                    else f"q, c, d by the {rule!r} rule")
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
    # Appended last, so the other methods keep their order (report order, the paper suite).
    for kind in ("relu", "softplus"):
        for rule in CONDITIONING_RULES:
            for variant, comps in ABLATION_VARIANTS.items():
                if variant == "none":
                    continue  # the base method sep_<kind>_<rule> itself
                what = f"all {len(comps)} conditioning components" if variant == "all" else \
                    f"conditioning component {variant!r}"
                methods.append(Method(
                    f"sep_{kind}_{rule}+{variant}", "ablation", "separated", kind, "separated",
                    rule=rule, conditioning=comps,
                    description=f"sep_{kind}_{rule} with {what} (off by default)",
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


def ablation_methods(kind: str, rule: str = "newton") -> list[str]:
    """The conditioning ablation of one analog and rule: the base method ("none"), each
    component alone, then all of them, in :data:`ABLATION_VARIANTS` order."""
    base = f"sep_{kind}_{rule}"
    return [base if v == "none" else f"{base}+{v}" for v in ABLATION_VARIANTS]


def ablation_parts(name: str) -> tuple[str, str] | None:
    """``(base method, variant label)`` of a method of a conditioning ablation, else ``None``.

    ``sep_relu_newton+compensate`` -> ``("sep_relu_newton", "compensate")``; a separated
    base method with a registered variant is its own "none": ``sep_relu_newton`` ->
    ``("sep_relu_newton", "none")``.
    """
    m = METHODS.get(name)
    if m is None or m.model != "separated":
        return None
    base = f"sep_{m.activation}_{m.rule}"
    if m.family == "ablation":
        return base, name.split("+", 1)[1]
    if m.rule in CONDITIONING_RULES and name == base:
        return base, "none"
    return None
