"""The conditioning ablation in the benchmark (issue #4): the method variants and the
``ablation`` suite, the analysis against hand-computed ratios on a hand-made store, the
report section through the CLI, and the stability of the quick and paper suites' run keys."""

from __future__ import annotations

import hashlib
import math
import sqlite3

import pytest

from sepneuron.bench import METHODS, ResultStore, make_spec, make_specs, run_key
from sepneuron.bench.ablation import ablation_verdict, component_verdicts, conditioning_ablation
from sepneuron.bench.methods import (
    ABLATION_VARIANTS,
    CONDITIONING_COMPONENTS,
    ablation_methods,
    ablation_parts,
    get_method,
)
from sepneuron.bench.report import build_report
from sepneuron.bench.report_ablation import ablation_section
from sepneuron.bench.suites import SUITES, Budget
from sepneuron.cli import main

# -- run keys of the existing suites ----------------------------------------------------------

# The sha256 of the quick (paper) suite's run keys, in make_specs order. A benchmark folder
# resumes by these keys, so adding methods (the ablation variants) must not move them; they
# are the same with and without the variants. If this fails because a TrainConfig field or
# default or the spec format changed on purpose, stored quick runs will be re-run: update
# the value and say so in the commit. History: f058432480f0940c / 057dd91fb9d5cc83 until
# TrainConfig.tune_every was added (64cbc01), which changed every key.
QUICK_KEYS_SHA = "85fc0a0e3da8e9b3"
PAPER_KEYS_SHA = "9934a9ffa78af4c8"

PAPER_METHODS = (
    "sep_relu_paper", "sep_relu_newton", "sep_relu_gauss_newton", "sep_relu_grad",
    "sep_softplus_paper", "sep_softplus_newton", "sep_softplus_gauss_newton",
    "sep_softplus_grad", "relu_sgd", "relu_adam", "softplus_sgd", "softplus_adam",
    "leaky_relu_sgd", "leaky_relu_adam", "silu_sgd", "silu_adam", "tanh_sgd", "tanh_adam",
    "tanh_lbfgs", "tanh_lm", "kan",
)


OLD_QUICK_METHODS = (
    "sep_relu_paper", "sep_relu_newton", "sep_relu_gauss_newton",
    "sep_softplus_paper", "sep_softplus_newton", "sep_softplus_gauss_newton",
    "relu_adam", "softplus_adam", "tanh_lbfgs")


def _keys(tasks, methods, seeds, budget) -> list[str]:
    specs = make_specs(tasks, methods, seeds, budget, n_train=1000, n_test=2000,
                       hidden=(32, 32), grid_n=64)
    return [run_key(spec) for spec in specs]


def _sha(keys: list[str]) -> str:
    return hashlib.sha256("".join(keys).encode()).hexdigest()[:16]


# The quick and paper suites were redefined by issue 12 (new methods, a shorter paper
# budget); the runs of their old selections keep their keys, whatever TrainConfig's
# defaults are (the methods older than issue 12 pin them: methods.LEGACY_CONFIG).


def test_old_quick_selection_run_keys_unchanged():
    keys = _keys(("kan_exp", "radial_sin_2pi", "kink_abs", "smooth_3d"), OLD_QUICK_METHODS,
                 (0, 1, 2), Budget(seconds=8.0))
    assert len(keys) == 108 == len(set(keys))
    assert _sha(keys) == QUICK_KEYS_SHA, "the old quick runs' keys changed (see the comment)"


def test_old_paper_selection_run_keys_unchanged():
    from sepneuron.tasks import TASKS

    keys = _keys(tuple(TASKS), PAPER_METHODS, (0, 1, 2, 3, 4), Budget(seconds=30.0))
    assert _sha(keys) == PAPER_KEYS_SHA, "the old paper runs' keys changed"


def test_old_methods_pin_the_old_defaults():
    from dataclasses import fields

    from sepneuron.bench.methods import LEGACY_CONFIG, METHOD_CONFIG
    from sepneuron.train import TrainConfig

    have = {f.name for f in fields(TrainConfig)}
    for name in (*OLD_QUICK_METHODS, *PAPER_METHODS, "tanh_adam_lbfgs"):
        m = METHODS[name]
        if m.model == "kan":
            continue
        assert m.legacy
        own = {*METHOD_CONFIG[m.optimizer], *m.extra, "rule", "eval_every"}
        train = make_spec("kan_exp", m, 0, Budget(seconds=8.0))["train"]
        for k, v in LEGACY_CONFIG.items():
            if k in have and k not in own:
                assert train[k] == v, (name, k)
        # Adam's step: the old default, whatever TrainConfig's is now
        if m.optimizer in ("adam", "separated"):
            assert train["lr"] == 3e-3 and train["optimizer"] == "adam"


