"""The benchmark's methods, by name: what model each builds and how it is trained.

Every method is a :class:`Method` in :data:`METHODS`. Hyper-parameters live in one table,
:data:`METHOD_CONFIG` (per optimizer family). The methods that existed before the library's
defaults were chosen by measurement (issue 12) start from :data:`LEGACY_CONFIG` -- the
``TrainConfig`` defaults they were benchmarked with, pinned -- so that the paper's
comparison and its run keys stay what they were whatever ``TrainConfig``'s defaults become.
The newer methods name every field that defines their recipe; what they leave unnamed
(e.g. the plateau stop) is ``TrainConfig``'s default, read when the run is specified.
``sepneuron_default`` names nothing: it *is* the default recipe.

Families:

* ``separated`` -- :class:`~sepneuron.layers.SeparatedMLP` (ReLU or SoftPlus analog);
  weights by Adam, ``q, c, d`` by the named tuner rule (``grad``: by Adam as well).
* ``baseline`` -- the paper's comparison: :class:`~sepneuron.baselines.PlainMLP` with a
  fixed activation, SGD (momentum) or Adam, same parameter count.
* ``peer`` -- what a user would pick instead: float64 L-BFGS (tanh MLP, same count),
  Adam then L-BFGS (``tanh_adam_lbfgs``), Levenberg-Marquardt (small tanh MLP), KAN
  (pykan; optional), scikit-learn's ``MLPRegressor(solver="lbfgs", activation="tanh")``
  (``sklearn_lbfgs_tanh``, stopped by time: see :mod:`sepneuron.bench.fitters`).
* ``recipe`` -- the library's trainer (issue 12): exact float64 least-squares output layer
  (variable projection), Levenberg-Marquardt on the hidden parameters, kinks/centres
  initialised inside the data ("vplm"), on plain tanh / SoftPlus MLPs and on the separated
  nets (``q, c, d`` inside the LM vector, or by the ``gauss_newton`` tuner); and its
  ablation variants ``sep_softplus_vplm+<variant>`` (:data:`RECIPE_VARIANTS`), one option
  switched back at a time.
* ``default`` -- the library as a user gets it: ``sepneuron_default`` (``TrainConfig()``'s
  defaults, only the budget set, with residual stages after a plateau as the estimator's
  ``stages="auto"``) and ``estimator_default``
  (``SeparatedMLPRegressor(max_time=budget)`` on the raw data, scored in the bench's
  standardised units).
* ``ablation`` -- a separated method with conditioning components switched on
  (:mod:`sepneuron.conditioning`): ``sep_<kind>_<rule>+<component>`` for each component
  alone and ``sep_<kind>_<rule>+all`` for all of them, for the rules in
  :data:`CONDITIONING_RULES`. The "none" variant is the plain ``sep_<kind>_<rule>``. The
  components go into the run's ``TrainConfig.conditioning`` (and so into its key).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..conditioning import CONDITIONERS
from ..tuning import RULES
from .recipes import (
    ADAM_SHARE,
    HEADLINE,
    PAPER_QUESTION,
    PEERS,
    PRECISION_STAGES,
    RECIPE_BASE,
    RECIPE_VARIANTS,
    issue12_methods,
    recipe_ablation,
)

__all__ = [
    "Method", "METHODS", "METHOD_CONFIG", "LEGACY_CONFIG", "RULE_NAMES", "get_method",
    "analog_methods", "CONDITIONING_COMPONENTS", "ABLATION_VARIANTS", "CONDITIONING_RULES",
    "ablation_methods", "ablation_parts", "RECIPE_BASE", "RECIPE_VARIANTS", "recipe_ablation",
    "PEERS", "HEADLINE", "PAPER_QUESTION", "ADAM_SHARE", "PRECISION_STAGES",
]

RULE_NAMES = tuple(RULES)
"""Tuner rules benchmarked for each analog: the names of :data:`sepneuron.tuning.RULES`."""

# The TrainConfig defaults every method registered before issue 12 was benchmarked with
# (TrainConfig of commit 0efaa71), plus the settings of the fields added since that
# reproduce the old behaviour. Those methods start from these values, so new defaults do
# not move them. Fields TrainConfig does not have (yet, or any more) are left out when
# the spec is built (see Method.train_overrides).
LEGACY_CONFIG: dict[str, Any] = {
    "optimizer": "adam", "lr": 3e-3, "momentum": 0.9, "schedule": "constant",
    "batch_size": None, "rule": "newton", "gamma": 0.3, "max_step": 0.2,
    "tune_curvature": True, "tune_every": 1, "max_retries": 8, "diagnostics": True,
    # added by issue 12, at the values that keep the old behaviour: the output layer
    # trained like the rest, the old initialisation, no plateau stop, LM's old damping
    "output_layer": "optimizer", "init": "default", "patience": None,
    "min_improvement": 1e-4, "damping": 1e-3, "ridge": 1e-12,
}

# One place for every hyper-parameter the bench sets. Keys are TrainConfig fields (or,
# for "kan", fit_kan arguments; for "sklearn", MLPRegressor arguments). Chosen once, not
# per task: Adam keeps the old default lr 3e-3; SGD's lr was the best of {3e-3, 1e-2,
# 3e-2, 1e-1} for ReLU and tanh MLPs on kan_exp (seed 0, 3 s); L-BFGS and LM take full
# steps (lr 1), their natural setting. "vplm" is the library's recipe (issue 12).
METHOD_CONFIG: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "adam"},
    "sgd": {"optimizer": "sgd", "lr": 3e-2, "momentum": 0.9},
    "separated": {"optimizer": "adam"},  # + rule; gamma, max_step: LEGACY_CONFIG
    "lbfgs": {"optimizer": "lbfgs", "lr": 1.0},
    # the LM peer as before: no Tikhonov term
    "lm": {"optimizer": "lm", "lr": 1.0, "weight_decay": 0.0, "relative_weight_decay": 0.0},
    "kan": {"grid": 5, "k": 3, "opt": "LBFGS", "lr": 1.0, "hidden": [10]},
    "vplm": {"optimizer": "lm", "lr": None, "output_layer": "lstsq", "init": "data"},
    "sklearn": {"solver": "lbfgs"},
    "default": {},  # TrainConfig() as it is
}

# Evaluations every this many steps: roughly one evaluation per 20-60 ms of training on
# the quick suite's networks, so that time-to-target is resolved to ~1% of the budget.
EVAL_EVERY = {"adam": 20, "sgd": 20, "separated": 5, "lbfgs": 5, "lm": 2, "vplm": 2}

LM_HIDDEN = [12, 12]  # the small MLP for Levenberg-Marquardt: 205 parameters in 2-D, 217 in 3-D

CONDITIONING_COMPONENTS = tuple(CONDITIONERS)
"""The names of :data:`sepneuron.conditioning.CONDITIONERS`, in their registry's order."""

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
    family: str                # separated | baseline | peer | ablation | recipe | default
    model: str                 # "separated" | "plain" | "kan" | "sklearn" | "estimator"
    activation: str            # analog kind ("relu", "softplus") or PlainMLP activation
    optimizer: str             # key of METHOD_CONFIG
    rule: str | None = None    # tuner rule (separated only)
    hidden: list[int] | None = None  # fixed hidden sizes; None: the suite's parameter budget
    description: str = ""      # one line for `sepneuron methods` and the report
    extra: dict[str, Any] = field(default_factory=dict)  # overrides on top of METHOD_CONFIG
    conditioning: tuple[str, ...] = ()  # TrainConfig.conditioning (ablation methods only)
    legacy: bool = False       # start from LEGACY_CONFIG (the methods older than issue 12)
    then: dict[str, Any] | None = None  # a second phase (Adam then L-BFGS): see ADAM_SHARE
    stages: int = 1            # residual stages (sepneuron.stages.fit_stages) when above 1
    stage_schedule: str = "even"  # fit_stages' schedule: "even" or "plateau"
    select: tuple[tuple[int, ...], ...] = ()  # hidden sizes raced by fit_select (first: hidden)

    def train_overrides(self) -> dict[str, Any]:
        """TrainConfig fields this method sets (the rest are TrainConfig defaults)."""
        if self.model in ("kan", "sklearn", "estimator"):
            return {}
        from ..train import TrainConfig

        if self.optimizer == "default":  # the default recipe: nothing but the evaluations
            return {"eval_every": EVAL_EVERY.get(TrainConfig().optimizer, 5), **self.extra}
        out = {}
        if self.legacy:
            have = {f.name for f in fields(TrainConfig)}
            out = {k: v for k, v in LEGACY_CONFIG.items() if k in have}
        out.update(METHOD_CONFIG[self.optimizer])
        out["rule"] = self.rule  # None for plain models: nothing to tune
        out["eval_every"] = EVAL_EVERY[self.optimizer]
        if self.conditioning:  # only then: the other methods' specs (and keys) stay as they were
            out["conditioning"] = tuple(self.conditioning)
        out.update(self.extra)
        return out

    def then_overrides(self) -> dict[str, Any] | None:
        """The second phase's TrainConfig changes and Adam's ``share`` (None: one phase)."""
        if self.then is None:
            return None
        out = dict(METHOD_CONFIG[self.then["optimizer"]])
        out["eval_every"] = EVAL_EVERY[self.then["optimizer"]]
        return {**out, "share": self.then["share"]}


