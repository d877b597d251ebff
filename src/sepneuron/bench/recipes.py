"""The methods of issue 12, registered in :data:`sepneuron.bench.methods.METHODS`: the
stronger peers, the library's recipe (exact float64 least-squares output layer + Levenberg-
Marquardt + initialisation in the data, "vplm") on plain and separated nets with its
ablation, and the library's defaults as methods. The groups the report compares
(:data:`PEERS`, :data:`HEADLINE`, :data:`PAPER_QUESTION`, :func:`recipe_ablation`) are
named here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..settings import (
    AUTO_HIDDEN_CANDIDATES,
    DEFAULT_HIDDEN_SIZES,
    DEFAULT_PATIENCE,
    DEFAULT_STAGES,
    SELECT_MARGIN,
    SELECT_SHARE,
)

if TYPE_CHECKING:
    from .methods import Method

__all__ = ["ADAM_SHARE", "RECIPE_BASE", "RECIPE_VARIANTS", "recipe_ablation",
           "PRECISION_HIDDEN", "PRECISION_STAGES", "STAGE_PATIENCE", "PEERS", "HEADLINE",
           "PAPER_QUESTION", "issue12_methods"]

ADAM_SHARE = 0.3
"""Adam then L-BFGS: the share of the budget (time or steps) Adam gets; then L-BFGS as
``METHOD_CONFIG["lbfgs"]`` for the rest, from where Adam stopped."""

# The recipe's ablation: its separated SoftPlus net, and one option of the recipe switched
# back at a time. Variant label -> TrainConfig changes (a method sep_softplus_vplm+<label>),
# or the name of a method registered on its own.
RECIPE_BASE = "sep_softplus_vplm"
RECIPE_VARIANTS: dict[str, dict[str, Any] | str] = {
    "no_varpro": {"output_layer": "optimizer"},          # LM on every weight, output included
    "adam": {"optimizer": "adam", "lr": 3e-3, "eval_every": 10},  # VarPro output, Adam on the rest
    "init_default": {"init": "default"},                 # the old initialisation
    "tuner": "sep_softplus_vplm_gauss_newton",           # q, c, d by the tuner, not in LM
    "stages": {"stages": 2},                             # a second, residual stage (spec)
    "paper_recipe": "sep_softplus_gauss_newton",         # all off: Adam + tuner (the paper's)
}
"""Label -> TrainConfig overrides of :data:`RECIPE_BASE` (``stages``: the method's number
of residual stages, not a TrainConfig field), or another method's name."""

_RECIPE_WORDS = {
    "no_varpro": "output layer trained by LM with the rest (no variable projection)",
    "adam": "hidden parameters and q, c, d by Adam (lr 3e-3), output layer still exact",
    "init_default": "the default initialisation instead of kinks placed in the data",
    "stages": "two residual stages (the second fits the rescaled residual)",
}


def recipe_ablation() -> dict[str, str]:
    """Variant label -> method name, ``"none"`` (the base) first."""
    return {"none": RECIPE_BASE, **{
        v: (x if isinstance(x, str) else f"{RECIPE_BASE}+{v}") for v, x in RECIPE_VARIANTS.items()
    }}


PRECISION_STAGES = 3
"""Stages of the precision-mode methods: each fits the previous ones' rescaled residual."""

PRECISION_HIDDEN = (20, 20)
"""The precision-mode network (``sepneuron_precision``): on 10,000 points in 120 s one
``[20, 20]`` network under the plateau schedule beat ``[12, 12]``, ``[16, 16]``, ``[24, 24]``,
``[64]`` and three even stages (``benchmarks/precision.py``, docs/varpro.md)."""

PRECISION_COARSE_FRACTION = 0.2
"""``sepneuron_precision_coarse``: the share of the rows of each stage's first third
(:mod:`sepneuron.fitting.coarse`); on 10,000 points an ad-hoc check had 0.2 lower the test
RMSE 3.0-4.4x and 0.1 2.6-5.4x against one phase (docs/varpro.md, "Coarse to fine")."""

STAGE_PATIENCE = 20
"""``tanh_vplm_stages``: a stage hands on its time after this many steps without a 1e-4
relative fall of the loss (the setting of ``benchmarks/precision.py``)."""

PEERS = ("tanh_lbfgs", "tanh_adam_lbfgs", "tanh_lm", "kan", "sklearn_lbfgs_tanh",
         "sklearn_lbfgs_tanh_small", "relu_adam", "softplus_adam", "tanh_adam", "silu_adam",
         "leaky_relu_adam")
"""Today's peers: what a user would run instead (the headline's "best peer" is the best
of those present, per task)."""

HEADLINE = "sepneuron_default"
"""The library's headline method: its default recipe."""

PAPER_QUESTION = {
    "separated": ("sep_softplus_vplm", "sep_relu_vplm", "sep_softplus_vplm_gauss_newton"),
    "plain": ("tanh_vplm", "softplus_vplm"),
}
"""The paper's question under the best trainer: separated vs plain neurons, same recipe."""


def _default_model() -> tuple[str, str]:
    """``(model, activation)`` of the estimator's default network (what ``fit`` trains for
    a user who takes the defaults): a separated analog, or a plain activation."""
    import inspect

    from ..estimator import SeparatedMLPRegressor
    from ..functional import KINDS

    kind = inspect.signature(SeparatedMLPRegressor).parameters["kind"].default
    return ("separated" if kind in KINDS else "plain"), kind


