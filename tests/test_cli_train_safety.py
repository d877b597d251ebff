"""Issue 11 probes 1, 3, 5, 6, 7, 9 through ``sepneuron train``: a checkpoint of another
run (data, kind, optimizer, rule) is refused, bad files and paths exit 2 with one line
naming them (no traceback), and an overflow at the start blames the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_run import run_cli as _run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--hidden", "4", "--steps", "4", "--checkpoint-every", "2", "--threads", "1",
         "--optimizer", "adam", "--output-layer", "optimizer", "--init", "default"]
# (the recipe these tests were written for: TrainConfig's defaults before issue 12)



def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def trained(tmp_path, capsys):
    """A checkpoint of 4 steps on a.npz; returns (folder, a.npz, b.npz, checkpoint)."""
    rng = np.random.default_rng(0)
    X = rng.random((30, 2))
    a = _npz(tmp_path, "a.npz", X=X, y=np.sin(3 * X[:, 0]))
    b = _npz(tmp_path, "b.npz", X=X, y=np.cos(5 * X[:, 1]) * 3)
    ckpt = str(tmp_path / "c.pt")
    assert _run(["train", "--data", a, *SMALL, "--checkpoint", ckpt], capsys)[0] == 0
    return tmp_path, a, b, ckpt


def _one_line_error(rc, out, err, *texts):
    assert rc == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("sepneuron train: ")
    for t in texts:
        assert t in err, (t, err)


@pytest.mark.parametrize("change, text", [
    (["--data", "B"], "the training data y differ"),
    (["--kind", "relu"], "kind='relu'"),
    (["--optimizer", "sgd"], "optimizer 'adam' in the checkpoint, 'sgd' now"),
    (["--rule", "gauss_newton"], "rule 'newton' in the checkpoint, 'gauss_newton' now"),
    (["--rule", "none"], "rule 'newton' in the checkpoint, None now"),
    (["--lr", "0.01"], "lr 0.003 in the checkpoint, 0.01 now"),
])
def test_resume_of_another_run_exits_2_and_writes_nothing(trained, capsys, change, text):
    d, a, b, ckpt = trained
    args = [b if x == "B" else x for x in change]
    data = [] if "--data" in args else ["--data", a]
    out = str(d / "m.pt")
    rc, o, err = _run(["train", *data, *SMALL, "--steps", "8", *args, "--checkpoint", ckpt,
                       "--resume", "--out", out], capsys)
    _one_line_error(rc, o, err, ckpt, text)
    assert not (d / "m.pt").exists()


def test_resume_of_the_same_run_continues(trained, capsys):
    d, a, b, ckpt = trained
    rc, out, err = _run(["train", "--data", a, *SMALL, "--steps", "8", "--checkpoint", ckpt,
                         "--resume"], capsys)
    assert rc == 0 and "resumed at step 4" in out and "steps       8" in out


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "unrelated"])
def test_a_bad_checkpoint_exits_2_naming_it(trained, capsys, kind):
    import torch

    d, a, b, ckpt = trained
    bad = d / f"{kind}.pt"
    data = Path(ckpt).read_bytes()
    if kind == "unrelated":
        torch.save({"model": 1}, bad)
    else:
        bad.write_bytes({"empty": b"", "garbage": b"\x80\x04junk" * 50,
                         "truncated": data[: len(data) // 3]}[kind])
    rc, out, err = _run(["train", "--data", a, *SMALL, "--checkpoint", str(bad), "--resume"],
                        capsys)
    _one_line_error(rc, out, err, str(bad))


def test_a_scalar_X_in_the_npz_exits_2(tmp_path, capsys):
    path = _npz(tmp_path, "s.npz", X=np.float64(3), y=np.ones(5))
    rc, out, err = _run(["train", "--data", path, *SMALL, "--checkpoint",
                         str(tmp_path / "c.pt")], capsys)
    _one_line_error(rc, out, err, "array X must have shape", "got shape ()")


@pytest.mark.parametrize("where", ["folder", "under a file", "out under a file"])
def test_unwritable_paths_exit_2_before_training(trained, capsys, where):
    d, a, b, ckpt = trained
    (d / "file").write_text("x")
    args = {"folder": ["--checkpoint", str(d)],
            "under a file": ["--checkpoint", str(d / "file" / "c.pt")],
            "out under a file": ["--checkpoint", str(d / "new.pt"),
                                 "--out", str(d / "file" / "m.pt")]}[where]
    rc, out, err = _run(["train", "--data", a, *SMALL, *args], capsys)
    _one_line_error(rc, out, err, args[-1])
    assert not (d / "new.pt").exists()


def test_overflowing_data_blame_the_data_not_the_step_size(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((30, 2)) * 1e200
    path = _npz(tmp_path, "big.npz", X=X, y=np.ones(30))
    rc, out, err = _run(["train", "--data", path, *SMALL, "--checkpoint",
                         str(tmp_path / "c.pt")], capsys)
    assert rc == 1 and "before any step" in err and "scale X and y" in err
    assert "lower lr" not in err and "Traceback" not in err
