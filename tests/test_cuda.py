"""CUDA vs CPU: layers, tuner, fit, checkpoints, the estimator and DDP (NCCL) agree.

Skipped without a CUDA device. ``SEPNEURON_TEST_DEVICE=cpu`` runs the same tests with
the CPU in place of the GPU (a self-check of this file where there is no GPU).
Everything is float64, where CPU and GPU differ only by rounding (summation order).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from capture import recorded_passes
from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, SeparatedTuner, TrainConfig, fit

DEVICE = os.environ.get("SEPNEURON_TEST_DEVICE", "cuda")
F64 = torch.float64
KINDS = ("relu", "softplus")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.usefixtures("one_thread"),  # tiny tensors: one thread is fastest
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="needs a CUDA device"),
]




def _problem(n: int = 256, hidden=(16, 16), kind: str = "softplus"):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * X[:, 1:] + X[:, :1] ** 2
    # Built on the CPU from a CPU generator: the same initial weights for both devices.
    model = SeparatedMLP(2, list(hidden), 1, kind, dtype=F64,
                         generator=torch.Generator().manual_seed(1))
    return model, X, y


def _cpu(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _close(a: dict, b: dict, tol: float) -> None:
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_backward_and_captures_agree(kind):
    model, X, y = _problem(kind=kind)
    results = []
    for dev in ("cpu", DEVICE):
        m = SeparatedMLP(2, [16, 16], 1, kind, dtype=F64).to(dev)
        m.load_state_dict(model.state_dict())
        with recorded_passes(m) as passes:
            out = m(X.to(dev))
            F.mse_loss(out, y.to(dev)).backward()
        caps = [c for act in m.activations() for pair in passes[act] for c in pair]
        results.append((out.detach().cpu(), {n: p.grad.cpu() for n, p in m.named_parameters()},
                        [c.cpu() for c in caps]))
    (o1, g1, c1), (o2, g2, c2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-12, atol=1e-12)
    _close(g1, g2, 1e-10)
    for a, b in zip(c1, c2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["paper", "newton", "gauss_newton", "grad"])
def test_tuner_steps_agree(rule):
    outs = []
    for dev in ("cpu", DEVICE):
        model, X, y = _problem()
        model.to(dev)
        tuner = SeparatedTuner(model, rule=rule, distributed=False)
        for _ in range(3):
            tuner.zero_grad()
            F.mse_loss(model(X.to(dev)), y.to(dev)).backward()
            tuner.step()
        outs.append(_cpu(model))
    _close(*outs, 1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["paper", "newton", "gauss_newton", "grad"])
def test_a_tuned_step_makes_no_host_synchronisation(rule, kind):
    """Forward, backward (the tuner's statistics) and ``tuner.step`` with CUDA's sync debug
    mode set to ``"error"``: any ``.item()``, device-to-host copy or value-dependent
    branch in them raises."""
    model, X, y = _problem(kind=kind)
    model.to(DEVICE)
    X, y = X.to(DEVICE), y.to(DEVICE)
    tuner = SeparatedTuner(model, rule=rule, distributed=False)
    before = [p.detach().clone() for p in (model.activations()[0].q, model.activations()[0].d)]
    cuda = DEVICE.startswith("cuda")
    for _ in range(2):
        tuner.zero_grad()
        if cuda:
            torch.cuda.set_sync_debug_mode("error")
        try:
            F.mse_loss(model(X), y).backward()
            tuner.step()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    after = (model.activations()[0].q, model.activations()[0].d)
    assert any(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize("options", [dict(), dict(batch_size=64, schedule="cosine"),
                                     dict(optimizer="sgd", lr=0.05)])
def test_fit_agrees_with_cpu(options):
    outs, losses = [], []
    for dev in ("cpu", DEVICE):
        model, X, y = _problem()
        cfg = TrainConfig(**(ADAM | dict(steps=30, lr=1e-2, eval_every=10, device=dev) | options))
        h = fit(model, X, y, cfg)
        assert all(p.device.type == torch.device(dev).type for p in model.parameters())
        outs.append(_cpu(model))
        losses.append(h.loss)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-7)
    _close(*outs, 1e-7)


def test_float32_fit_trains_on_the_device():
    model, X, y = _problem()
    h = fit(model, X, y, TrainConfig(**ADAM, steps=200, lr=1e-2, dtype="float32", device=DEVICE))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert h.loss[-1] < 0.2 * h.loss[0]


def test_checkpoint_on_the_device_resumes_exactly(tmp_path):
    model, X, y = _problem()
    cfg = TrainConfig(**ADAM, steps=20, lr=1e-2, eval_every=5, device=DEVICE, batch_size=64)
    fit(model, X, y, cfg)
    want = _cpu(model)
    model, X, y = _problem()
    path = str(tmp_path / "c.pt")
    half = dataclasses.replace(cfg, checkpoint_path=path, checkpoint_every=10)
    fit(model, X, y, half, callback=lambda step, h: step >= 10)
    model, X, y = _problem()
    fit(model, X, y, dataclasses.replace(cfg, checkpoint_path=path, resume=True))
    _close(_cpu(model), want, 1e-12)


def test_estimator_on_the_device_matches_cpu_and_unpickles():
    pytest.importorskip("sklearn")
    from sepneuron import SeparatedMLPRegressor

    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (200, 3))
    y = np.stack([np.sin(2 * X[:, 0]) + X[:, 1], X[:, 2] ** 2], axis=1)
    preds = []
    for dev in ("cpu", DEVICE):
        est = SeparatedMLPRegressor(hidden_layer_sizes=(16,), max_steps=50, learning_rate=1e-2,
                                    device=dev, random_state=0).fit(X, y)
        assert next(est.model_.parameters()).device.type == torch.device(dev).type
        preds.append(est.predict(X))
        twin = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(twin.predict(X), preds[-1])
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-7, atol=1e-9)
    assert est.score(X, y) > 0.5


_DDP_CHILD = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import test_cuda as t
from sepneuron import TrainConfig
from sepneuron.distributed import fit_distributed, init_from_env

rank, world = init_from_env()
model, X, y = t._problem()
fit_distributed(model, X, y, TrainConfig(**ADAM, steps=20, lr=1e-2, eval_every=10, device=t.DEVICE))
torch.save(t._cpu(model), sys.argv[2] + f".{rank}")
torch.distributed.destroy_process_group()
"""


def test_fit_distributed_on_gpus_matches_one_process(tmp_path):
    world = torch.cuda.device_count() if DEVICE.startswith("cuda") else 2
    if world < 1 or (DEVICE.startswith("cuda") and not torch.distributed.is_nccl_available()):
        pytest.skip("needs NCCL")
    world = min(world, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": str(world)}
    out = str(tmp_path / "params")
    procs = [subprocess.Popen([sys.executable, "-c", _DDP_CHILD, str(Path(__file__).parent), out],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    model, X, y = _problem()
    fit(model, X, y, TrainConfig(**ADAM, steps=20, lr=1e-2, eval_every=10, device=DEVICE))
    want = _cpu(model)
    got = [torch.load(f"{out}.{r}", weights_only=False) for r in range(world)]
    for g in got:
        _close({k.removeprefix("module."): v for k, v in g.items()}, want, 1e-9)
