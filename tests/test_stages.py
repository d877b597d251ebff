"""Residual stages (precision mode): the sum model, the no-rise guarantee, the estimator."""

from __future__ import annotations

import pytest
import torch

from sepneuron import StagedModel, TrainConfig, fit_stages
from sepneuron.baselines import PlainMLP

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 80, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    y = torch.cat([torch.exp(torch.sin(3 * X[:, :1]) + X[:, 1:] ** 2), X[:, :1] * X[:, 1:]], 1)
    return X, y


def _make(stage: int) -> PlainMLP:
    return PlainMLP(2, [8], 2, "tanh", dtype=F64, generator=torch.Generator().manual_seed(stage))


def _prefix_losses(model: StagedModel, X, y) -> list[float]:
    out, losses = torch.zeros_like(y), []
    with torch.no_grad():
        for stage in model.stages:
            out = out + stage(X)
            losses.append(float(((out - y) ** 2).mean()))
    return losses


@pytest.mark.parametrize("optimizer", ["lm", "adam"])
def test_adding_a_stage_never_raises_the_training_loss(optimizer):
    X, y = _data()
    cfg = TrainConfig(optimizer=optimizer, output_layer="lstsq", rule=None, steps=8,
                      diagnostics=False)
    model, histories = fit_stages(_make, X, y, cfg, stages=3)
    losses = _prefix_losses(model, X, y)
    assert len(histories) == 3 and 1 <= len(losses) <= 3
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0]  # the later stages did something
    with torch.no_grad():
        assert torch.equal(model(X), sum(s(X) for s in model.stages))


def test_a_stage_that_would_raise_the_loss_is_left_out(monkeypatch):
    import sepneuron.stages as stages_mod

    real_fit = stages_mod.fit

    def spoil_later_stages(net, X, y, cfg, **kw):
        h = real_fit(net, X, y, cfg, **kw)
        if cfg.seed > 0:  # stage 1 onwards: make its network useless
            with torch.no_grad():
                net.net[-1].bias.add_(100.0)
        return h

    monkeypatch.setattr(stages_mod, "fit", spoil_later_stages)
    X, y = _data()
    cfg = TrainConfig(optimizer="lm", output_layer="lstsq", rule=None, steps=5, diagnostics=False)
    model, histories = fit_stages(_make, X, y, cfg, stages=2)
    assert len(model.stages) == 1 and len(histories) == 2
    assert histories[1].events[-1]["event"] == "stage not added"


def test_staged_model_round_trips_its_state_dict():
    X, y = _data(30)
    cfg = TrainConfig(optimizer="lm", output_layer="lstsq", rule=None, steps=3, diagnostics=False)
    model, _ = fit_stages(_make, X, y, cfg, stages=2)
    twin = StagedModel([(_make(i), torch.ones(2, dtype=F64)) for i in range(len(model.stages))])
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(twin(X), model(X))


def _plateau_config(**kw) -> TrainConfig:
    # min_improvement 0.9: a step that does not cut the best loss tenfold counts as no
    # progress, so a stage plateaus after `patience` steps whatever it reaches
    base = dict(optimizer="lm", output_layer="lstsq", rule=None, steps=40, patience=3,
                min_improvement=0.9, diagnostics=False)
    return TrainConfig(**{**base, **kw})


def test_plateau_schedule_adds_stages_after_plateaus_within_one_budget():
    X, y = _data()
    cfg = _plateau_config()
    model, histories = fit_stages(_make, X, y, cfg, stages=3, schedule="plateau")
    assert len(histories) == 3
    assert all(h.stop_reason == "plateau" for h in histories[:-1])
    assert sum(h.steps_done for h in histories) <= cfg.steps  # the steps are shared
    losses = _prefix_losses(model, X, y)
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_plateau_schedule_ends_when_a_stage_stops_on_its_steps():
    X, y = _data()
    cfg = _plateau_config(steps=5, patience=1000)
    model, histories = fit_stages(_make, X, y, cfg, stages=3, schedule="plateau")
    assert len(histories) == 1 and histories[0].stop_reason == "steps"
    assert len(model.stages) == 1 and histories[0].steps_done == 5


def test_plateau_schedule_shares_max_time(monkeypatch):
    import sepneuron.stages as stages_mod

    given: list[float] = []
    real_fit = stages_mod.fit

    def recording_fit(net, X, y, cfg, **kw):
        given.append(cfg.max_time)
        return real_fit(net, X, y, cfg, **kw)

    monkeypatch.setattr(stages_mod, "fit", recording_fit)
    X, y = _data()
    _, histories = fit_stages(_make, X, y, _plateau_config(max_time=60.0), stages=2,
                              schedule="plateau")
    assert given[0] == 60.0                      # the first stage may take it all
    assert given[1] == pytest.approx(60.0 - histories[0].time[-1])


@pytest.mark.parametrize("bad, words", [
    (dict(schedule="greedy"), "schedule must be one of"),
    (dict(schedule="plateau", config=TrainConfig(patience=None)), "patience"),
    (dict(stages=0), "stages"),
    (dict(stages=2, config=TrainConfig(checkpoint_path="x.pt")), "checkpoint_path"),
])
def test_bad_stage_arguments_are_refused(bad, words):
    X, y = _data(10)
    with pytest.raises(ValueError, match=words):
        fit_stages(_make, X, y, **bad)
