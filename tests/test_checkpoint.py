"""Checkpoints: exact resume in a fresh process, and atomic writes.

Training ``2N`` steps straight must give the same parameters, bit for bit (CPU, float64),
as training ``N`` steps with a checkpoint, crashing, and training the rest in a new
process from the checkpoint -- with Adam and the tuner, a cosine schedule, mini-batches.
A crash in the middle of writing a checkpoint must leave the previous one intact and no
temporary file behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faults import inject_faults
from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.checkpoint import atomic_save, load_checkpoint

F64 = torch.float64
N = 12  # steps before the checkpoint; as many after it
CASES = {
    "adam+tuner": dict(),
    "cosine": dict(schedule="cosine"),
    "mini-batches": dict(batch_size=16),
    "sgd+cosine+mini-batches": dict(optimizer="sgd", schedule="cosine", batch_size=16, lr=0.05),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


def _problem(case: str):
    """Model, data and config of a case: all drawn from fixed seeds, in any process."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(64, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * X[:, 1:]
    model = SeparatedMLP(2, [8, 8], 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(**(ADAM | dict(steps=2 * N, lr=1e-2, eval_every=N // 2) | CASES[case]))
    return model, X, y, cfg


class _Crash(Exception):
    pass


def _crash_at(step: int):
    def callback(s, history):
        if s >= step:
            raise _Crash(f"killed at step {s}")
    return callback


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# Run in a fresh interpreter: resume every case from its checkpoint, save what came out.
_CHILD = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
import test_checkpoint as t

out = {}
for case, path in zip(sys.argv[3::2], sys.argv[4::2]):
    model, X, y, cfg = t._problem(case)
    cfg.checkpoint_path, cfg.resume = path, True
    h = t.fit(model, X, y, cfg)
    out[case] = (t._params(model), h.loss, [e["event"] for e in h.events])
torch.save(out, sys.argv[2])
"""


def test_resume_in_a_fresh_process_is_bit_for_bit(tmp_path):
    straight, paths = {}, {}
    for case in CASES:
        model, X, y, cfg = _problem(case)
        h = fit(model, X, y, cfg)
        straight[case] = (_params(model), h.loss)
        # The same run with a checkpoint every N steps, killed half-way to the next one.
        model, X, y, cfg = _problem(case)
        paths[case] = cfg.checkpoint_path = str(tmp_path / f"{case}.pt")
        cfg.checkpoint_every = N
        with pytest.raises(_Crash):
            fit(model, X, y, cfg, callback=_crash_at(N + N // 2))
        assert load_checkpoint(paths[case])["history"]["loss"] == h.loss[:N]
    result = tmp_path / "resumed.pt"
    args = [a for case in CASES for a in (case, paths[case])]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(Path(__file__).parent), str(result), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    resumed = torch.load(result, weights_only=False)
    for case in CASES:
        params, losses, events = resumed[case]
        want_params, want_losses = straight[case]
        assert events == ["resumed"], case
        assert losses == want_losses, case
        for name, p in want_params.items():
            assert torch.equal(params[name], p), (case, name)


def test_resume_just_before_a_non_finite_loss_recovers_as_the_straight_run(tmp_path):
    # The checkpoint keeps the recovery state: when the first loss after resuming is
    # non-finite, the state one step before the checkpoint is restored, as it would be
    # without the interruption (not the checkpointed state itself).
    model, X, y, cfg = _problem("adam+tuner")
    inject_faults(model, {N + 1})  # the loss after N steps
    h = fit(model, X, y, cfg)
    assert [e["step"] for e in h.events] == [N]
    want = _params(model)

    model, X, y, cfg = _problem("adam+tuner")
    cfg.checkpoint_path, cfg.checkpoint_every = str(tmp_path / "c.pt"), N
    with pytest.raises(_Crash):
        fit(model, X, y, cfg, callback=_crash_at(N + N // 2))
    model, X, y, cfg = _problem("adam+tuner")
    cfg.checkpoint_path, cfg.resume = str(tmp_path / "c.pt"), True
    inject_faults(model, {1})
    h2 = fit(model, X, y, cfg)
    assert [e["event"] for e in h2.events] == ["resumed", "non-finite loss"]
    assert h2.loss == h.loss
    for name, p in want.items():
        assert torch.equal(_params(model)[name], p), name


def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_stays(tmp_path):
    model, X, y, cfg = _problem("adam+tuner")
    fit(model, X, y, cfg)
    want = _params(model)
    path = tmp_path / "sub" / "c.pt"  # the folder is created
    model, X, y, cfg = _problem("adam+tuner")
    cfg.checkpoint_path, cfg.resume = str(path), True
    h = fit(model, X, y, cfg)
    assert h.events == [] and path.exists()
    assert all(torch.equal(_params(model)[k], v) for k, v in want.items())
    # Resuming a run that is done trains nothing more.
    model, X, y, cfg = _problem("adam+tuner")
    cfg.checkpoint_path, cfg.resume = str(path), True
    h = fit(model, X, y, cfg)
    assert h.steps_done == 2 * N and [e["event"] for e in h.events] == ["resumed"]
    assert all(torch.equal(_params(model)[k], v) for k, v in want.items())


# -- atomic writes -----------------------------------------------------------------------

def _failing_save(real_save, fail_on: int, exc: BaseException, check=None):
    """A torch.save that writes garbage and raises on its ``fail_on``-th call."""
    calls = [0]

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] != fail_on:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"\x00garbage, half a checkpoint")
        f.flush()
        if check is not None:
            check()
        raise exc

    return save


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch, exc):
    path = tmp_path / "state.pt"
    old = {"step": 1, "w": torch.arange(5.0)}
    atomic_save(old, path)

    def still_old():  # while the new file is being written, the target is untouched
        assert torch.equal(load_checkpoint(path)["w"], old["w"])

    monkeypatch.setattr(torch, "save", _failing_save(torch.save, 1, exc, still_old))
    with pytest.raises(type(exc)):
        atomic_save({"step": 2, "w": torch.zeros(5)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temp file left
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], old["w"])


def test_a_crash_while_fit_writes_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, X, y, cfg = _problem("mini-batches")
    path = tmp_path / "run.pt"
    cfg.checkpoint_path, cfg.checkpoint_every = str(path), 4
    # Checkpoints at steps 4 and 8 succeed; the one at step 12 dies half-way.
    monkeypatch.setattr(torch, "save", _failing_save(torch.save, 3, OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        fit(model, X, y, cfg)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    state = load_checkpoint(path)
    assert len(state["history"]["loss"]) == 8
    assert state["recovery"]["good_steps"] == 7
    # ... and it resumes: same result as a run never interrupted.
    monkeypatch.undo()
    torch.set_num_threads(1)
    model, X, y, cfg = _problem("mini-batches")
    fit(model, X, y, cfg)
    want = _params(model)
    model, X, y, cfg = _problem("mini-batches")
    cfg.checkpoint_path, cfg.resume = str(path), True
    fit(model, X, y, cfg)
    assert all(torch.equal(_params(model)[k], v) for k, v in want.items())
