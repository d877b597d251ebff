"""``sepneuron train``: checkpoint and resume across processes, the --out model, bad input.

The reference for resuming is one straight run: ``--steps N`` then ``--steps 2N --resume``
in a fresh ``python -m sepneuron`` process must end with the same parameters, bit for bit
(CPU, float64), as ``--steps 2N`` in one go. The --out model must load into a
``SeparatedMLP`` and predict what the history says; ``--data`` with the arrays of a task
must train exactly as ``--task``; bad input must exit 2 with a one-line message.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_run import run_cli as _run
from sepneuron import History, SeparatedMLP
from sepneuron.cli.train import history_path, load_model
from sepneuron.cli.train_output import report as _report
from sepneuron.tasks import make_data

pytestmark = pytest.mark.usefixtures("one_thread")

N = 20  # steps before the checkpoint; as many after it
TASK = ["--task", "ridge_tanh", "--n-train", "200", "--n-test", "200"]
MODEL = ["--hidden", "8,8", "--dtype", "float64", "--device", "cpu"]


def _cli(*args: str) -> subprocess.Popen:
    """``python -m sepneuron train ...`` in a fresh interpreter (one thread)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "sepneuron", "train", *args, "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _done(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One straight 2N-step run, and N steps then 2N with --resume in a new process."""
    d = tmp_path_factory.mktemp("train")
    straight = _cli(*TASK, *MODEL, "--steps", str(2 * N), "--checkpoint", str(d / "s.ckpt"),
                    "--out", str(d / "straight.pt"))
    first = _cli(*TASK, *MODEL, "--steps", str(N), "--checkpoint", str(d / "r.ckpt"),
                 "--checkpoint-every", "7")
    results = {"straight": _done(straight), "first": _done(first)}
    second = _cli(*TASK, *MODEL, "--steps", str(2 * N), "--checkpoint", str(d / "r.ckpt"),
                  "--resume", "--out", str(d / "resumed.pt"))
    results["second"] = _done(second)
    for name, (rc, out, err) in results.items():
        assert rc == 0, f"{name} run failed:\n{out}\n{err}"
    return d, results


