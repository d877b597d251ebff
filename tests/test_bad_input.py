"""Bad input gives a ValueError that names the argument; non-finite losses are recovered.

Every public entry point (fit, TrainConfig, SeparatedActivation, SeparatedMLP,
SeparatedTuner, SeparatedMLPRegressor) is fed NaN/Inf, wrong shapes, mismatched lengths,
too few samples, unknown names and non-positive step sizes. Then fit's NaN recovery is
checked against a hand-written reference loop: restore the last good state, halve the
step sizes, record the event, give up with FloatingPointError after ``max_retries``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faults import inject_faults
from legacy_recipe import ADAM, NO_VARPRO
from sepneuron import SeparatedActivation, SeparatedMLP, SeparatedTuner, TrainConfig, fit
from sepneuron.train import Callback

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n: int = 32, seed: int = 0):
    g = _gen(seed)
    x = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    return x, torch.sin(2 * x[:, :1]) * x[:, 1:]


def _mlp(seed: int = 1, hidden=(8,)) -> SeparatedMLP:
    return SeparatedMLP(2, list(hidden), 1, dtype=F64, generator=_gen(seed))


def _with(t: torch.Tensor, index, value) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


# -- fit(): data -------------------------------------------------------------------------

X0, Y0 = _data()

FIT_DATA_CASES = {
    "X not a tensor": (dict(X=X0.numpy()), "X and y must be torch tensors"),
    "X 1-D": (dict(X=X0[:, 0]), r"X must have shape \(n_samples, n_features\)"),
    "X 3-D": (dict(X=X0[None]), r"X must have shape \(n_samples, n_features\)"),
    "y 1-D": (dict(y=Y0[:, 0]), r"y must have shape \(n_samples, n_outputs\)"),
    "lengths differ": (dict(y=Y0[:-1]), "X has 32 samples but y has 31"),
    "no samples": (dict(X=X0[:0], y=Y0[:0]), "X has no samples"),
    "NaN in X": (dict(X=_with(X0, (3, 1), NAN)), "X contains NaN or Inf"),
    "Inf in X": (dict(X=_with(X0, (0, 0), -INF)), "X contains NaN or Inf"),
    "NaN in y": (dict(y=_with(Y0, (5, 0), NAN)), "y contains NaN or Inf"),
    "Inf in y": (dict(y=_with(Y0, (5, 0), INF)), "y contains NaN or Inf"),
    "X_test without y_test": (dict(X_test=X0), "give both X_test and y_test"),
    "NaN in X_test": (dict(X_test=_with(X0, (1, 1), NAN), y_test=Y0), "X_test contains NaN"),
    "y_test length": (dict(X_test=X0, y_test=Y0[:-2]), "X_test has 32 samples but y_test has 30"),
    "X_test columns": (dict(X_test=X0[:, :1], y_test=Y0), "X_test / y_test must have as many"),
    "X columns vs model": (dict(X=torch.cat([X0, X0], 1)), r"expects input of shape \(batch, 2\)"),
}


@pytest.mark.parametrize("case", list(FIT_DATA_CASES))
def test_fit_rejects_bad_data(case):
    change, message = FIT_DATA_CASES[case]
    args = dict(X=X0, y=Y0) | change
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(ValueError, match=message):
        fit(_mlp(), X, y, TrainConfig(**ADAM, steps=2), **args)


# -- TrainConfig ------------------------------------------------------------------------

CONFIG_CASES = {
    "optimizer": ("rmsprop", "optimizer must be one of"),
    "schedule": ("linear", "schedule must be one of"),
    "rule": ("magic", "rule must be None or one of"),
    "dtype": ("float16", "dtype must be one of"),
    "lr": (0.0, "lr must be a positive finite number"),
    "gamma": (-0.1, "gamma must be a positive finite number"),
    "max_step": (NAN, "max_step must be a positive finite number"),
    "momentum": (1.0, r"momentum must be in \[0, 1\)"),
    "steps": (-1, "steps must be a non-negative int"),
    "max_time": (0.0, "max_time must be None or > 0"),
    "batch_size": (0, "batch_size must be None or a positive int"),
    "eval_every": (0, "eval_every must be a positive int"),
    "max_retries": (-1, "max_retries must be a non-negative int"),
    "checkpoint_every": (-5, "checkpoint_every must be a non-negative int"),
    "resume": (True, "resume=True needs checkpoint_path"),
}


@pytest.mark.parametrize("field", list(CONFIG_CASES))
def test_train_config_names_the_bad_field(field):
    value, message = CONFIG_CASES[field]
    cfg = TrainConfig(**(ADAM | {field: value}))
    with pytest.raises(ValueError, match=message):
        cfg.validate()
    with pytest.raises(ValueError, match=message):  # fit validates before any work
        fit(_mlp(), X0, Y0, cfg)


@pytest.mark.parametrize("lr", [-1e-3, INF, NAN])
def test_train_config_rejects_non_positive_or_non_finite_lr(lr):
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        TrainConfig(**ADAM, lr=lr).validate()


# -- layers -----------------------------------------------------------------------------

ACTIVATION_CASES = {
    "num_neurons 0": (dict(num_neurons=0), "num_neurons must be a positive int"),
    "num_neurons float": (dict(num_neurons=2.0), "num_neurons must be a positive int"),
    "kind": (dict(kind="tanh"), "kind must be one of"),
    "c_init 0": (dict(c_init=0.0), "c_init must be > 0"),
    "c_init < 0": (dict(c_init=-1.0), "c_init must be > 0"),
    "c_init NaN": (dict(c_init=NAN), "c_init must be > 0"),
    "c_init one negative": (dict(c_init=torch.tensor([1.0, -1.0, 1.0])), "c_init must be > 0"),
    "q_init NaN": (dict(q_init=NAN), "q_init must be finite"),
    "d_init shape": (dict(d_init=torch.zeros(4)), r"d_init must be a scalar or have shape \(3,\)"),
}


@pytest.mark.parametrize("case", list(ACTIVATION_CASES))
def test_separated_activation_rejects(case):
    change, message = ACTIVATION_CASES[case]
    kwargs = dict(num_neurons=3) | change
    with pytest.raises(ValueError, match=message):
        SeparatedActivation(**kwargs)


MLP_CASES = {
    "in_features 0": (dict(in_features=0), "in_features must hold positive ints"),
    "hidden 0": (dict(hidden_sizes=[4, 0]), "hidden_sizes must hold positive ints"),
    "out_features": (dict(out_features=-1), "out_features must hold positive ints"),
    "kind": (dict(kind="sigmoid"), "kind must be one of"),
    "c_init": (dict(c_init=0.0), "c_init must be > 0"),
}


@pytest.mark.parametrize("case", list(MLP_CASES))
def test_separated_mlp_rejects(case):
    change, message = MLP_CASES[case]
    kwargs = dict(in_features=2, hidden_sizes=[4], out_features=1) | change
    with pytest.raises(ValueError, match=message):
        SeparatedMLP(**kwargs)


def test_layers_reject_inputs_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"SeparatedMLP expects input of shape \(batch, 2\)"):
        _mlp()(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"SeparatedMLP expects input of shape \(batch, 2\)"):
        _mlp()(torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 3\)"):
        SeparatedActivation(3)(torch.zeros(4, 2))


# -- SeparatedTuner ---------------------------------------------------------------------

TUNER_CASES = {
    "rule": (dict(rule="magic"), "unknown rule 'magic'"),
    "gamma 0": (dict(gamma=0.0), "gamma must be > 0"),
    "gamma < 0": (dict(gamma=-1.0), "gamma must be > 0"),
    "gamma NaN": (dict(gamma=NAN), "gamma must be > 0"),
    "max_step": (dict(max_step=0.0), "max_step must be > 0"),
    "damping": (dict(damping=-1e-3), "damping must be >= 0"),
    "bend": (dict(bend=0.0), "bend must be > 0"),
    "reduction": (dict(reduction="avg"), "reduction must be one of"),
    "sensitivity": (dict(sensitivity="exact"), "sensitivity must be"),
}


@pytest.mark.parametrize("case", list(TUNER_CASES))
def test_separated_tuner_rejects(case):
    kwargs, message = TUNER_CASES[case]
    with pytest.raises(ValueError, match=message):
        SeparatedTuner(_mlp(), **kwargs)


def test_separated_tuner_rejects_a_model_without_separated_layers():
    with pytest.raises(ValueError, match="no SeparatedActivation found"):
        SeparatedTuner(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    with pytest.raises(ValueError, match="takes a module or an iterable of SeparatedActivation"):
        SeparatedTuner([nn.ReLU()])


# -- the estimator ----------------------------------------------------------------------

def _xy_np(n: int = 20, seed: int = 0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, 3))
    return X, X[:, 0] - 2 * X[:, 1]


LR_MESSAGE = "learning_rate must be None or a positive finite number"
ESTIMATOR_PARAM_CASES = {
    "kind": (dict(kind="sigmoid"), "kind must be one of"),
    "rule": (dict(rule="magic"), "rule must be None or one of"),
    "optimizer": (dict(optimizer="rmsprop"), "optimizer must be one of"),
    "learning_rate 0": (dict(learning_rate=0.0), LR_MESSAGE),
    "learning_rate < 0": (dict(learning_rate=-1.0), LR_MESSAGE),
    "learning_rate NaN": (dict(learning_rate=NAN), LR_MESSAGE),
    "stages 0": (dict(stages=0), "stages must be .auto. or a positive int"),
    "stages word": (dict(stages="many"), "stages must be .auto. or a positive int"),
    "output_layer": (dict(output_layer="exact"), "output_layer must be one of"),
    "init": (dict(init="zeros"), "init must be one of"),
    "patience": (dict(patience=0), "patience must be None or a positive int"),
    "lstsq with mini-batches": (dict(batch_size=4, output_layer="lstsq"), "lstsq.*optimizer"),
    "hidden_layer_sizes 0": (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes must be"),
    "hidden_layer_sizes empty": (dict(hidden_layer_sizes=()), "hidden_layer_sizes must be"),
    "max_steps 0": (dict(max_steps=0), "max_steps must be a positive int"),
    "max_steps float": (dict(max_steps=2.5), "max_steps must be a positive int"),
    "device": (dict(device="nodevice"), "device must name a torch device"),
    "resume": (dict(resume=True), "resume=True needs checkpoint_path"),
    "max_time": (dict(max_time=-1.0), "max_time must be None or > 0"),
    "batch_size": (dict(batch_size=0), "batch_size must be None or a positive int"),
    "dtype": (dict(dtype="float16"), "dtype must be one of"),
    "random_state": (dict(random_state="seed"), "random_state"),
}


@pytest.mark.parametrize("case", list(ESTIMATOR_PARAM_CASES))
def test_estimator_rejects_bad_parameters_at_fit(case):
    from sepneuron import SeparatedMLPRegressor

    params, message = ESTIMATOR_PARAM_CASES[case]
    est = SeparatedMLPRegressor(**(dict(max_steps=2) | params))  # no validation in __init__
    X, y = _xy_np()
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)


ESTIMATOR_DATA_CASES = {
    "NaN in X": (lambda X, y: (_np_with(X, (2, 1), NAN), y), "Input X contains NaN"),
    "Inf in X": (lambda X, y: (_np_with(X, (2, 1), INF), y), "Input X contains infinity"),
    "NaN in y": (lambda X, y: (X, _np_with(y, 4, NAN)), "Input y contains NaN"),
    "Inf in y": (lambda X, y: (X, _np_with(y, 4, -INF)), "Input y contains infinity"),
    "X 1-D": (lambda X, y: (X[:, 0], y), r"X must have shape \(n_samples, n_features\)"),
    "X 3-D": (lambda X, y: (X[None], y), r"X must have shape \(n_samples, n_features\), got 3-D"),
    "y 3-D": (lambda X, y: (X, y[:, None, None]), r"y must have shape \(n_samples,\) or"),
    "lengths differ": (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
    "one sample": (lambda X, y: (X[:1], y[:1]), "1 sample"),
    "no samples": (lambda X, y: (X[:0], y[:0]), "0 sample"),
}


def _np_with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


@pytest.mark.parametrize("case", list(ESTIMATOR_DATA_CASES))
def test_estimator_rejects_bad_data(case):
    from sepneuron import SeparatedMLPRegressor

    change, message = ESTIMATOR_DATA_CASES[case]
    X, y = change(*_xy_np())
    with pytest.raises(ValueError, match=message):
        SeparatedMLPRegressor(max_steps=2).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_estimator_rejects_cuda_without_a_gpu():
    from sepneuron import SeparatedMLPRegressor

    with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available"):
        SeparatedMLPRegressor(device="cuda").fit(*_xy_np())


def test_estimator_predict_checks_features_and_finiteness():
    from sepneuron import SeparatedMLPRegressor

    X, y = _xy_np()
    est = SeparatedMLPRegressor(hidden_layer_sizes=(4,), max_steps=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError,
                       match="X has 2 features, but SeparatedMLPRegressor is expecting"):
        est.predict(X[:, :2])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(_np_with(X, (0, 0), NAN))


# -- NaN recovery in fit ----------------------------------------------------------------

class _Spy(Callback):
    """Remembers the weight optimizer and tuner that fit builds (pass it in callbacks=)."""

    def __init__(self):
        self.opt = self.tuner = None

    def setup(self, run):
        self.opt, self.tuner = run.optimizer, run.tuner


def _reference(model, X, y, steps, lr, gamma, max_step, halve_after):
    """fit's Adam + newton tuner step by hand; step sizes halved after ``halve_after`` steps."""
    opt = torch.optim.Adam(model.linear_parameters(), lr=lr)
    tuner = SeparatedTuner(model, rule="newton", gamma=gamma, max_step=max_step, distributed=False)
    for step in range(steps):
        if step == halve_after:
            for group in [*opt.param_groups, *tuner.param_groups]:
                group["lr"] *= 0.5
        opt.zero_grad()
        tuner.zero_grad()
        F.mse_loss(model(X), y).backward()
        opt.step()
        tuner.step()
    tuner.release()
    return model


