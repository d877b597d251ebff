"""Conditioning components (paper subtasks 3, 7-10): each one's property, measured before and
after on a fixed batch; the output layer's step stays on the negative gradient; registry,
state, fit() integration."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from legacy_recipe import ADAM, NO_VARPRO
from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.baselines import PlainMLP
from sepneuron.conditioning import (
    CONDITIONERS,
    Compensate,
    Conditioner,
    NormalizeActivations,
    NormalizeDeltas,
    Orthogonalize,
    SpreadDirections,
    get_conditioner,
    make_conditioners,
)
from sepneuron.conditioning._common import find_blocks
from sepneuron.conditioning.deltas import delta_scale
from sepneuron.conditioning.orthogonalize import decorrelation_penalty, mean_abs_cosine
from sepneuron.conditioning.spread import coverage_angle, direction_cosines, spread_targets

F64 = torch.float64
KINDS = ("relu", "softplus")
NAMES = ("spread_directions", "compensate", "normalize_activations", "normalize_deltas",
         "orthogonalize")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n: int = 128, seed: int = 0):
    g = _gen(seed)
    x = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * x[:, 1:] + 0.5 * x[:, :1] ** 2
    return x, y


def _mlp(kind: str = "softplus", hidden=(12, 10), seed: int = 1) -> SeparatedMLP:
    return SeparatedMLP(2, list(hidden), 1, kind, q_init=0.1, d_init=0.4, dtype=F64,
                        generator=_gen(seed))


def _linear_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Linear activations ``a`` of every Linear layer on ``x`` (no autograd)."""
    out: list[torch.Tensor] = []
    hs = [b.linear.register_forward_hook(lambda m, i, o: out.append(o)) for b in find_blocks(model)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return out


def _layer_activity(model: nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of hidden block ``layer`` (after its activation) on ``x``."""
    blk = find_blocks(model)[layer]
    seen: list[torch.Tensor] = []
    mod = blk.act if blk.act is not None else blk.linear
    h = mod.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return seen[0]


def _output_params(model) -> torch.Tensor:
    out = find_blocks(model)[-1].linear
    return torch.cat([out.weight.detach().flatten(), out.bias.detach().flatten()]).clone()


def _output_grad(model, x, y) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    F.mse_loss(model(x), y).backward()
    out = find_blocks(model)[-1].linear
    g = torch.cat([out.weight.grad.flatten(), out.bias.grad.flatten()]).clone()
    model.zero_grad(set_to_none=True)
    return g


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def _sgd(conds, steps: int = 1, lr: float = 0.5, **kw) -> TrainConfig:
    return TrainConfig(**NO_VARPRO, optimizer="sgd", momentum=0.0, lr=lr, steps=steps,
                       conditioning=conds,
                       diagnostics=False, eval_every=1000, max_step=0.2, **kw)


def _adam(conds, steps: int = 30, lr: float = 0.02) -> TrainConfig:
    return TrainConfig(**ADAM, lr=lr, steps=steps, conditioning=conds, diagnostics=False,
                       eval_every=1000)


# -- registry, defaults, state --------------------------------------------------------------

def test_registry_names_and_lookup():
    assert set(CONDITIONERS) == set(NAMES)
    for name in NAMES:
        c = get_conditioner(name)
        assert isinstance(c, Conditioner) and c.name == name
        assert type(make_conditioners([name])[0]) is type(c)
    assert get_conditioner("orthogonalize", strength=0.5).strength == 0.5
    inst = Orthogonalize()
    assert make_conditioners([inst])[0] is inst


def test_unknown_duplicate_and_bad_options_raise():
    with pytest.raises(ValueError, match="unknown conditioning component"):
        make_conditioners(["normalise_everything"])
    with pytest.raises(ValueError, match=r"conditioning must be a sequence of names from "
                       r"\(.*'compensate'.*\), got \('nope',\)"):
        fit(_mlp(), *_data(), TrainConfig(**ADAM, steps=1, conditioning=("nope",)))
    with pytest.raises(ValueError, match="twice"):
        make_conditioners(["compensate", "compensate"])
    for bad in (lambda: Orthogonalize(strength=-1), lambda: SpreadDirections(every=0),
                lambda: NormalizeActivations(rate=0), lambda: NormalizeDeltas(max_factor=1)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="chain"):
        find_blocks(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1)))


def test_compensate_runs_last_whatever_the_order():
    names = [c.name for c in make_conditioners(list(reversed(NAMES)))]
    assert names[-1] == "compensate" and sorted(names) == sorted(NAMES)


def test_all_off_by_default():
    assert TrainConfig().conditioning == ()
    assert make_conditioners(TrainConfig().conditioning) == []


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    x, y = _data()
    comp = get_conditioner(name, every=2)
    fit(_mlp(), x, y, TrainConfig(**ADAM, steps=3, conditioning=(comp,), diagnostics=False))
    state = comp.state_dict()
    assert state["steps"] == 3 and state["name"] == name
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = get_conditioner(name, every=2)
    fresh.load_state_dict(torch.load(buf))
    assert fresh.state_dict() == state
    with pytest.raises(ValueError):
        get_conditioner(next(n for n in NAMES if n != name)).load_state_dict(state)


def test_checkpoint_resume_with_all_components_is_exact(tmp_path):
    x, y = _data()
    cfg = dict(steps=8, conditioning=NAMES, diagnostics=False, eval_every=4)
    straight = _mlp()
    fit(straight, x, y, TrainConfig(**ADAM, **cfg))
    ckpt = tmp_path / "c.pt"
    resumed = _mlp()
    fit(resumed, x, y, TrainConfig(**ADAM, **{**cfg, "steps": 4}, checkpoint_path=str(ckpt)))
    fit(resumed, x, y, TrainConfig(**ADAM, **cfg, checkpoint_path=str(ckpt), resume=True))
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- fit() integration ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("conds", [(n,) for n in NAMES] + [NAMES])
def test_fit_with_component_runs_finite_and_removes_hooks(kind, conds, capsys):
    x, y = _data()
    model = _mlp(kind)
    rng = torch.random.get_rng_state()
    h = fit(model, x, y, TrainConfig(**ADAM, steps=40, conditioning=conds, diagnostics=False,
                                     eval_every=20), X_test=x, y_test=y)
    assert all(torch.isfinite(torch.tensor(h.loss)))
    assert h.loss[-1] < h.loss[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)          # no global RNG drawn
    assert capsys.readouterr() == ("", "")                           # no printing
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


@pytest.mark.parametrize("activation", ["relu", "tanh", "silu"])
def test_fit_on_plain_mlp_with_all_components(activation):
    x, y = _data()
    model = PlainMLP(2, [10, 8], 1, activation, dtype=F64, generator=_gen(3))
    h = fit(model, x, y, TrainConfig(**ADAM, steps=30, rule=None, conditioning=NAMES,
                                     diagnostics=False))
    assert all(torch.isfinite(torch.tensor(h.loss))) and h.loss[-1] < h.loss[0]


# -- (7) compensate and the output layer's step ------------------------------------------------

def _one_sgd_step(kind: str, conds, lr: float = 0.5) -> tuple[float, float]:
    """cos of the output layer's step with ``-grad`` before the step and ``-grad`` at the
    point it moves from (hidden layers moved, output layer not yet)."""
    x, y = _data()
    model = _mlp(kind)
    g_before = _output_grad(model, x, y)
    theta0 = _output_params(model)
    fit(model, x, y, _sgd(conds, lr=lr))
    step = _output_params(model) - theta0
    if "compensate" not in conds:                   # nothing but SGD touched the output layer
        torch.testing.assert_close(step, -lr * g_before, rtol=1e-10, atol=1e-14)
    at = copy.deepcopy(model)
    out = find_blocks(at)[-1].linear
    with torch.no_grad():
        out.weight.copy_(theta0[:-1].view_as(out.weight))
        out.bias.copy_(theta0[-1:])
    g_at = _output_grad(at, x, y)
    return _cos(step, -g_before), _cos(step, -g_at)


@pytest.mark.parametrize("kind", KINDS)
def test_compensate_puts_output_step_on_negative_gradient(kind):
    _, cos_at_without = _one_sgd_step(kind, ())
    _, cos_at_with = _one_sgd_step(kind, ("compensate",))
    assert cos_at_without < 0.99        # without: the stale step is off the gradient where it lands
    assert cos_at_with >= 0.999
    _, cos_at_all = _one_sgd_step(kind, NAMES)
    assert cos_at_all >= 0.999


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [n for n in NAMES if n != "compensate"])
def test_other_components_leave_output_step_on_its_gradient(kind, name):
    cos_before, _ = _one_sgd_step(kind, (name,))
    assert cos_before >= 0.999


def test_compensate_exact_sgd_step_and_skips_lbfgs():
    x, y = _data()
    model = _mlp("relu")
    comp = Compensate()
    fit(model, x, y, _sgd((comp,), lr=0.2))
    assert comp.last_correction > 0.01
    comp = Compensate()
    fit(_mlp("relu"), x, y, TrainConfig(**NO_VARPRO, optimizer="lbfgs", lr=0.5, steps=2,
                                        conditioning=(comp,),
                                         diagnostics=False))
    assert comp.last_correction == 0.0                    # several evaluations per step: no-op


# -- (8) normalize_activations ---------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_normalize_activations_unit_scale_and_same_function(kind):
    x, _ = _data(256)
    model = _mlp(kind, hidden=(12, 10, 8))
    with torch.no_grad():                         # make the scales far from 1 first
        model.linears()[0].weight.mul_(torch.linspace(0.05, 4.0, 12, dtype=F64).unsqueeze(1))
        model.linears()[1].bias.add_(2.0)
    before = _linear_outputs(model, x)
    f_before = model(x).detach()
    std0 = before[0].std(0, correction=0)
    assert std0.max() / std0.min() > 10
    comp = NormalizeActivations(max_scale=100.0)
    comp.attach(model)
    model(x)                                      # the training forward (autograd on)
    comp.after_update(model)
    comp.detach()
    after = _linear_outputs(model, x)
    torch.testing.assert_close(model(x).detach(), f_before, rtol=1e-10, atol=1e-12)
    for a in after[:2]:                           # hidden layers that feed a hidden layer
        torch.testing.assert_close(a.std(0, correction=0), torch.ones(a.shape[1], dtype=F64))
        torch.testing.assert_close(a.mean(0), torch.zeros(a.shape[1], dtype=F64),
                                   atol=1e-10, rtol=0)
    torch.testing.assert_close(after[2], before[2])   # last hidden layer: left alone
    torch.testing.assert_close(after[3], before[3])   # output layer: untouched


def test_normalize_activations_scale_only_for_relu_mlp():
    x, _ = _data(256)
    model = PlainMLP(2, [9, 7, 5], 1, "relu", dtype=F64, generator=_gen(2))
    f_before = model(x).detach()
    comp = NormalizeActivations(max_scale=1e3)
    comp.attach(model)
    model(x)
    comp.after_update(model)
    comp.detach()
    torch.testing.assert_close(model(x).detach(), f_before, rtol=1e-10, atol=1e-12)
    for a in _linear_outputs(model, x)[:2]:       # ReLU: no shift, RMS to 1
        torch.testing.assert_close(a.pow(2).mean(0).sqrt(), torch.ones(a.shape[1], dtype=F64))


# -- (9) normalize_deltas --------------------------------------------------------------------

def test_normalize_deltas_equalises_delta_scale_across_layers():
    x, y = _data(200)
    model = PlainMLP(2, [16, 16, 16], 1, "tanh", dtype=F64, generator=_gen(4))
    with torch.no_grad():
        for i, lin in enumerate(model.linears()):
            lin.weight.mul_(3.0 if i % 2 else 0.3)
    deltas: list[torch.Tensor] = []

    def record(mod, args, out):
        out.register_hook(deltas.append)

    hs = [lin.register_forward_hook(record) for lin in model.linears()]
    F.mse_loss(model(x), y).backward()
    for h in hs:
        h.remove()
    nu = [float(delta_scale(d)) for d in reversed(deltas)]        # input side first
    ref = [lin.weight.grad.clone() for lin in model.linears()]
    model.zero_grad()
    assert max(nu) / min(nu) > 5                                   # unequal before
    comp = NormalizeDeltas()
    comp.attach(model)
    F.mse_loss(model(x), y).backward()
    comp.before_update(model)
    comp.detach()
    assert comp.last_scales == pytest.approx(nu, rel=1e-12)
    effective = [s * f for s, f in zip(nu[:-1], comp.last_factors, strict=True)] + [nu[-1]]
    assert max(effective) / min(effective) == pytest.approx(1.0, abs=1e-12)   # equal after
    for lin, r, f in zip(model.linears(), ref, comp.last_factors + [1.0], strict=True):
        torch.testing.assert_close(lin.weight.grad, r * f)         # output layer: factor 1


# -- (10) orthogonalize ----------------------------------------------------------------------

def _correlated_mlp(kind: str) -> SeparatedMLP:
    """Second hidden layer with nearly parallel weight rows: correlated activities."""
    model = _mlp(kind, hidden=(12, 10))
    with torch.no_grad():
        w = model.linears()[1].weight
        w.copy_(w[:1] + 0.1 * w)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_orthogonalize_direction_lowers_activity_cosines(kind):
    x, _ = _data(256)
    model = _correlated_mlp(kind)
    comp = Orthogonalize()
    blk = find_blocks(model)[1]
    h1 = _layer_activity(model, x, 0)
    before = mean_abs_cosine(_layer_activity(model, x, 1))
    p0 = float(decorrelation_penalty(_layer_activity(model, x, 1)))
    for _ in range(20):                                    # walk down the direction alone
        d = comp.direction(blk, h1)
        norm = torch.sqrt(sum((t ** 2).sum() for t in d))
        with torch.no_grad():
            for p, t in zip((blk.linear.weight, blk.linear.bias), d, strict=True):
                p.sub_(0.05 * p.detach().norm() * t / norm)
    after = mean_abs_cosine(_layer_activity(model, x, 1))
    assert float(decorrelation_penalty(_layer_activity(model, x, 1))) < 0.5 * p0
    assert after < 0.7 * before


@pytest.mark.parametrize("kind", KINDS)
def test_orthogonalize_in_training_lowers_activity_cosines(kind):
    x, y = _data(256)
    runs = {}
    for conds in ((), (Orthogonalize(strength=1.0),)):
        model = _correlated_mlp(kind)
        fit(model, x, y, _adam(conds))
        runs[bool(conds)] = mean_abs_cosine(_layer_activity(model, x, 1))
    start = mean_abs_cosine(_layer_activity(_correlated_mlp(kind), x, 1))
    assert runs[True] < 0.9 * runs[False] and runs[True] < start


# -- (3) spread_directions -------------------------------------------------------------------

def _clustered_weights(n: int = 12, n_in: int = 2, seed: int = 5) -> tuple[torch.Tensor, ...]:
    g = _gen(seed)
    base = torch.tensor([[1.0] + [0.2] * (n_in - 1)], dtype=F64)
    w = base + 0.05 * torch.randn(n, n_in, generator=g, dtype=F64)
    w = w * torch.linspace(0.5, 2.0, n, dtype=F64).unsqueeze(1)
    b = torch.randn(n, generator=g, dtype=F64)
    return w, b


@pytest.mark.parametrize("n_in", [2, 5])
def test_spread_targets_spread_directions_and_keep_lengths(n_in):
    g = _gen(6)
    x = torch.rand(400, n_in, generator=g, dtype=F64) * 2 - 1
    w, b = _clustered_weights(n_in=n_in)
    cos0, cover0 = direction_cosines(w), coverage_angle(w, x)
    w1, b1 = w, b
    for _ in range(10):
        w1, b1 = spread_targets(w1, b1, x)
    cos1, cover1 = direction_cosines(w1), coverage_angle(w1, x)
    assert cos1.mean() < 0.75 * cos0.mean() and cos1.max() < cos0.max()
    assert cover1 < 0.75 * cover0
    torch.testing.assert_close(w1.norm(dim=1), w.norm(dim=1))        # lengths kept
    m = x.mean(0)
    torch.testing.assert_close(w1 @ m + b1, w @ m + b)                # a at the batch mean kept


def test_spread_targets_fixed_in_one_dimension():
    x = torch.linspace(-1, 1, 50, dtype=F64).unsqueeze(1)
    w = torch.tensor([[0.5], [-2.0], [1.0]], dtype=F64)
    b = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    w1, b1 = spread_targets(w, b, x)
    torch.testing.assert_close(w1, w)
    torch.testing.assert_close(b1, b)


@pytest.mark.parametrize("kind", KINDS)
def test_spread_directions_in_training_spreads_first_layer(kind):
    x, y = _data(256)
    res = {}
    for conds in ((), (SpreadDirections(strength=1.0),)):
        model = _mlp(kind)
        with torch.no_grad():
            w = model.linears()[0].weight
            w.copy_(_clustered_weights(n=w.shape[0])[0])
        fit(model, x, y, _adam(conds))
        res[bool(conds)] = direction_cosines(model.linears()[0].weight.detach()).mean()
    assert res[True] < 0.95 * res[False]
