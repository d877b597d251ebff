"""Issue 11 probes 3, 4, 9: every setting takes effect or is refused by name; ``y`` of
the wrong width is refused; ``max_time="5"``, sparse ``y`` and complex ``X`` are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.baselines.mlp import PlainMLP
from sepneuron.layers import SeparatedActivation
from sepneuron.train import DEFAULT_LR

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def _data(n=40, out=1):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * X[:, 1:]
    return X, y.repeat(1, out)


def _model(out=1):
    return SeparatedMLP(2, [4], out, dtype=F64, generator=torch.Generator().manual_seed(1))


def _separated_state(model):
    return {k: v.clone() for m in model.modules() if isinstance(m, SeparatedActivation)
            for k, v in m.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs", "lm"])
def test_rule_none_keeps_q_c_d_fixed_with_every_optimizer(optimizer):
    X, y = _data()
    model = _model()
    before = _separated_state(model)
    fit(model, X, y, TrainConfig(optimizer=optimizer, rule=None, steps=3, diagnostics=False))
    after = _separated_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_lm_gets_its_own_step_size():
    assert TrainConfig(optimizer="lm").lr == DEFAULT_LR["lm"] == 1.0
    assert TrainConfig(optimizer="adam").lr == 3e-3
    assert TrainConfig(optimizer="lm", lr=0.5).lr == 0.5
    from sepneuron import SeparatedMLPRegressor as R

    rng = np.random.default_rng(0)
    X = rng.random((60, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    for rule in ("grad", "newton"):  # a tuner rule with LM crashed in vmap before
        reg = R(hidden_layer_sizes=(6,), optimizer="lm", rule=rule, max_steps=20,
                random_state=0).fit(X, y)
        assert reg.score(X, y) > 0.99, rule  # with Adam's 3e-3 as its step scale: 0.21


@pytest.mark.parametrize("kw, name", [
    (dict(checkpoint_every=5), "checkpoint_every"),
    (dict(momentum=0.5), "momentum"),                     # Adam has no momentum setting
    (dict(rule=None, gamma=0.5), "gamma"),                # no tuner, no tuner settings
    (dict(rule="grad", max_step=0.1), "max_step"),
    (dict(rule=None, tune_every=3), "tune_every"),
    (dict(rule="grad", tune_curvature=False), "tune_curvature"),
    (dict(optimizer="lm", conditioning=("compensate",)), "compensate"),
    (dict(max_time="5"), "max_time"),
    (dict(steps=True), "steps"),
    (dict(checkpoint_every="5"), "checkpoint_every"),
    (dict(max_retries=1.5), "max_retries"),
    (dict(optimizer="adam", weight_decay=1e-6), "weight_decay"),  # LM's Tikhonov term only
    (dict(optimizer="lm", weight_decay=-1e-9), "weight_decay"),
    (dict(optimizer="adam", relative_weight_decay=1e-3), "relative_weight_decay"),
    (dict(optimizer="lm", relative_weight_decay=-1e-3), "relative_weight_decay"),
])
def test_ineffective_or_mistyped_settings_are_refused_by_name(kw, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kw).validate()
    X, y = _data()
    with pytest.raises(ValueError, match=name):
        fit(_model(), X, y, TrainConfig(**kw))


def test_lm_weight_decay_takes_effect_and_shrinks_the_hidden_weights():
    """TrainConfig.weight_decay reaches NetworkLM: a larger Tikhonov term leaves a smaller
    LM vector (the hidden weights), and 0 is plain LM."""
    X, y = _data()
    norms = []
    for wd in (0.0, 1e-3):
        model = PlainMLP(2, [6], 1, "tanh", dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
        fit(model, X, y, TrainConfig(optimizer="lm", rule=None, steps=30, weight_decay=wd,
                                     relative_weight_decay=0.0))
        norms.append(float(torch.cat([p.detach().reshape(-1) for p in model.net[0].parameters()])
                           .norm()))
    assert norms[1] < 0.9 * norms[0], norms


def test_settings_that_take_effect_are_accepted():
    for kw in (dict(optimizer="sgd", momentum=0.5), dict(rule="gauss_newton", gamma=0.5),
               dict(optimizer="lm", conditioning=("normalize_activations",))):
        TrainConfig(**kw).validate()


@pytest.mark.parametrize("kw, name", [
    (dict(checkpoint_every=5), "checkpoint_every"),
    (dict(max_time="5"), "max_time"),
    (dict(learning_rate="fast"), "learning_rate"),
    (dict(resume=True, checkpoint_path="c.pt", batch_size=8), "random_state"),
])
def test_estimator_refuses_by_name(kw, name):
    from sepneuron import SeparatedMLPRegressor as R

    X = np.random.default_rng(0).random((20, 2))
    with pytest.raises(ValueError, match=name):
        R(max_steps=2, **kw).fit(X, X[:, 0])


def test_y_of_the_wrong_width_is_refused():
    X, y = _data(n=50, out=2)
    wrong = r"y has 2 column\(s\) but the model gives outputs of shape \(1,\)"
    with pytest.raises(ValueError, match=wrong):
        fit(_model(out=1), X, y, TrainConfig(steps=2))
    with pytest.raises(ValueError, match="expects input of shape|the model cannot take X"):
        fit(_model(), torch.cat([X, X], 1), y[:, :1], TrainConfig(steps=2))


def test_sparse_y_and_complex_X_are_refused_by_name():
    import scipy.sparse as sp

    from sepneuron import SeparatedMLPRegressor as R

    X = np.random.default_rng(0).random((20, 2))
    y = X[:, 0]
    with pytest.raises(ValueError, match="y is a scipy sparse matrix"):
        R(max_steps=2).fit(X, sp.csr_matrix(y[:, None]))
    for Xc in ((X + 1j * X).tolist(), torch.tensor(X + 0.5j), X + 1j):
        with pytest.raises(ValueError, match="X has complex values"):
            R(max_steps=2).fit(Xc, y)
    reg = R(max_steps=2).fit(X, y)
    with pytest.raises(ValueError, match="X has complex values"):
        reg.predict((X + 1j).tolist())


def test_a_non_finite_loss_before_any_step_blames_the_data_not_the_step_size():
    X, y = _data()
    with pytest.raises(FloatingPointError, match="before any step") as e:
        fit(_model(), X * 1e200, y, TrainConfig(optimizer="adam", output_layer="optimizer",
                                                init="default", steps=3, max_retries=1))
    assert "lower lr" not in str(e.value)
