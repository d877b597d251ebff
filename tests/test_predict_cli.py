"""``sepneuron predict``: every input x output format, chunk boundaries, errors, atomicity.

The reference is the trained model itself (``sepneuron.cli.train.load_model``) on the whole array.
Chunks of 7 rows make every file cross many chunk boundaries. Bad input must exit 2 with
one line and leave no output behind. The slow test checks the memory claim: 10^7 rows
through ``python -m sepneuron predict`` in a fresh process add less than 100 MB to the
peak resident memory of a 1000-row run (``benchmarks/predict_memory.py`` measures it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_run import run_cli as _cli
from sepneuron.cli import main
from sepneuron.cli.train import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
N = 50  # rows of the test inputs



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model.pt with 2 inputs and 1 output, its inputs X and the reference predictions."""
    d = tmp_path_factory.mktemp("predict")
    rc = main(["train", "--task", "kan_exp", "--n-train", "100", "--n-test", "20",
               "--hidden", "6,6", "--steps", "10", "--checkpoint", str(d / "ck.pt"),
               "--out", str(d / "model.pt"), "--threads", "1"])
    assert rc == 0
    X = np.random.default_rng(0).uniform(-1.5, 1.5, (N, 2))
    with torch.no_grad():
        ref = load_model(d / "model.pt")(torch.from_numpy(X)).numpy()
    return d / "model.pt", X, ref


def _write_input(path: Path, X: np.ndarray) -> None:
    if path.name.endswith(".csv"):
        header = "x0,x1\n" if "header" in path.name else "# a comment line\n"
        lines = [",".join(repr(float(v)) for v in row) + "\n" for row in X]
        lines.insert(len(lines) // 2, "\n")  # a blank line mid-file is skipped
        path.write_text(header + "".join(lines))
    elif path.name.endswith(".npy"):
        np.save(path, X)
    elif "compressed" in path.name:
        np.savez_compressed(path, X=X, other=np.zeros(3))
    else:
        np.savez(path, features=X)  # one array: taken whatever its name


def _read_output(path: Path) -> np.ndarray:
    if path.suffix == ".csv":
        lines = path.read_text().splitlines()
        assert lines[0] == "y0"
        return np.loadtxt(lines[1:], delimiter=",", ndmin=2)
    if path.suffix == ".npy":
        return np.load(path)
    with np.load(path) as z:
        assert z.files == ["y"]
        return z["y"]


INPUTS = ["x.npy", "x.npz", "x_compressed.npz", "x_header.csv", "x_plain.csv"]
OUTPUTS = ["y.npy", "y.npz", "y.csv"]


@pytest.mark.parametrize("inp", INPUTS)
def test_every_format_pair_matches_the_model(tmp_path, capsys, trained, inp):
    model, X, ref = trained
    _write_input(tmp_path / inp, X)
    for out in OUTPUTS:
        rc, stdout, err = _cli(["predict", str(model), "--data", str(tmp_path / inp), "--out",
                                str(tmp_path / out), "--chunk-rows", "7"], capsys)
        assert rc == 0, err
        assert f"{N} rows x 1 output(s)" in stdout
        got = _read_output(tmp_path / out)
        assert got.shape == (N, 1) and got.dtype == np.float64
        # chunks of 7 rows vs one batch: the matrix products may round 1 ulp apart; CSV's
        # %.17g round-trips float64 exactly
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)


def test_float32_and_integer_inputs_and_one_feature(tmp_path, capsys):
    d = tmp_path
    Xy = {"X": np.linspace(-1, 1, 30).reshape(-1, 1), "y": np.sin(np.linspace(-1, 1, 30))}
    np.savez(d / "train.npz", **Xy)
    assert main(["train", "--data", str(d / "train.npz"), "--hidden", "4", "--steps", "5",
                 "--checkpoint", str(d / "ck.pt"), "--out", str(d / "m.pt"),
                 "--threads", "1"]) == 0
    capsys.readouterr()
    model = load_model(d / "m.pt")
    for X in (np.arange(-3, 4), np.linspace(-2, 2, 9).astype(np.float32)):  # 1-D: one column
        np.save(d / "x.npy", X)
        rc, _, err = _cli(["predict", str(d / "m.pt"), "--data", str(d / "x.npy"),
                           "--out", str(d / "y.npy")], capsys)
        assert rc == 0, err
        with torch.no_grad():
            ref = model(torch.from_numpy(X.astype(np.float64).reshape(-1, 1))).numpy()
        np.testing.assert_allclose(np.load(d / "y.npy"), ref, rtol=1e-13, atol=1e-13)