def test_resume_in_a_fresh_process_equals_a_straight_run(runs):
    d, results = runs
    a = torch.load(d / "straight.pt", weights_only=True)["state_dict"]
    b = torch.load(d / "resumed.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == torch.float64
        assert torch.equal(a[k], b[k]), k
    ha = json.loads(history_path(d / "straight.pt").read_text())
    hb = json.loads(history_path(d / "resumed.pt").read_text())
    assert len(ha["loss"]) == len(hb["loss"]) == 2 * N
    assert ha["loss"] == hb["loss"]  # the first half comes from the checkpoint's history
    assert [e["event"] for e in hb["events"]] == ["resumed"]
    out = results["second"][1]
    assert f"resumed at step {N}" in out and f"steps       {2 * N}" in out
    assert "step 20: resumed" in out
    assert f"steps       {N} (from scratch" in results["first"][1]
    leftovers = [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # every file was written through a temporary one and renamed


def test_out_file_loads_into_a_separated_mlp_and_predicts(runs):
    d, results = runs
    saved = torch.load(d / "straight.pt", weights_only=True)
    assert saved["model_args"] == {"in_features": 2, "hidden_sizes": [8, 8], "out_features": 1,
                                   "kind": "softplus"}
    assert saved["config"]["steps"] == 2 * N and saved["config"]["dtype"] == "float64"
    assert saved["data"] == {"task": "ridge_tanh", "n_train": 200, "n_test": 200, "seed": 0}
    model = SeparatedMLP(**saved["model_args"], dtype=torch.float64)
    model.load_state_dict(saved["state_dict"])
    _, _, Xt, yt = make_data("ridge_tanh", 200, 200, generator=0)
    with torch.no_grad():
        pred = model(Xt)
    assert pred.shape == (200, 1)
    rmse = float(((pred - yt) ** 2).mean().sqrt())
    hist = json.loads(history_path(d / "straight.pt").read_text())
    assert rmse == pytest.approx(hist["test_rmse"][-1], rel=1e-12)
    assert f"test RMSE   {rmse:.4e}" in results["straight"][1]
    loaded = load_model(d / "straight.pt")  # the helper gives the same model
    with torch.no_grad():
        assert torch.equal(loaded(Xt), pred)
    assert History.from_dict(hist).steps_done == 2 * N


def test_npz_data_trains_exactly_as_the_task(tmp_path, capsys):
    X, y, Xt, yt = make_data("ridge_tanh", 200, 200, generator=0)
    np.savez(tmp_path / "d.npz", X=X.numpy(), y=y.numpy().ravel(),  # 1-D y: one column
             X_test=Xt.numpy(), y_test=yt.numpy())
    common = [*MODEL, "--steps", "10", "--eval-every", "5"]
    rc, out, err = _run(["train", "--data", str(tmp_path / "d.npz"), *common,
                         "--checkpoint", str(tmp_path / "a.ckpt"), "--out", str(tmp_path / "a.pt")],
                        capsys)
    assert rc == 0, err
    assert f"data {tmp_path / 'd.npz'}, 200 train / 200 test points" in out
    rc, _, err = _run(["train", *TASK, *common, "--checkpoint", str(tmp_path / "b.ckpt"),
                       "--out", str(tmp_path / "b.pt")], capsys)
    assert rc == 0, err
    a, b = load_model(tmp_path / "a.pt"), load_model(tmp_path / "b.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    ha = json.loads(history_path(tmp_path / "a.pt").read_text())
    assert ha["eval_step"] == [0, 5, 10] and len(ha["test_rmse"]) == 3


def _bad_npz(tmp_path: Path, name: str, **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, text the error message must contain)."""
    x = np.linspace(-1, 1, 20).reshape(10, 2)
    (tmp_path / "text.npz").write_text("not an archive")
    return {
        "unknown task": (["--task", "nope"], "unknown task 'nope'"),
        "missing file": (["--data", str(tmp_path / "none.npz")], "none.npz: no such file"),
        "NaN in X": (["--data", _bad_npz(tmp_path, "nan.npz", X=np.where(x > 0.5, np.nan, x),
                                         y=x[:, :1])], "X contains NaN or Inf"),
        "Inf in y_test": (["--data", _bad_npz(tmp_path, "inf.npz", X=x, y=x[:, :1], X_test=x,
                                              y_test=np.full((10, 1), np.inf))],
                          "y_test contains NaN or Inf"),
        "no y": (["--data", _bad_npz(tmp_path, "noy.npz", X=x)], "no array y"),
        "X_test alone": (["--data", _bad_npz(tmp_path, "xt.npz", X=x, y=x[:, :1], X_test=x)],
                         "give both X_test and y_test"),
        "lengths": (["--data", _bad_npz(tmp_path, "len.npz", X=x, y=x[:5, :1])],
                    "X has 10 samples but y has 5"),
        "not npz": (["--data", str(tmp_path / "text.npz")], "not an .npz archive"),
        "n-train with data": (["--data", _bad_npz(tmp_path, "ok.npz", X=x, y=x[:, :1]),
                               "--n-train", "5"], "--n-train and --n-test apply to --task only"),
        "hidden": ([*TASK, "--hidden", "8,x"], "argument --hidden"),
        "lr": ([*TASK, "--lr", "nan"], "argument --lr: must be a positive finite number"),
        "rule": ([*TASK, "--rule", "magic"], "argument --rule: invalid choice: 'magic'"),
        "steps": ([*TASK, "--steps", "-1"], "argument --steps: must be a non-negative int"),
        "no data": (["--hidden", "8"], "one of the arguments --task --data is required"),
    }


def test_bad_input_exits_2_with_a_message_naming_the_problem(tmp_path, capsys):
    for name, (args, expected) in _bad_cases(tmp_path).items():
        rc, out, err = _run(["train", *args, "--checkpoint", str(tmp_path / "c.ckpt")], capsys)
        assert rc == 2, name
        assert "sepneuron train: " in err and expected in err, (name, err)
        assert "Traceback" not in err and out == "", name
        assert not (tmp_path / "c.ckpt").exists(), name


def test_resume_from_another_models_checkpoint_is_refused(tmp_path, capsys):
    ckpt = str(tmp_path / "c.ckpt")
    small = ["--task", "product", "--n-train", "20", "--n-test", "0", "--steps", "2"]
    assert _run(["train", *small, "--hidden", "4", "--checkpoint", ckpt], capsys)[0] == 0
    rc, _, err = _run(["train", *small, "--hidden", "5", "--checkpoint", ckpt, "--resume"],
                        capsys)
    assert rc == 2 and "another model" in err and "out_features=4" in err
    assert "out_features=5" in err


def test_nan_data_from_the_command_line_is_not_a_traceback(tmp_path):
    x = np.ones((4, 1))
    x[2] = np.nan
    path = _bad_npz(tmp_path, "nan.npz", X=x, y=np.ones(4))
    rc, _, err = _done(_cli("--data", path, "--checkpoint", str(tmp_path / "c.ckpt")))
    assert rc == 2
    assert err.strip() == "sepneuron train: X contains NaN or Inf"


def test_summary_lists_recovery_events(capsys):
    h = History(loss=[1.0, 0.5], time=[0.1, 0.2], eval_step=[0, 2], train_rmse=[1.0, 0.7],
                test_rmse=[1.1, math.nan], stop_reason="steps",
                events=[{"step": 1, "event": "non-finite loss",
                         "action": "restored the state after step 0, halved step sizes"}])
    model = SeparatedMLP(2, [3], 1)
    _report(h, model, {"task": "product", "seed": 0, "n_train": 5, "n_test": 5}, Path("c"), None)
    out = capsys.readouterr().out
    assert "step 1: non-finite loss: restored the state after step 0, halved step sizes" in out
    assert "events      1" in out and "test RMSE   -" in out and "train RMSE  7.0000e-01" in out
