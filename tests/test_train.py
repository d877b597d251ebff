"""fit(): options of the training loop not covered elsewhere."""

import pytest
import torch

from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.tuning import SeparatedTuner


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    return X, (X[:, :1] * X[:, 1:]).sin()


@pytest.mark.parametrize("every, expected", [(1, 7), (3, 3)])
def test_tune_every_steps_the_tuner_on_every_kth_optimizer_step(monkeypatch, every, expected):
    calls = []
    original = SeparatedTuner.step

    def counting_step(self, closure=None):
        calls.append(1)
        return original(self, closure)

    monkeypatch.setattr(SeparatedTuner, "step", counting_step)
    X, y = _data()
    model = SeparatedMLP(2, [8], 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = fit(model, X, y, TrainConfig(**ADAM, steps=7, tune_every=every, diagnostics=False))
    assert h.steps_done == 7
    assert len(calls) == expected  # steps 0, 3, 6 for every=3


@pytest.mark.parametrize("kind, rule", [("relu", "gauss_newton"), ("softplus", "newton"),
                                        ("softplus", "paper")])
def test_tune_every_records_only_the_tuned_steps_and_steps_as_if_it_recorded_all(kind, rule):
    """With tune_every = 3 the tuner's hooks run in steps 0, 3, 6 only; the result equals a
    run that records every pass (the passes in between were cleared unread)."""
    from sepneuron.train import Callback

    class Recording(Callback):  # runs after fit's own TunerStep.on_step_begin
        def __init__(self, force):
            self.force, self.seen = force, []

        def on_step_begin(self, run):
            self.seen.append(run.tuner.recording)
            if self.force:
                run.tuner.recording = True

    def net():
        return SeparatedMLP(2, [8, 6], 1, kind, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)

    X, y = _data()
    cfg = TrainConfig(**{**ADAM, "rule": rule}, steps=7, tune_every=3, diagnostics=False)
    params = []
    for force in (False, True):
        model, spy = net(), Recording(force)
        fit(model, X, y, cfg, callbacks=[spy])
        params.append([p.detach().clone() for p in model.parameters()])
        assert spy.seen == [True, False, False, True, False, False, True]
    for p, p_all in zip(*params, strict=True):
        torch.testing.assert_close(p, p_all, rtol=0, atol=1e-12)
    assert not torch.equal(model.activations()[0].q, net().activations()[0].q)  # it tuned


def test_tune_every_must_be_a_positive_int():
    with pytest.raises(ValueError, match="tune_every"):
        TrainConfig(**ADAM, tune_every=0).validate()
