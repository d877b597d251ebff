"""Solvers: analytic Jacobians, the exact output layer (variable projection), NetworkLM,
init="data", the plateau stop and the option combinations of fit (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from one_neuron import START, one_tanh_neuron
from sepneuron import RULES, SeparatedMLP, TrainConfig, fit
from sepneuron.baselines import PlainMLP
from sepneuron.functional import KINDS
from sepneuron.init import init_from_data_
from sepneuron.solvers import NetworkLM, network_jacobian, normal_equations, solve_output_layer

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 60, d: int = 2, k: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=F64) * 2 - 1
    base = torch.sin(2 * X[:, :1]) + X[:, -1:] ** 2
    y = torch.cat([base * (j + 1) + j for j in range(k)], dim=1)
    return X, y


def _random_separated(model: SeparatedMLP, seed: int = 1) -> SeparatedMLP:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for act in model.activations():
            act.q.copy_(torch.randn(act.num_neurons, generator=g, dtype=F64) * 0.5)
            act.log_c.copy_(torch.randn(act.num_neurons, generator=g, dtype=F64) * 0.3)
            act.d.copy_(torch.randn(act.num_neurons, generator=g, dtype=F64))
    return model


MODELS = {
    **{f"sep_{k}": (lambda k=k: _random_separated(SeparatedMLP(
        2, [5, 4], 2, k, dtype=F64, generator=torch.Generator().manual_seed(0)))) for k in KINDS},
    **{a: (lambda a=a: PlainMLP(2, [5, 4], 2, a, dtype=F64,
                                generator=torch.Generator().manual_seed(0)))
       for a in ("tanh", "softplus", "relu", "leaky_relu", "silu")},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_analytic_jacobian_equals_torch_func(name):
    model = MODELS[name]()
    X, _ = _data(9)
    params = list(model.parameters())
    pred_a, jac_a = network_jacobian(model, X, params, analytic=True)
    pred_f, jac_f = network_jacobian(model, X, params, analytic=False)
    assert jac_a.shape == (9 * 2, sum(p.numel() for p in params))
    torch.testing.assert_close(pred_a, pred_f, rtol=0, atol=1e-12)
    torch.testing.assert_close(jac_a, jac_f, rtol=1e-10, atol=1e-12)


def test_chunked_normal_equations_equal_the_unchunked_ones():
    model = MODELS["sep_softplus"]()
    X, y = _data(23, k=2)
    params = [p for p in model.parameters()][2:]  # any subset, in any order
    params = params[::-1]
    whole = normal_equations(model, X, y, params, chunk_size=1000)
    _, jac = network_jacobian(model, X, params)
    r = (model(X) - y).reshape(-1).detach()
    torch.testing.assert_close(whole[0], jac.T @ jac, rtol=1e-12, atol=1e-12)
    for chunk in (1, 5, 7):
        part = normal_equations(model, X, y, params, chunk_size=chunk)
        torch.testing.assert_close(part[0], whole[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(part[1], whole[1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(part[1], jac.T @ r, rtol=1e-12, atol=1e-12)
        assert part[2] == pytest.approx(whole[2], rel=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_exact_output_layer_equals_lstsq_on_the_same_features(bias):
    model = PlainMLP(2, [12], 3, "tanh", dtype=F64, generator=torch.Generator().manual_seed(0))
    if not bias:
        model.net[-1] = nn.Linear(12, 3, bias=False, dtype=F64)
    X, y = _data(80, k=3)
    init_from_data_(model, X, generator=torch.Generator().manual_seed(0))  # curved features
    solve_output_layer(model, X, y, ridge=0.0, chunk_size=13)
    with torch.no_grad():
        h = model.net[:-1](X)
        if bias:
            h = torch.cat([h, torch.ones(80, 1, dtype=F64)], dim=1)
        ref = torch.linalg.lstsq(h, y).solution                          # (width, 3)
    out = model.net[-1]
    got = out.weight.T if not bias else torch.cat([out.weight.T, out.bias.unsqueeze(0)])
    assert (got - ref).abs().max() < 1e-10 * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize("optimizer", ["lm", "adam"])
def test_varpro_with_a_frozen_hidden_layer_is_one_exact_solve(optimizer):
    model = PlainMLP(2, [10], 1, "tanh", dtype=F64, generator=torch.Generator().manual_seed(0))
    model.net[0].requires_grad_(False)
    X, y = _data(50)
    h = fit(model, X, y, TrainConfig(optimizer=optimizer, output_layer="lstsq", rule=None,
                                     steps=3, ridge=0.0, diagnostics=False))
    with torch.no_grad():
        feats = torch.cat([model.net[:-1](X), torch.ones(50, 1, dtype=F64)], dim=1)
        best = ((feats @ torch.linalg.lstsq(feats, y).solution - y) ** 2).mean()
    assert h.loss[0] == pytest.approx(float(best), rel=1e-9)   # solved before the first step
    assert h.loss[-1] == pytest.approx(h.loss[0], rel=1e-12)    # nothing left to do


def test_network_lm_matches_scipy_least_squares_lm():
    scipy_opt = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, 1, generator=g, dtype=F64) * 4 - 2
    y = 1.5 * torch.tanh(1.2 * X - 0.3) + 0.2 + 0.01 * torch.randn(40, 1, generator=g, dtype=F64)

    model = one_tanh_neuron()
    opt = NetworkLM(list(model.parameters()))
    for _ in range(100):
        opt.step(model, X, y)
    ours = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()

    ref_model = one_tanh_neuron()

    def residuals(v):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.tensor(v, dtype=F64), ref_model.parameters())
            return (ref_model(X) - y).reshape(-1).numpy()

    ref = scipy_opt.least_squares(residuals, np.array(START), method="lm",
                                  xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.sum(residuals(ours) ** 2) == pytest.approx(np.sum(ref.fun ** 2), rel=1e-10)
    np.testing.assert_allclose(ours, ref.x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("output_layer", ["lstsq", "optimizer"])
@pytest.mark.parametrize("rule", [None, *sorted(RULES)])
@pytest.mark.parametrize("kind", KINDS)
def test_lm_with_every_rule_and_analog_fits_and_lowers_the_loss(kind, rule, output_layer):
    X, y = _data(40)
    model = SeparatedMLP(2, [6], 1, kind, dtype=F64, generator=torch.Generator().manual_seed(0))
    h = fit(model, X, y, TrainConfig(optimizer="lm", rule=rule, output_layer=output_layer,
                                     steps=6, eval_every=3))
    assert all(np.isfinite(h.loss)) and h.steps_done == 6
    assert h.train_rmse[-1] ** 2 < h.loss[0]


def test_rule_none_keeps_q_c_d_fixed_under_lm():
    X, y = _data(40)
    model = SeparatedMLP(2, [6], 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.activation_parameters()]
    fit(model, X, y, TrainConfig(optimizer="lm", rule=None, steps=3, diagnostics=False))
    assert all(torch.equal(a, b) for a, b in zip(before, model.activation_parameters(),
                                                  strict=True))


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_first_order_optimizers_with_the_exact_output_layer(optimizer):
    X, y = _data(40)
    model = SeparatedMLP(2, [6], 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    h = fit(model, X, y, TrainConfig(optimizer=optimizer, output_layer="lstsq", steps=5,
                                     rule="gauss_newton", diagnostics=False))
    assert h.train_rmse[-1] ** 2 < h.loss[0]


def test_lm_chunked_step_equals_the_unchunked_step():
    X, y = _data(30)
    models = [SeparatedMLP(2, [5], 1, dtype=F64, generator=torch.Generator().manual_seed(0))
              for _ in range(2)]
    for model, chunk in zip(models, (4, 1000), strict=True):
        opt = NetworkLM([p for p in model.parameters()][:-2], projected=True, chunk_size=chunk)
        opt.step(model, X, y)
    for a, b in zip(*(m.parameters() for m in models), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)  # rounding, through two solves


@pytest.mark.parametrize("make", [
    lambda: SeparatedMLP(3, [16, 8], 1, dtype=F64, q_init=0.3),
    lambda: PlainMLP(3, [16, 8], 1, "tanh", dtype=F64),
])
def test_init_data_puts_every_kink_inside_the_data(make):
    X, _ = _data(200, d=3)
    X = X * torch.tensor([1.0, 5.0, 0.1], dtype=F64) + 3.0  # not centred, not isotropic
    model = init_from_data_(make(), X, generator=torch.Generator().manual_seed(0))
    h = X
    seq = model.net
    for lin, act in zip(seq[:-1:2], seq[1::2], strict=True):
        with torch.no_grad():
            a = lin(h)
            centre = a + act.q if hasattr(act, "q") else a
            assert bool((centre.min(0).values < 0).all() and (centre.max(0).values > 0).all())
            h = act(a)


def test_init_data_is_seeded_and_touches_no_global_rng():
    X, y = _data(40)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    outs = []
    for seed in (0, 0, 1):
        m = PlainMLP(2, [6], 1, "tanh", dtype=F64, generator=torch.Generator().manual_seed(0))
        fit(m, X, y, TrainConfig(steps=0, init="data", seed=seed, rule=None))
        outs.append(m.net[0].weight.detach().clone())
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert torch.equal(torch.get_rng_state(), state)


def test_plateau_stops_training():
    model = PlainMLP(2, [10], 1, "tanh", dtype=F64, generator=torch.Generator().manual_seed(0))
    model.net[0].requires_grad_(False)  # the loss is at its minimum after the first solve
    X, y = _data(50)
    h = fit(model, X, y, TrainConfig(optimizer="lm", output_layer="lstsq", rule=None, steps=100,
                                     patience=4, diagnostics=False))
    assert h.stop_reason == "plateau" and h.steps_done == 5


@pytest.mark.parametrize("fields, words", [
    (dict(output_layer="lstsq", batch_size=8), ("lstsq", "optimizer", "batch_size")),
    (dict(output_layer="exact"), ("output_layer",)),
    (dict(init="kaiming"), ("init",)),
    (dict(patience=0), ("patience",)),
    (dict(min_improvement=1.0), ("min_improvement",)),
    (dict(damping=0.0), ("damping",)),
    (dict(ridge=-1.0), ("ridge",)),
    (dict(lr=0.0), ("lr",)),
])
def test_unsupported_or_bad_solver_options_are_refused(fields, words):
    X, y = _data(20)
    model = SeparatedMLP(2, [4], 1, dtype=F64)
    with pytest.raises(ValueError) as err:
        fit(model, X, y, TrainConfig(steps=1, **fields))
    assert all(w in str(err.value) for w in words)


def test_lstsq_needs_a_final_linear_layer():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1, dtype=F64)

        def forward(self, x):
            return torch.tanh(self.lin(x))

    X, y = _data(20)
    with pytest.raises(ValueError, match="lstsq.*optimizer"):
        fit(Odd(), X, y, TrainConfig(steps=1, output_layer="lstsq"))
    h = fit(Odd(), X, y, TrainConfig(steps=2, optimizer="lm", output_layer="optimizer",
                                     init="default"))
    assert h.steps_done == 2  # torch.func's Jacobian for a model without the analytic one
