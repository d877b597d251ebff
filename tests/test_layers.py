"""SeparatedActivation and SeparatedMLP: parameters, shapes, the fused backward, hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepneuron import SeparatedActivation, SeparatedMLP
from sepneuron.functional import separated, separated_slope

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
KINDS = ("relu", "softplus")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", KINDS)
def test_activation_matches_functional_and_stores_log_c(kind):
    q = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    c = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    act = SeparatedActivation(3, kind, q_init=q, c_init=c, d_init=-0.7, dtype=F64)
    torch.testing.assert_close(act.c, c)
    torch.testing.assert_close(act.log_c.detach(), c.log())
    assert torch.equal(act.d.detach(), torch.full((3,), -0.7, dtype=F64))
    a = torch.randn(4, 5, 3, dtype=F64, generator=_gen(0))       # extra leading dims
    torch.testing.assert_close(act(a), separated(a, act.q, act.c, act.d, kind))
    assert {n for n, _ in act.named_parameters()} == {"q", "log_c", "d"}
    # c stays positive whatever happens to log_c
    with torch.no_grad():
        act.log_c.fill_(-50.0)
    assert bool((act.c > 0).all())
    # reset_parameters restores the inits
    act.reset_parameters()
    torch.testing.assert_close(act.c, c)
    assert "3" in repr(act) and kind in repr(act)


def test_activation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_neurons"):
        SeparatedActivation(0)
    with pytest.raises(ValueError, match="kind"):
        SeparatedActivation(2, "tanh")
    with pytest.raises(ValueError, match="c_init"):
        SeparatedActivation(2, c_init=0.0)
    with pytest.raises(ValueError, match="c_init"):
        SeparatedActivation(2, c_init=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="q_init"):
        SeparatedActivation(2, q_init=torch.zeros(3))
    with pytest.raises(ValueError, match="d_init"):
        SeparatedActivation(2, d_init=float("nan"))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        SeparatedActivation(2)(torch.zeros(4, 3))


@pytest.mark.parametrize("kind", KINDS)
def test_layer_is_pure_and_its_fused_backward_equals_autograd_of_the_formula(kind):
    """The module computes ``a + phi(c (a + q))`` and nothing else; its autograd function
    gives the gradients of the composed formula, and second derivatives too."""
    act = SeparatedActivation(4, kind, q_init=0.1, d_init=-0.7, c_init=1.3, dtype=F64)
    assert not act._forward_hooks and not act._forward_pre_hooks and not act._backward_hooks
    a = torch.randn(3, 5, 4, dtype=F64, generator=_gen(1), requires_grad=True)
    out = act(a)
    want = separated(a, act.q, act.c, act.d, kind)
    torch.testing.assert_close(out, want, rtol=1e-14, atol=1e-14)
    g = torch.randn(3, 5, 4, dtype=F64, generator=_gen(2))
    params = (a, act.q, act.log_c, act.d)
    got = torch.autograd.grad(out, params, g)
    exp = torch.autograd.grad(want, params, g)
    for x, y in zip(got, exp, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)
    assert torch.autograd.gradgradcheck(lambda *p: act.__class__.forward(act, p[0]),
                                        (a[:2, :2].detach().requires_grad_(),))
    assert vars(act).keys() == SeparatedActivation(4, kind).__dict__.keys()   # no state added


@pytest.mark.parametrize("kind", KINDS)
def test_recorded_deltas_equal_autograd_wrt_preactivations(kind):
    """``g * do/da`` of a recorded pass is ``dE/da`` of the summed loss (2 hidden layers)."""
    from capture import recorded_passes

    model = SeparatedMLP(3, [6, 5], 2, kind, q_init=0.1, d_init=0.6, dtype=F64,
                         generator=_gen(2))
    preacts: list[torch.Tensor] = []
    hooks = [act.register_forward_pre_hook(lambda m, inp: preacts.append(inp[0]))
             for act in model.activations()]
    x = torch.randn(32, 3, dtype=F64, generator=_gen(3))
    y = torch.randn(32, 2, dtype=F64, generator=_gen(4))
    with recorded_passes(model) as passes:
        loss = ((model(x) - y) ** 2).sum()
        expected = torch.autograd.grad(loss, preacts)
    for h in hooks:
        h.remove()
    for act, exp in zip(model.activations(), expected, strict=True):
        ((a, g),) = passes[act]
        delta = g * separated_slope(a, act.q.detach(), act.c.detach(), act.d.detach(), kind)
        torch.testing.assert_close(delta, exp, rtol=1e-12, atol=1e-12)
        assert exp.abs().max() > 1e-3                               # not trivially zero


def test_mlp_structure_and_parameter_split():
    model = SeparatedMLP(2, [4, 3], 1, "relu", generator=_gen(5))
    acts, lins = model.activations(), model.linears()
    assert [a.num_neurons for a in acts] == [4, 3]
    assert [(lin.in_features, lin.out_features) for lin in lins] == [(2, 4), (4, 3), (3, 1)]
    assert all(a.kind == "relu" for a in acts)
    linear_ids = {id(p) for p in model.linear_parameters()}
    act_ids = {id(p) for p in model.activation_parameters()}
    assert linear_ids.isdisjoint(act_ids)
    assert linear_ids | act_ids == {id(p) for p in model.parameters()}
    assert len(act_ids) == 6 and len(linear_ids) == 6
    assert model(torch.zeros(7, 2)).shape == (7, 1)
    assert not isinstance(model.net[-1], SeparatedActivation)   # output layer stays linear


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hidden_sizes"):
        SeparatedMLP(2, [4, 0], 1)
    with pytest.raises(ValueError, match="in_features"):
        SeparatedMLP(0, [4], 1)
    with pytest.raises(ValueError, match="kind"):
        SeparatedMLP(2, [4], 1, "elu")
    with pytest.raises(ValueError, match="batch, 2"):
        SeparatedMLP(2, [4], 1)(torch.zeros(3, 5))


def test_mlp_constructor_leaves_global_rng_untouched_and_generator_decides():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    m1 = SeparatedMLP(2, [8, 8], 1, "relu", generator=_gen(7))
    m2 = SeparatedMLP(2, [8, 8], 1, "softplus", generator=_gen(7))
    m3 = SeparatedMLP(2, [8, 8], 1, generator=_gen(8))
    assert torch.equal(torch.get_rng_state(), before)            # never drawn from, never seeded
    for p1, p2 in zip(m1.linear_parameters(), m2.linear_parameters(), strict=True):
        assert torch.equal(p1, p2)
    assert not torch.equal(m1.linears()[0].weight, m3.linears()[0].weight)
    # without a generator it draws from the global RNG like nn.Linear, but never re-seeds it
    n1 = SeparatedMLP(2, [8], 1)
    n2 = SeparatedMLP(2, [8], 1)
    assert not torch.equal(n1.linears()[0].weight, n2.linears()[0].weight)


def test_mlp_default_init_bound_and_dtype_device():
    model = SeparatedMLP(4, [16], 1, dtype=F64, device="cpu", generator=_gen(9))
    w = model.linears()[0].weight
    assert w.dtype == F64 and w.device.type == "cpu"
    assert w.abs().max() <= 0.5 and w.abs().max() > 0.3            # U(-1/sqrt(4), 1/sqrt(4))
    assert all(p.dtype == F64 for p in model.parameters())


def test_mlp_is_trainable_end_to_end_by_autograd():
    model = SeparatedMLP(2, [8], 1, "softplus", dtype=F64, generator=_gen(10))
    x = torch.randn(64, 2, dtype=F64, generator=_gen(11))
    y = (x[:, :1] * x[:, 1:]).abs()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
