"""The forward maths of the two analogs (paper eqs. 13-16) against references."""

from __future__ import annotations

import decimal

import pytest
import torch

from sepneuron.functional import (
    base,
    base_slope,
    check_kind,
    separated,
    separated_relu,
    separated_slope,
    separated_softplus,
)

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
KINDS = ("relu", "softplus")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _params(n: int, seed: int = 0):
    """q, c, d of ``n`` neurons in float64, c in [0.5, 2], d in [-1.5, 1.5], not tiny."""
    g = _gen(seed)
    q = torch.empty(n, dtype=F64).uniform_(-1.0, 1.0, generator=g)
    c = torch.empty(n, dtype=F64).uniform_(0.5, 2.0, generator=g)
    d = torch.empty(n, dtype=F64).uniform_(0.2, 1.5, generator=g)
    sign = torch.where(torch.rand(n, generator=g, dtype=F64) < 0.5, -1.0, 1.0).to(F64)
    return q, c, d * sign


def _away_from_kink(a: torch.Tensor, q: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Push samples with ``|a + q| < margin`` off the kink (finite differences need it)."""
    u = a + q
    push = torch.where(u >= 0, margin, -margin).to(a.dtype)
    return torch.where(u.abs() < margin, a + push, a)


# -- gradients -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_wrt_a_q_c_d(kind):
    q, c, d = _params(4, seed=1)
    a = torch.empty(6, 4, dtype=F64).uniform_(-2.0, 2.0, generator=_gen(2))
    a = _away_from_kink(a, q)
    inputs = tuple(t.clone().requires_grad_(True) for t in (a, q, c, d))
    assert torch.autograd.gradcheck(lambda a, q, c, d: separated(a, q, c, d, kind), inputs)


def test_gradgradcheck_softplus():
    # the SoftPlus analog is smooth: second derivatives (curvature rules) are checked too
    q, c, d = _params(3, seed=1)
    a = torch.empty(5, 3, dtype=F64).uniform_(-2.0, 2.0, generator=_gen(2))
    inputs = tuple(t.clone().requires_grad_(True) for t in (a, q, c, d))
    assert torch.autograd.gradgradcheck(
        lambda a, q, c, d: separated(a, q, c, d, "softplus"), inputs
    )


@pytest.mark.parametrize("kind", KINDS)
def test_separated_slope_matches_autograd(kind):
    q, c, d = _params(5, seed=3)
    a = _away_from_kink(torch.randn(7, 5, dtype=F64, generator=_gen(4)), q).requires_grad_(True)
    (grad,) = torch.autograd.grad(separated(a, q, c, d, kind).sum(), a)
    torch.testing.assert_close(separated_slope(a.detach(), q, c, d, kind), grad)


@pytest.mark.parametrize("kind", KINDS)
def test_base_slope_is_derivative_of_base(kind):
    v = _away_from_kink(torch.linspace(-30, 30, 601, dtype=F64), torch.zeros(())).requires_grad_()
    (grad,) = torch.autograd.grad(base(v, kind).sum(), v)
    torch.testing.assert_close(base_slope(v.detach(), kind), grad)


# -- shape of phi ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_phi_vanishes_at_zero_and_is_even(kind):
    zero = torch.zeros(3, dtype=F64)
    assert torch.equal(base(zero, kind), zero)
    q, c, d = _params(3, seed=5)
    # at a = -q the argument v is 0, so o = a exactly
    assert torch.equal(separated(-q, q, c, d, kind), -q)
    v = torch.linspace(-50, 50, 1001, dtype=F64)
    assert torch.equal(base(v, kind), base(-v, kind))
    assert bool((base(v, kind) >= 0).all())


def test_relu_analog_equals_the_printed_formula():
    q, c, d = _params(4, seed=6)
    a = torch.randn(50, 4, dtype=F64, generator=_gen(7))
    v = c * (a + q)
    printed = a + d * (2 * torch.clamp(v, min=0) - v)             # eq. (15)
    torch.testing.assert_close(separated_relu(a, q, c, d), printed, rtol=0, atol=1e-14)


def test_softplus_analog_equals_the_printed_formula():
    q, c, d = _params(4, seed=8)
    a = torch.randn(50, 4, dtype=F64, generator=_gen(9))
    v = c * (a + q)                                               # |v| small: raw form is safe
    ln2 = torch.log(torch.tensor(2.0, dtype=F64))
    printed = a + d * (2 * torch.log(1 + torch.exp(v)) - 2 * ln2 - v)
    torch.testing.assert_close(separated_softplus(a, q, c, d), printed, rtol=0, atol=1e-13)


def test_relu_slopes_are_one_minus_and_plus_cd():
    q, c, d = _params(4, seed=10)
    h = 1e-6
    left, right = -q - 1.0, -q + 1.0                              # one sample each side
    for a0, expected in ((left, 1 - c * d), (right, 1 + c * d)):
        fd = (separated_relu(a0 + h, q, c, d) - separated_relu(a0 - h, q, c, d)) / (2 * h)
        torch.testing.assert_close(fd, expected, rtol=0, atol=1e-8)


def test_relu_depends_on_c_times_d_only():
    q, c, d = _params(4, seed=11)
    a = torch.randn(40, 4, dtype=F64, generator=_gen(12))
    for t in (0.25, 3.0, 17.0):
        # t (a+q) stays on the same side, so |c t (a+q)| d / t = |c (a+q)| d
        torch.testing.assert_close(
            separated_relu(a, q, c * t, d / t), separated_relu(a, q, c, d), rtol=1e-14, atol=1e-14
        )


def test_softplus_asymptotic_slopes_are_plus_minus_cd():
    q, c, d = _params(4, seed=13)
    h = 1e-4
    far = 60.0 / c                                                # |v| = 60: tanh(30) = 1 - 2e-26
    for a0, expected in ((-q - far, 1 - c * d), (-q + far, 1 + c * d)):
        fd = (separated_softplus(a0 + h, q, c, d) - separated_softplus(a0 - h, q, c, d)) / (2 * h)
        torch.testing.assert_close(fd, expected, rtol=0, atol=1e-9)


def test_softplus_kink_curvature_is_c2d_over_2():
    q, c, d = _params(4, seed=14)
    h = 1e-4
    a0 = -q
    f = lambda a: separated_softplus(a, q, c, d)  # noqa: E731
    second = (f(a0 + h) - 2 * f(a0) + f(a0 - h)) / h**2
    torch.testing.assert_close(second, c * c * d / 2, rtol=1e-5, atol=1e-6)


def test_softplus_keeps_cd_fixed_and_sharpens_toward_relu_as_c_grows():
    q, _, _ = _params(3, seed=15)
    a = torch.randn(200, 3, dtype=F64, generator=_gen(16))
    cd = torch.tensor([0.7, -0.4, 1.0], dtype=F64)
    gaps = []
    for c in (1.0, 10.0, 100.0):
        cc = torch.full((3,), c, dtype=F64)
        soft, relu = separated_softplus(a, q, cc, cd / cc), separated_relu(a, q, cc, cd / cc)
        gap = (soft - relu).abs().max()
        gaps.append(gap.item())
        # 0 <= |v| - 2 ln cosh(v/2) <= 2 ln 2, times |d| = |cd| / c
        assert gap.item() <= 2 * 0.6931471805599453 * cd.abs().max().item() / c + 1e-12
    assert gaps[0] > gaps[1] > gaps[2]


# -- numerical stability ---------------------------------------------------------------


def _two_ln_cosh_half(v: float) -> float:
    """``2 ln cosh(v/2)`` in 60-digit decimal arithmetic."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        x = decimal.Decimal(v) / 2
        return float(2 * ((x.exp() + (-x).exp()) / 2).ln())


def test_softplus_is_stable_and_accurate_up_to_1e4():
    v = torch.cat([
        torch.tensor([0.0, 1e-300, 1e-12, 1e-6, 0.5, 20.0, 36.0, 40.0, 700.0, 750.0, 1e3, 1e4],
                     dtype=F64),
        torch.logspace(-8, 4, 200, dtype=F64),
    ])
    v = torch.cat([v, -v])
    out = base(v, "softplus")
    assert bool(torch.isfinite(out).all())
    ref = torch.tensor([_two_ln_cosh_half(x) for x in v.tolist()], dtype=F64)
    # relative accuracy, with an absolute floor for the tiny values near v = 0
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-15)
    # the gradient is finite and saturates at +-1 too
    vv = v.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(base(vv, "softplus").sum(), vv)
    assert bool(torch.isfinite(grad).all())
    torch.testing.assert_close(grad[v.abs() >= 100], torch.sign(v[v.abs() >= 100]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_layer_output_finite_for_huge_arguments(dtype):
    a = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=dtype).unsqueeze(1).requires_grad_()
    q, c, d = (torch.tensor([x], dtype=dtype) for x in (0.0, 1.0, 0.5))
    o = separated_softplus(a, q, c, d)
    o.sum().backward()
    assert bool(torch.isfinite(o).all()) and bool(torch.isfinite(a.grad).all())


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        check_kind("tanh")
    with pytest.raises(ValueError, match="kind"):
        separated(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1), "swish")
