"""ONNX export: the file run by onnxruntime must give what ``predict`` / the module gives.

Tolerances (the issue's): max abs difference <= 1e-9 of the target's standard deviation for a
float64 graph, <= 1e-5 for a float32 one, on random inputs inside and outside the training
box. Plain MLPs of every activation and the separated MLP of both analogs are compared with
the torch module directly; unknown modules must be refused by name.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

from cli_run import run_cli as _cli  # noqa: E402
from sepneuron import SeparatedMLP, SeparatedMLPRegressor, __version__  # noqa: E402
from sepneuron.baselines import PlainMLP  # noqa: E402
from sepneuron.baselines.mlp import ACTIVATIONS  # noqa: E402
from sepneuron.cli.train import load_model  # noqa: E402
from sepneuron.export import EMITTERS, emit, register_emitter, save_onnx, to_onnx  # noqa: E402

# Adam, as these tests were written: the exact output layer (the default) gives large
# cancelling output weights whose float32 export misses 1e-5 (noted in issue 12's report).
ADAM = {"optimizer": "adam", "output_layer": "optimizer", "init": "default", "kind": "softplus"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _session(path_or_proto) -> ort.InferenceSession:
    src = path_or_proto if isinstance(path_or_proto, str) else path_or_proto.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def _run(sess: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    inp = sess.get_inputs()[0]
    dt = np.float64 if inp.type == "tensor(double)" else np.float32
    return sess.run(None, {inp.name: X.astype(dt)})[0]


def _data(n_out: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform([-1.0, 10.0, -300.0], [1.0, 30.0, 100.0], (200, 3))  # far from unit scale
    z = (X - X.mean(0)) / X.std(0)
    y = np.stack([np.sin(2 * z[:, 0]) * z[:, 1] * 40.0 + 7.0, np.abs(z[:, 2]) - 3.0], 1)
    return X, (y[:, 0] if n_out == 1 else y[:, :n_out])


def _probe(X: np.ndarray, n: int = 500, seed: int = 1) -> np.ndarray:
    """Random points in the training box widened to twice its size (half outside it)."""
    lo, hi = X.min(0), X.max(0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return np.random.default_rng(seed).uniform(mid - 2 * half, mid + 2 * half, (n, X.shape[1]))


@pytest.mark.parametrize("kind", ["softplus", "relu"])
@pytest.mark.parametrize("n_out", [1, 2])
def test_estimator_export_matches_predict(tmp_path, kind, n_out):
    X, y = _data(n_out)
    # rule newton (the default): a float32 graph is within 1e-5 of the spread only while the
    # network is well conditioned; SoftPlus + gauss_newton drives |c d| into the hundreds on
    # these data, where float32 arithmetic itself (torch's too) is 1e-4 off (see export.py).
    reg = SeparatedMLPRegressor((8, 8), max_steps=60, random_state=0,
                                **(ADAM | {"kind": kind})).fit(X, y)
    Xp = _probe(X)
    ref = reg.predict(Xp)
    spread = y.std(0)
    for dtype, tol in (("float64", 1e-9), ("float32", 1e-5)):
        path = reg.export_onnx(tmp_path / f"m_{dtype}.onnx", dtype=dtype)
        got = _run(_session(str(path)), Xp)
        assert got.shape == ref.shape  # (n,) for 1-D y, (n, k) for 2-D
        err = np.abs(got - ref).reshape(len(Xp), -1).max(0) / spread
        assert (err <= tol).all(), (dtype, err)
        assert got.dtype == np.dtype(dtype)


def test_float32_estimator_exports_float32_by_default(tmp_path):
    X, y = _data(1)
    reg = SeparatedMLPRegressor((6,), dtype="float32", max_steps=30, random_state=1,
                                **ADAM).fit(X, y)
    sess = _session(str(reg.export_onnx(tmp_path / "m.onnx")))
    assert sess.get_inputs()[0].type == "tensor(float)"
    Xp = _probe(X)
    assert np.abs(_run(sess, Xp) - reg.predict(Xp)).max() / y.std() <= 1e-5


def test_metadata_and_dynamic_batch(tmp_path):
    X, y = _data(2)
    reg = SeparatedMLPRegressor((5, 4), max_steps=20, random_state=0, **ADAM).fit(X, y)
    sess = _session(str(reg.export_onnx(tmp_path / "m.onnx")))
    meta = sess.get_modelmeta()
    props = meta.custom_metadata_map
    assert props["sepneuron_version"] == __version__
    assert meta.producer_name == "sepneuron"
    assert (props["input_name"], props["output_name"]) == ("X", "y")
    assert (props["n_features"], props["n_outputs"]) == ("3", "2")
    assert float(props["train_rmse"]) == pytest.approx(reg.history_.train_rmse[-1], rel=1e-12)
    assert props["model"] == "SeparatedMLP 3 -> 5,4 -> 2 (softplus)"
    assert [i.name for i in sess.get_inputs()] == ["X"] and sess.get_outputs()[0].name == "y"
    assert sess.get_inputs()[0].shape[1] == 3 and isinstance(sess.get_inputs()[0].shape[0], str)
    for n in (1, 777):  # one graph, any batch size
        Xp = _probe(X, n)
        np.testing.assert_allclose(_run(sess, Xp), reg.predict(Xp), rtol=0, atol=1e-9 * y.std())


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_plain_mlp_every_activation(activation):
    gen = torch.Generator().manual_seed(0)
    model = PlainMLP(2, [16, 16], 2, activation, dtype=torch.float64, generator=gen)
    # inputs up to +-60 push pre-activations past Softplus's threshold (20): both branches
    X = np.random.default_rng(0).uniform(-60, 60, (400, 2))
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    got = _run(_session(to_onnx(model)), X)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-12 * scale


def test_softplus_beta_and_threshold():
    model = PlainMLP(1, [8], 1, lambda: nn.Softplus(beta=2.5, threshold=4.0), dtype=torch.float64,
                     generator=torch.Generator().manual_seed(3))
    X = np.linspace(-30, 30, 301).reshape(-1, 1)
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    assert np.abs(_run(_session(to_onnx(model)), X) - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("kind", ["softplus", "relu"])
def test_separated_extreme_inputs_stay_finite_and_exact(kind):
    model = SeparatedMLP(2, [8, 8], 1, kind, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # spread q, c, d as training would
        for act in model.activations():
            act.q.uniform_(-1, 1), act.log_c.uniform_(-2, 3), act.d.uniform_(-1.5, 1.5)
    X = np.concatenate([np.random.default_rng(0).normal(0, 1, (100, 2)),
                        np.array([[1e6, -1e6], [-1e8, 3.0], [0.0, 0.0]])])
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    got = _run(_session(to_onnx(model)), X)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_unknown_modules_are_refused_by_name():
    gelu = PlainMLP(2, [4], 1, lambda: nn.GELU(), dtype=torch.float64)
    with pytest.raises(ValueError, match="cannot export GELU"):
        to_onnx(gelu)

    class Doubled(nn.ReLU):  # a subclass that computes something else
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ValueError, match="cannot export .*Doubled"):
        to_onnx(nn.Sequential(nn.Linear(2, 3), Doubled(), nn.Linear(3, 1)))


def test_bad_standardisation_is_refused():
    model = SeparatedMLP(2, [4], 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x_mean must have shape \(2,\)"):
        to_onnx(model, x_mean=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="y_scale must be > 0"):
        to_onnx(model, y_scale=[0.0])
    with pytest.raises(ValueError, match="x_scale contains NaN"):
        to_onnx(model, x_scale=[1.0, np.nan])
    with pytest.raises(ValueError, match="dtype must be one of"):
        to_onnx(model, dtype="float16")
    with pytest.raises(ValueError, match="squeeze_output needs one output"):
        to_onnx(SeparatedMLP(2, [4], 2), squeeze_output=True)


def test_a_new_container_needs_only_an_emitter():
    """A residual sum of scaled stages (as a staged fit might build) exports once it has an
    emitter built from the existing ones."""

    class ScaledSum(nn.Module):
        def __init__(self, stages, scales):
            super().__init__()
            self.stages, self.scales = nn.ModuleList(stages), scales
            self.in_features, self.out_features = stages[0].in_features, stages[0].out_features

        def forward(self, x):
            return sum(s * m(x) for s, m in zip(self.scales, self.stages, strict=True))

    gen = torch.Generator().manual_seed(0)
    model = ScaledSum([SeparatedMLP(2, [6], 1, dtype=torch.float64, generator=gen),
                       PlainMLP(2, [5], 1, "tanh", dtype=torch.float64, generator=gen)], [1.0, 0.1])
    with pytest.raises(ValueError, match="cannot export .*ScaledSum"):
        to_onnx(model)

    @register_emitter(ScaledSum)
    def _scaled_sum(g, m, x):
        terms = [g.op("Mul", g.const(s, "stage_scale"), emit(g, stage, x))
                 for s, stage in zip(m.scales, m.stages, strict=True)]
        out = terms[0]
        for t in terms[1:]:
            out = g.op("Add", out, t)
        return out

    try:
        X = np.random.default_rng(0).uniform(-2, 2, (50, 2))
        with torch.no_grad():
            ref = model(torch.from_numpy(X)).numpy()
        np.testing.assert_allclose(_run(_session(to_onnx(model)), X), ref, rtol=1e-12, atol=1e-14)
    finally:
        EMITTERS.pop(ScaledSum)


def test_save_is_atomic_and_makes_folders(tmp_path):
    proto = to_onnx(SeparatedMLP(1, [3], 1, dtype=torch.float64))
    path = save_onnx(proto, tmp_path / "sub" / "m.onnx")
    assert onnx.load(str(path)).graph.input[0].name == "X"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # no temporary left



def test_cli_export_matches_the_trained_model(tmp_path, capsys):
    model_pt = tmp_path / "model.pt"
    rc, _, err = _cli(["train", "--task", "kan_exp", "--n-train", "100", "--n-test", "50",
                       "--hidden", "6,6", "--steps", "15", "--checkpoint", str(tmp_path / "ck.pt"),
                       "--out", str(model_pt), "--threads", "1"], capsys)
    assert rc == 0, err
    model = load_model(model_pt)
    X = np.random.default_rng(0).uniform(-2, 2, (300, 2))  # the task box is [-1, 1]^2
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        out = tmp_path / f"m_{dtype}.onnx"
        rc, stdout, err = _cli(["export", str(model_pt), str(out), "--dtype", dtype], capsys)
        assert rc == 0, err
        assert f"wrote {out}" in stdout
        sess = _session(str(out))
        assert np.abs(_run(sess, X) - ref).max() <= tol * max(1.0, np.abs(ref).max())
        props = sess.get_modelmeta().custom_metadata_map
        assert props["task"] == "kan_exp" and props["steps"] == "15"
        assert float(props["train_rmse"]) > 0 and float(props["test_rmse"]) > 0


def test_cli_export_bad_input_is_one_line_exit_2(tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing.pt"), str(tmp_path / "o.onnx")], "no such file"),
        ([__file__, str(tmp_path / "o.onnx")], "not a model written by `sepneuron train --out`"),
    ]
    for argv, message in cases:
        rc, _, err = _cli(["export", *argv], capsys)
        assert rc == 2
        assert err.startswith("sepneuron export: ") and message in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.onnx").exists()


def test_python_m_sepneuron_export_help():
    out = subprocess.run([sys.executable, "-m", "sepneuron", "export", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OUT.onnx" in out.stdout


def test_residual_stages_export_matches_predict(tmp_path):
    """An estimator with residual stages (a StagedModel: sum of scaled networks) exports as
    one graph that agrees with predict in float64, also outside the training box."""
    X, y = _data(1)
    reg = SeparatedMLPRegressor((6,), stages=2, max_steps=15, random_state=0).fit(X, y)
    assert type(reg.model_).__name__ == "StagedModel" and len(reg.model_.stages) == 2
    Xp = _probe(X)
    got = _run(_session(str(reg.export_onnx(tmp_path / "staged.onnx"))), Xp)
    assert np.abs(got - reg.predict(Xp)).max() / y.std() <= 1e-9
