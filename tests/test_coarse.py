"""Coarse to fine (``TrainConfig.coarse_fraction``): a first phase on part of the rows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sepneuron import SeparatedMLP, TrainConfig, fit, fit_select, fit_stages
from sepneuron.baselines import PlainMLP
from sepneuron.fitting.coarse import coarse_rows
from sepneuron.train import Checkpoint


def _data(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) * torch.cos(X[:, 1:]) + 0.3 * X[:, :1]
    return X, y


def _net(seed: int = 0) -> PlainMLP:
    return PlainMLP(2, [6, 6], 1, "tanh", dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))


def _mse(net, X, y) -> float:
    with torch.no_grad():
        return float(((net(X) - y) ** 2).mean())


def test_coarse_rows_are_a_seeded_subset_of_the_rounded_size():
    rows = coarse_rows(1000, 0.2, seed=3)
    assert rows.shape == (200,) and len(set(rows.tolist())) == 200
    assert int(rows.min()) >= 0 and int(rows.max()) < 1000
    assert torch.equal(rows, coarse_rows(1000, 0.2, seed=3))
    assert not torch.equal(rows, coarse_rows(1000, 0.2, seed=4))
    assert coarse_rows(3, 0.01, seed=0).shape == (1,)  # at least one row


def test_coarse_fit_is_a_subset_fit_then_a_full_fit_from_there():
    X, y = _data()
    cfg = TrainConfig(steps=30, output_layer="lstsq", eval_every=10)
    a = _net()
    h = fit(a, X, y, dataclasses.replace(cfg, coarse_fraction=0.25))
    b = _net()
    rows = coarse_rows(len(X), 0.25, cfg.seed)
    h1 = fit(b, X[rows], y[rows], dataclasses.replace(cfg, steps=10))
    h2 = fit(b, X, y, dataclasses.replace(cfg, steps=20, init="default"))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert h.loss == h1.loss + h2.loss and h.steps_done == 30
    assert h.eval_step == [s + 10 for s in h2.eval_step]
    assert all(t1 <= t2 for t1, t2 in zip(h.time, h.time[1:], strict=False))
    (event,) = [e for e in h.events if e.get("event") == "coarse phase"]
    assert event["rows"] == 50 and event["steps"] == 10 and event["stop"] == "steps"


def test_the_second_phase_gets_the_test_data_callbacks_and_progress():
    X, y = _data()
    seen: list[int] = []
    h = fit(_net(), X, y, TrainConfig(steps=12, coarse_fraction=0.5, eval_every=4),
            X_test=X, y_test=y, progress=lambda hist: seen.append(hist.steps_done))
    assert seen == list(range(1, 9))      # phase 2's eight steps, counted from its start
    assert h.test_rmse and h.eval_step[0] == 4   # its first evaluation, before its steps


def test_max_time_is_split_between_the_phases(monkeypatch):
    X, y = _data()
    calls: list[float | None] = []
    import sepneuron.fitting.coarse as coarse

    real = coarse.fit_coarse_to_fine

    def spy(fit_fn, *args, **kwargs):
        def recording(model, Xp, yp, cfg, **kw):
            calls.append(cfg.max_time)
            return fit_fn(model, Xp, yp, cfg, **kw)
        return real(recording, *args, **kwargs)

    monkeypatch.setattr("sepneuron.fitting.loop.fit_coarse_to_fine", spy)
    h = fit(_net(), X, y, TrainConfig(steps=6, max_time=30.0, coarse_fraction=0.5,
                                      coarse_share=0.25))
    first, second = calls   # phase 1: a quarter; phase 2: what phase 1 left
    (event,) = [e for e in h.events if e.get("event") == "coarse phase"]
    assert first == pytest.approx(7.5) and event["steps"] == 1
    assert second == pytest.approx(30.0 - event["seconds"])


@pytest.mark.parametrize("optimizer", ["lm", "adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("kind,rule", [("relu", "newton"), ("softplus", "gauss_newton"),
                                       ("softplus", "grad"), ("relu", None)])
def test_every_optimizer_and_rule_trains_coarse_to_fine(optimizer, kind, rule):
    X, y = _data(120)
    net = SeparatedMLP(2, [6], 1, kind=kind, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    before = _mse(net, X, y)
    lr = {"adam": 1e-2, "sgd": 1e-2}.get(optimizer)
    h = fit(net, X, y, TrainConfig(optimizer=optimizer, lr=lr, rule=rule, steps=24,
                                   coarse_fraction=0.3, eval_every=8))
    assert h.steps_done == 24 and torch.isfinite(torch.tensor(h.loss)).all()
    assert _mse(net, X, y) < before


def test_stages_and_the_race_run_coarse_to_fine():
    X, y = _data()
    cfg = TrainConfig(steps=40, coarse_fraction=0.3, eval_every=10)
    model, histories = fit_stages(lambda i: _net(i), X, y, cfg, stages=2)
    assert len(histories) == 2 and all(any(e.get("event") == "coarse phase" for e in h.events)
                                       for h in histories)
    staged, _, sel = fit_select([lambda i: _net(i), lambda i: _net(i + 7)], X, y, cfg,
                                share=0.2)
    assert sel.chosen in (0, 1) and _mse(staged, X, y) < float(y.var())


@pytest.mark.parametrize("fields,words", [
    ({"coarse_share": 0.5}, "needs coarse_fraction"),
    ({"coarse_fraction": 0.0}, "coarse_fraction"),
    ({"coarse_fraction": 1.0}, "coarse_fraction"),
    ({"coarse_fraction": float("nan")}, "coarse_fraction"),
    ({"coarse_fraction": 0.2, "coarse_share": 1.0}, "coarse_share"),
    ({"coarse_fraction": 0.2, "batch_size": 16}, "batch_size"),
    ({"coarse_fraction": 0.2, "checkpoint_path": "x.pt"}, "not checkpointed"),
])
def test_bad_coarse_settings_are_refused(fields, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**fields).validate()


def test_a_checkpoint_callback_is_refused(tmp_path):
    X, y = _data()
    with pytest.raises(ValueError, match="not checkpointed"):
        fit(_net(), X, y, TrainConfig(steps=4, coarse_fraction=0.5),
            callbacks=[Checkpoint(str(tmp_path / "c.pt"))])


def test_merged_history_counts_phase_two_events_from_the_start_of_phase_one():
    from sepneuron.fitting.coarse import _merged
    from sepneuron.train import History

    first = History(loss=[1.0, 0.5], time=[0.1, 0.2], stop_reason="steps")
    second = History(loss=[0.4, 0.3, 0.2], time=[0.1, 0.2, 0.3], eval_step=[0, 3],
                     eval_time=[0.0, 0.3], train_rmse=[0.6, 0.4], stop_reason="max_time",
                     events=[{"step": 1, "event": "non-finite loss"}, {"event": "other"}])
    h = _merged(first, second, rows=7)
    assert h.loss == [1.0, 0.5, 0.4, 0.3, 0.2]
    assert h.time == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert h.eval_step == [2, 5] and h.eval_time == pytest.approx([0.2, 0.5])
    assert h.events == [{"event": "coarse phase", "rows": 7, "steps": 2, "seconds": 0.2,
                         "stop": "steps"},
                        {"step": 3, "event": "non-finite loss"}, {"event": "other"}]
    assert h.stop_reason == "max_time" and second.events[0]["step"] == 1  # not mutated
