"""The benchmark: analysis against hand-computed numbers, the store, and the CLI end to end
(in-process, and a subprocess killed mid-run and resumed)."""

from __future__ import annotations

import csv
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sepneuron.bench import METHODS, ResultStore, make_spec, parse_budget, run_key, run_one
from sepneuron.bench.analysis import best_rules, claims_cells, verdict
from sepneuron.bench.stats import first_reach
from sepneuron.bench.suites import SUITES, Budget
from sepneuron.cli import main

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


# -- budgets, methods, specs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, steps, seconds",
    [("2000", 2000, None), ("30s", None, 30.0), ("2.5s", None, 2.5), (" 8 S ", None, 8.0)],
)
def test_parse_budget(text, steps, seconds):
    b = parse_budget(text)
    assert (b.steps, b.seconds) == (steps, seconds)


@pytest.mark.parametrize("bad", ["", "s", "-3", "1e3", "10m", "0", "0s"])
def test_parse_budget_rejects(bad):
    with pytest.raises(ValueError):
        parse_budget(bad)


def test_registry_has_the_issue_methods():
    for kind in ("relu", "softplus"):
        for rule in ("paper", "newton", "gauss_newton", "grad"):
            assert f"sep_{kind}_{rule}" in METHODS
    for act in ("relu", "softplus", "leaky_relu", "silu", "tanh"):
        assert {f"{act}_sgd", f"{act}_adam"} <= set(METHODS)
    assert {"tanh_lbfgs", "tanh_lm", "kan"} <= set(METHODS)
    quick = SUITES["quick"]
    assert len(quick.tasks) >= 4 and len(quick.seeds) >= 3
    assert {"relu_adam", "softplus_adam", "tanh_lbfgs"} <= set(quick.methods)


@pytest.mark.parametrize("task", ["kan_exp", "smooth_3d"])
def test_equal_parameter_counts_within_ten_percent(task):
    import torch

    from sepneuron.baselines import PlainMLP, count_parameters
    from sepneuron.layers import SeparatedMLP

    counts = {}
    for name in ("sep_relu_newton", "sep_softplus_paper", "relu_adam", "tanh_lbfgs"):
        spec = make_spec(task, name, 0, Budget(steps=1))
        m = spec["model"]
        dim = 2 if task == "kan_exp" else 3
        cls = SeparatedMLP if m["type"] == "separated" else PlainMLP
        counts[name] = count_parameters(cls(dim, m["hidden"], 1, m["activation"],
                                            dtype=torch.float64))
    ref = counts["relu_adam"]
    assert all(abs(c - ref) <= 0.1 * ref for c in counts.values()), counts
    lm = make_spec(task, "tanh_lm", 0, Budget(steps=1))
    assert lm["train"]["optimizer"] == "lm" and sum(lm["model"]["hidden"]) <= 30


def test_spec_reads_trainconfig_defaults_and_key_tracks_config():
    from dataclasses import asdict

    from sepneuron.settings import DEFAULT_PATIENCE, DEFAULT_STAGES
    from sepneuron.train import TrainConfig

    # the default recipe is TrainConfig() with only the budget (and evaluations) set, in
    # residual stages after plateaus as the estimator's stages="auto"
    spec = make_spec("kan_exp", "sepneuron_default", 3, Budget(seconds=2.0))
    cfg = asdict(TrainConfig(patience=DEFAULT_PATIENCE))
    assert {k: v for k, v in spec["train"].items()
            if k not in ("steps", "max_time", "seed", "eval_every")} == \
        {k: v for k, v in cfg.items() if k not in ("steps", "max_time", "seed", "eval_every")}
    assert spec["train"]["seed"] == 3 and spec["train"]["max_time"] == 2.0
    assert spec["stages"] == DEFAULT_STAGES and spec["stage_schedule"] == "plateau"
    # the methods older than issue 12 pin the defaults they were benchmarked with
    spec = make_spec("kan_exp", "sep_softplus_newton", 0, Budget(seconds=2.0))
    assert spec["train"]["gamma"] == 0.3 and spec["train"]["max_step"] == 0.2
    assert spec["train"]["rule"] == "newton" and spec["train"]["max_time"] == 2.0
    same = make_spec("kan_exp", "sep_softplus_newton", 0, Budget(seconds=2.0))
    assert run_key(spec) == run_key(same)
    other = make_spec("kan_exp", "sep_softplus_newton", 1, Budget(seconds=2.0))
    assert run_key(other) != run_key(spec)
    spec["train"]["gamma"] *= 2
    assert run_key(spec) != run_key(other)


