"""Data-parallel training: two gloo processes on half batches == one process on the whole.

Two CPU processes are launched as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT). Each trains a SeparatedMLP with DDP + the separate tuner on its half of the
data; the tuner all-reduces its statistics. Both ranks must end with identical q, c, d
and weights, equal to a single process on the whole batch within 1e-10 (float64) -- via
``fit_distributed``, via a hand-written DDP loop (the recipe of docs/scaling.md), and
when one rank alone sees a non-finite loss (both must restore and halve together).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faults import inject_faults
from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, SeparatedTuner, TrainConfig, fit
from sepneuron.distributed import shard
from sepneuron.tuning import RULES

F64 = torch.float64
STEPS = 10
INJECT_CALL = 4  # rank 1's 4th training forward returns +inf

pytestmark = [
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="torch.distributed with gloo is not available",
    ),
    pytest.mark.usefixtures("one_thread"),  # tiny tensors: one thread is fastest
]




def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(64, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * X[:, 1:] + X[:, :1] ** 2
    model = SeparatedMLP(2, [8, 8], 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    return model, X, y, TrainConfig(**ADAM, steps=STEPS, lr=1e-2, eval_every=5)


def _manual(model, X, y, steps: int, wrap=None, rule="newton"):
    """The recipe: any loop with DDP for the weights and SeparatedTuner for q, c, d."""
    net = model if wrap is None else wrap(model)
    opt = torch.optim.Adam(model.linear_parameters(), lr=1e-2)
    tuner = SeparatedTuner(net, rule=rule, gamma=0.3, max_step=0.05)
    for _ in range(steps):
        opt.zero_grad()
        tuner.zero_grad()
        F.mse_loss(net(X), y).backward()  # DDP averages weight gradients across ranks
        opt.step()
        tuner.step()                      # statistics summed across ranks
    tuner.release()
    return model


def _params(model) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v.detach().clone() for k, v in model.state_dict().items()}


_CHILD = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
import test_distributed as t
from torch.nn.parallel import DistributedDataParallel
from sepneuron.distributed import fit_distributed, init_from_env, shard
from legacy_recipe import ADAM

rank, world = init_from_env("gloo")  # CPU tensors, even where CUDA exists
out = {"world": world}
model, X, y, cfg = t._problem()
h = fit_distributed(model, X, y, cfg)
out["fit"] = (t._params(model), h.loss)
model, X, y, cfg = t._problem()
if rank == 1:
    t.inject_faults(model, {t.INJECT_CALL})
h = fit_distributed(model, X, y, cfg)
out["inf"] = (t._params(model), [(e["step"], e["event"]) for e in h.events])
model, X, y, cfg = t._problem()
t._manual(model, shard(X, rank, world), shard(y, rank, world), t.STEPS,
          wrap=DistributedDataParallel)
out["manual"] = t._params(model)
import pathlib
ckpt = str(pathlib.Path(sys.argv[2]).parent / "shared.pt")  # one path for both ranks
model, X, y, cfg = t._problem()
cfg.steps, cfg.checkpoint_path = t.STEPS // 2, ckpt
fit_distributed(model, X, y, cfg)
model, X, y, cfg = t._problem()
cfg.checkpoint_path, cfg.resume = ckpt, True
h = fit_distributed(model, X, y, cfg)
out["resumed"] = (t._params(model), [e["event"] for e in h.events])
model, X, y, cfg = t._problem()
t._manual(model, shard(X, rank, world), shard(y, rank, world), t.STEPS,
          wrap=DistributedDataParallel, rule="gauss_newton")
out["manual_gn"] = t._params(model)
torch.save(out, sys.argv[2])            # before the teardown (see _launch)
torch.distributed.destroy_process_group()
"""

