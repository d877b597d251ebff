"""NetworkLM on the reduced (variable-projection) problem: one objective per step, and LM on
theta and the output layer together once the reduced problem stalls."""

from __future__ import annotations

import math

import pytest
import torch

from sepneuron.baselines import PlainMLP
from sepneuron.solvers import NetworkLM, network_lm as network_lm_module, solve_output_layer
from sepneuron.solvers.varpro import half_sse, output_layer_of

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = X[:, :1] * X[:, 1:] + torch.sin(2 * X[:, :1])
    model = PlainMLP(2, [8, 8], 1, "tanh", dtype=F64, generator=torch.Generator().manual_seed(1))
    _, out = output_layer_of(model)
    hidden = [p for p in model.parameters() if all(p is not q for q in out.parameters())]
    return X, y, model, out, hidden


def _ridged(model, out, X, y, alpha: float) -> float:
    """``0.5 ||r||^2 + 0.5 alpha ||B||^2``: what a projected step with that alpha minimises."""
    norm = sum(float((p.detach() ** 2).sum()) for p in out.parameters())
    return half_sse(model, X, y) + 0.5 * alpha * norm


def test_a_projected_step_never_raises_its_ridged_objective():
    # The ridge is exaggerated (1e-6) so that it matters: each step must lower the objective
    # it solves, 0.5 ||r||^2 + 0.5 alpha ||B||^2 with the alpha of the step's first solve.
    X, y, model, out, hidden = _problem()
    opt = NetworkLM(hidden, projected=True, ridge=1e-6)
    for _ in range(40):
        alpha = solve_output_layer(model, X, y, ridge=1e-6)   # what the step solves first
        before = _ridged(model, out, X, y, alpha)
        opt.step(model, X, y)
        if opt.state[hidden[0]].get("joint"):
            break
        assert _ridged(model, out, X, y, alpha) <= before * (1 + 1e-12)


def test_the_reduced_problem_does_not_stall_where_joint_lm_goes_on():
    # Before this fix, the trials compared 0.5 ||r||^2 without the ridge term while the
    # output layer minimised it with it: steps were refused until the damping hit 1e16.
    X, y, model, out, hidden = _problem()
    opt = NetworkLM(hidden, projected=True, ridge=1e-6)
    losses = [float(opt.step(model, X, y)) for _ in range(150)]
    assert opt.state[hidden[0]]["damping"] < 1e6
    assert losses[-1] < 1e-3 * losses[0]


def test_a_stalled_reduced_problem_goes_on_with_lm_on_theta_and_the_output_layer(monkeypatch):
    X, y, model, out, hidden = _problem()
    opt = NetworkLM(hidden, projected=True, damping=1e-2)
    for _ in range(3):
        opt.step(model, X, y)
    solve_output_layer(model, X, y)      # what the next step's first solve gives (same theta)
    solved = [p.detach().clone() for p in out.parameters()]
    with monkeypatch.context() as m:   # every damped solve fails: the step gives up
        m.setattr(network_lm_module, "_damped_solve",
                  lambda s, g, d: torch.full_like(g, torch.nan))
        opt.step(model, X, y)
    state = opt.state[hidden[0]]
    assert state["joint"] is True and state["damping"] == 1e-2 and state["nu"] == 2.0
    assert all(torch.equal(a, b) for a, b in zip(solved, out.parameters(), strict=True))
    before = half_sse(model, X, y)
    opt.step(model, X, y)                  # no solve now: the output layer is in the LM vector
    assert half_sse(model, X, y) < before
    assert not all(torch.equal(a, b) for a, b in zip(solved, out.parameters(), strict=True))
    fresh = NetworkLM(hidden, projected=True)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.state[hidden[0]]["joint"] is True   # checkpoints resume in the same mode


@pytest.mark.parametrize("kind", ["relu", "softplus"])
def test_a_step_moves_no_activation_parameter_by_more_than_its_bound(kind):
    # q, log c, d in the LM vector (rule "grad"): without the bound, the first accepted step
    # took log c from 0 to 60 and J^T J overflowed three steps later.
    from sepneuron import SeparatedMLP

    g = torch.Generator().manual_seed(0)
    X = torch.rand(80, 3, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) + X[:, 1:2] ** 2 - 0.5 * X[:, 2:]
    model = SeparatedMLP(3, [8], 1, kind, dtype=F64, generator=torch.Generator().manual_seed(1))
    _, out = output_layer_of(model)
    theta = [p for p in model.parameters() if all(p is not q for q in out.parameters())]
    acts = [p for m in model.activations() for p in m.parameters()]
    opt = NetworkLM(theta, projected=True, max_activation_step=0.5)
    losses = []
    for _ in range(20):
        before = [p.detach().clone() for p in acts]
        losses.append(float(opt.step(model, X, y)))
        moved = max(float((p.detach() - b).abs().max()) for p, b in zip(acts, before, strict=True))
        assert moved <= 0.5 + 1e-12
    assert all(map(torch.isfinite, (p.detach().sum() for p in model.parameters())))
    assert losses[-1] < losses[0]


def test_max_activation_step_must_be_positive():
    _, _, _, _, hidden = _problem()
    with pytest.raises(ValueError, match="max_activation_step"):
        NetworkLM(hidden, max_activation_step=0.0)


@pytest.mark.parametrize("rho", [1e-3, 0.25, 0.5, 0.75, 0.999, 1.0, 3.0, 1e100, 1e300, math.inf])
def test_the_damping_update_takes_any_gain_ratio_without_overflow(rho):
    # A gain ratio of 1e110 once overflowed (2 rho - 1) ** 3 (OverflowError in a bench run).
    got = network_lm_module.damping_after_success(1e-2, rho)
    if rho < 1:
        assert got == pytest.approx(1e-2 * max(1 / 3, 1 - (2 * rho - 1) ** 3), rel=1e-15)
    else:
        assert got == pytest.approx(1e-2 / 3, rel=1e-15)
    assert network_lm_module.damping_after_success(1e-16, rho) == 1e-15
