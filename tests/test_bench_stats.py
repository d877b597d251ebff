"""The statistics every bench analysis shares (bench/stats.py), against hand-computed values."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from sepneuron.bench.stats import (
    final_rmse,
    geomean,
    median,
    method_order,
    runs_frame,
    spread,
    task_order,
)

pytest.importorskip("pandas")


def test_median_drops_missing_and_keeps_inf():
    assert median([3.0, None, math.nan, 1.0]) == 2.0          # mean of the two middle values
    assert median([1.0, math.inf, math.inf]) == math.inf      # half or more never: never
    assert median([1.0, 2.0, math.inf]) == 2.0
    assert math.isnan(median([None, math.nan]))
    assert spread([2.0, None, -1.0, math.nan]) == (-1.0, 2.0)


def test_geomean():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([2.0, 8.0, 0.0, -1.0, None, math.nan]) == pytest.approx(4.0)
    assert geomean([2.0, math.inf]) == math.inf
    assert math.isnan(geomean([0.0, None]))


def test_final_rmse_and_frame():
    rows = [{"task": "kan_exp", "method": "relu_adam", "seed": 0, "status": "ok",
             "test_rmse": 0.5, "steps": 10, "train_time": 1.0},
            {"task": "kan_exp", "method": "relu_adam", "seed": 1, "status": "error"},
            {"task": "kan_exp", "method": "relu_adam", "seed": 2, "status": "ok",
             "test_rmse": math.nan}]
    assert [final_rmse(r) for r in rows] == [0.5, math.inf, math.inf]
    df = runs_frame(rows)
    assert list(df["final"]) == [0.5, math.inf, math.inf]
    assert df["row"].iloc[1] is rows[1] and math.isnan(df["steps"].iloc[1])
    assert runs_frame([]).empty


def test_registry_order():
    assert task_order("product") == 0 < task_order("kan_exp") < task_order("no such task")
    assert method_order("sep_relu_paper") == 0 < method_order("no such method")


def test_bench_imports_without_pandas():
    """pandas is the bench extra: the package and the CLI import without it."""
    code = ("import sys; sys.modules['pandas'] = None; "
            "import sepneuron.bench, sepneuron.bench.report, sepneuron.bench.suites, sepneuron.cli")
    subprocess.run([sys.executable, "-c", code], check=True)