# A rank aborted once (SIGABRT, this message on stderr) in a full test run under load on 2
# cores, and passed on every rerun; where in the child it stopped was not recorded. The
# message is that of a joinable std::thread destroyed, as at gloo's teardown. A rank that
# aborts only after saving its results (just before destroy_process_group) has done what
# the test checks; an abort any earlier still fails it.
_TEARDOWN_ABORT = "terminate called without an active exception"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, world: int = 2) -> list[dict]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1"}
    procs = []
    for rank in range(world):
        out = tmp_path / f"rank{rank}.pt"
        procs.append((subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent), str(out)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ), out))
    results = []
    try:
        for proc, out in procs:
            _, err = proc.communicate(timeout=90)
            aborted_after_saving = (proc.returncode == -signal.SIGABRT and out.exists()
                                    and _TEARDOWN_ABORT in err)
            assert proc.returncode == 0 or aborted_after_saving, err[-3000:]
            results.append(torch.load(out, weights_only=False))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()   # reap it and close its pipes
    return results


def _assert_close(a: dict, b: dict, tol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=tol), (k, (a[k] - b[k]).abs().max())


def test_two_gloo_ranks_on_half_batches_equal_one_process_on_the_whole(tmp_path):
    ranks = _launch(tmp_path)
    assert [r["world"] for r in ranks] == [2, 2]

    model, X, y, cfg = _problem()
    h = fit(model, X, y, cfg)
    single = _params(model)
    model, X, y, cfg = _problem()
    inject_faults(model, {INJECT_CALL})
    h_inf = fit(model, X, y, cfg)
    single_inf = _params(model)
    model, X, y, _ = _problem()
    single_manual = _params(_manual(model, X, y, STEPS))

    # the fast path on two ranks (all-reduced sums) == the reference path in one process
    model, X, y, _ = _problem()
    ref_rule = RULES["gauss_newton"]
    single_ref = _params(_manual(model, X, y, STEPS,
                                 rule=lambda st, q, c, d, ctx: ref_rule(st, q, c, d, ctx)))
    for r in ranks:
        _assert_close(r["manual_gn"], single_ref)

    for key, want in (("fit", single), ("manual", single_manual)):
        got0 = ranks[0][key][0] if key == "fit" else ranks[0][key]
        got1 = ranks[1][key][0] if key == "fit" else ranks[1][key]
        for name in got0:  # every rank holds identical weights and q, c, d
            assert torch.equal(got0[name], got1[name]), (key, name)
        _assert_close(got0, want)
        assert any(not torch.equal(want[k], _problem()[0].state_dict()[k]) for k in want)
    # N steps, a checkpoint at one path shared by both ranks, resumed to 2N: the same model
    for r in ranks:
        assert r["resumed"][1] == ["resumed"]
        _assert_close(r["resumed"][0], single)
    # q, c, d really moved, the same way everywhere
    for name in ("net.1.q", "net.1.log_c", "net.1.d", "net.3.q"):
        assert not torch.equal(single[name], _params(_problem()[0])[name]), name
    # the per-rank losses are means over each half; their average is the whole-batch loss
    l0, l1 = ranks[0]["fit"][1], ranks[1]["fit"][1]
    for a, b, whole in zip(l0, l1, h.loss, strict=True):
        assert abs((a + b) / 2 - whole) < 1e-10

    # An inf on rank 1 only: both ranks restore the last good state and halve together.
    events = [(INJECT_CALL - 1, "non-finite loss")]
    assert [(e["step"], e["event"]) for e in h_inf.events] == events
    for r in ranks:
        assert r["inf"][1] == events
    for name in ranks[0]["inf"][0]:
        assert torch.equal(ranks[0]["inf"][0][name], ranks[1]["inf"][0][name]), name
    _assert_close(ranks[0]["inf"][0], single_inf)


def test_shard_splits_evenly_and_refuses_uneven_splits():
    t = torch.arange(12).reshape(6, 2)
    assert torch.equal(torch.cat([shard(t, r, 3) for r in range(3)]), t)
    with pytest.raises(ValueError, match="7 samples do not split evenly over 2 ranks"):
        shard(torch.zeros(7, 1), 0, 2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard(t, 2, 2)


def test_fit_distributed_needs_an_initialised_group():
    from sepneuron.distributed import fit_distributed

    if torch.distributed.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised here")
    model, X, y, cfg = _problem()
    with pytest.raises(RuntimeError, match="not initialised"):
        fit_distributed(model, X, y, cfg)
