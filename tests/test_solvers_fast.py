"""The faster LM path (issue 12): the blocked symmetric Gram product of the normal
equations, and a whole NetworkLM step, each against a dense direct computation."""

from __future__ import annotations

import pytest
import torch

from one_neuron import START, one_tanh_neuron
from sepneuron.baselines import PlainMLP
from sepneuron.solvers import NetworkLM, network_jacobian, normal_equations, solve_output_layer
from sepneuron.solvers.jacobian import _block_edges, add_gram_, symmetrize_upper_
from sepneuron.solvers.varpro import half_sse

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(n: int = 200, width: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.exp(torch.sin(3 * X[:, :1]) + X[:, 1:] ** 2)
    model = PlainMLP(2, [width, width], 1, "tanh", dtype=F64,
                     generator=torch.Generator().manual_seed(seed))
    hidden = [p for name, p in model.named_parameters() if not name.startswith("net.4")]
    return model, X, y, hidden


@pytest.mark.parametrize("p", [1, 149, 150, 451, 1300])
def test_blocked_gram_equals_the_full_product(p):
    jac = torch.randn(37, p, dtype=F64, generator=torch.Generator().manual_seed(p))
    acc = torch.zeros(p, p, dtype=F64)
    add_gram_(acc, jac[:20])
    add_gram_(acc, jac[20:])  # two chunks, as normal_equations accumulates them
    torch.testing.assert_close(symmetrize_upper_(acc), jac.T @ jac, rtol=1e-12, atol=1e-12)
    assert len(_block_edges(p)) - 1 == max(1, min(8, p // 150))


def test_normal_equations_of_a_wide_network_equal_the_dense_ones():
    model, X, y, hidden = _problem(width=24)  # P = 72 + 600 = 672: four column blocks
    params = [*hidden, *model.net[4].parameters()]
    _, jac = network_jacobian(model, X, params)
    r = (model(X) - y).reshape(-1).detach()
    for chunk in (64, 4096):
        jtj, jtr, loss = normal_equations(model, X, y, params, chunk_size=chunk)
        torch.testing.assert_close(jtj, jac.T @ jac, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(jtr, jac.T @ r, rtol=1e-12, atol=1e-12)
        assert loss == pytest.approx(0.5 * float(r @ r), rel=1e-12)


def _reference_step(model, X, y, hidden, damping, ridge):
    """One projected LM trial computed densely: Schur complement from the full J."""
    solve_output_layer(model, X, y, ridge=ridge)
    out = list(model.net[4].parameters())
    _, jac = network_jacobian(model, X, [*hidden, *out])
    r = (model(X) - y).reshape(-1).detach()
    k = sum(p.numel() for p in hidden)
    jt, jl = jac[:, :k], jac[:, k:]
    c = jl.T @ jl
    alpha = ridge * float(c.diagonal().sum()) / c.shape[0]
    s = jt.T @ jt - jt.T @ jl @ torch.linalg.solve(c + alpha * torch.eye(c.shape[0], dtype=F64),
                                                   jl.T @ jt)
    d = s.diagonal().clamp_min(1e-12 * float(s.diagonal().max()))
    return torch.linalg.solve(s + damping * torch.diag(d), -(jt.T @ r))


def test_network_lm_step_equals_the_dense_reference_step():
    model, X, y, hidden = _problem(n=800, width=20)  # P = 480 > 150: the blocked Gram
    ref_model, *_ = _problem(n=800, width=20)
    ref_hidden = [p for name, p in ref_model.named_parameters() if not name.startswith("net.4")]
    x0 = torch.cat([p.detach().reshape(-1) for p in ref_hidden])
    # a ridge that keeps the output block well conditioned, so that two exact routes to the
    # step agree to rounding (with 1e-12 they differ by ~1e-5 relative: cond ~ 1e12)
    delta = _reference_step(ref_model, X, y, ref_hidden, damping=1.0, ridge=1e-4)
    start = half_sse(ref_model, X, y)
    opt = NetworkLM(hidden, projected=True, damping=1.0, ridge=1e-4)
    opt.step(model, X, y)
    moved = torch.cat([p.detach().reshape(-1) for p in hidden]) - x0
    with torch.no_grad():  # the reference trial lowers the loss, so LM accepts its first trial
        torch.nn.utils.vector_to_parameters(x0 + delta, ref_hidden)
    solve_output_layer(ref_model, X, y, ridge=1e-4)
    assert half_sse(ref_model, X, y) < start
    torch.testing.assert_close(moved, delta, rtol=1e-8, atol=1e-10)


def test_weight_decay_matches_scipy_on_the_augmented_residuals():
    scipy_opt = pytest.importorskip("scipy.optimize")
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, 1, generator=g, dtype=F64) * 4 - 2
    y = 1.5 * torch.tanh(1.2 * X - 0.3) + 0.2
    w = 0.5 / 40  # per residual: mu = w * 40 residuals = 0.5
    mu = w * 40

    model = one_tanh_neuron()
    opt = NetworkLM(list(model.parameters()), weight_decay=w)
    for _ in range(200):
        opt.step(model, X, y)
    ours = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    ref_model = one_tanh_neuron()

    def residuals(v):  # [r; sqrt(mu) theta_hidden]: 0.5 ||.||^2 is the regularised objective
        with torch.no_grad():  # (w1, b1 only: the term never weighs on the output layer)
            torch.nn.utils.vector_to_parameters(torch.tensor(v, dtype=F64), ref_model.parameters())
            return np.concatenate([(ref_model(X) - y).reshape(-1).numpy(), mu ** 0.5 * v[:2]])

    ref = scipy_opt.least_squares(residuals, np.array(START), method="lm",
                                  xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(ours, ref.x, rtol=1e-6, atol=1e-8)
    plain = one_tanh_neuron()
    plain_opt = NetworkLM(list(plain.parameters()))
    for _ in range(200):
        plain_opt.step(plain, X, y)
    shrunk = np.linalg.norm(ours[:2])
    assert shrunk < np.linalg.norm(torch.cat([p.detach().reshape(-1)
                                              for p in plain.parameters()]).numpy()[:2])


@pytest.mark.parametrize("decay", [dict(weight_decay=1e-2), dict(relative_weight_decay=1e-1)])
def test_the_tikhonov_term_never_weighs_on_the_output_layer_in_the_lm_vector(decay):
    # Unprojected LM with only the output layer in its vector solves a linear least-squares
    # problem: with the term on the output layer it would converge to a ridge solution.
    model, X, y, hidden = _problem(width=8)
    for p in hidden:
        p.requires_grad_(False)
    out = model.net[-1]
    opt = NetworkLM(list(out.parameters()), **decay)
    for _ in range(30):
        opt.step(model, X, y)
    with torch.no_grad():
        feats = torch.cat([model.net[:-1](X), torch.ones(len(X), 1, dtype=F64)], dim=1)
    exact = torch.linalg.lstsq(feats, y).solution
    ours = torch.cat([out.weight.detach().T, out.bias.detach()[None]], dim=0)
    torch.testing.assert_close(ours, exact, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", ["weight_decay", "relative_weight_decay"])
@pytest.mark.parametrize("value", [-1e-3, float("nan"), float("inf")])
def test_bad_weight_decay_is_refused(name, value):
    _, _, _, hidden = _problem(n=10, width=3)
    with pytest.raises(ValueError, match=name):
        NetworkLM(hidden, **{name: value})


@pytest.mark.parametrize("projected", [False, True])
def test_relative_weight_decay_is_a_weight_decay_of_rho_times_the_step_start_mse(projected):
    # Each step with relative_weight_decay=rho is the step with weight_decay = w0 + rho MSE,
    # the MSE at the step's start (after the output-layer solve when projected).
    import copy

    model, X, y, hidden = _problem(n=60, width=5)
    twin = copy.deepcopy(model)
    twin_hidden = [dict(twin.named_parameters())[n] for n, p in model.named_parameters()
                   if any(p is h for h in hidden)]
    if not projected:
        hidden, twin_hidden = list(model.parameters()), list(twin.parameters())
    rho, w0 = 0.3, 1e-4
    opt = NetworkLM(hidden, projected=projected, weight_decay=w0, relative_weight_decay=rho)
    for _ in range(5):
        if projected:
            solve_output_layer(twin, X, y, ridge=1e-12)
        mse = 2 * half_sse(twin, X, y) / y.numel()
        fixed = NetworkLM(twin_hidden, projected=projected, weight_decay=w0 + rho * mse)
        fixed.state[twin_hidden[0]].update(copy.deepcopy(dict(opt.state[hidden[0]])))
        before = float(opt.step(model, X, y))
        fixed.step(twin, X, y)
        assert before == pytest.approx(mse, rel=1e-12)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-12)
