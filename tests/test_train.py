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


def test_tune_every_must_be_a_positive_int():
    with pytest.raises(ValueError, match="tune_every"):
        TrainConfig(**ADAM, tune_every=0).validate()