def test_base_method_specs_do_not_depend_on_the_conditioning_field():
    # the keys of a method without components are those of a Method without the field
    for name in ("sep_relu_newton", "sep_softplus_paper", "relu_adam", "tanh_lbfgs"):
        m = METHODS[name]
        assert m.conditioning == () and "conditioning" not in m.train_overrides()
        spec = make_spec("kan_exp", m, 0, Budget(seconds=8.0))
        assert spec["train"]["conditioning"] == ()


# -- variants and the suite -------------------------------------------------------------------


def test_components_and_rules_are_read_from_their_registries():
    from sepneuron.bench.methods import RULE_NAMES
    from sepneuron.conditioning import CONDITIONERS
    from sepneuron.functional import KINDS
    from sepneuron.tuning import RULES

    assert tuple(CONDITIONERS) == CONDITIONING_COMPONENTS
    assert list(ABLATION_VARIANTS) == ["none", *CONDITIONERS, "all"]
    assert tuple(RULES) == RULE_NAMES
    separated = {(m.activation, m.rule) for m in METHODS.values() if m.family == "separated"}
    assert separated == {(k, r) for k in KINDS for r in RULES}


@pytest.mark.parametrize("kind", ["relu", "softplus"])
@pytest.mark.parametrize("rule", ["newton", "gauss_newton"])
def test_variants_registered_with_conditioning_in_the_key(kind, rule):
    names = ablation_methods(kind, rule)
    assert names[0] == f"sep_{kind}_{rule}" and len(names) == 7
    base_spec = make_spec("kan_exp", names[0], 0, Budget(steps=10))
    keys = {run_key(base_spec)}
    for name, (variant, comps) in zip(names, ABLATION_VARIANTS.items(), strict=True):
        m = get_method(name)  # what `--methods` accepts
        assert ablation_parts(name) == (names[0], variant)
        assert (m.activation, m.rule) == (kind, rule)
        spec = make_spec("kan_exp", name, 0, Budget(steps=10))
        assert tuple(spec["train"]["conditioning"]) == comps
        if variant != "none":
            assert m.family == "ablation" and name == f"sep_{kind}_{rule}+{variant}"
            # only the components (and the name) differ from the base run
            same = {**spec["train"], "conditioning": ()}
            assert same == base_spec["train"] and spec["model"] == base_spec["model"]
        keys.add(run_key(spec))
    assert len(keys) == 7
    assert ablation_parts("sep_relu_paper") is None and ablation_parts("relu_adam") is None


def test_ablation_suite_definition():
    s = SUITES["ablation"]
    assert s.tasks == ("kan_exp", "sin_cos", "abs_planes_3d") and s.seeds == (0, 1, 2)
    assert s.budget == Budget(steps=1500)  # steps: wall-clock noise does not decide
    assert s.methods == (*ablation_methods("relu"), *ablation_methods("softplus"))
    assert len(s.methods) == 14 and all(m in METHODS for m in s.methods)
    specs = make_specs(s.tasks, s.methods, s.seeds, s.budget)
    assert len(specs) == 126
    assert all(sp["train"]["rule"] == "newton" and sp["train"]["steps"] == 1500
               and sp["train"]["max_time"] is None for sp in specs)


def test_methods_command_lists_the_variants(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("sep_softplus_newton+all "))
    assert "ablation" in line.split() and "ablation" in line  # family and suite
    assert "sep_relu_gauss_newton+orthogonalize" in out


# -- the analysis on a hand-made store --------------------------------------------------------


def _row(task, method, seed, rmse=None, steps=None, per_step=0.01, status="ok"):
    spec = make_spec(task, method, seed, Budget(steps=30))
    row = {"key": run_key(spec), "task": task, "method": method, "seed": seed,
           "budget": "30 steps", "status": status, "config": spec, "threads": 1,
           "n_params": 100, "grid_n": spec["grid_n"]}
    if status == "ok":
        steps = steps or [0, 10, 20, 30][: len(rmse)]
        row.update(test_rmse=rmse[-1], train_rmse=rmse[-1], steps=steps[-1],
                   train_time=per_step * steps[-1], dead_fraction=[0.0, 0.0],
                   curve={"eval_step": steps, "eval_time": [per_step * s for s in steps],
                          "test_rmse": rmse, "train_rmse": rmse})
    else:
        row["error"] = "FloatingPointError: gave up"
    return row


