"""SeparatedMLPRegressor: scikit-learn's estimator checks, composition, units, seeds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sepneuron import SeparatedMLP, SeparatedMLPRegressor
from sepneuron.baselines import PlainMLP

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


def _small(**kw) -> SeparatedMLPRegressor:
    return SeparatedMLPRegressor(**({"hidden_layer_sizes": (8,), "max_steps": 20} | kw))


def _data(n: int = 120, k: int | None = None, seed: int = 0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]
    if k is not None:
        y = np.stack([y * (j + 1) + j for j in range(k)], axis=1)
    return X, y


# -- scikit-learn's own checks ---------------------------------------------------------
# Nothing is expected to fail. One check may be skipped by scikit-learn itself:
# check_array_api_input needs SCIPY_ARRAY_API=1 and array-API namespaces (it tests
# estimators that accept array-API inputs; this one converts to numpy, then torch).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


# _small() fits one network; the defaults' hidden_layer_sizes="auto" races two (max_steps=30:
# 6 steps each, then 18 for the winner)
@parametrize_with_checks([_small(), SeparatedMLPRegressor(max_steps=30)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


# -- composition -----------------------------------------------------------------------

def test_pipeline_grid_search_and_cross_val_score():
    X, y = _data()
    pipe = make_pipeline(StandardScaler(), _small(random_state=0))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == y.shape
    grid = GridSearchCV(_small(random_state=0), {"kind": ["relu", "softplus"],
                                                 "learning_rate": [1e-2, 3e-2]}, cv=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"kind", "learning_rate"}
    assert np.isfinite(grid.best_score_)
    scores = cross_val_score(_small(random_state=0), X, y, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_get_set_params_and_clone_keep_everything_unvalidated():
    est = SeparatedMLPRegressor(learning_rate=-1.0, kind="nope")  # validated in fit only
    assert est.get_params()["learning_rate"] == -1.0
    est.set_params(learning_rate=1e-2, kind="relu", hidden_layer_sizes=(4, 4))
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "model_")


# -- behaviour -------------------------------------------------------------------------

def test_fits_a_smooth_function_and_reports_r2():
    X, y = _data(200)
    est = SeparatedMLPRegressor(hidden_layer_sizes=(16, 16), max_steps=60,
                                random_state=0).fit(X, y)  # the default recipe (LM + lstsq)
    assert est.score(X, y) > 0.999
    assert est.n_features_in_ == 3 and est.n_outputs_ == 1
    assert isinstance(est.model_, PlainMLP) and est.model_.activation == "tanh"
    sep = SeparatedMLPRegressor(kind="softplus", hidden_layer_sizes=(16, 16), max_steps=60,
                                random_state=0).fit(X, y)
    assert isinstance(sep.model_, SeparatedMLP) and sep.score(X, y) > 0.999
    assert len(est.loss_curve_) == est.n_iter_ <= 60
    assert est.loss_curve_[-1] < 0.01 * est.loss_curve_[0]
    assert est.history_.stop_reason in ("steps", "plateau")


def test_passes_check_regressors_train_with_few_steps():
    from sklearn.utils.estimator_checks import check_regressors_train

    check_regressors_train("SeparatedMLPRegressor",
                           SeparatedMLPRegressor(hidden_layer_sizes=(8,), max_steps=300))


def test_tanh_kind_and_residual_stages():
    from sepneuron import StagedModel

    X, y = _data(150)
    one = SeparatedMLPRegressor(kind="tanh", hidden_layer_sizes=(8,), max_steps=30,
                                random_state=0).fit(X, y)
    assert isinstance(one.model_, PlainMLP)
    two = SeparatedMLPRegressor(kind="tanh", hidden_layer_sizes=(8,), max_steps=30, stages=2,
                                random_state=0).fit(X, y)
    assert isinstance(two.model_, StagedModel) and len(two.histories_) == 2
    assert np.mean((two.predict(X) - y) ** 2) <= np.mean((one.predict(X) - y) ** 2)
    assert two.n_iter_ == sum(h.steps_done for h in two.histories_)
    assert pickle.loads(pickle.dumps(two)).predict(X[:5]).shape == (5,)


@pytest.mark.parametrize("k", [None, 1, 3])
def test_prediction_shape_follows_y(k):
    X, y = _data(40, k=k)
    pred = _small(random_state=0).fit(X, y).predict(X[:7])
    assert pred.shape == (7,) + y.shape[1:] and pred.dtype == np.float64


def test_outputs_are_in_the_users_units():
    # Standardisation happens inside: new units for X's columns change nothing, and an
    # affine change of y's units changes the predictions by the same affine map. (Scales
    # are powers of two so that the standardised data agree to the last bit or nearly.)
    # Adam: LM's exact solves amplify those last-bit differences (to ~1e-7 relative here).
    X, y = _data(60)
    adam = dict(optimizer="adam", output_layer="optimizer", learning_rate=3e-2, random_state=3)
    base = _small(**adam).fit(X, y).predict(X)
    X2 = X * np.array([1024.0, 0.125, 4.0]) + 5.0
    scaled = _small(**adam).fit(X2, 1024.0 * y - 3e5).predict(X2)
    np.testing.assert_allclose(scaled, 1024.0 * base - 3e5, rtol=1e-12, atol=1e-8)


def test_random_state_int_reproduces_and_differs_between_seeds():
    X, y = _data(50)
    a = _small(random_state=7).fit(X, y).predict(X)
    b = _small(random_state=7).fit(X, y).predict(X)
    c = _small(random_state=8).fit(X, y).predict(X)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_random_state_instance_is_consumed_like_scikit_learn():
    X, y = _data(50)
    est = _small(random_state=np.random.RandomState(0))
    first = est.fit(X, y).predict(X)
    second = est.fit(X, y).predict(X)  # the RandomState has moved on
    assert not np.allclose(first, second)
    again = _small(random_state=np.random.RandomState(0)).fit(X, y).predict(X)
    assert np.array_equal(first, again)


def test_no_global_seeding():
    X, y = _data(30)
    torch.manual_seed(123)
    np.random.seed(123)
    before_t, before_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    _small(random_state=1).fit(X, y).predict(X)
    assert torch.equal(torch.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)


@pytest.mark.parametrize("options", [
    dict(kind="relu"),
    dict(kind="softplus", rule=None),
    dict(kind="softplus", rule="grad"),
    dict(kind="softplus", rule="paper"),
    dict(kind="softplus", rule="gauss_newton", output_layer="optimizer", init="default"),
    dict(optimizer="sgd"),
    dict(optimizer="adam", output_layer="optimizer"),
    dict(optimizer="lbfgs", learning_rate=1.0, max_steps=5),
    dict(batch_size=16, output_layer="optimizer", optimizer="adam"),
    dict(dtype="float32"),
])
def test_options_train_and_predict(options):
    X, y = _data(80)
    est = _small(random_state=0, **options).fit(X, y)
    pred = est.predict(X)
    assert pred.dtype == np.float64 and np.all(np.isfinite(pred))
    assert est.loss_curve_[-1] < est.loss_curve_[0]


def test_max_time_stops_at_the_wall_clock_budget():
    X, y = _data(50)
    est = _small(max_steps=10**7, max_time=0.3, patience=None, random_state=0).fit(X, y)
    assert est.history_.stop_reason == "max_time"
    assert 0 < est.n_iter_ < 10**7
    assert 0.3 <= est.history_.time[-1] < 1.5


def test_silent_by_default_and_verbose_prints_progress(capsys):
    X, y = _data(30)
    _small(random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""
    _small(random_state=0, verbose=True).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    evals = [line for line in lines if line.startswith("step ")]
    assert len(evals) >= 10 and "RMSE at step 20: train" in evals[-1]
    assert evals[-1].startswith("step 20/20")
    assert lines[-1].startswith("done: 20 steps") and "(stopped by steps)" in lines[-1]


def test_verbose_reports_every_few_seconds_when_max_time_stops_early(capsys):
    """max_time ends training long before the first of the ten evaluations: the lines come
    from the clock (every 2 s), and the summary names the stop."""
    X, y = _data(30)
    _small(random_state=0, verbose=True, max_steps=10**7, max_time=2.5,
           patience=None).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    timed = [line for line in lines if line.startswith("step ") and "/10000000" in line]
    assert len(timed) >= 2  # step 0's evaluation, then the clock's line after 2 s
    assert "left" in timed[-1] and "loss" in timed[-1]
    assert lines[-1].startswith("done: ") and "(stopped by max_time)" in lines[-1]


def test_pickle_round_trip_predicts_the_same():
    X, y = _data(30)
    est = _small(random_state=0).fit(X, y)
    twin = pickle.loads(pickle.dumps(est))
    assert np.array_equal(twin.predict(X), est.predict(X))


@pytest.mark.parametrize("recipe", [
    dict(),  # the default: LM, exact output layer, init="data"
    dict(batch_size=16, optimizer="adam", output_layer="optimizer"),
])
def test_checkpoint_and_resume_give_the_uninterrupted_model(tmp_path, recipe):
    X, y = _data(64)
    params = dict(random_state=4, max_steps=30) | recipe
    straight = _small(**params).fit(X, y)
    path = tmp_path / "est.pt"
    first = _small(**(params | dict(max_steps=15)), checkpoint_path=path, checkpoint_every=5)
    first.fit(X, y)
    assert path.exists()
    resumed = _small(**params, checkpoint_path=path, resume=True).fit(X, y)
    assert resumed.n_iter_ == 30
    assert resumed.loss_curve_ == straight.loss_curve_
    assert np.array_equal(resumed.predict(X), straight.predict(X))
    assert [e["event"] for e in resumed.history_.events] == ["resumed"]


def test_auto_stages_add_a_network_only_after_a_plateau(tmp_path):
    from sepneuron import StagedModel

    X, y = _data(150)
    # patience 3 with min_improvement 0.9 (a step must cut the best loss tenfold): every
    # network plateaus at once, so "auto" goes on to the next stage, within max_steps
    kw = dict(kind="tanh", hidden_layer_sizes=(8,), random_state=0)
    auto = SeparatedMLPRegressor(max_steps=40, patience=3, min_improvement=0.9, **kw).fit(X, y)
    assert isinstance(auto.model_, StagedModel) and len(auto.histories_) == 3
    assert auto.n_iter_ == sum(h.steps_done for h in auto.histories_) <= 40
    assert all(h.stop_reason == "plateau" for h in auto.histories_[:-1])
    # no plateau, no patience, or a checkpoint: one network, the network itself
    for extra in (dict(patience=1000), dict(patience=None),
                  dict(patience=3, min_improvement=0.9, checkpoint_path=tmp_path / "c.pt")):
        one = SeparatedMLPRegressor(max_steps=10, **kw, **extra).fit(X, y)
        assert isinstance(one.model_, PlainMLP) and len(one.histories_) == 1, extra
    assert (tmp_path / "c.pt").exists()


# -- hidden_layer_sizes="auto": a race of networks (sepneuron.selection) ----------------------


def test_auto_sizes_race_the_candidates_and_train_the_winner_within_max_steps():
    from sepneuron.settings import AUTO_HIDDEN_CANDIDATES, SELECT_SHARE

    X, y = _data(200)
    est = SeparatedMLPRegressor(max_steps=60, random_state=0).fit(X, y)
    sel = est.selection_
    assert len(sel.validation_mse) == len(AUTO_HIDDEN_CANDIDATES) == 2
    assert est.hidden_layer_sizes_ == AUTO_HIDDEN_CANDIDATES[sel.chosen]
    assert sel.steps == 2 * int(SELECT_SHARE * 60)
    assert est.n_iter_ == sel.steps + sum(h.steps_done for h in est.histories_) <= 60
    assert est.score(X, y) > 0.99
    again = SeparatedMLPRegressor(max_steps=60, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), again.predict(X))


def test_auto_sizes_use_the_first_candidate_without_a_race_where_one_cannot_run(tmp_path):
    from sepneuron.settings import AUTO_HIDDEN_CANDIDATES

    X, y = _data(200)
    for kw, data in (({"max_steps": 10}, (X, y)), ({"max_steps": 60}, (X[:12], y[:12])),
                     ({"max_steps": 60, "checkpoint_path": tmp_path / "c.pt"}, (X, y))):
        est = SeparatedMLPRegressor(random_state=0, **kw).fit(*data)
        assert est.selection_.race == [] and est.hidden_layer_sizes_ == AUTO_HIDDEN_CANDIDATES[0]
    explicit = SeparatedMLPRegressor(hidden_layer_sizes=(6, 5), max_steps=30).fit(X, y)
    assert explicit.selection_.race == [] and explicit.hidden_layer_sizes_ == (6, 5)


def test_auto_sizes_with_every_kind_and_stage_setting():
    X, y = _data(150)
    for kind in ("tanh", "softplus", "relu"):
        for stages in ("auto", 1, 2):
            est = SeparatedMLPRegressor(kind=kind, stages=stages, max_steps=40,
                                        random_state=1).fit(X, y)
            assert len(est.selection_.validation_mse) == 2, (kind, stages)
            assert np.isfinite(est.predict(X)).all() and est.n_iter_ >= 16


def test_a_misspelt_auto_is_refused_by_name():
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        SeparatedMLPRegressor(hidden_layer_sizes="Auto", max_steps=5).fit(*_data(40))


def test_default_sizes_pass_check_regressors_train_with_300_steps():
    from sklearn.utils.estimator_checks import check_regressors_train

    check_regressors_train("SeparatedMLPRegressor", SeparatedMLPRegressor(max_steps=300))


@pytest.mark.parametrize("optimizer", ["lm", "adam", "lbfgs"])
@pytest.mark.parametrize("kind, rule", [("tanh", None), ("softplus", "gauss_newton"),
                                        ("relu", "newton")])
def test_auto_sizes_race_under_every_optimizer_and_rule(optimizer, kind, rule):
    X, y = _data(150)
    kw = {"output_layer": "optimizer", "batch_size": 32} if optimizer == "adam" else {}
    est = SeparatedMLPRegressor(kind=kind, rule=rule, optimizer=optimizer, max_steps=40,
                                random_state=2, **kw).fit(X, y)
    assert len(est.selection_.validation_mse) == 2
    assert np.isfinite(est.selection_.validation_mse).all()
    assert np.isfinite(est.predict(X)).all() and est.n_iter_ <= 40
