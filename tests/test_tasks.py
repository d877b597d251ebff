"""Tests of the analytic task registry and its sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sepneuron.tasks import TASKS, Task, get_task, grid, make_data

ALL = sorted(TASKS)


def test_registry_size_and_coverage():
    assert len(TASKS) >= 10
    dims = {t.dim for t in TASKS.values()}
    assert {2, 3} <= dims
    assert any(t.has_kink and t.dim == 2 for t in TASKS.values())
    assert any(t.has_kink and t.dim == 3 for t in TASKS.values())
    assert len({t.difficulty for t in TASKS.values()}) >= 3
    for name, t in TASKS.items():
        assert t.name == name
        assert len(t.low) == len(t.high) == t.dim
        assert t.description


@pytest.mark.parametrize("name", ALL)
def test_finite_on_domain_and_corners(name):
    task = TASKS[name]
    x, y, xt, yt = make_data(task, 2000, 100, generator=0)
    assert x.shape == (2000, task.dim) and y.shape == (2000, 1)
    assert xt.shape == (100, task.dim) and yt.shape == (100, 1)
    assert x.dtype == y.dtype == torch.float64
    low, high = torch.tensor(task.low), torch.tensor(task.high)
    assert ((x >= low) & (x <= high)).all()
    assert torch.isfinite(y).all() and torch.isfinite(yt).all()
    # every corner of the box, where divisions and kinks are most likely to misbehave
    corners = torch.cartesian_prod(
        *[torch.tensor([lo, hi]) for lo, hi in zip(task.low, task.high, strict=True)])
    corners = corners.reshape(-1, task.dim).to(torch.float64)
    assert torch.isfinite(task(corners)).all()
    # the target is not constant
    assert y.std() > 1e-3


@pytest.mark.parametrize("name", ALL)
def test_float32_matches_float64(name):
    task = TASKS[name]
    x64, y64, _, _ = make_data(task, 200, 10, generator=3)
    x32, y32, _, _ = make_data(task, 200, 10, generator=3, dtype=torch.float32)
    assert x32.dtype == y32.dtype == torch.float32
    torch.testing.assert_close(x32, x64.float())
    scale = float(y64.abs().max())
    # float32 rounding of x moves f by at most |grad f| * eps * |x|; loose but can fail
    assert float((y32.double() - y64).abs().max()) < 1e-3 * max(scale, 1.0)


def test_known_values():
    t = TASKS
    p = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    assert t["product"](p).item() == pytest.approx(-0.125)
    assert t["kink_abs"](p).item() == pytest.approx(0.25)
    assert t["kan_exp"](p).item() == pytest.approx(math.exp(1.0 + 0.0625))
    assert t["sin_cos"](p).item() == pytest.approx(math.cos(math.pi * 0.25))
    assert t["radial_sin_2pi"](torch.tensor([[0.6, 0.8]])).item() == pytest.approx(0.0, abs=1e-6)
    assert t["radial_sin_6pi"](torch.zeros(1, 2)).item() == 0.0
    q = torch.tensor([[0.2, -0.7, 0.4]], dtype=torch.float64)
    assert t["range_3d"](q).item() == pytest.approx(1.1)
    assert t["abs_planes_3d"](q).item() == pytest.approx(0.5 + 1.1)


def test_friedman_against_sklearn():
    datasets = pytest.importorskip("sklearn.datasets")
    for k, task in ((2, TASKS["friedman2"]), (3, TASKS["friedman3"])):
        x, y = getattr(datasets, f"make_friedman{k}")(300, noise=0.0, random_state=k)
        ours = task(torch.from_numpy(x)).numpy().ravel()
        np.testing.assert_allclose(ours, y, rtol=1e-12, atol=1e-12)
        # sklearn samples the published box: ours must contain its points
        assert (x >= np.array(task.low)).all() and (x <= np.array(task.high)).all()
    x, _ = datasets.make_friedman1(300, n_features=5, noise=0.0, random_state=1)
    x[:, 3:] = 0.5
    ref = 10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
    ref += 10 * x[:, 3] + 5 * x[:, 4]
    ours = TASKS["friedman1_3d"](torch.from_numpy(x[:, :3])).numpy().ravel()
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_determinism_from_generator_and_seed():
    a = make_data("kan_exp", 50, 20, generator=torch.Generator().manual_seed(7))
    b = make_data("kan_exp", 50, 20, generator=7)
    c = make_data("kan_exp", 50, 20, generator=8)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0])
    # a fresh generator (None) differs between calls and leaves the global RNG alone
    state = torch.get_rng_state()
    d = make_data("kan_exp", 50, 20)
    e = make_data("kan_exp", 50, 20)
    assert not torch.equal(d[0], e[0])
    assert torch.equal(torch.get_rng_state(), state)


def test_generator_advances_and_train_test_differ():
    g = torch.Generator().manual_seed(0)
    x1, _, xt1, _ = make_data("product", 100, 100, generator=g)
    x2, _, _, _ = make_data("product", 100, 100, generator=g)
    assert not torch.equal(x1, x2)
    assert not torch.equal(x1, xt1)


def test_train_test_disjoint_even_with_collisions():
    # bfloat16 on [1, 2) has 128 values per axis: collisions are certain before redraw
    task = Task("line", 1, lambda x: 2 * x, (1.0,), (2.0,), 1, "2x on [1, 2]")
    x, y, xt, yt = make_data(task, 60, 30, generator=0, dtype=torch.bfloat16)
    assert xt.shape == (30, 1)
    train = set(x.float().ravel().tolist())
    test = set(xt.float().ravel().tolist())
    assert len(train) < 60  # collisions within the training set do occur
    assert not (train & test)
    torch.testing.assert_close(yt.float(), 2 * xt.float(), rtol=1e-2, atol=0)


def test_get_task_errors_and_passthrough():
    assert get_task("product") is TASKS["product"]
    assert get_task(TASKS["sin_cos"]) is TASKS["sin_cos"]
    with pytest.raises(ValueError, match="known tasks: .*product"):
        get_task("nope")
    with pytest.raises(ValueError, match="shape"):
        TASKS["product"](torch.zeros(4, 3))
    with pytest.raises(ValueError, match="n_train"):
        make_data("product", -1, 3, generator=0)
    with pytest.raises(TypeError):
        make_data("product", 1, 3, generator="seed")
    with pytest.raises(ValueError, match="low < high"):
        Task("bad", 1, lambda x: x, (1.0,), (0.0,), 1, "")
    with pytest.raises(ValueError, match="entries"):
        Task("bad", 2, lambda x: x, (0.0,), (1.0,), 1, "")


def test_grid_layout():
    n = 7
    x, y = grid("kink_abs", n)
    assert x.shape == (n * n, 2) and y.shape == (n * n, 1)
    img = y.reshape(n, n)
    u = torch.linspace(-1, 1, n, dtype=torch.float64)
    # img[i, j] = f(u[i], u[j]) = |u_i| + u_j
    torch.testing.assert_close(img, u.abs()[:, None] + u[None, :])
    x3, y3 = grid("range_3d", 4, axes=(0, 2))
    assert x3.shape == (16, 3)
    assert torch.all(x3[:, 1] == 0.0)  # held at the centre of [-1, 1]
    x4, _ = grid("friedman2", 3, fixed=[50.0, 1000.0, 0.5, 2.0])
    assert torch.all(x4[:, 2] == 0.5) and torch.all(x4[:, 3] == 2.0)
    assert x4[:, 1].min().item() == pytest.approx(40 * math.pi)
    with pytest.raises(ValueError):
        grid("product", 1)
    with pytest.raises(ValueError):
        grid("product", 4, axes=(0, 0))
