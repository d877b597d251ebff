"""Results store: one SQLite database per benchmark folder (stdlib ``sqlite3``, WAL mode).

One row per finished run, keyed by :func:`~sepneuron.bench.runner.run_key` (a hash of the
whole configuration) and written in one transaction, so a run is either entirely in the
database or not at all; a benchmark killed at any moment resumes by skipping the keys that
are there. Only the process that owns the store writes (the workers return rows).

Several benchmark processes on one folder share the work through the ``claims`` table: a
process claims a run (owner id, lease expiry) before training it, renews its leases while
it lives (:class:`~sepneuron.bench.claims.Heartbeat`), and the stored row releases the
claim; a run that is stored, or claimed under a live lease by another owner, is not
started. A file that is not a readable results database (corrupt, truncated, foreign)
raises :class:`ResultStoreError`, a ``ValueError`` naming the file.

``results.csv`` beside it is an export, rewritten atomically (temporary file, then
``os.replace``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_open
from .result import ADDED_COLUMNS, COLUMNS, CSV_COLUMNS, JSON_COLUMNS, runs_table_sql

__all__ = ["ResultStore", "ResultStoreError", "CSV_COLUMNS", "DB_NAME", "CSV_NAME"]

DB_NAME = "results.sqlite"
CSV_NAME = "results.csv"

_SCHEMA = runs_table_sql() + """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,          -- a run being trained
    owner TEXT NOT NULL,           -- host:pid:random of the process training it
    expires REAL NOT NULL          -- unix time; renewed while the owner lives
);
"""
_COLUMNS = COLUMNS  # in the order of RunResult
_JSON_FIELDS = JSON_COLUMNS
_ADDED_COLUMNS = ADDED_COLUMNS  # added after the first release: added to older databases


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class ResultStoreError(ValueError):
    """The results database cannot be used: not SQLite, corrupt, truncated or foreign."""


_BUSY = ("locked", "busy")  # sqlite3 errors that say "try later", not "broken"


class ResultStore:
    """The runs of one benchmark folder. Use as a context manager or call :meth:`close`.

    Raises :class:`ResultStoreError` (naming the file) when ``folder/results.sqlite``
    exists but is not a readable results database.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        if self.path.exists() and not self.path.is_file():
            raise ResultStoreError(f"{self.path} is not a file")
        try:
            self._conn = sqlite3.connect(self.path, timeout=60.0)
        except sqlite3.Error as e:
            raise ResultStoreError(f"cannot open {self.path}: {e}") from None
        try:
            self._check()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            with self._conn:  # another process may be adding the same columns
                self._conn.execute("BEGIN IMMEDIATE")
                have = {r[1] for r in self._conn.execute("PRAGMA table_info(runs)")}
                for col, kind in _ADDED_COLUMNS.items():
                    if col not in have:
                        self._conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
        except ResultStoreError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as e:
            self._conn.close()
            if any(word in str(e) for word in _BUSY):
                raise
            raise ResultStoreError(
                f"{self.path} is not a readable sepneuron results database ({e}); move it "
                "away (or choose another folder) to start afresh") from None

    def _check(self) -> None:
        """Refuse a corrupt or truncated file, or an SQLite database of another program."""
        (first, *_), = self._conn.execute("PRAGMA quick_check(1)").fetchall()
        if first != "ok":
            raise ResultStoreError(f"{self.path} is corrupt (SQLite integrity check: {first})")
        tables = {n for (n,) in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "runs" not in tables:
            raise ResultStoreError(f"{self.path} is an SQLite database but not a sepneuron "
                                   f"results database (tables: {', '.join(sorted(tables))})")
        if "runs" in tables:
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(runs)")}
            missing = [c for c in _COLUMNS if c not in have and c not in _ADDED_COLUMNS]
            if missing:
                raise ResultStoreError(f"{self.path} has a 'runs' table without the columns "
                                       f"{', '.join(missing)}: not a sepneuron results database")

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
            self._conn.execute("DELETE FROM claims WHERE key = ?", (row.get("key"),))

    def claim(self, key: str, owner: str, lease_s: float, *, redo: Sequence[str] = (),
              since: str | None = None) -> str:
        """Claim run ``key`` for ``owner`` for ``lease_s`` seconds, in one transaction.

        Returns ``"done"`` when the run is stored (unless its status is in ``redo`` and it
        finished before ``since``, an ISO time), ``"busy"`` when another owner holds a
        lease that has not expired, else ``"claimed"`` (an expired lease is taken over).
        """
        now = time.time()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")  # one claimer at a time
            hit = self._conn.execute("SELECT status, finished_at FROM runs WHERE key = ?",
                                     (key,)).fetchone()
            if hit is not None and (hit[0] not in redo
                                    or (since is not None and (hit[1] or "") >= since)):
                return "done"
            held = self._conn.execute("SELECT owner, expires FROM claims WHERE key = ?",
                                      (key,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return "busy"
            self._conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                               (key, owner, now + lease_s))
        return "claimed"

    def release_claims(self, owner: str) -> None:
        """Drop every claim of ``owner`` (its runs not stored become claimable at once)."""
        with self._conn:
            self._conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def claims(self) -> dict[str, tuple[str, float]]:
        """``{key: (owner, expires)}`` of the runs claimed now."""
        cur = self._conn.execute("SELECT key, owner, expires FROM claims")
        return {k: (o, e) for k, o, e in cur}

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