def test_inf_once_restores_the_last_good_state_and_halves_the_steps():
    X, y = _data()
    cfg = TrainConfig(**ADAM, steps=12, lr=1e-2, gamma=0.3, eval_every=2)
    clean = fit(_mlp(), X, y, cfg)
    spy = _Spy()
    model = _mlp()
    inject_faults(model, at_calls={6})  # the loss after 5 steps is +inf
    h = fit(model, X, y, cfg, callbacks=[spy])

    assert [e["event"] for e in h.events] == ["non-finite loss"]
    assert h.events[0]["step"] == 5 and "after step 4" in h.events[0]["action"]
    # The state after 4 steps was restored exactly: step 5 is replayed from the same loss,
    # with half the step sizes, so from step 6 on the run differs from the clean one.
    assert h.loss[:5] == clean.loss[:5]
    assert h.loss[5] != clean.loss[5]
    assert spy.opt.param_groups[0]["lr"] == cfg.lr / 2
    assert spy.tuner.param_groups[0]["lr"] == cfg.gamma / 2
    # History is consistent: one loss and time per step, evaluations in order, no inf.
    assert h.steps_done == len(h.time) == cfg.steps and h.stop_reason == "steps"
    assert h.eval_step == [0, 2, 4, 6, 8, 10, 12]
    assert len(h.train_rmse) == len(h.dead_fraction) == len(h.spread) == len(h.eval_step)
    assert all(math.isfinite(v) for v in h.loss + h.train_rmse)
    assert h.time == sorted(h.time)
    # The parameters are those of a hand-written loop that halves after 4 steps.
    ref = _reference(_mlp(), X, y, cfg.steps, cfg.lr, cfg.gamma, cfg.max_step, halve_after=4)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_persistent_nan_gradient_gives_up_after_max_retries():
    # From the 5th training pass on every gradient is NaN while every loss is finite: each
    # retry replays step 4 fine and fails again at step 5. That must count as failures in a
    # row (it once reset the count and looped forever).
    X, y = _data()
    spy = _Spy()
    model = _mlp()
    calls = inject_faults(model, at_calls=set(range(5, 10_000)), grad=True)
    with pytest.raises(FloatingPointError, match="non-finite 4 times in a row at step 5"):
        fit(model, X, y, TrainConfig(**ADAM, steps=50, lr=1e-2, max_retries=3), callbacks=[spy])
    assert calls[0] < 20
    # Three restores, each halving the step sizes of the try before.
    assert spy.opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 8, rel=1e-15)
    assert spy.tuner.param_groups[0]["lr"] == pytest.approx(0.3 / 8, rel=1e-15)