def _registry() -> dict[str, Method]:
    methods: list[Method] = []
    for kind in ("relu", "softplus"):
        for rule in RULE_NAMES:
            what = ("q, c, d by Adam with the weights" if rule == "grad"
                    else f"q, c, d by the {rule!r} rule")
            methods.append(Method(
                f"sep_{kind}_{rule}", "separated", "separated", kind, "separated", rule=rule,
                legacy=True, description=f"separated {kind} analog MLP; weights by Adam, {what}",
            ))
    for act in ("relu", "softplus", "leaky_relu", "silu", "tanh"):
        for opt, words in (("sgd", "SGD with momentum"), ("adam", "Adam")):
            methods.append(Method(
                f"{act}_{opt}", "baseline", "plain", act, opt, legacy=True,
                description=f"plain {act} MLP, {words} (same parameter count)",
            ))
    methods.append(Method(
        "tanh_lbfgs", "peer", "plain", "tanh", "lbfgs", legacy=True,
        description="tanh MLP, full-batch float64 L-BFGS (strong Wolfe; same parameter count)",
    ))
    methods.append(Method(
        "tanh_lm", "peer", "plain", "tanh", "lm", hidden=list(LM_HIDDEN), legacy=True,
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
                    rule=rule, conditioning=comps, legacy=True,
                    description=f"sep_{kind}_{rule} with {what} (off by default)",
                ))
    methods += issue12_methods()
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
    if m is None or m.model != "separated" or m.family not in ("separated", "ablation"):
        return None
    base = f"sep_{m.activation}_{m.rule}"
    if m.family == "ablation":
        return base, name.split("+", 1)[1]
    if m.rule in CONDITIONING_RULES and name == base:
        return base, "none"
    return None