def test_failing_run_is_an_error_row():
    spec = make_spec("kan_exp", "relu_adam", 0, Budget(steps=2))
    spec["train"]["lr"] = -1.0  # fit() rejects it
    row = run_one(spec)
    assert row["status"] == "error" and "lr" in row["error"]
    assert row["key"] == run_key(spec) and row["wall_time"] >= 0


# -- analysis against hand-computed numbers -------------------------------------------------


def _row(method, times, steps, rmses, seed=0, task="kan_exp"):
    return {"task": task, "method": method, "seed": seed, "status": "ok",
            "test_rmse": rmses[-1], "train_time": times[-1], "steps": steps[-1],
            "curve": {"eval_time": times, "eval_step": steps, "test_rmse": rmses}}


def test_first_reach():
    curve = {"eval_time": [0, 1, 2], "eval_step": [0, 5, 10], "test_rmse": [1.0, 0.3, 0.1]}
    assert first_reach(curve, 0.3) == (1.0, 5)
    assert first_reach(curve, 0.05) is None


def test_claims_ratios_and_verdicts():
    rows = [
        _row("relu_adam", [0, 1, 2, 3, 4], [0, 10, 20, 30, 40], [1, .5, .2, .1, .1]),
        _row("sep_relu_newton", [0, .5, 1, 1.5], [0, 5, 10, 15], [1, .2, .05, .01]),
        _row("sep_relu_paper", [0, 1, 2, 3], [0, 5, 10, 15], [1, .5, .3, .2]),
    ]
    cells = {c.rule: c for c in claims_cells(rows)}
    newton, paper = cells["newton"], cells["paper"]
    # baseline reaches its final 0.1 at t=3 (step 30); newton reaches 0.1 at t=1 (step 10)
    assert newton.time == pytest.approx(3.0) and newton.steps == pytest.approx(3.0)
    assert newton.accuracy == pytest.approx(10.0)
    assert verdict(newton) == ("holds", "partly", "partly")
    assert paper.time == 0.0 and paper.reached == 0  # never
    assert paper.accuracy == pytest.approx(0.5)
    assert verdict(paper) == ("no", "no", "does not hold")
    best = best_rules(list(cells.values()))
    assert best["relu"][0] == "newton" and best["relu"][1] == pytest.approx(10.0)
    assert "softplus" not in best
    # the grad ablation is shown but never chosen for the verdict, however well it does
    grad = _row("sep_relu_grad", [0, .1], [0, 1], [1, 1e-6])
    cells = claims_cells([*rows, grad])
    assert any(c.rule == "grad" for c in cells) and best_rules(cells)["relu"][0] == "newton"


def test_claims_hold():
    rows = [
        _row("softplus_adam", [0, 10], [0, 100], [1.0, 0.1]),
        _row("sep_softplus_gauss_newton", [0, 2, 10], [0, 10, 50], [1.0, 0.05, 1e-3]),
    ]
    (cell,) = claims_cells(rows)
    assert cell.time == pytest.approx(5.0) and cell.accuracy == pytest.approx(100.0)
    assert verdict(cell)[2] == "holds"


# -- store ------------------------------------------------------------------------------------


def test_store_roundtrip_and_atomic_csv(tmp_path):
    with ResultStore(tmp_path) as store:
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = {"key": "k1", "task": "t", "method": "m", "seed": 0, "budget": "1s",
               "status": "ok", "test_rmse": 0.1 + 0.2, "config": {"a": 1},
               "curve": {"x": [1.0]}, "dead_fraction": [0.5, 0.0], "train_rmse": math.nan}
        store.add(row)
        store.add(row)  # same key: replaced, not duplicated
        assert store.count() == 1
        (back,) = store.rows()
        assert back["test_rmse"] == 0.1 + 0.2 and back["config"] == {"a": 1}
        assert back["train_rmse"] is None  # NaN stored as NULL
        path = store.export_csv()
    with path.open() as f:
        (rec,) = list(csv.DictReader(f))
    assert float(rec["test_rmse"]) == 0.1 + 0.2 and float(rec["dead_fraction_mean"]) == 0.25
    assert not list(tmp_path.glob(".results-*"))  # no temporary file left behind


