"""The paper's Figure 3 case: one neuron whose linear activation grows the wrong way.

Target ``y = relu(-2 x + 0.3)`` on ``x in [-1, 1]``; the neuron starts with ``a = x + 0.1``
(``w = +1``, ``b = 0.1``), i.e. growing opposite to the target (paper Fig. 3d-f). A plain ReLU
neuron trained by gradient descent dies or fits almost nothing; the paper says the separated
neuron (Fig. 6c) "does not encounter adaptation issues".

The separated neuron represents the target exactly only at ``w = -1``, ``b + q = 0.15``,
``q = 0``, ``c d = 1`` (ReLU analog; the SoftPlus analog approaches it as ``c`` grows), so
``w`` has to pass through 0. All rules share one setting: float64, 200 training points, Adam
(lr 5e-2, cosine schedule) on ``(w, b)``, the tuner with ``gamma = 0.3``, ``max_step = 0.05``,
``sensitivity = "none"``, 2000 steps. The error is the test RMSE on a dense grid divided by the
target's range (2.3).

Measured (rmse / range, this setting): plain ReLU 4.4e-1 (Adam and SGD); ``paper`` 1.2e-1
(ReLU), 7.3e-2 (SoftPlus); ``newton`` 4.8e-3 (ReLU), 5.8e-2 (SoftPlus); ``gauss_newton``
8.2e-2 (ReLU), 3.6e-4 (SoftPlus). The reasons are in the xfail marks below; they were checked
on the final states (statistics and autograd gradients there).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from sepneuron import SeparatedActivation, SeparatedTuner
from sepneuron.functional import separated_relu, separated_softplus

F64 = torch.float64
STEPS = 2000
SETTING = dict(gamma=0.3, max_step=0.05, sensitivity="none")
ADAM_LR = 5e-2


pytestmark = pytest.mark.usefixtures("one_thread")


def _target(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(-2.0 * x + 0.3)


def _data():
    x = torch.rand(200, 1, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 - 1
    grid = torch.linspace(-1, 1, 2001, dtype=F64).unsqueeze(1)
    return x, _target(x), grid, _target(grid)


def _linear() -> nn.Linear:
    lin = nn.Linear(1, 1, dtype=F64)
    with torch.no_grad():
        lin.weight.fill_(1.0)                      # growth opposite to the target's
        lin.bias.fill_(0.1)
    return lin


def _relative_rmse(model: nn.Module) -> float:
    _, _, grid, y_grid = _data()
    with torch.no_grad():
        rmse = (model(grid) - y_grid).pow(2).mean().sqrt()
    return (rmse / (y_grid.max() - y_grid.min())).item()


@functools.cache
def plain_relu(opt_name: str) -> tuple[float, bool]:
    """``(rmse / range, dead)`` of ``relu(w x + b)`` after gradient descent."""
    x, y, _, _ = _data()
    lin = _linear()
    model = nn.Sequential(lin, nn.ReLU())
    opt = (torch.optim.Adam(lin.parameters(), lr=ADAM_LR) if opt_name == "adam"
           else torch.optim.SGD(lin.parameters(), lr=0.1))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    for _ in range(STEPS):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        dead = bool((lin(x) <= 0).all())          # relu' = 0 on every training point
    return _relative_rmse(model), dead


@functools.cache
def separated(rule: str, kind: str) -> float:
    """``rmse / range`` of the separated neuron: Adam on ``(w, b)``, the tuner on q, c, d."""
    x, y, _, _ = _data()
    lin = _linear()
    act = SeparatedActivation(1, kind, d_init=0.5, dtype=F64)
    model = nn.Sequential(lin, act)
    opt = torch.optim.Adam(lin.parameters(), lr=ADAM_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    tuner = SeparatedTuner([act], rule=rule, **SETTING)
    for _ in range(STEPS):
        opt.zero_grad()
        tuner.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        tuner.step()
        sched.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return _relative_rmse(model)


def test_the_target_is_reachable_by_both_analogs():
    """1e-3 is attainable: exact for the ReLU analog, and for SoftPlus with a sharp bend."""
    _, _, grid, y_grid = _data()
    a = -grid + 0.15                                             # w = -1, b = 0.15
    zero, one = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    torch.testing.assert_close(separated_relu(a, zero, one, one), y_grid, rtol=0, atol=1e-15)
    c = torch.full((1,), 200.0, dtype=F64)
    lift = 2 * torch.log(torch.tensor(2.0, dtype=F64)) / c       # asymptotes sit 2 d ln 2 low
    sp = separated_softplus(a + lift, -lift, c, 1.0 / c)
    assert ((sp - y_grid).pow(2).mean().sqrt() / 2.3).item() < 1e-3


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_plain_relu_neuron_dies_or_stays_far(opt_name):
    rmse, dead = plain_relu(opt_name)
    assert dead or rmse > 0.1


RULE_KINDS = [(r, k) for r in ("paper", "newton", "gauss_newton") for k in ("relu", "softplus")]


@pytest.mark.parametrize("rule, kind", RULE_KINDS)
def test_separated_neuron_beats_the_plain_relu_neuron(rule, kind):
    plain = min(plain_relu("adam")[0], plain_relu("sgd")[0])
    assert separated(rule, kind) < 0.5 * plain


def _xfail(reason: str):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


@pytest.mark.parametrize(
    "rule, kind",
    [
        pytest.param("paper", "relu", marks=_xfail(
            "measured 1.2e-1: the kink leaves the data (all 200 samples on one side), the "
            "neuron is linear there and at the best linear fit every half-sum and gradient "
            "is 0 (|grad| < 1e-13), so no rule can bring the kink back")),
        pytest.param("paper", "softplus", marks=_xfail(
            "measured 7.3e-2: stalls at a fixed point of the |S|-weighted eqs. (22)-(24) "
            "that is not stationary for the loss (dE/dq = 17, dE/dlog c = -28 there)")),
        pytest.param("newton", "relu", marks=_xfail(
            "measured 4.8e-3: stops where G_L = G_R = 0 (both half-sums zero) and Adam's "
            "dE/dw = dE/db = 0, but dE/dd = -1.5: zeroing the plain residual sums does not "
            "make d stationary (dE/dd is the arm-weighted sum of g c|a+q|)")),
        pytest.param("newton", "softplus", marks=_xfail(
            "measured 5.8e-2: c runs away at max_step per step (to ~4e5 with d ~ 0.2, so "
            "c d ~ 9e4 and w -> 0); the trust region bounds dlog c but not the slope change "
            "c d (e^dlog c - 1) it causes, and the loss rises above its initial value on "
            "the way")),
        pytest.param("gauss_newton", "relu", marks=_xfail(
            "measured 8.2e-2: slides into the valley w -> 0+, c d -> inf (w c d fixed); "
            "passing w = 0 needs c d to diverge, and the trust region lets c d grow by "
            "max_step per step only")),
        ("gauss_newton", "softplus"),
    ],
)
def test_separated_neuron_reaches_the_target(rule, kind):
    assert separated(rule, kind) < 1e-3
