"""Tests of the peer baselines: PlainMLP, Levenberg–Marquardt, the pykan adapter."""

from __future__ import annotations

import itertools
import os
import random
import statistics

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from sepneuron.baselines import (
    ACTIVATIONS,
    LevenbergMarquardt,
    PlainMLP,
    count_parameters,
    hidden_for_budget,
    kan as kan_adapter,
    kan_available,
    residual_closure,
)
from sepneuron.baselines.levenberg_marquardt import damped_solve, jacobian
from sepneuron.layers import SeparatedMLP

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny problems: thread start-up and contention dominate, one thread is much faster
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- PlainMLP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_plain_mlp_shapes_and_dtype(act):
    m = PlainMLP(3, [8, 5], 2, act, dtype=F64, generator=_gen(0))
    out = m(torch.rand(7, 3, dtype=F64))
    assert out.shape == (7, 2) and out.dtype == F64
    lins = m.linears()
    assert [(lin.in_features, lin.out_features) for lin in lins] == [(3, 8), (8, 5), (5, 2)]
    assert isinstance(m.net[1], ACTIVATIONS[act])
    assert isinstance(m.net[-1], nn.Linear)  # plain linear output


def test_plain_mlp_deterministic_from_generator_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = PlainMLP(2, [6], 1, "tanh", generator=_gen(3))
    b = PlainMLP(2, [6], 1, "tanh", generator=_gen(3))
    c = PlainMLP(2, [6], 1, "tanh", generator=_gen(4))
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    # default init bounds 1/sqrt(fan_in)
    assert a.linears()[0].weight.abs().max() <= 1 / 2**0.5
    assert a.linears()[1].weight.abs().max() <= 1 / 6**0.5


def test_plain_mlp_matches_separated_mlp_linear_init():
    p = PlainMLP(2, [5, 4], 1, "relu", dtype=F64, generator=_gen(9))
    s = SeparatedMLP(2, [5, 4], 1, "relu", dtype=F64, generator=_gen(9))
    for lp, ls in zip(p.linears(), s.linears(), strict=True):
        assert torch.equal(lp.weight, ls.weight) and torch.equal(lp.bias, ls.bias)


