"""The results store (issue #11): unreadable databases give one clear error naming the file
(exit 2 from the CLI, no traceback); claims with leases let several processes share one
folder, and a claim whose owner died is taken over when its lease expires."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from sepneuron.bench import ResultStore, make_spec, run_key
from sepneuron.bench.benchmark import run_benchmark
from sepneuron.bench.store import ResultStoreError
from sepneuron.bench.suites import Budget
from sepneuron.cli import main


def _row(key: str, status: str = "ok", **kw) -> dict:
    return {"key": key, "task": "t", "method": "m", "seed": 0, "budget": "1s",
            "status": status, "config": {"a": "x" * 300}, "grid": os.urandom(4096), **kw}


def _full_db(folder) -> str:
    with ResultStore(folder) as store:
        for i in range(60):
            store.add(_row(f"k{i}"))
    return str(folder / "results.sqlite")


def _garbage(folder):
    (folder / "results.sqlite").write_bytes(b"not a database at all " * 50)


def _truncated(folder):
    path = _full_db(folder)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _overwritten(folder):
    path = _full_db(folder)
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(b"\x00" * 100)


def _foreign(folder):
    con = sqlite3.connect(folder / "results.sqlite")
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()


def _foreign_runs(folder):  # a table called runs, of another program
    con = sqlite3.connect(folder / "results.sqlite")
    con.execute("CREATE TABLE runs (id INTEGER, started TEXT)")
    con.commit()
    con.close()


def _directory(folder):
    (folder / "results.sqlite").mkdir()


BAD = {"garbage": _garbage, "truncated": _truncated, "overwritten": _overwritten,
       "foreign": _foreign, "foreign_runs": _foreign_runs, "directory": _directory}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_unreadable_database_is_one_clear_error(tmp_path, kind):
    BAD[kind](tmp_path)
    with pytest.raises(ResultStoreError, match="results.sqlite") as err:
        ResultStore(tmp_path).close()
    assert isinstance(err.value, ValueError) and str(tmp_path) in str(err.value)
    if kind in ("foreign", "foreign_runs"):  # left as it was: no tables of ours added
        con = sqlite3.connect(tmp_path / "results.sqlite")
        tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
        con.close()
        assert "claims" not in tables and "meta" not in tables


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("command", ["report", "bench"])
def test_cli_exits_2_naming_the_file(tmp_path, capsys, kind, command):
    BAD[kind](tmp_path)
    if command == "report":
        argv = ["report", str(tmp_path), "--no-figures"]
    else:
        argv = ["bench", "--tasks", "kan_exp", "--methods", "relu_adam", "--seeds", "0",
                "--budget", "5", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 2  # an exception would propagate here: no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sepneuron {command}: ")
    assert str(tmp_path / "results.sqlite") in err[0]


def test_older_database_gains_the_owner_column(tmp_path):
    con = sqlite3.connect(tmp_path / "results.sqlite")
    with ResultStore(tmp_path) as store:  # today's schema, then drop the new column
        store.add(_row("old"))
    con.execute("ALTER TABLE runs DROP COLUMN owner")
    con.execute("DROP TABLE claims")
    con.commit()
    con.close()
    with ResultStore(tmp_path) as store:
        store.add(_row("new", owner="me"))
        rows = {r["key"]: r for r in store.rows()}
    assert rows["old"]["owner"] is None and rows["new"]["owner"] == "me"


# -- claims -------------------------------------------------------------------------------


def test_claim_lease_and_takeover(tmp_path):
    with ResultStore(tmp_path) as store:
        assert store.claim("k", "A", 0.3) == "claimed"
        assert store.claim("k", "A", 0.3) == "claimed"  # its own claim: renewed
        assert store.claim("k", "B", 10.0) == "busy"
        time.sleep(0.35)  # A's lease runs out (A died)
        assert store.claim("k", "B", 10.0) == "claimed"
        assert store.claim("k", "A", 10.0) == "busy"
        assert store.claims()["k"][0] == "B"
        store.add(_row("k"))  # storing the run releases its claim ...
        assert store.claims() == {}
        for who in ("A", "B", "C"):  # ... and a stored run is never claimed again
            assert store.claim("k", who, 10.0) == "done"
        # an error row is claimable with redo, unless it was stored after `since`
        store.add(_row("e", status="error", finished_at="2026-01-01T00:00:00+00:00"))
        assert store.claim("e", "A", 1.0) == "done"
        assert store.claim("e", "A", 1.0, redo=("error",),
                           since="2026-01-01T00:00:01+00:00") == "claimed"
        store.add(_row("e", status="error", finished_at="2026-01-01T00:00:02+00:00"))
        assert store.claim("e", "B", 1.0, redo=("error",),
                           since="2026-01-01T00:00:01+00:00") == "done"
        store.claim("x", "A", 10.0)
        store.release_claims("A")
        assert store.claim("x", "B", 10.0) == "claimed"


def _specs():
    return [make_spec("kan_exp", m, 0, Budget(steps=5), n_train=50, n_test=50, grid_n=8)
            for m in ("relu_adam", "tanh_adam")]


def test_bench_waits_for_a_live_claim_then_takes_it_over(tmp_path):
    specs = _specs()
    held, free = run_key(specs[0]), run_key(specs[1])
    with ResultStore(tmp_path) as store:
        assert store.claim(held, "dead-host:1:x", 600.0) == "claimed"
    started, expired_at = {}, []
    free_started = threading.Event()

    def on_start(spec):
        started[run_key(spec)] = time.time()
        if run_key(spec) == free:
            free_started.set()

    def lease_runs_out():  # the owner died: nobody renews its lease, which then expires
        free_started.wait(120)
        time.sleep(0.3)
        con = sqlite3.connect(tmp_path / "results.sqlite", timeout=60)
        with con:
            expired_at.append(time.time())
            con.execute("UPDATE claims SET expires = ? WHERE key = ?", (expired_at[0], held))
        con.close()

    t = threading.Thread(target=lease_runs_out)
    t.start()
    summary = run_benchmark(tmp_path, specs, poll_s=0.1, on_start=on_start)
    t.join()
    assert summary["ran"] == 2 and summary["elsewhere"] == 0
    assert started[free] < started[held]  # put aside while its lease was live ...
    assert started[held] >= expired_at[0]  # ... and taken over when it expired
    with ResultStore(tmp_path) as store:
        rows = store.rows()
        assert {r["owner"] for r in rows} == {summary["owner"]} and store.claims() == {}


def test_bench_leaves_a_run_finished_elsewhere(tmp_path):
    specs = _specs()
    held = run_key(specs[0])
    with ResultStore(tmp_path) as store:
        store.claim(held, "other", 30.0)

    def other_process_finishes():
        time.sleep(0.5)
        with ResultStore(tmp_path) as other:
            other.add(_row(held, owner="other"))

    t = threading.Thread(target=other_process_finishes)
    t.start()
    t0 = time.perf_counter()
    summary = run_benchmark(tmp_path, specs, poll_s=0.1)
    t.join()
    assert summary["ran"] == 1 and summary["elsewhere"] == 1
    assert time.perf_counter() - t0 < 20  # did not wait for the 30 s lease
    with ResultStore(tmp_path) as store:
        owners = {r["key"]: r["owner"] for r in store.rows()}
    assert owners == {held: "other", run_key(specs[1]): summary["owner"]}


# -- one declaration of a row (issue #8) -----------------------------------------------------


def test_row_table_csv_and_crash_row_derive_from_runresult(tmp_path):
    import csv
    import dataclasses

    from sepneuron.bench import RunResult, run_one
    from sepneuron.bench.parallel import crash_row
    from sepneuron.bench.result import COLUMNS, CSV_COLUMNS

    names = tuple(f.name for f in dataclasses.fields(RunResult))
    assert names == COLUMNS
    spec = make_spec("kan_exp", "relu_adam", 0, Budget(steps=3), n_train=30, n_test=30,
                     grid_n=4)
    for row in (run_one(spec), crash_row(spec, "worker died")):
        assert set(row) == set(names)  # nothing the store would drop, nothing missing
        assert row["key"] == run_key(spec) and row["budget"] == "3 steps"
    with ResultStore(tmp_path) as store:
        table = [r[1] for r in store._conn.execute("PRAGMA table_info(runs)")]
        assert table == list(names)
        store.add(run_one(spec))
        (back,) = store.rows(with_grid=True)
        assert back["grid"].shape == (4, 4) and back["steps"] == 3
        with store.export_csv().open() as f:
            header = next(csv.reader(f))
    assert tuple(header) == CSV_COLUMNS
    assert "dead_fraction_mean" in header and "config" not in header and "owner" in header
