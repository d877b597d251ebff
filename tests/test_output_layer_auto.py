"""``output_layer="auto"`` (the default): what it resolves to, and that fit then trains
exactly as with the value it stands for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.baselines import PlainMLP
from sepneuron.solvers.training import resolve_output_layer

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _net(hidden, kind="tanh"):
    gen = torch.Generator().manual_seed(0)
    if kind == "tanh":
        return PlainMLP(2, hidden, 1, "tanh", dtype=F64, generator=gen)
    return SeparatedMLP(2, hidden, 1, kind=kind, dtype=F64, generator=gen)


@pytest.mark.parametrize("hidden, optimizer, batch_size, expected", [
    ([12, 12], "lm", None, "optimizer"),     # LM on a deep net: every parameter in LM
    ([8, 8, 8], "lm", None, "optimizer"),
    ([64], "lm", None, "lstsq"),             # one hidden layer: the projected step
    ([12, 12], "adam", None, "lstsq"),       # first-order optimizers keep the exact layer
    ([12, 12], "lbfgs", None, "lstsq"),
    ([64], "adam", 10, "optimizer"),         # mini-batches: no full-batch solve
])
def test_auto_resolves_by_optimizer_depth_and_batches(hidden, optimizer, batch_size, expected):
    cfg = TrainConfig(optimizer=optimizer, batch_size=batch_size,
                      rule=None if optimizer == "lbfgs" else "newton")
    assert cfg.output_layer == "auto"
    assert resolve_output_layer(cfg, _net(hidden), 100, ddp=False) == expected


def test_auto_is_the_optimizer_where_no_solve_can_run():
    cfg = TrainConfig(optimizer="adam")
    no_linear_end = nn.Sequential(nn.Linear(2, 4), nn.Tanh())
    assert resolve_output_layer(cfg, no_linear_end, 100, ddp=False) == "optimizer"
    assert resolve_output_layer(cfg, _net([64]), 100, ddp=True) == "optimizer"


@pytest.mark.parametrize("layer", ["lstsq", "optimizer"])
def test_an_explicit_output_layer_is_kept(layer):
    cfg = TrainConfig(output_layer=layer)
    assert resolve_output_layer(cfg, _net([12, 12]), 100, ddp=False) == layer
    assert resolve_output_layer(cfg, _net([64]), 100, ddp=False) == layer


@pytest.mark.parametrize("hidden, kind", [([6, 6], "tanh"), ([12], "tanh"),
                                          ([6, 6], "softplus"), ([12], "relu")])
def test_fit_with_auto_equals_fit_with_what_it_stands_for(hidden, kind):
    g = torch.Generator().manual_seed(3)
    X = torch.rand(80, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * X[:, 1:]
    ran = {}
    for layer in ("auto", "lstsq" if len(hidden) == 1 else "optimizer"):
        model = _net(hidden, kind)
        h = fit(model, X, y, TrainConfig(steps=15, output_layer=layer, eval_every=10**9,
                                         diagnostics=False))
        ran[layer] = (h.loss, [p.detach().clone() for p in model.parameters()])
    (auto_loss, auto_p), (loss, p) = ran.values()
    assert auto_loss == loss
    assert all(torch.equal(a, b) for a, b in zip(auto_p, p, strict=True))
    assert auto_loss[-1] < auto_loss[0]


def test_ridge_is_refused_only_with_the_optimizer_output_layer():
    TrainConfig(ridge=1e-10).validate()                      # auto: may resolve to lstsq
    TrainConfig(ridge=1e-10, output_layer="lstsq").validate()
    with pytest.raises(ValueError, match="ridge"):
        TrainConfig(ridge=1e-10, output_layer="optimizer").validate()


def test_lm_on_every_parameter_keeps_what_the_exact_layer_reached():
    """fit_select races with the exact output layer and trains a [12, 12] winner on with LM on
    every parameter: the switch must not undo the race. The exact layer's weights can be
    large; a Tikhonov term on them (as once) made LM trade the fit for their norm, and the
    MSE rose 20x on radial_sin_6pi. Now the term weighs on the hidden weights only."""
    from sepneuron.tasks import get_task, make_data

    X, y, _, _ = make_data(get_task("radial_sin_6pi"), 300, 10, generator=0)
    model = _net([8, 8])
    fit(model, X, y, TrainConfig(steps=60, output_layer="lstsq", rule=None))
    after = fit(model, X, y, TrainConfig(steps=20, output_layer="optimizer", init="default",
                                         rule=None))
    assert max(after.loss) <= after.loss[0] * 1.01, after.loss
    assert after.loss[-1] < after.loss[0]
