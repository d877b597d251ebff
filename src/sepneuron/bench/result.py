"""One run's result: the single declaration of a row of the benchmark.

:class:`RunResult` lists every column a run's row has, with its SQL type and meaning; the
store's table (:func:`runs_table_sql`), its JSON columns, the CSV export's columns
(:data:`CSV_COLUMNS`) and the first fields of every row (:func:`base_row`, used by
:func:`~sepneuron.bench.runner.run_one` and for a run whose worker died,
:func:`crash_row`) all derive from it. Rows travel as plain dicts (they cross process and
cluster boundaries as JSON-able data); the dataclass is their schema.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .keys import run_key
from .suites import Budget

__all__ = ["RunResult", "COLUMNS", "JSON_COLUMNS", "ADDED_COLUMNS", "CSV_COLUMNS",
           "runs_table_sql", "base_row", "crash_row", "utc_now"]


def _col(sql: str, doc: str, *, json: bool = False, csv: bool = True,
         added: bool = False) -> Any:
    """A column: SQL type, meaning, JSON-encoded?, in the CSV?, added after the first
    release (then older databases get it on opening)?"""
    return dataclasses.field(default=None, metadata={
        "sql": sql, "doc": doc, "json": json, "csv": csv, "added": added})


@dataclass
class RunResult:
    """The row of one finished run (every field may be None until the run fills it)."""

    key: str = _col("TEXT PRIMARY KEY", "run key: hash of the configuration (keys.py)")
    task: str = _col("TEXT NOT NULL", "task name")
    method: str = _col("TEXT NOT NULL", "method name")
    seed: int = _col("INTEGER NOT NULL", "seed of the data and the weights")
    budget: str = _col("TEXT NOT NULL", '"8s" or "2000 steps"')
    status: str = _col("TEXT NOT NULL", "ok | error | skipped")
    test_rmse: float | None = _col("REAL", "final, on held-out points, standardised units")
    train_rmse: float | None = _col("REAL", "final, on the training points")
    train_time: float | None = _col("REAL", "training seconds (evaluation excluded)")
    wall_time: float | None = _col("REAL", "seconds of the whole run (data, fit, evaluation)")
    steps: int | None = _col("INTEGER", "optimizer steps done")
    n_params: int | None = _col("INTEGER", "trainable parameters")
    threads: int | None = _col("INTEGER", "torch threads of the run")
    dead_fraction: list[float] | None = _col(
        "TEXT", "JSON: final fraction of dead neurons per layer (CSV: its mean)", json=True)
    finished_at: str | None = _col("TEXT", "ISO time (UTC) the run ended")
    error: str | None = _col("TEXT", "the message (and traceback) of a failed run")
    config: dict[str, Any] | None = _col("TEXT NOT NULL", "JSON: the full run spec",
                                         json=True, csv=False)
    curve: dict[str, Any] | None = _col(
        "TEXT", "JSON: eval_step, eval_time, test_rmse, train_rmse, ...", json=True, csv=False)
    metrics: dict[str, Any] | None = _col(
        "TEXT", "JSON: stop reason, events, dead_max, q/c/d spread, ...", json=True, csv=False)
    versions: dict[str, str] | None = _col("TEXT", "JSON: sepneuron, torch, numpy, python",
                                           json=True, csv=False)
    grid: bytes | None = _col("BLOB", "float32 (grid_n, grid_n): model - target on the grid",
                              csv=False)
    grid_n: int | None = _col("INTEGER", "side of the error grid", csv=False)
    owner: str | None = _col("TEXT", "the bench process that trained it (host:pid:random)",
                             added=True)


_FIELDS = dataclasses.fields(RunResult)
COLUMNS = tuple(f.name for f in _FIELDS)
JSON_COLUMNS = tuple(f.name for f in _FIELDS if f.metadata["json"])
ADDED_COLUMNS = {f.name: f.metadata["sql"] for f in _FIELDS if f.metadata["added"]}
CSV_COLUMNS = tuple("dead_fraction_mean" if f.name == "dead_fraction" else f.name
                    for f in _FIELDS if f.metadata["csv"])


def runs_table_sql() -> str:
    """``CREATE TABLE IF NOT EXISTS runs (...)`` with one column per field."""
    width = max(len(f.name) + len(f.metadata["sql"]) for f in _FIELDS)
    lines = [f"    {f.name} {f.metadata['sql']},".ljust(width + 8) + f"-- {f.metadata['doc']}"
             for f in _FIELDS]
    lines[-1] = lines[-1].replace(",", " ", 1)
    return "CREATE TABLE IF NOT EXISTS runs (\n" + "\n".join(lines) + "\n);\n"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """The versions a run ran with."""
    import numpy
    import torch

    from .. import __version__

    return {"sepneuron": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def base_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Every column of ``spec``'s row: what the spec says filled in, the rest None."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(key=run_key(spec), task=spec["task"], method=spec["method"], seed=spec["seed"],
               budget=Budget(**spec["budget"]).label, config=spec, grid_n=spec["grid_n"],
               threads=spec.get("threads", 1), versions=versions())
    return row


def crash_row(spec: dict[str, Any], message: str) -> dict[str, Any]:
    """The ``error`` row of a run that produced no row (its worker died, ...)."""
    return {**base_row(spec), "status": "error", "error": message, "finished_at": utc_now()}