N, C, A = "sep_relu_newton", "sep_relu_newton+compensate", "sep_relu_newton+all"

HAND_ROWS = [
    # kan_exp: none's finals .2 .3 .1 -> target (median) .2; none reaches it at steps
    # 30, never, 20 -> median 30 steps, 0.3 s
    _row("kan_exp", N, 0, [1, .5, .3, .2]),
    _row("kan_exp", N, 1, [1, .6, .4, .3]),
    _row("kan_exp", N, 2, [1, .4, .2, .1]),
    # compensate: twice the time per step; finals .1 .15 .05 (median .1: ratio .5);
    # reaches .2 at steps 20, 30, 10 -> median 20 steps (ratio 2/3), 0.4 s (ratio 4/3)
    _row("kan_exp", C, 0, [1, .3, .15, .1], per_step=0.02),
    _row("kan_exp", C, 1, [1, .5, .25, .15], per_step=0.02),
    _row("kan_exp", C, 2, [1, .2, .1, .05], per_step=0.02),
    # all: one failed run (inf), finals .7 .25 -> median .7 (ratio 3.5); never reaches .2
    _row("kan_exp", A, 0, status="error"),
    _row("kan_exp", A, 1, [1, .9, .8, .7]),
    _row("kan_exp", A, 2, [1, .5, .3, .25]),
    # sin_cos, one seed: target .4, none reaches it at step 20 (0.2 s)
    _row("sin_cos", N, 0, [1, .5, .4]),
    # compensate: final .36 (ratio .9), reaches .4 at step 20 = 0.4 s (time 2, steps 1)
    _row("sin_cos", C, 0, [1, .6, .36], per_step=0.02),
    # all: final .5 (ratio 1.25), never
    _row("sin_cos", A, 0, [1, .45, .5]),
    # not part of a relu/newton ablation
    _row("kan_exp", "sep_softplus_newton", 0, [1, .5, .1]),
    _row("kan_exp", "sep_relu_paper", 0, [1, .5, .1]),
    _row("kan_exp", "relu_adam", 0, [1, .5, .1]),
]


@pytest.fixture
def hand_store(tmp_path):
    with ResultStore(tmp_path) as store:
        for row in HAND_ROWS:
            store.add(row)
        rows = store.rows()
    return tmp_path, rows


def test_ablation_ratios_by_hand(hand_store):
    _, rows = hand_store
    (g,) = conditioning_ablation(rows)  # softplus has no variant: no group for it
    assert (g.kind, g.rule, g.base) == ("relu", "newton", N)
    assert sorted(g.tasks) == ["kan_exp", "sin_cos"] and g.variants == ["none", "compensate", "all"]
    none, comp, all_ = (g.cells[("kan_exp", v)] for v in g.variants)
    assert none.target == pytest.approx(.2) and none.median_final == pytest.approx(.2)
    assert none.median_time == pytest.approx(.3) and none.median_steps == 30
    assert none.reached == 2 and none.rmse_ratio == pytest.approx(1.0)
    assert comp.rmse_ratio == pytest.approx(.5)
    assert comp.time_ratio == pytest.approx(4 / 3) and comp.step_ratio == pytest.approx(2 / 3)
    assert comp.per_step_ratio == pytest.approx(2.0) and comp.reached == 3
    assert all_.failed == 1 and all_.final[0] == math.inf
    assert all_.rmse_ratio == pytest.approx(3.5)
    assert all_.time_ratio == math.inf and all_.step_ratio == math.inf and all_.reached == 0
    sc = g.cells[("sin_cos", "compensate")]
    assert sc.target == pytest.approx(.4) and sc.rmse_ratio == pytest.approx(.9)
    assert sc.time_ratio == pytest.approx(2.0) and sc.step_ratio == pytest.approx(1.0)
    assert g.cells[("sin_cos", "all")].rmse_ratio == pytest.approx(1.25)

    s = g.summary["compensate"]
    assert s.rmse == pytest.approx(math.sqrt(.5 * .9)) and (s.better, s.tasks) == (2, 2)
    assert s.time == pytest.approx(math.sqrt(4 / 3 * 2)) and s.reached == 2
    assert s.steps == pytest.approx(math.sqrt(2 / 3 * 1)) and s.per_step == pytest.approx(2)
    assert s.verdict == "helps"
    s = g.summary["all"]
    assert s.rmse == pytest.approx(math.sqrt(3.5 * 1.25)) and s.better == 0
    assert s.reached == 0 and s.time == s.steps == math.inf  # never
    assert s.verdict == "does not help"
    pooled = component_verdicts([g])
    assert pooled["compensate"]["verdict"] == "helps" and pooled["all"]["cells"] == 2


