"""Issue 11 probes 1, 3, 5, 6, 8: resume only what matches, name the file in every
checkpoint error, check paths before training, keep the model when a write fails, and
clean up temporary files left by a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.checkpoint import CheckpointError, CheckpointWriteError, atomic_save, load_checkpoint
from sepneuron.fingerprint import CheckpointMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def _data(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    return X, torch.sin(2 * X[:, :1]) * X[:, 1:]


def _model(kind="softplus", out=1):
    gen = torch.Generator().manual_seed(1)
    return SeparatedMLP(2, [6], out, kind=kind, dtype=F64, generator=gen)


def _cfg(path, **kw):
    return TrainConfig(**(ADAM | {"steps": 6, "lr": 1e-2, "eval_every": 3, "diagnostics": False,
                                  "checkpoint_path": str(path)} | kw))


def _write(path, **kw):
    X, y = _data()
    fit(_model(), X, y, _cfg(path, **kw))
    return X, y


# -- probe 1 and 3: resume continues only the same run -----------------------------------


@pytest.mark.parametrize("change, field", [
    ("y", "y"), ("X", "X"), ("kind", "model"), ("optimizer", "optimizer"), ("rule", "rule"),
    ("lr", "lr"), ("batch_size", "batch_size"), ("dtype", "dtype"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, field):
    path = tmp_path / "c.pt"
    X, y = _write(path)
    kw, kind = {"steps": 12, "resume": True}, "softplus"
    if change == "y":
        y = y + 1
    elif change == "X":
        X = X.flip(0)
    elif change == "kind":
        kind = "relu"
    elif change == "optimizer":
        kw["optimizer"] = "sgd"
    elif change == "rule":
        kw["rule"] = "gauss_newton"
    elif change == "lr":
        kw["lr"] = 2e-2
    elif change == "batch_size":
        kw["batch_size"] = 8
    elif change == "dtype":
        kw["dtype"] = "float32"
    with pytest.raises(CheckpointMismatchError, match=str(path)) as e:
        fit(_model(kind), X, y, _cfg(path, **kw))
    assert field in e.value.fields


def test_resume_with_more_steps_continues_and_with_fewer_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    X, y = _write(path)
    h = fit(_model(), X, y, _cfg(path, steps=10, resume=True))
    assert h.steps_done == 10 and [e["event"] for e in h.events] == ["resumed"]
    with pytest.raises(CheckpointError, match="holds 10 steps, more than steps=4"):
        fit(_model(), X, y, _cfg(path, steps=4, resume=True))


def test_estimator_resume_on_other_data_is_refused_not_the_old_model(tmp_path):
    from sepneuron import SeparatedMLPRegressor as R

    rng = np.random.default_rng(0)
    X = rng.random((60, 2))
    y, y2 = np.sin(3 * X[:, 0]), np.cos(4 * X[:, 1]) * 5
    kw = dict(hidden_layer_sizes=(6,), max_steps=20, checkpoint_path=str(tmp_path / "c.pt"),
              resume=True, random_state=0)
    R(**kw).fit(X, y)
    with pytest.raises(CheckpointMismatchError, match="training data y differ"):
        R(**kw).fit(X, y2)


def test_estimator_learning_rate_change_is_refused_and_max_steps_may_grow(tmp_path):
    from sepneuron import SeparatedMLPRegressor as R

    rng = np.random.default_rng(0)
    X = rng.random((60, 2))
    y = np.sin(3 * X[:, 0])
    kw = dict(hidden_layer_sizes=(6,), checkpoint_path=str(tmp_path / "c.pt"), resume=True,
              random_state=0, learning_rate=1e-2)
    R(max_steps=10, **kw).fit(X, y)
    with pytest.raises(CheckpointMismatchError, match="learning_rate"):
        R(max_steps=20, **(kw | {"learning_rate": 3e-2})).fit(X, y)
    resumed = R(max_steps=20, **kw).fit(X, y)
    straight = R(max_steps=20, **(kw | {"checkpoint_path": None, "resume": False})).fit(X, y)
    assert resumed.n_iter_ == 20
    np.testing.assert_array_equal(resumed.predict(X), straight.predict(X))
    with pytest.raises(CheckpointError, match="more than steps=5"):
        R(max_steps=5, **kw).fit(X, y)


def test_cross_validate_with_a_shared_checkpoint_refuses_the_second_fold(tmp_path):
    from sklearn.model_selection import cross_validate

    from sepneuron import SeparatedMLPRegressor as R

    rng = np.random.default_rng(0)
    X = rng.random((60, 2))
    y = np.sin(3 * X[:, 0])
    reg = R(hidden_layer_sizes=(4,), max_steps=5, checkpoint_path=str(tmp_path / "c.pt"),
            resume=True, random_state=0)
    with pytest.raises(CheckpointMismatchError, match="training data"):
        cross_validate(reg, X, y, cv=3, error_score="raise")


# -- probe 5: paths checked before training; the trained model is never lost -----------


def _never(step, history):
    raise AssertionError("training started")


def test_a_folder_as_checkpoint_path_is_refused_before_training(tmp_path):
    X, y = _data()
    with pytest.raises(ValueError, match=f"{tmp_path} is a folder"):
        fit(_model(), X, y, _cfg(tmp_path), callback=_never)


def test_a_checkpoint_path_under_a_file_is_refused_before_training(tmp_path):
    X, y = _data()
    (tmp_path / "f").write_text("x")
    given = str(tmp_path / "f" / "c.pt")
    with pytest.raises(ValueError, match="cannot be written") as e:
        fit(_model(), X, y, _cfg(given), callback=_never)
    assert given in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes to read-only folders")
def test_a_read_only_folder_is_refused_before_training(tmp_path):
    X, y = _data()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=str(ro / "c.pt")):
            fit(_model(), X, y, _cfg(ro / "c.pt"), callback=_never)
    finally:
        ro.chmod(0o755)


def _disk_full(monkeypatch):
    from sepneuron import resume

    def full(obj, path, **kw):
        raise OSError(28, "No space left on device", str(path) + ".123.tmp")
    monkeypatch.setattr(resume, "atomic_save", full)


def test_a_failed_final_write_names_the_path_given_and_keeps_the_model(tmp_path, monkeypatch):
    from sepneuron import SeparatedMLPRegressor as R

    _disk_full(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.random((40, 2))
    y = np.sin(3 * X[:, 0])
    given = str(tmp_path / "c.pt")
    reg = R(hidden_layer_sizes=(4,), max_steps=7, checkpoint_path=given, random_state=0)
    with pytest.raises(CheckpointWriteError) as e:
        reg.fit(X, y)
    assert given in str(e.value) and ".tmp" not in str(e.value)
    assert "No space left" in str(e.value)
    assert reg.n_iter_ == 7 and reg.predict(X).shape == (40,)
    # the library's fit: the history comes with the error, the parameters are in the model
    Xt, yt = _data()
    with pytest.raises(CheckpointWriteError) as e:
        fit(_model(), Xt, yt, _cfg(given))
    assert e.value.history.steps_done == 6


# -- probe 6: every kind of bad checkpoint: one error naming the file --------------------


def _bad_checkpoint(kind: str, path, good):
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(3000))
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "unrelated dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "no fingerprint":  # e.g. written by an older sepneuron
        state = load_checkpoint(good)
        del state["fingerprint"]
        torch.save(state, path)


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "empty", "garbage", "text",
                                  "unrelated dict", "no fingerprint"])
def test_a_bad_checkpoint_gives_one_error_naming_the_file(tmp_path, kind):
    good = tmp_path / "good.pt"
    X, y = _write(good)
    bad = tmp_path / f"{kind.replace(' ', '_')}.pt"
    _bad_checkpoint(kind, bad, good)
    with pytest.raises(CheckpointError, match=str(bad)):
        fit(_model(), X, y, _cfg(bad, steps=12, resume=True))


def test_checkpoint_errors_are_value_errors():
    assert issubclass(CheckpointError, ValueError)
    assert issubclass(CheckpointMismatchError, CheckpointError)


# -- probe 8: temporary files of a killed writer are removed on the next start -----------

_KILLED_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from sepneuron.checkpoint import atomic_open
with atomic_open(sys.argv[1], "wb") as f:
    f.write(b"x" * 1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_temporaries_of_killed_writers_are_removed_by_the_next_fit(tmp_path):
    path = tmp_path / "c.pt"
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    for _ in range(3):  # three writers killed mid-write (kill -9)
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), src],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    # each writer removed the temporary of the one killed before it: one is left
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert len(left) == 1 and left[0].startswith(".c.pt.")
    live = tmp_path / f".c.pt.{os.getppid()}.live.tmp"  # a writer that is still running
    live.write_bytes(b"")
    X, y = _data()
    fit(_model(), X, y, _cfg(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "c.pt"])


def test_load_removes_stale_temporaries_too(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"a": 1}, path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".c.pt.{dead}.abc.tmp"
    stale.write_bytes(b"partial")
    assert load_checkpoint(path) == {"a": 1}
    assert not stale.exists()
