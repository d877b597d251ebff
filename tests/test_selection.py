"""The hold-out race of sepneuron.selection: who wins, what it costs, what it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sepneuron import TrainConfig, fit_select, fit_stages
from sepneuron.baselines import PlainMLP

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    return X, torch.sin(3 * X[:, :1]) * torch.cos(2 * X[:, 1:])


def _plain(hidden: list[int]):
    def make(stage: int) -> PlainMLP:
        return PlainMLP(2, hidden, 1, "tanh", dtype=F64,
                        generator=torch.Generator().manual_seed(10 + stage))
    return make


class _NaNNet(nn.Module):
    """A network whose output is NaN whatever its weights: its race cannot succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1, dtype=F64)

    def forward(self, x):
        return self.lin(x) * float("nan")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 40, "diagnostics": False, "seed": 3, **kw})


def test_the_candidate_with_the_lower_validation_error_wins_and_keeps_training():
    X, y = _data()
    cfg = _cfg()
    model, histories, sel = fit_select([_plain([1]), _plain([16])], X, y, cfg, share=0.25)
    assert sel.chosen == 1
    assert len(sel.validation_mse) == 2 and sel.validation_mse[1] < sel.validation_mse[0]
    assert [h.steps_done for h in sel.race if h is not None] == [10, 10]
    assert sel.steps + sum(h.steps_done for h in histories) <= cfg.steps
    # the winner goes on from where its race left it, not from a fresh start
    assert histories[0].loss[0] < sel.race[1].loss[0] / 10
    with torch.no_grad():
        mse = float((model(X) - y).pow(2).mean())
    assert mse <= histories[0].loss[0]


def test_a_margin_keeps_the_first_candidate_unless_it_is_beaten_by_that_factor():
    X, y = _data()
    _, _, plain = fit_select([_plain([1]), _plain([16])], X, y, _cfg(), share=0.25)
    ratio = plain.validation_mse[0] / plain.validation_mse[1]
    assert plain.chosen == 1 and ratio > 1
    _, _, kept = fit_select([_plain([1]), _plain([16])], X, y, _cfg(), share=0.25,
                            margin=2 * ratio)
    assert kept.chosen == 0 and kept.validation_mse == plain.validation_mse


def test_one_candidate_is_fit_stages_itself():
    X, y = _data()
    cfg = _cfg()
    model, histories, sel = fit_select([_plain([8])], X, y, cfg, stages=2, schedule="even")
    ref, ref_h = fit_stages(_plain([8]), X, y, cfg, stages=2, schedule="even")
    assert sel.race == [] and sel.validation_mse == [] and sel.chosen == 0
    assert [h.loss for h in histories] == [h.loss for h in ref_h]
    with torch.no_grad():
        assert torch.equal(model(X), ref(X))


def test_a_candidate_that_never_reaches_a_finite_loss_scores_inf():
    X, y = _data()
    model, _, sel = fit_select([lambda i: _NaNNet(), _plain([8])], X, y,
                               _cfg(output_layer="optimizer", init="default", max_retries=1),
                               share=0.2)
    assert sel.chosen == 1 and sel.race[0] is None and math.isinf(sel.validation_mse[0])
    with torch.no_grad():
        assert torch.isfinite(model(X)).all()


def test_the_time_budget_is_shared_not_added():
    X, y = _data()
    cfg = _cfg(steps=10**6, max_time=0.6)
    _, histories, sel = fit_select([_plain([4]), _plain([8])], X, y, cfg, share=0.2)
    used = sel.seconds + sum(h.time[-1] for h in histories)
    assert used <= cfg.max_time + 0.25   # the last step may overrun by one step


def test_later_stages_of_the_winner_are_fresh_networks_of_its_kind():
    X, y = _data()
    model, histories, sel = fit_select([_plain([2]), _plain([6])], X, y,
                                       _cfg(steps=60, patience=3, min_improvement=0.5),
                                       share=0.1, stages=3, schedule="plateau")
    assert sel.chosen == 1
    assert all(st.net.net[0].out_features == 6 for st in model.stages)
    assert len(model.stages) <= 3 and len(histories) >= 1


@pytest.mark.parametrize("kw, match", [
    ({"share": 0.5}, "share must be > 0 with len"),
    ({"share": 0.0}, "share must be > 0"),
    ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ({"validation_fraction": 0}, "validation_fraction must be in"),
    ({"margin": 0.5}, "margin must be a finite number >= 1"),
    ({"margin": float("inf")}, "margin must be a finite number >= 1"),
])
def test_bad_race_arguments_are_refused_by_name(kw, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        fit_select([_plain([4]), _plain([8])], X, y, _cfg(), **kw)


def test_no_candidates_or_too_few_rows_are_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="at least one"):
        fit_select([], X, y, _cfg())
    with pytest.raises(ValueError, match="at least 2 training rows"):
        fit_select([_plain([4]), _plain([8])], X[:2], y[:2], _cfg())
    with pytest.raises(ValueError, match="checkpoint_path"):
        fit_select([_plain([4]), _plain([8])], X, y, _cfg(checkpoint_path="/tmp/never.pt"))


def test_a_race_that_spends_the_whole_budget_returns_the_winners_race_counted_once():
    X, y = _data()
    model, histories, sel = fit_select([_plain([4]), _plain([8])], X, y, _cfg(steps=2),
                                       share=0.2)
    assert sel.steps == 2 and len(histories) == 1 and histories[0] is sel.race[sel.chosen]
    assert sel.ran_in_race(histories[0]) and sel.total_steps(histories) == 2
    assert sel.total_seconds(histories) == sel.seconds
    assert len(model.stages) == 1


@pytest.mark.parametrize("layer, raced, after", [
    ("auto", ["lstsq", "lstsq"], "auto"),            # the race judges with the exact layer
    ("optimizer", ["optimizer", "optimizer"], "optimizer"),
    ("lstsq", ["lstsq", "lstsq"], "lstsq"),
])
def test_the_race_uses_the_exact_output_layer_under_auto(monkeypatch, layer, raced, after):
    import sepneuron.selection as selection_module
    import sepneuron.stages as stages_module

    seen: dict[str, list[str]] = {"race": [], "after": []}
    real_fit = selection_module.fit

    def race_fit(model, X, y, cfg, **kw):
        seen["race"].append(cfg.output_layer)
        return real_fit(model, X, y, cfg, **kw)

    def after_fit(model, X, y, cfg, **kw):
        seen["after"].append(cfg.output_layer)
        return real_fit(model, X, y, cfg, **kw)

    monkeypatch.setattr(selection_module, "fit", race_fit)
    monkeypatch.setattr(stages_module, "fit", after_fit)
    X, y = _data()
    fit_select([_plain([6, 6]), _plain([16])], X, y, _cfg(output_layer=layer), share=0.25)
    assert seen["race"] == raced
    assert seen["after"] and set(seen["after"]) == {after}


def test_under_auto_a_candidate_without_an_output_linear_races_with_the_optimizer():
    class Wrapped(nn.Module):          # not a stack: no exact solve can run
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    X, y = _data()
    model, _, sel = fit_select([lambda i: Wrapped(_plain([6, 6])(i)), _plain([16])], X, y,
                               _cfg(init="default"), share=0.25)
    assert all(math.isfinite(v) for v in sel.validation_mse)
