"""The bench's processes (issue #11): ``kill -9`` of a ``--jobs 2`` bench leaves no worker
and no resource tracker behind; two benches on one ``--out`` train each run once; a Dask
cluster (``--scheduler``) gives the rows of a local run."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sepneuron.cli import main

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
BENCH = [sys.executable, "-m", "sepneuron", "bench", "--no-progress", "--no-report"]


# -- processes from /proc (no psutil) ---------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, str] | None:
    """``(ppid, state, start time)`` of a live process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """``{pid: start time}`` of every live process below ``root``."""
    parents: dict[int, list[int]] = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[2]
    out, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def _alive(pid: int, start: str) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"  # a zombie has exited


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_leaves_no_worker_behind(tmp_path):
    cmd = [*BENCH, "--tasks", "kan_exp", "--methods", "relu_adam", "softplus_adam", "--seeds",
           "0", "--budget", "120s", "--jobs", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(_descendants(proc.pid))
            workers = [p for p in seen if "spawn_main" in _cmdline(p)]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the bench started no two workers"
        time.sleep(1.0)  # let them get to work
        seen.update(_descendants(proc.pid))
        assert any("resource_tracker" in _cmdline(p) for p in seen), seen
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in seen.items()):
            time.sleep(0.1)
        left = {p: _cmdline(p) for p, s in seen.items() if _alive(p, s)}
        assert not left, f"left behind after kill -9: {left}"
    finally:
        for p, s in seen.items():  # what this test started, if it failed
            if _alive(p, s):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_two_benches_on_one_folder_train_each_run_once(tmp_path):
    cmd = [*BENCH, "--tasks", "kan_exp", "--methods", "relu_adam", "tanh_adam", "--seeds",
           "0", "1", "2", "--budget", "0.3s", "--jobs", "1", "--n-train", "200",
           "--n-test", "200", "--out", str(tmp_path)]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    trained = [int(re.search(r"trained (\d+) runs", out).group(1)) for out, _ in outs]
    assert sum(trained) == 6, outs  # every run once, between them
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = con.execute("SELECT key, status, owner FROM runs").fetchall()
    claims = con.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    con.close()
    assert len(rows) == 6 and all(status == "ok" for _, status, _ in rows)
    per_owner = sorted(sum(1 for *_, o in rows if o == owner) for owner in {r[2] for r in rows})
    assert per_owner == sorted(t for t in trained if t)  # each row names who trained it
    assert claims == 0  # all released


# -- Dask ---------------------------------------------------------------------------------------


def _result_rows(folder: Path) -> list[tuple]:
    con = sqlite3.connect(folder / "results.sqlite")
    try:
        return con.execute("SELECT key, method, task, seed, status, test_rmse, steps FROM runs "
                           "ORDER BY key").fetchall()
    finally:
        con.close()


def test_dask_cluster_gives_the_rows_of_a_local_run(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    args = ["bench", "--tasks", "kan_exp", "--methods", "relu_adam", "sep_relu_newton",
            "--seeds", "0", "1", "--budget", "40", "--n-train", "200", "--n-test", "200",
            "--no-progress", "--no-report"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # no fixed port
        capsys.readouterr()
        assert main([*args, "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "dask")]) == 0
        assert "on the Dask cluster" in capsys.readouterr().out
        with distributed.Client(cluster) as client:  # the runs were the workers'
            assert len(client.scheduler_info()["workers"]) == 2
    local, dask = _result_rows(tmp_path / "local"), _result_rows(tmp_path / "dask")
    assert len(local) == 4 and all(r[4] == "ok" and r[6] == 40 for r in local)
    assert dask == local  # same keys, same final RMSEs to the last bit


def test_unreachable_scheduler_is_a_clear_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("sepneuron.bench.parallel.CONNECT_TIMEOUT_S", 1.0)
    argv = ["bench", "--tasks", "kan_exp", "--methods", "relu_adam", "--seeds", "0",
            "--budget", "5", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sepneuron bench: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
