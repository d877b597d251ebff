"""Progress reports and the pictures of ``sepneuron train --plot``.

The reporter is driven with a fake clock (lines every ``every`` seconds, on each new
evaluation when asked, the time left capped by ``max_time``); ``sepneuron train`` must draw a
tqdm bar when stderr is a terminal (a pseudo-terminal here) and plain lines otherwise, and
``--plot`` must write valid PNGs (1-D, 2-D; only the learning curve for 3-D) atomically.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from sepneuron import History, progress as progress_mod
from sepneuron.cli import main
from sepneuron.progress import TrainingProgress

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _history(steps: int, seconds_per_step: float = 0.5, evals: tuple[int, ...] = (0,)) -> History:
    h = History()
    h.loss = [1.0 / (i + 1) for i in range(steps)]
    h.time = [seconds_per_step * (i + 1) for i in range(steps)]
    h.eval_step = list(evals)
    h.train_rmse = [0.1] * len(evals)
    h.test_rmse = [0.2] * len(evals)
    return h


def test_lines_come_by_the_clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    p = TrainingProgress(100, stream=out, bar=False, every=5.0)
    for step in range(1, 31):
        clock.t += 1.0  # one second per step
        p(_history(step))
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and p.lines == 6  # at 5, 10, ..., 30 s
    assert lines[0].startswith("step 5/100 (5%)  loss 2.000e-01  RMSE at step 0: train 1.000e-01 "
                               "test 2.000e-01  2.5 s, ~48 s left")
    p.close(_history(30), summary=True)
    assert out.getvalue().splitlines()[-1].startswith("done: 30 steps in 15.0 s of training")


def test_time_left_is_capped_by_max_time():
    p = TrainingProgress(1000, max_time=20.0, stream=io.StringIO(), bar=False)
    assert p.time_left(_history(10, 0.5)) == pytest.approx(15.0)  # 990 steps would take 495 s
    assert TrainingProgress(1000, stream=io.StringIO(), bar=False).time_left(
        _history(10, 0.5)) == pytest.approx(495.0)
    assert p.time_left(_history(50, 0.5)) == 0.0  # past max_time


def test_on_eval_reports_each_new_evaluation(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    p = TrainingProgress(100, stream=out, bar=False, every=60.0, on_eval=True)
    p(_history(1))                      # step 0's evaluation: a line
    p(_history(2))                      # nothing new
    p(_history(10, evals=(0, 10)))      # a new one: a line
    assert len(out.getvalue().splitlines()) == 2


def test_auto_is_a_bar_only_on_a_terminal():
    assert TrainingProgress(10, stream=io.StringIO())._tqdm is None

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pytest.importorskip("tqdm")
    assert TrainingProgress(10, stream=Tty())._tqdm is not None
    with pytest.raises(ValueError, match="every must be a positive number"):
        TrainingProgress(10, every=0)


def test_bar_shows_step_loss_rmse_and_time_left(monkeypatch):
    pytest.importorskip("tqdm")
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    p = TrainingProgress(100, stream=out, bar=True)
    for step in range(1, 5):
        clock.t += 1.0
        p(_history(step))
    p.close()
    text = out.getvalue()
    assert "4/100" in text and "loss 2.500e-01" in text and "test 2.000e-01" in text
    assert "~48 s left" in text


TRAIN = ["train", "--task", "ridge_tanh", "--n-train", "100", "--n-test", "50", "--hidden", "6",
         "--threads", "1"]


def test_train_writes_plain_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    rc = main([*TRAIN, "--steps", "30", "--checkpoint", str(tmp_path / "ck.pt"),
               "--progress-every", "0.0001"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [x for x in err.splitlines() if x.startswith("sepneuron train: step ")]
    assert len(lines) >= 10 and "/30 (" in lines[-1] and "left" in lines[-1]
    rc = main([*TRAIN, "--steps", "5", "--checkpoint", str(tmp_path / "ck.pt"),
               "--progress", "none"])
    assert rc == 0 and "step" not in capsys.readouterr().err


def test_train_draws_a_bar_on_a_terminal(tmp_path):
    pytest.importorskip("tqdm")
    fcntl, pty, termios = (pytest.importorskip(m) for m in ("fcntl", "pty", "termios"))  # POSIX
    master, slave = pty.openpty()
    # a fresh pseudo-terminal is 0 columns wide, and tqdm draws nothing in 0 columns
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
    p = subprocess.Popen([sys.executable, "-m", "sepneuron", *TRAIN, "--steps", "400",
                          "--checkpoint", str(tmp_path / "ck.pt")],
                         stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.communicate(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0
    assert "\r" in text and "step" in text  # redrawn in place: tqdm
    assert "/400" in text and "it/s" not in text


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_plot_writes_the_pictures(tmp_path, capsys, dim):
    pytest.importorskip("matplotlib")
    if dim == 1:
        x = np.linspace(-1, 1, 40).reshape(-1, 1)
        np.savez(tmp_path / "d.npz", X=x, y=np.abs(x[:, 0]))
        source = ["--data", str(tmp_path / "d.npz")]
    else:
        source = ["--task", "kan_exp" if dim == 2 else "smooth_3d", "--n-train", "60",
                  "--n-test", "30"]
    plots = tmp_path / "plots"
    rc = main(["train", *source, "--hidden", "4", "--steps", "5", "--threads", "1",
               "--checkpoint", str(tmp_path / "ck.pt"), "--plot", str(plots), "--progress", "none"])
    out = capsys.readouterr().out
    assert rc == 0
    want = ["learning_curve.png"] + (["error.png", "fit.png"] if dim < 3 else [])
    assert sorted(p.name for p in plots.iterdir()) == sorted(want)  # no temporary files
    for name in want:
        assert (plots / name).read_bytes()[:8] == PNG
        assert str(plots / name) in out


def test_plot_into_an_unwritable_place_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "a_file").write_text("")
    rc = main([*TRAIN, "--steps", "5", "--checkpoint", str(tmp_path / "ck.pt"),
               "--plot", str(tmp_path / "a_file" / "plots"), "--progress", "none"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("sepneuron train: --plot ") and err.count("\n") == 1
    assert not (tmp_path / "ck.pt").exists()  # nothing was trained