def test_non_finite_from_the_start_gives_up_with_compounded_halving():
    # A finite target so large that the squared error overflows: the very first loss is inf.
    X, y = _data()
    spy = _Spy()
    with pytest.raises(FloatingPointError, match="non-finite 3 times in a row at step 0"):
        fit(_mlp(), X, y * 1e200, TrainConfig(**ADAM, steps=5, max_retries=2), callbacks=[spy])
    assert spy.opt.param_groups[0]["lr"] == pytest.approx(3e-3 / 4, rel=1e-15)


def test_divergent_learning_rate_stops_with_floating_point_error():
    # SGD with lr = 10 overflows within a few steps; the last finite state is already far
    # gone, so halving cannot save it: fit must stop with a clear error, not hang or NaN.
    X, y = _data()
    with pytest.raises(FloatingPointError, match="gave up") as err:
        fit(_mlp(hidden=(16, 16)), X, y, TrainConfig(**NO_VARPRO, optimizer="sgd", lr=10.0,
                                                     steps=100,
                                                      max_retries=4))
    assert "in a row" in str(err.value)


def test_recovery_with_mini_batches_replays_the_same_batch():
    # The sampler is part of the restored state: after the restore, step 5 draws the batch
    # it drew the first time, so the losses up to there are identical to a clean run.
    X, y = _data(64)
    cfg = TrainConfig(**ADAM, steps=10, batch_size=16, eval_every=5)
    clean = fit(_mlp(), X, y, cfg)
    model = _mlp()
    inject_faults(model, at_calls={7})
    h = fit(model, X, y, cfg)
    assert len(h.events) == 1 and h.events[0]["step"] == 6
    assert h.loss[:6] == clean.loss[:6] and h.steps_done == 10