def issue12_methods() -> list[Method]:
    """The stronger peers, the library's recipe with its ablation, and its defaults."""
    from .methods import Method
    vp = "exact float64 least-squares output layer + Levenberg-Marquardt, init in the data"
    out = [
        Method("tanh_adam_lbfgs", "peer", "plain", "tanh", "adam", legacy=True,
               then={"optimizer": "lbfgs", "share": ADAM_SHARE},
               description=f"tanh MLP, Adam for {ADAM_SHARE:.0%} of the budget, then float64 "
               "L-BFGS from there (same parameter count)"),
        Method("sklearn_lbfgs_tanh", "peer", "sklearn", "tanh", "sklearn",
               description="scikit-learn MLPRegressor(solver='lbfgs', activation='tanh'), "
               "same hidden sizes, stopped by time (skipped without scikit-learn)"),
        Method("sklearn_lbfgs_tanh_small", "peer", "sklearn", "tanh", "sklearn",
               hidden=list(DEFAULT_HIDDEN_SIZES),
               description="sklearn_lbfgs_tanh on the estimator's default hidden sizes "
               f"{list(DEFAULT_HIDDEN_SIZES)} (the first network that estimator_default races)"),
    ]
    for act in ("tanh", "softplus"):
        out.append(Method(f"{act}_vplm", "recipe", "plain", act, "vplm",
                          description=f"plain {act} MLP (same parameter count); {vp}"))
    for kind in ("softplus", "relu"):
        out.append(Method(f"sep_{kind}_vplm", "recipe", "separated", kind, "vplm", rule="grad",
                          description=f"separated {kind} analog; {vp}; q, c, d in the LM vector"))
    out.append(Method("sep_softplus_vplm_gauss_newton", "recipe", "separated", "softplus", "vplm",
                      rule="gauss_newton",
                      description=f"separated softplus analog; {vp}; q, c, d by the "
                      "'gauss_newton' tuner"))
    base = next(m for m in out if m.name == RECIPE_BASE)
    for label, change in RECIPE_VARIANTS.items():
        if isinstance(change, dict):
            extra = {k: v for k, v in change.items() if k != "stages"}
            out.append(Method(f"{RECIPE_BASE}+{label}", "recipe", "separated", base.activation,
                              "vplm", rule=base.rule, extra=extra,
                              stages=int(change.get("stages", 1)),
                              description=f"{RECIPE_BASE} with {_RECIPE_WORDS[label]}"))
    model, act = _default_model()
    race = " or ".join(str(list(c)) for c in AUTO_HIDDEN_CANDIDATES)
    out.append(Method("sepneuron_default", "default", model, act, "default",
                      hidden=list(AUTO_HIDDEN_CANDIDATES[0]), stages=DEFAULT_STAGES,
                      stage_schedule="plateau", extra={"patience": DEFAULT_PATIENCE},
                      select=AUTO_HIDDEN_CANDIDATES,
                      description="the library's default recipe: TrainConfig() defaults, only "
                      f"the budget set, on {race} as the estimator's hidden_layer_sizes='auto' "
                      f"chooses (fit_select: each trained for {SELECT_SHARE:.0%} of the budget "
                      "on 85% of the points, the later ones must win by a factor "
                      f"{SELECT_MARGIN:g} in validation MSE), the winner trained on in residual "
                      "stages after a plateau as the estimator's stages='auto' (up to "
                      f"{DEFAULT_STAGES} stages, schedule 'plateau', patience "
                      f"{DEFAULT_PATIENCE}); kind: {act}"))
    out.append(Method("tanh_vplm_stages", "recipe", "plain", "tanh", "vplm",
                      stages=PRECISION_STAGES, extra={"patience": STAGE_PATIENCE},
                      description=f"tanh_vplm in {PRECISION_STAGES} residual stages, each "
                      f"stopped by a plateau ({STAGE_PATIENCE} steps) to hand on its time"))
    out.append(Method("sepneuron_stages", "default", model, act, "default",
                      stages=PRECISION_STAGES,
                      description=f"the default recipe with {PRECISION_STAGES} residual stages "
                      "(precision mode)"))
    precision = Method("sepneuron_precision", "default", model, act, "default",
                       hidden=list(PRECISION_HIDDEN), stages=PRECISION_STAGES,
                       stage_schedule="plateau",
                       extra={"patience": STAGE_PATIENCE, "output_layer": "lstsq"},
                       description=f"the default recipe on one {list(PRECISION_HIDDEN)} network "
                       f"given the whole time, up to {PRECISION_STAGES} residual stages after "
                       f"plateaus ({STAGE_PATIENCE} steps), with the exact output layer "
                       "(output_layer='lstsq', as measured before 'auto' became the default): "
                       "precision mode as docs/varpro.md measured it (no race)")
    out.append(precision)
    out.append(dataclasses.replace(
        precision, name="sepneuron_precision_coarse",
        extra={**precision.extra, "coarse_fraction": PRECISION_COARSE_FRACTION},
        description="sepneuron_precision coarse to fine: the first third of "
        f"each stage's budget on a random {PRECISION_COARSE_FRACTION:.0%} of "
        "the rows, the rest on all (TrainConfig.coarse_fraction)"))
    out.append(Method("estimator_default", "default", "estimator", act, "default",
                      description="SeparatedMLPRegressor(max_time=budget) on the raw data, "
                      "its own default sizes; scored in the bench's standardised units"))
    return out