def test_plain_mlp_errors_and_custom_activation():
    with pytest.raises(ValueError, match="known: .*relu"):
        PlainMLP(2, [4], 1, "gelu")
    for bad in ([0], [3, -1], [2.5]):
        with pytest.raises(ValueError, match="hidden_sizes"):
            PlainMLP(2, bad, 1)
    with pytest.raises(ValueError, match="in_features"):
        PlainMLP(0, [3], 1)
    with pytest.raises(ValueError, match="activation factory"):
        PlainMLP(2, [3], 1, lambda: 3)
    m = PlainMLP(2, [4], 1, lambda: nn.ELU())
    assert isinstance(m.net[1], nn.ELU)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        m(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        m(torch.zeros(2))


def test_count_parameters_and_budget():
    m = PlainMLP(2, [10, 10], 1)
    assert count_parameters(m) == 3 * 10 + 11 * 10 + 11
    m.net[0].weight.requires_grad_(False)
    assert count_parameters(m) == 3 * 10 + 11 * 10 + 11 - 20
    assert count_parameters(m, trainable_only=False) == 3 * 10 + 11 * 10 + 11
    # exact budgets are recovered
    for in_f, out_f, layers, h in [(2, 1, 1, 17), (3, 2, 2, 9), (4, 1, 3, 25), (2, 1, 2, 1)]:
        n = count_parameters(PlainMLP(in_f, [h] * layers, out_f))
        assert hidden_for_budget(in_f, out_f, layers, n) == h
    # in between, the closest width wins
    n10, n11 = (count_parameters(PlainMLP(2, [h, h], 1)) for h in (10, 11))
    assert hidden_for_budget(2, 1, 2, n10 + 1) == 10
    assert hidden_for_budget(2, 1, 2, n11 - 1) == 11
    # per_neuron=3 matches a SeparatedMLP's count
    s = SeparatedMLP(2, [12, 12], 1)
    assert hidden_for_budget(2, 1, 2, count_parameters(s), per_neuron=3) == 12
    assert hidden_for_budget(2, 1, 1, 1) == 1
    with pytest.raises(ValueError):
        hidden_for_budget(2, 1, 0, 100)
    with pytest.raises(ValueError):
        hidden_for_budget(2, 1, 1, 0)


# -- Levenberg–Marquardt -----------------------------------------------------------------------


def _sin_data(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-3, 3, n, dtype=F64).unsqueeze(1)
    return x, torch.sin(x)


def _reference_jacobian(model: nn.Module, x, y) -> torch.Tensor:
    params = {k: p.detach() for k, p in model.named_parameters()}
    jac = jacrev(lambda p: (functional_call(model, p, (x,)) - y).reshape(-1))(params)
    return torch.cat([jac[k].reshape(x.shape[0] * y.shape[1], -1) for k in params], dim=1)


def test_jacobians_match_jacrev():
    x = torch.rand(30, 2, dtype=F64, generator=_gen(0))
    y = torch.rand(30, 2, dtype=F64, generator=_gen(1))
    model = PlainMLP(2, [4, 3], 2, "tanh", dtype=F64, generator=_gen(2))
    ref = _reference_jacobian(model, x, y)  # (60, P)
    closure = residual_closure(model, x, y)
    params = list(model.parameters())
    generic = jacobian(closure(), params, chunk_size=7)
    r, fast = closure.residuals_and_jacobian(params)
    torch.testing.assert_close(generic, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r, closure().detach())
    r_slow, slow = residual_closure(model, x, y, per_sample=False).residuals_and_jacobian(params)
    torch.testing.assert_close(slow, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r_slow, r)
    # a subset of parameters, in another order: columns follow the given order
    sub = [params[2], params[0]]
    _, fast_sub = closure.residuals_and_jacobian(sub)
    n2, n0 = params[2].numel(), params[0].numel()
    torch.testing.assert_close(fast_sub[:, :n2], ref[:, 12 : 12 + n2])  # params[2] after 8+4
    torch.testing.assert_close(fast_sub[:, n2:], ref[:, :n0])
    with pytest.raises(ValueError, match="not parameters of the model"):
        closure.residuals_and_jacobian([nn.Parameter(torch.zeros(2))])


def test_damped_solve_matches_dense_solve():
    g = _gen(5)
    j = torch.randn(20, 6, dtype=F64, generator=g)
    r = torch.randn(20, dtype=F64, generator=g)
    jtj, jtr = j.T @ j, j.T @ r
    dampings = {"marquardt": torch.diag(jtj.diagonal()), "levenberg": torch.eye(6, dtype=F64)}
    for mode, d in dampings.items():
        ref = torch.linalg.solve(jtj + 0.3 * d, -jtr)
        torch.testing.assert_close(damped_solve(jtj, jtr, 0.3, mode), ref)
    # singular J^T J with Levenberg damping 0 -> least-squares fallback, still finite
    sing = torch.zeros(3, 3, dtype=F64)
    sing[0, 0] = 1.0
    step = damped_solve(sing, torch.tensor([1.0, 0.0, 0.0], dtype=F64), 0.0, "levenberg")
    assert torch.isfinite(step).all() and step[0].item() == pytest.approx(-1.0)


def test_lm_solves_linear_least_squares_in_one_step():
    g = _gen(1)
    x = torch.randn(50, 3, dtype=F64, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]], dtype=F64) + 0.3
    y = y + 0.01 * torch.randn(50, 1, dtype=F64, generator=g)
    lin = nn.Linear(3, 1, dtype=F64)
    opt = LevenbergMarquardt(lin.parameters(), damping=1e-12, min_damping=1e-15)
    opt.step(residual_closure(lin, x, y))
    design = torch.cat([x, torch.ones(50, 1, dtype=F64)], dim=1)
    exact = torch.linalg.lstsq(design, y).solution.ravel()
    got = torch.cat([lin.weight.ravel(), lin.bias])
    torch.testing.assert_close(got, exact, rtol=1e-8, atol=1e-8)