def test_onnx_model_predicts_the_same(tmp_path, capsys, trained):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, X, ref = trained
    np.save(tmp_path / "x.npy", X)
    assert _cli(["export", str(model), str(tmp_path / "m.onnx")], capsys)[0] == 0
    rc, _, err = _cli(["predict", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "x.npy"),
                       "--out", str(tmp_path / "y.csv"), "--chunk-rows", "9"], capsys)
    assert rc == 0, err
    np.testing.assert_allclose(_read_output(tmp_path / "y.csv"), ref, rtol=0, atol=1e-12)


def _bad_inputs(d: Path, X: np.ndarray) -> list[tuple[list[str], str]]:
    np.save(d / "three.npy", np.ones((5, 3)))
    np.savez(d / "two_arrays.npz", A=X, B=X)
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "words.csv").write_text("1,2\n3,abc\n")
    (d / "ragged.csv").write_text("1,2\n3,4,5\n")
    rows = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in X)
    (d / "nan.csv").write_text(rows + "1.0,nan\n" + rows)
    np.save(d / "text.npy", np.array(["a", "b"]))
    np.save(d / "x.npy", X)
    return [
        (["--data", str(d / "missing.npz")], "--data {d}/missing.npz: no such file"),
        (["--data", str(d / "x.txt")], "unknown format '.txt'"),
        (["--data", str(d / "x.npy"), "--out-as", "y.txt"], "unknown format '.txt'"),
        (["--data", str(d / "three.npy")], "has 3 feature column(s), but the model"),
        (["--data", str(d / "two_arrays.npz")], "no array 'X' (it has: A, B; see --key)"),
        (["--data", str(d / "corrupt.npz")], "cannot read it as .npz"),
        (["--data", str(d / "words.csv")], "could not convert string 'abc'"),
        (["--data", str(d / "ragged.csv")], "number of columns changed"),
        (["--data", str(d / "nan.csv")], f"row {N} (from 0) holds NaN or Inf"),
        (["--data", str(d / "text.npy")], "is not numeric"),
    ]


def test_bad_input_is_one_line_exit_2_and_leaves_no_output(tmp_path, capsys, trained):
    model, X, _ = trained
    (tmp_path / "x.txt").write_text("1,2\n")
    (tmp_path / "not_a_model.pt").write_bytes(b"nothing")
    cases = _bad_inputs(tmp_path, X)
    cases += [(["--data", str(tmp_path / "x.npy"), "--model", str(tmp_path / "not_a_model.pt")],
               "not a model written by `sepneuron train --out`"),
              (["--data", str(tmp_path / "x.npy"), "--model", str(tmp_path / "nope.pt")],
               "nope.pt: no such file")]
    for args, message in cases:
        out = "y.csv"
        if "--out-as" in args:
            out = args.pop(args.index("--out-as") + 1)
            args.remove("--out-as")
        m = str(model)
        if "--model" in args:
            m = args.pop(args.index("--model") + 1)
            args.remove("--model")
        out_path = tmp_path / "out" / out
        rc, stdout, err = _cli(["predict", m, *args, "--out", str(out_path), "--chunk-rows", "8"],
                               capsys)
        assert rc == 2, (args, err)
        assert err.startswith("sepneuron predict: "), err
        assert message.format(d=tmp_path) in err, (message, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not out_path.exists()
    leftovers = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []  # no temporary files either


def test_a_failure_mid_stream_keeps_the_previous_output(tmp_path, capsys, trained):
    model, X, ref = trained
    np.save(tmp_path / "x.npy", X)
    assert _cli(["predict", str(model), "--data", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npz")], capsys)[0] == 0
    Xbad = X.copy()
    Xbad[-1, 0] = np.inf  # found in the last chunk, after the others were written
    np.save(tmp_path / "bad.npy", Xbad)
    rc, _, err = _cli(["predict", str(model), "--data", str(tmp_path / "bad.npy"),
                       "--out", str(tmp_path / "y.npz"), "--chunk-rows", "7"], capsys)
    assert rc == 2 and f"row {N - 1} (from 0)" in err
    np.testing.assert_allclose(_read_output(tmp_path / "y.npz"), ref, rtol=1e-13, atol=1e-13)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "x.npy", "y.npz"]


@pytest.mark.slow
def test_ten_million_rows_stream_in_bounded_memory(tmp_path):
    """Peak RSS of ``sepneuron predict`` on 10^7 rows (.npz and .npy, 160 MB each) minus that
    on 10^3 rows stays under 100 MB (the whole input alone would be 160 MB)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "predict_memory.py"), "--rows", "10000000",
         "--formats", "npz", "npy", "--dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    for fmt in ("npz", "npy"):
        assert result[fmt]["rows"] == 10_000_000
        assert result[fmt]["peak_mb"] - result["baseline_mb"] < 100, result