def test_ablation_verdict_rule():
    assert ablation_verdict([.5, .9, .8]) == "helps"
    assert ablation_verdict([.5, .9, 1.1]) == "helps"        # 2/3 better, mean .79
    assert ablation_verdict([.5, 1.2, 1.1]) == "mixed"       # 1/3 better, mean .87
    assert ablation_verdict([.95, 1.2, 1.1]) == "does not help"
    assert ablation_verdict([.9, .95, 2.0]) == "mixed"       # 2/3 better, mean 1.2
    assert ablation_verdict([.98, .99, .97]) == "mixed"      # better, but by under 5%
    assert ablation_verdict([.97, 1.01, 1.02]) == "does not help"
    assert ablation_verdict([math.inf, .5]) == "mixed"
    assert ablation_verdict([1.0, 1.0]) == "does not help"   # no effect is no help
    assert ablation_verdict([math.nan]) == "n/a"


def test_ablation_section_text(hand_store):
    folder, rows = hand_store
    text = "\n".join(ablation_section(conditioning_ablation(rows), "30 steps"))
    assert "## Ablation of the conditioning components" in text
    assert "All components are off by default" in text and "conditioning = ()" in text
    assert "### ReLU analog, rule `newton` (none = `sep_relu_newton`)" in text
    assert "| none | 1 | - | 1 | 1 | 2/2 | 1 | (reference) |" in text
    assert "| `compensate` | 0.671 | 2/2 | 1.63 | 0.816 | 2/2 | 2 | **helps** |" in text
    assert "| `all` | 2.09 | 0/2 | never | never | 0/2 | 1 | **does not help** |" in text
    assert "| kan_exp | `compensate` | 1.00e-01 | 0.5 | 0.4 | 1.33 | 20 | 0.667 | 3/3 | 0 |" \
        in text
    assert "| kan_exp | `all` | 7.00e-01 | 3.5 | never | never | never | never | 0/3 | 1 |" in text
    assert "Components that help here: `compensate`; the others" in text
    assert "All stay off by default" in text
    # the whole report: present with variants, absent without
    report = build_report(folder, figures=False).read_text()
    assert "## Ablation of the conditioning components" in report
    assert report.index("## The paper's claims") < report.index("## Ablation") \
        < report.index("## All methods at equal budget")
    with ResultStore(folder) as store:
        store._conn.execute("DELETE FROM runs WHERE method LIKE '%+%'")
        store._conn.commit()
    assert "## Ablation" not in build_report(folder, figures=False).read_text()


# -- through the CLI --------------------------------------------------------------------------


def test_bench_cli_ablation_end_to_end(tmp_path):
    out = tmp_path / "abl"
    args = ["bench", "--suite", "ablation", "--tasks", "kan_exp", "--methods",
            "sep_relu_newton", "sep_relu_newton+normalize_activations", "--seeds", "0",
            "--budget", "20", "--n-train", "200", "--n-test", "200", "--out", str(out),
            "--jobs", "1", "--no-progress", "--no-report"]
    assert main(args) == 0
    con = sqlite3.connect(out / "results.sqlite")
    try:
        got = con.execute(
            "SELECT method, status, steps, config FROM runs ORDER BY method").fetchall()
    finally:
        con.close()
    assert [(m, s, n) for m, s, n, _ in got] == [
        ("sep_relu_newton", "ok", 20), ("sep_relu_newton+normalize_activations", "ok", 20)]
    assert '"conditioning": ["normalize_activations"]' in got[1][3]
    assert '"conditioning": []' in got[0][3]
    assert main(["report", str(out), "--no-figures"]) == 0
    report = (out / "report.md").read_text()
    assert "## Ablation of the conditioning components" in report
    assert "### ReLU analog, rule `newton` (none = `sep_relu_newton`)" in report
    assert "| `normalize_activations` |" in report and "20 steps" in report