def test_lm_rosenbrock_with_plain_closure():
    p = nn.Parameter(torch.tensor([-1.2, 1.0], dtype=F64))
    opt = LevenbergMarquardt([p], damping=1e-2)

    def closure():  # a plain function: uses the generic autograd Jacobian
        return torch.stack([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    losses = [float(opt.step(closure)) for _ in range(60)]
    torch.testing.assert_close(p.detach(), torch.ones(2, dtype=F64), rtol=0, atol=1e-8)
    assert losses[0] == pytest.approx(0.5 * (4.4**2 + 2.2**2))
    assert all(b <= a for a, b in itertools.pairwise(losses))  # never increases


def test_lm_beats_adam_on_small_regression():
    x, y = _sin_data()
    lm_mse, adam_mse = [], []

    def mse(m):
        with torch.no_grad():
            return float(((m(x) - y) ** 2).mean())

    for seed in range(5):
        m = PlainMLP(1, [10], 1, "tanh", dtype=F64, generator=_gen(seed))
        opt = LevenbergMarquardt(m.parameters())
        closure = residual_closure(m, x, y)
        for _ in range(100):
            opt.step(closure)
        lm_mse.append(mse(m))
        m2 = PlainMLP(1, [10], 1, "tanh", dtype=F64, generator=_gen(seed))
        adam = torch.optim.Adam(m2.parameters(), lr=1e-2)
        for _ in range(100):
            adam.zero_grad()
            loss = ((m2(x) - y) ** 2).mean()
            loss.backward()
            adam.step()
        adam_mse.append(mse(m2))
    assert statistics.median(lm_mse) < 1e-6
    assert statistics.median(lm_mse) < 1e-3 * statistics.median(adam_mse)
    assert all(a < b for a, b in zip(lm_mse, adam_mse, strict=True))


def test_lm_float32_model_and_returned_loss():
    x, y = _sin_data(40)
    x, y = x.float(), y.float()
    m = PlainMLP(1, [6], 1, "tanh", generator=_gen(0))
    closure = residual_closure(m, x, y)
    opt = LevenbergMarquardt(m.parameters())
    before = 0.5 * float((closure().detach() ** 2).sum())
    loss = opt.step(closure)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert float(loss) == pytest.approx(before, rel=1e-6)
    assert opt.state[m.linears()[0].weight]["loss"] < before
    assert m.linears()[0].weight.dtype == torch.float32


def test_lm_rejected_step_restores_parameters_and_raises_damping():
    x, y = _sin_data(30)
    m = PlainMLP(1, [5], 1, "tanh", dtype=F64, generator=_gen(0))
    # lr = 50: the trial overshoots, and one attempt per step is allowed
    opt = LevenbergMarquardt(m.parameters(), lr=50.0, max_attempts=1, damping=1e-3)
    before = [p.detach().clone() for p in m.parameters()]
    opt.step(residual_closure(m, x, y))
    state = opt.state[next(iter(m.parameters()))]
    assert state["accepted"] is False
    assert state["damping"] == pytest.approx(1e-2)
    for p, b in zip(m.parameters(), before, strict=True):
        assert torch.equal(p, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.0}, {"lr": -1.0}, {"damping": 0.0}, {"damping": 1e11},
        {"damping_up": 1.0}, {"damping_up": 0.5}, {"damping_down": 1.0}, {"damping_down": 0.0},
        {"max_damping": -1.0}, {"min_damping": 1.0}, {"max_attempts": 0},
        {"damping_mode": "foo"}, {"chunk_size": 0}, {"lr": float("nan")},
    ],
)
def test_lm_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        LevenbergMarquardt([nn.Parameter(torch.zeros(2))], **kwargs)


def test_lm_rejects_groups_and_missing_closure():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="parameter groups"):
        LevenbergMarquardt([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="closure"):
        LevenbergMarquardt([a]).step(None)


def test_lm_state_dict_round_trip():
    x, y = _sin_data(50)

    def make(seed=0):
        m = PlainMLP(1, [6], 1, "tanh", dtype=F64, generator=_gen(seed))
        return m, LevenbergMarquardt(m.parameters(), damping=0.5)

    m1, opt1 = make()
    c1 = residual_closure(m1, x, y)
    for _ in range(4):
        opt1.step(c1)
    saved = opt1.state_dict()
    lam = opt1.state[m1.linears()[0].weight]["damping"]
    assert lam != 0.5  # it moved
    m2, opt2 = make(seed=1)
    m2.load_state_dict(m1.state_dict())
    opt2.load_state_dict(saved)
    assert opt2.state[m2.linears()[0].weight]["damping"] == lam
    assert opt2.state[m2.linears()[0].weight]["n_steps"] == 4
    opt1.step(c1)
    opt2.step(residual_closure(m2, x, y))
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p1, p2)