# -- CLI end to end ---------------------------------------------------------------------------


def _db_rows(folder: Path) -> list[tuple]:
    con = sqlite3.connect(folder / "results.sqlite")
    try:
        return con.execute(
            "SELECT key, task, method, seed, status, test_rmse, finished_at, curve FROM runs "
            "ORDER BY key").fetchall()
    finally:
        con.close()


def test_bench_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny"
    args = ["bench", "--tasks", "kan_exp,smooth_3d", "--methods", "sep_relu_newton",
            "relu_adam", "--seeds", "0", "--budget", "30", "--out", str(out), "--jobs", "1",
            "--no-progress"]
    assert main(args) == 0
    rows = _db_rows(out)
    assert len(rows) == 4 and all(r[4] == "ok" for r in rows)
    assert {(r[1], r[2]) for r in rows} == {
        (t, m) for t in ("kan_exp", "smooth_3d") for m in ("sep_relu_newton", "relu_adam")}
    with (out / "results.csv").open() as f:
        csv_rows = {r["key"]: r for r in csv.DictReader(f)}
    assert len(csv_rows) == 4
    for key, _, _, _, _, rmse, _, _ in rows:
        assert float(csv_rows[key]["test_rmse"]) == rmse  # exactly the stored value
        assert csv_rows[key]["steps"] == "30"
    report = (out / "report.md").read_text()
    assert "## The paper's claims" in report and "## All methods at equal budget" in report
    assert "## Dead neurons" in report and "30 steps" in report
    assert "| kan_exp | newton |" in report and "`relu_adam`" in report
    for name in ("curves_kan_exp", "curves_smooth_3d", "error_map_kan_exp",
                 "error_map_smooth_3d", "activations", "neuron_tuning"):
        png = out / f"{name}.png"
        assert png.stat().st_size > 1000 and f"({name}.png)" in report
    # the report shows the stored RMSEs
    med = f"{rows[0][5]:.2e}"
    assert med in report
    # the same command again trains nothing and duplicates nothing
    capsys.readouterr()
    assert main([*args, "--no-report"]) == 0
    assert "4 runs already in" in capsys.readouterr().out
    assert _db_rows(out) == rows
    # the report rebuilds from the database alone
    (out / "report.md").unlink()
    assert main(["report", str(out), "--no-figures"]) == 0

    def tables(text):  # everything from the claims to the figures
        return text.split("## The paper's claims")[1].split("## Figures")[0]

    assert tables((out / "report.md").read_text()) == tables(report)


def test_bench_resumes_after_sigkill(tmp_path):
    out = tmp_path / "resume"
    cmd = [sys.executable, "-m", "sepneuron", "bench", "--tasks", "kan_exp", "--methods",
           "relu_adam", "softplus_adam", "--seeds", "0", "1", "--budget", "0.4s",
           "--out", str(out), "--no-progress", "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*cmd, "--jobs", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first: list[tuple] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:  # connect() would create the file: wait for the bench to make it
                first = _db_rows(out) if (out / "results.sqlite").exists() else []
            except sqlite3.OperationalError:  # schema not there yet, or locked
                first = []
            if first:
                break
            time.sleep(0.05)
        assert first, "no run was committed before the deadline"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = _db_rows(out)
    assert 1 <= len(before) < 4  # killed part-way
    # rerun the same selection in parallel processes: completes, keeps the earlier rows
    done = subprocess.run([*cmd, "--jobs", "2"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} runs already in" in done.stdout
    after = _db_rows(out)
    assert len(after) == 4 and len({r[0] for r in after}) == 4
    assert all(r[4] == "ok" for r in after)
    assert {r[0]: r for r in after if r[0] in {b[0] for b in before}} == {b[0]: b for b in before}
