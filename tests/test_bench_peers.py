"""Issue 12 in the bench: the stronger peers, the recipe's methods and ablation, the
defaults as methods, the suites' sizes, and the report's new sections from hand-made rows
(no training in the report tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sepneuron.bench import METHODS, ResultStore, make_spec, run_key, run_one
from sepneuron.bench.compare import (
    headline,
    headline_verdict,
    pairwise,
    recipe_ablation_table,
    stages_table,
)
from sepneuron.bench.methods import (
    HEADLINE,
    PAPER_QUESTION,
    PEERS,
    RECIPE_BASE,
    RECIPE_VARIANTS,
    recipe_ablation,
)
from sepneuron.bench.report import build_report
from sepneuron.bench.report_compare import compare_sections
from sepneuron.bench.suites import SUITES, Budget, estimated_wall_s
from sepneuron.settings import AUTO_HIDDEN_CANDIDATES, DEFAULT_HIDDEN_SIZES
from sepneuron.tasks import TASKS
from sepneuron.train import TrainConfig

ISSUE12 = [n for n, m in METHODS.items() if m.family in ("recipe", "default")] + [
    "tanh_adam_lbfgs", "sklearn_lbfgs_tanh"]
TINY = {"n_train": 64, "n_test": 64, "grid_n": 8}


# -- methods ---------------------------------------------------------------------------------


def test_registry_names_every_peer_and_variant():
    assert set(PEERS) <= set(METHODS) and HEADLINE in METHODS
    assert {*PAPER_QUESTION["separated"], *PAPER_QUESTION["plain"]} <= set(METHODS)
    names = recipe_ablation()
    assert names["none"] == RECIPE_BASE and set(names.values()) <= set(METHODS)
    assert set(names) == {"none", *RECIPE_VARIANTS}
    for label, change in RECIPE_VARIANTS.items():
        if isinstance(change, dict):  # only the named settings differ from the base
            m, base = METHODS[names[label]], METHODS[RECIPE_BASE]
            assert m.train_overrides() == {**base.train_overrides(),
                                           **{k: v for k, v in change.items() if k != "stages"}}
            assert m.stages == change.get("stages", 1)
    assert METHODS["sep_softplus_vplm"].rule == "grad"          # q, c, d in the LM vector
    assert METHODS["sep_softplus_vplm_gauss_newton"].rule == "gauss_newton"
    assert METHODS["tanh_vplm"].rule is None and METHODS["tanh_vplm"].model == "plain"
    # the recipe's methods are not pinned to the old defaults; the peers of today are
    assert not METHODS["tanh_vplm"].legacy and METHODS["tanh_adam_lbfgs"].legacy


@pytest.mark.parametrize("name", ["tanh_adam_lbfgs", "sklearn_lbfgs_tanh", "estimator_default",
                                  "sepneuron_default"])
def test_method_spec_and_key_are_stable(name):
    a = make_spec("kan_exp", name, 0, Budget(seconds=8.0))
    assert run_key(a) == run_key(make_spec("kan_exp", name, 0, Budget(seconds=8.0)))
    assert run_key(a) != run_key(make_spec("kan_exp", name, 1, Budget(seconds=8.0)))
    assert run_key(a) != run_key(make_spec("kan_exp", name, 0, Budget(seconds=9.0)))


@pytest.mark.parametrize("name", ISSUE12)
def test_every_new_method_runs_a_few_steps(name):
    if name in ("sklearn_lbfgs_tanh", "estimator_default"):
        pytest.importorskip("sklearn")
    spec = make_spec("kan_exp", name, 0, Budget(steps=4), **TINY)
    row = run_one(spec)
    assert row["status"] == "ok", row["error"]
    assert math.isfinite(row["test_rmse"]) and row["n_params"] > 0
    assert 1 <= row["steps"] <= 4 * METHODS[name].stages  # each stage gets the step budget
    assert np.frombuffer(row["grid"], dtype=np.float32).size == 64


def test_adam_then_lbfgs_splits_the_budget():
    from sepneuron.baselines import PlainMLP
    from sepneuron.bench.fitters import fit_then
    from sepneuron.tasks import get_task, make_data

    X, y, Xt, yt = make_data(get_task("kan_exp"), 64, 64, generator=0)
    model = PlainMLP(2, [8, 8], 1, "tanh", dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(optimizer="adam", lr=3e-3, steps=10, rule=None, eval_every=2)
    then = METHODS["tanh_adam_lbfgs"].then_overrides()
    assert then["optimizer"] == "lbfgs" and 0 < then["share"] < 1
    h = fit_then(model, X, y, cfg, {**then, "share": 0.3}, X_test=Xt, y_test=yt)
    assert h.steps_done == 10 and len(h.time) == 10
    assert h.time == sorted(h.time) and h.eval_step == sorted(set(h.eval_step))
    assert h.eval_step[0] == 0 and h.eval_step[-1] == 10
    assert len(h.test_rmse) == len(h.eval_step) == len(h.eval_time)
    # the L-BFGS phase (from step 3 on) lowers the loss below where Adam left it
    assert h.loss[-1] < h.loss[2]


def test_sklearn_peer_is_stopped_in_chunks():
    pytest.importorskip("sklearn")
    row = run_one(make_spec("kan_exp", "sklearn_lbfgs_tanh", 0, Budget(seconds=0.5), **TINY))
    assert row["status"] == "ok", row["error"]
    c = row["curve"]
    assert row["metrics"]["calls"] == len(c["eval_step"]) >= 2  # the probe, then the rest
    assert c["eval_step"] == sorted(c["eval_step"]) and c["eval_step"][0] <= 20


def test_estimator_default_is_the_estimator_on_raw_data():
    pytest.importorskip("sklearn")
    from sepneuron import SeparatedMLPRegressor
    from sepneuron.tasks import get_task, make_data

    spec = make_spec("kan_exp", "estimator_default", 2, Budget(steps=3), **TINY)
    assert spec["train"]["given"] == {"random_state": 2, "max_steps": 3}
    row = run_one(spec)
    assert row["status"] == "ok", row["error"]
    X, y, Xt, yt = make_data(get_task("kan_exp"), 64, 64, generator=2)
    reg = SeparatedMLPRegressor(max_steps=3, random_state=2).fit(X.numpy(), y[:, 0].numpy())
    sd = float(y.std())  # the bench's standardisation: (v - mean) / std of y_train
    expect = np.sqrt(np.mean(((reg.predict(Xt.numpy()) - yt[:, 0].numpy()) / sd) ** 2))
    assert row["test_rmse"] == pytest.approx(expect, rel=1e-9)
    assert SeparatedMLPRegressor().hidden_layer_sizes == "auto"   # a race of these:
    assert spec["model"]["race"]["hidden"] == [list(c) for c in AUTO_HIDDEN_CANDIDATES]
    assert spec["model"]["hidden"] == list(AUTO_HIDDEN_CANDIDATES[0])


def test_the_default_recipe_races_its_networks_in_its_budget():
    spec = make_spec("kan_exp", HEADLINE, 0, Budget(steps=40), **TINY)
    assert spec["select"]["hidden"] == [list(c) for c in AUTO_HIDDEN_CANDIDATES]
    row = run_one(spec)
    assert row["status"] == "ok", row["error"]
    sel = row["metrics"]["selection"]
    assert sel["hidden"] in spec["select"]["hidden"] and len(sel["validation_mse"]) == 2
    share = spec["select"]["share"]
    assert sel["race_steps"] == 2 * int(share * 40) and row["steps"] <= 40
    c = row["curve"]  # the winner's curve starts where the race ended
    assert c["eval_step"][0] == sel["race_steps"] and c["eval_time"][0] >= sel["race_seconds"]
    assert row["metrics"]["stages"][-1]["steps"] == row["steps"]


# -- suites ----------------------------------------------------------------------------------


def test_suites_fit_their_time():
    for s in SUITES.values():
        assert set(s.methods) <= set(METHODS) and set(s.tasks) <= set(TASKS)
    quick, paper, precision = SUITES["quick"], SUITES["paper"], SUITES["precision"]
    assert len(quick.tasks) * len(quick.methods) * len(quick.seeds) == 108
    assert estimated_wall_s(quick) <= 10 * 60
    # the paper's comparison, the headline and the best peers are all in quick, and
    # scikit-learn's MLP of the estimator's own size (its target is "the same size")
    assert {"sep_softplus_gauss_newton", "softplus_adam", HEADLINE, "estimator_default",
            "sklearn_lbfgs_tanh_small", "tanh_lbfgs"} <= set(quick.methods)
    small = make_spec("kan_exp", "sklearn_lbfgs_tanh_small", 0, Budget(seconds=8.0))
    assert small["model"]["hidden"] == list(DEFAULT_HIDDEN_SIZES)
    assert {"sklearn_lbfgs_tanh", "sklearn_lbfgs_tanh_small"} <= set(paper.methods)
    assert paper.tasks == tuple(TASKS) and len(paper.seeds) >= 3
    assert estimated_wall_s(paper) <= 90 * 60
    # the paper's question: every separated and plain recipe net at the same parameter count
    assert {*PAPER_QUESTION["separated"], *PAPER_QUESTION["plain"], HEADLINE} \
        <= set(paper.methods)
    assert precision.n_train == 10_000 and precision.budget == Budget(seconds=120.0)
    assert set(precision.tasks) == {"kan_exp", "smooth_3d"}
    assert SUITES["recipe"].methods == tuple(recipe_ablation().values())


def test_smooth_tasks_are_the_unkinked_ones():
    smooth = {n for n, t in TASKS.items() if t.smooth}
    assert smooth == {"product", "ridge_tanh", "sin_cos", "kan_exp", "smooth_3d",
                      "friedman1_3d", "friedman2", "friedman3"}


# -- analysis and report from hand-made rows --------------------------------------------------


def _rows(values: dict[str, dict[str, float]], seeds=(0, 1, 2)) -> list[dict]:
    """``values[task][method]`` is the median; seeds get 0.5x, 1x, 2x of it."""
    out = []
    for task, by_method in values.items():
        for method, v in by_method.items():
            for seed, f in zip(seeds, (0.5, 1.0, 2.0), strict=True):
                out.append({"task": task, "method": method, "seed": seed, "status": "ok",
                            "test_rmse": v * f, "budget": "8s"})
    return out


VALUES = {
    "kan_exp": {HEADLINE: 1e-4, "tanh_lbfgs": 2e-3, "relu_adam": 1e-2, "tanh_vplm": 2e-4,
                "sep_softplus_vplm": 1e-4, "estimator_default": 1e-4,
                "sklearn_lbfgs_tanh": 3e-3},
    "smooth_3d": {HEADLINE: 1e-3, "tanh_lbfgs": 2e-3, "relu_adam": 1e-2, "tanh_vplm": 5e-4,
                  "sep_softplus_vplm": 1e-3, "estimator_default": 1e-2,
                  "sklearn_lbfgs_tanh": 5e-3},
    "kink_abs": {HEADLINE: 1e-2, "tanh_lbfgs": 3e-3, "relu_adam": 2e-3, "tanh_vplm": 1e-2,
                 "sep_softplus_vplm": 1e-2, "estimator_default": 1e-3,
                 "sklearn_lbfgs_tanh": 4e-3},
}


def test_headline_ratios_and_verdict():
    rows = _rows(VALUES)
    rows.append({"task": "kan_exp", "method": "kan", "seed": 0, "status": "skipped",
                 "test_rmse": None})
    rows.append({"task": "smooth_3d", "method": "tanh_lm", "seed": 0, "status": "error",
                 "test_rmse": None})  # a failed peer is never the best one
    t = headline(rows).set_index("task")
    assert t.loc["kan_exp", "best_peer"] == "tanh_lbfgs"
    assert t.loc["kan_exp", "ratio"] == pytest.approx(20.0)
    assert t.loc["smooth_3d", "ratio"] == pytest.approx(2.0)
    assert t.loc["kink_abs", "best_peer"] == "relu_adam"
    assert t.loc["kink_abs", "ratio"] == pytest.approx(0.2)
    assert bool(t.loc["kan_exp", "smooth"]) and not bool(t.loc["kink_abs", "smooth"])
    v = headline_verdict(headline(rows))
    assert (v["smooth"], v["better"], v["need"]) == (2, 1, 2)
    assert v["worse"] == ["kink_abs"] and not v["met"]
    # a failed headline run on most seeds: infinite median, "more than 2x worse"
    bad = [r if not (r["method"] == HEADLINE and r["seed"] < 2) else {**r, "status": "error"}
           for r in rows]
    assert headline(bad).set_index("task").loc["kan_exp", "ratio"] == 0.0


def test_pairwise_and_seed_wins():
    rows = _rows(VALUES)
    t = pairwise(rows, [("sklearn_lbfgs_tanh", "estimator_default"), ("absent", HEADLINE)])
    col = "estimator_default vs sklearn_lbfgs_tanh"
    assert list(t.columns) == [col, col + ": seeds"]
    assert t.loc["kan_exp", col] == pytest.approx(30.0)
    assert t.loc["smooth_3d", col] == pytest.approx(0.5)
    assert t.loc["kan_exp", col + ": seeds"] == "3/3"
    assert t.loc["smooth_3d", col + ": seeds"] == "0/3"


def test_recipe_ablation_table():
    vals = {"kan_exp": {RECIPE_BASE: 1e-4, f"{RECIPE_BASE}+no_varpro": 1e-3,
                        "sep_softplus_vplm_gauss_newton": 5e-5},
            "smooth_3d": {RECIPE_BASE: 1e-4, f"{RECIPE_BASE}+no_varpro": 4e-4,
                          "sep_softplus_vplm_gauss_newton": 2e-4}}
    t = recipe_ablation_table(_rows(vals)).set_index("variant")
    assert t.loc["no_varpro", "kan_exp"] == pytest.approx(10.0)
    assert t.loc["no_varpro", "geomean"] == pytest.approx(math.sqrt(40.0))
    assert t.loc["no_varpro", "verdict"] == "helps"
    assert t.loc["tuner", "verdict"] == "mixed"  # better on one task, worse on the other
    assert "adam" not in t.index  # not run


def test_stages_table_medians():
    rows = []
    for seed, f in ((0, 1.0), (1, 2.0), (2, 4.0)):
        rows.append({"task": "kan_exp", "method": "sepneuron_stages", "seed": seed,
                     "status": "ok", "test_rmse": 1e-6 * f, "metrics": {"stages": [
                         {"test_rmse": 1e-4 * f, "train_rmse": 1e-5 * f, "time": 40.0},
                         {"test_rmse": 1e-6 * f, "train_rmse": 1e-7 * f, "time": 120.0}]}})
    t = stages_table(rows)
    assert list(t["stage"]) == [1, 2]
    assert t["test_rmse"].tolist() == pytest.approx([2e-4, 2e-6])
    assert t["seeds"].tolist() == [3, 3]
    assert stages_table(_rows(VALUES)).empty


def test_report_sections_render_from_a_store(tmp_path):
    pq = {t: {**d, "softplus_vplm": 1e-3, "sep_relu_vplm": 1e-3} for t, d in VALUES.items()}
    rows = _rows(pq)
    lines = "\n".join(compare_sections(rows, "8s"))
    for title in ("## Headline", "## The estimator against scikit-learn",
                  "## The paper's question under the library's trainer"):
        assert title in lines
    assert "## Residual stages" not in lines and "## Ablation of the recipe" not in lines
    assert "| kan_exp | smooth | 1.00e-04 | `tanh_lbfgs` | 2.00e-03 | 20x |" in lines
    assert "**not met**" in lines and "on 2 of 3 tasks" in lines
    with ResultStore(tmp_path) as store:
        for i, r in enumerate(rows):
            train = {"gamma": 0.3, "max_step": 0.2, "tune_curvature": True,
                     "optimizer": "adam", "lr": 3e-3}
            cfg = {"data": {"n_train": 1000, "n_test": 2000}, "train": train,
                   "model": {"type": "plain", "activation": "tanh", "hidden": [32, 32]}}
            store.add({**r, "key": f"k{i}", "config": cfg, "grid_n": 8, "threads": 1,
                       "n_params": 1185, "steps": 10, "train_time": 8.0,
                       "curve": {"eval_step": [0, 1], "eval_time": [0.0, 8.0],
                                 "test_rmse": [1.0, r["test_rmse"]]}})
    text = build_report(tmp_path, figures=False).read_text()
    assert text.index("## Headline") < text.index("## The paper's claims")
    assert "## All methods at equal budget" in text
    pytest.importorskip("matplotlib")
    text = build_report(tmp_path).read_text()  # with figures: still no training
    assert (tmp_path / "headline.png").exists() and "(headline.png)" in text
    assert not (tmp_path / "neuron_tuning.png").exists() and "neuron_tuning" not in text


def test_default_recipe_stands_in_for_the_plain_net_only_when_it_is_one():
    from sepneuron.bench.report_compare import paper_question_section

    vals = {t: {HEADLINE: 1e-4, "sep_softplus_vplm": 4e-4} for t in ("kan_exp", "kink_abs")}
    plain = {"model": {"type": "plain", "activation": "tanh", "hidden": [32, 32]},
             "train": {"optimizer": "lm", "output_layer": "lstsq", "init": "data"}}
    rows = [{**r, "config": plain} for r in _rows(vals)]
    text = "\n".join(paper_question_section(rows))
    assert "`sep_softplus_vplm` vs `sepneuron_default`" in text and "stands for" in text
    assert "| kan_exp | 0.25x (0/3) |" in text
    # a separated default, or an Adam-trained one, is not the plain net under the recipe
    for model, train in (({**plain["model"], "type": "separated"}, plain["train"]),
                         (plain["model"], {**plain["train"], "optimizer": "adam"})):
        rows = [{**r, "config": {"model": model, "train": train}} for r in _rows(vals)]
        assert paper_question_section(rows) == []


def test_default_recipe_stands_in_only_at_the_same_parameter_count():
    """A [12, 12] default is no stand-in for a [32, 32] plain net against [29, 29]
    separated ones."""
    from sepneuron.bench.report_compare import paper_question_section

    vals = {t: {HEADLINE: 1e-4, "sep_softplus_vplm": 4e-4} for t in ("kan_exp", "kink_abs")}
    cfg = {"model": {"type": "plain", "activation": "tanh"},
           "train": {"optimizer": "lm", "output_layer": "lstsq", "init": "data"}}
    for n_default, expect in ((1185, True), (205, False)):
        rows = [{**r, "config": cfg, "n_params": n_default if r["method"] == HEADLINE
                 else 1161} for r in _rows(vals)]
        assert bool(paper_question_section(rows)) == expect, n_default


def test_default_recipe_stands_in_beside_the_softplus_recipe_net():
    """The paper suite runs softplus_vplm but not tanh_vplm: the default recipe is still the
    tanh column, beside the SoftPlus one."""
    from sepneuron.bench.report_compare import paper_question_section

    vals = {t: {HEADLINE: 1e-4, "softplus_vplm": 2e-4, "sep_softplus_vplm": 4e-4}
            for t in ("kan_exp", "kink_abs")}
    train = {"optimizer": "lm", "output_layer": "lstsq", "init": "data"}
    rows = [{**r, "config": {"model": {"type": "plain", "activation": "tanh" if
                                       r["method"] == HEADLINE else "softplus"},
                             "train": train}} for r in _rows(vals)]
    text = "\n".join(paper_question_section(rows))
    assert "`sep_softplus_vplm` vs `sepneuron_default`" in text and "stands for" in text
    assert "`sep_softplus_vplm` vs `softplus_vplm`" in text
    assert "| kan_exp | 0.25x (0/3) | 0.5x (0/3) |" in text


def test_headline_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from sepneuron.bench.plots import plot_headline

    (path,) = plot_headline(headline(_rows(VALUES)), tmp_path)
    assert path.name == "headline.png" and path.stat().st_size > 1000
    assert plot_headline(headline([]), tmp_path) == []


def test_recipe_methods_name_their_recipe_and_old_methods_keep_theirs():
    for name in ("tanh_vplm", "softplus_vplm", "sep_softplus_vplm", "sep_relu_vplm"):
        train = make_spec("kan_exp", name, 0, Budget(seconds=8.0))["train"]
        assert (train["optimizer"], train["output_layer"], train["init"]) == \
            ("lm", "lstsq", "data")
    for name in ("sep_softplus_gauss_newton", "relu_adam", "tanh_lbfgs", "tanh_lm"):
        train = make_spec("kan_exp", name, 0, Budget(seconds=8.0))["train"]
        assert (train["output_layer"], train["init"]) == ("optimizer", "default")


def test_estimator_section_says_when_the_sizes_differ():
    """The estimator runs its own default network; the report must not call scikit-learn's
    [32, 32] MLP "the same size" when that default is [12, 12]; with both scikit-learn
    sizes present it has one column group per size, the same-size peer first."""
    from sepneuron.bench.report_compare import ESTIMATOR, SKLEARN, estimator_section

    small, large = SKLEARN
    vals = {"kan_exp": {ESTIMATOR: 1e-4, large: 1e-3}}
    for est, expect in (([32, 32], "the same as the estimator's"), ([12, 12], "not the same size")):
        rows = [{**r, "config": {"model": {"hidden": est if r["method"] == ESTIMATOR
                                           else [32, 32]}}} for r in _rows(vals)]
        text = "\n".join(estimator_section(rows))
        assert expect in text and "| kan_exp | 10x | 3/3 | beats |" in text, text
    vals = {"kan_exp": {ESTIMATOR: 1e-4, large: 1e-3, small: 5e-5}}
    sizes = {ESTIMATOR: [12, 12], small: [12, 12], large: [32, 32]}
    rows = [{**r, "config": {"model": {"hidden": sizes[r["method"]]}}} for r in _rows(vals)]
    text = "\n".join(estimator_section(rows))
    assert "| kan_exp | 0.5x | 0/3 | **does not beat** | 10x | 3/3 | beats |" in text, text
    assert text.index(f"`{small}`, hidden sizes [12, 12]: the same") < text.index(f"`{large}`")
    assert f"beats `{small}` on 0 of 1 tasks** (target: every quick-suite task, against the " \
        "same size)." in text and f"beats `{large}` on 1 of 1 tasks**." in text, text