# -- KAN adapter -------------------------------------------------------------------------------


def test_fit_kan_without_pykan_raises_import_error(monkeypatch):
    monkeypatch.setattr(kan_adapter, "kan_available", lambda: False)
    x = torch.zeros(4, 2)
    with pytest.raises(ImportError, match="pykan"):
        kan_adapter.fit_kan(x, x[:, :1], x, x[:, :1], width=[2, 1])


def test_fit_kan_isolated(tmp_path, monkeypatch, capsys):
    pytest.importorskip("kan")
    assert kan_available()
    from sepneuron.tasks import make_data

    x, y, xt, yt = make_data("kan_exp", 100, 50, generator=0)
    monkeypatch.chdir(tmp_path)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    dtype = torch.get_default_dtype()
    res = kan_adapter.fit_kan(x, y, xt, yt, width=[2, 3, 1], grid=3, k=3, steps=3, seed=0)
    assert torch.equal(torch.get_rng_state(), states[0])
    np_now = np.random.get_state()
    assert np_now[0] == states[1][0] and np.array_equal(np_now[1], states[1][1])
    assert np_now[2:] == states[1][2:]
    assert random.getstate() == states[2]
    assert torch.get_default_dtype() == dtype
    assert list(tmp_path.iterdir()) == []  # no checkpoint or figure left in the cwd
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert res["steps_done"] == 3 and len(res["train_loss"]) == 3 == len(res["step_time"])
    assert all(t > 0 for t in res["step_time"])
    assert res["n_params"] == (2 * 3 + 3 * 1) * (3 + 3 + 2)  # edges * (coef + 2 scales)
    assert np.isfinite(res["test_rmse"]) and res["test_rmse"] < float(yt.std())
    assert res["train_loss"][-1] == pytest.approx(res["train_rmse"], rel=1e-6)
    assert res["model"].act_fun[0].coef.dtype == torch.float64
    # the same seed reproduces the fit (up to BLAS rounding, not bitwise)
    again = kan_adapter.fit_kan(x, y, xt, yt, width=[2, 3, 1], grid=3, k=3, steps=3, seed=0)
    assert again["test_rmse"] == pytest.approx(res["test_rmse"], rel=1e-6)
    assert os.listdir(tmp_path) == []


def test_fit_kan_time_budget_and_errors():
    pytest.importorskip("kan")
    from sepneuron.tasks import make_data

    x, y, xt, yt = make_data("product", 60, 20, generator=1)
    res = kan_adapter.fit_kan(
        x, y, xt, yt, width=[2, 2, 1], grid=3, k=2, steps=50, seed=0, max_time=1e-6
    )
    assert res["timed_out"] and res["steps_done"] == 1
    with pytest.raises(ValueError, match="width"):
        kan_adapter.fit_kan(x, y, xt, yt, width=[3, 2, 1], steps=1)
    with pytest.raises(ValueError, match="opt"):
        kan_adapter.fit_kan(x, y, xt, yt, width=[2, 2, 1], steps=1, opt="SGD")


def test_lstsq_fallback_is_the_minimum_norm_solution():
    """The fallback of the damped solves (a failed Cholesky): rank-deficient systems get
    the minimum-norm least-squares solution (pinv), also the diagonal one of the test above."""
    from sepneuron.solvers.levenberg_marquardt import lstsq_solve

    g = _gen(7)
    j = torch.randn(4, 6, dtype=F64, generator=g)
    a = j.T @ j                                    # (6, 6) of rank 4
    b = torch.randn(6, 2, dtype=F64, generator=g)
    torch.testing.assert_close(lstsq_solve(a, b), torch.linalg.pinv(a) @ b, rtol=1e-8, atol=1e-8)
    sing = torch.zeros(3, 3, dtype=F64)
    sing[0, 0] = 1.0
    x = lstsq_solve(sing, torch.tensor([[-1.0], [0.0], [0.0]], dtype=F64))
    assert x.flatten().tolist() == [-1.0, 0.0, 0.0]
