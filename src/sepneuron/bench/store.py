"""Results store: one SQLite database per benchmark folder (stdlib ``sqlite3``, WAL mode).

One row per finished run, keyed by :func:`~sepneuron.bench.runner.run_key` (a hash of the
whole configuration) and written in one transaction, so a run is either entirely in the
database or not at all; a benchmark killed at any moment resumes by skipping the keys that
are there. Only the process that owns the store writes (the workers return rows).

``results.csv`` beside it is an export, rewritten atomically (temporary file, then
``os.replace``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_open

__all__ = ["ResultStore", "CSV_COLUMNS", "DB_NAME", "CSV_NAME"]

DB_NAME = "results.sqlite"
CSV_NAME = "results.csv"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,          -- hash of the full configuration
    task TEXT NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget TEXT NOT NULL,          -- "8s" or "2000 steps"
    status TEXT NOT NULL,          -- ok | error | skipped
    error TEXT,                    -- the message (and traceback) of a failed run
    test_rmse REAL,                -- final, on held-out points, standardised units
    train_rmse REAL,
    train_time REAL,               -- training seconds (evaluation excluded)
    wall_time REAL,                -- seconds of the whole run (data, fit, evaluation)
    steps INTEGER,
    n_params INTEGER,
    threads INTEGER,
    dead_fraction TEXT,            -- JSON: final fraction of dead neurons per layer
    config TEXT NOT NULL,          -- JSON: the full run spec
    curve TEXT,                    -- JSON: eval_step, eval_time, test_rmse, train_rmse, ...
    metrics TEXT,                  -- JSON: stop reason, events, dead_max, q/c/d spread, ...
    versions TEXT,                 -- JSON: sepneuron, torch, numpy, python
    grid BLOB,                     -- float32 (grid_n, grid_n): model - target on the grid
    grid_n INTEGER,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_JSON_FIELDS = ("dead_fraction", "config", "curve", "metrics", "versions")
_COLUMNS = (
    "key", "task", "method", "seed", "budget", "status", "error", "test_rmse", "train_rmse",
    "train_time", "wall_time", "steps", "n_params", "threads", "dead_fraction", "config",
    "curve", "metrics", "versions", "grid", "grid_n", "finished_at",
)
CSV_COLUMNS = (
    "key", "task", "method", "seed", "budget", "status", "test_rmse", "train_rmse",
    "train_time", "wall_time", "steps", "n_params", "threads", "dead_fraction_mean",
    "finished_at", "error",
)


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class ResultStore:
    """The runs of one benchmark folder. Use as a context manager or call :meth:`close`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self._conn = sqlite3.connect(self.path, timeout=60.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.executescript(_SCHEMA)

    # -- writing --------------------------------------------------------------------------
    def add(self, row: dict[str, Any]) -> None:
        """Insert (or replace) one run row in a single transaction."""
        values = []
        for col in _COLUMNS:
            v = row.get(col)
            if col in _JSON_FIELDS and v is not None:
                v = json.dumps(v, allow_nan=True)
            values.append(_finite_or_none(v))
        marks = ", ".join("?" * len(_COLUMNS))
        with self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({marks})", values
            )

    def set_meta(self, name: str, value: Any) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               (name, json.dumps(value)))

    # -- reading --------------------------------------------------------------------------
    def get_meta(self, name: str, default: Any = None) -> Any:
        cur = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,))
        hit = cur.fetchone()
        return default if hit is None else json.loads(hit[0])

    def keys(self, statuses: Sequence[str] | None = None) -> set[str]:
        """Keys of the stored runs (of the given statuses only, if any)."""
        if statuses is None:
            cur = self._conn.execute("SELECT key FROM runs")
        else:
            marks = ", ".join("?" * len(statuses))
            cur = self._conn.execute(f"SELECT key FROM runs WHERE status IN ({marks})",
                                     tuple(statuses))
        return {k for (k,) in cur}

    def rows(
        self, keys: Iterable[str] | None = None, *, with_grid: bool = False
    ) -> list[dict[str, Any]]:
        """Stored rows as dicts (JSON decoded; ``grid`` as an array if ``with_grid``)."""
        cols = [c for c in _COLUMNS if with_grid or c != "grid"]
        cur = self._conn.execute(
            f"SELECT {', '.join(cols)} FROM runs ORDER BY task, method, seed, key")
        wanted = None if keys is None else set(keys)
        out = []
        for values in cur:
            row = dict(zip(cols, values, strict=True))
            if wanted is not None and row["key"] not in wanted:
                continue
            for f in _JSON_FIELDS:
                if row.get(f) is not None:
                    row[f] = json.loads(row[f])
            if with_grid and row.get("grid") is not None:
                n = row["grid_n"]
                row["grid"] = np.frombuffer(row["grid"], dtype=np.float32).reshape(n, n)
            out.append(row)
        return out

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # -- export ---------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike[str] | None = None,
                   keys: Iterable[str] | None = None) -> Path:
        """Write the runs (flat columns) to ``results.csv`` atomically; return its path."""
        target = Path(path) if path is not None else self.folder / CSV_NAME
        with atomic_open(target, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for row in self.rows(keys):
                dead = row.get("dead_fraction") or []
                flat = dict(row, dead_fraction_mean=(sum(dead) / len(dead)) if dead else None)
                w.writerow(["" if flat.get(c) is None else _csv_value(flat[c])
                            for c in CSV_COLUMNS])
        return target

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)  # shortest round-trip text: float(text) == the stored value
    return str(v)
