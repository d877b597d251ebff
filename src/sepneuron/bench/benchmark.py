"""Run a selection of specs into a benchmark folder, resuming from what is stored.

Several processes (on one host, or wherever the database's locks work) may run on one
folder at once: each claims a run in the store before training it (a lease renewed while
the process lives, see :mod:`~sepneuron.bench.claims`), so every run is trained once, and
a process that dies leaves its runs to the others when its leases expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .claims import DEFAULT_LEASE_S, Heartbeat, new_owner
from .keys import run_key
from .parallel import run_specs
from .store import ResultStore

__all__ = ["run_benchmark", "pending_specs", "record_selection"]


def record_selection(store: ResultStore, specs: Sequence[dict[str, Any]], **info: Any) -> None:
    """Remember which runs make up the benchmark (the report covers exactly these)."""
    tasks = list(dict.fromkeys(s["task"] for s in specs))
    methods = list(dict.fromkeys(s["method"] for s in specs))
    seeds = list(dict.fromkeys(s["seed"] for s in specs))
    store.set_meta("selection", {"tasks": tasks, "methods": methods, "seeds": seeds, **info,
                                 "keys": [run_key(s) for s in specs]})


def pending_specs(store: ResultStore, specs: Sequence[dict[str, Any]], *,
                  retry_errors: bool = False) -> list[dict[str, Any]]:
    """The specs whose key is not stored yet (errors and skips count as done unless
    ``retry_errors``)."""
    done = store.keys(("ok",)) if retry_errors else store.keys()
    return [s for s in specs if run_key(s) not in done]


def run_benchmark(
    folder: str | Path,
    specs: Sequence[dict[str, Any]],
    *,
    jobs: int | None = 1,
    selection: dict[str, Any] | None = None,
    retry_errors: bool = False,
    on_plan: Callable[[int, int], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_elsewhere: Callable[[dict[str, Any]], None] | None = None,
    threads: int = 1,
    scheduler: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Train every spec not yet in ``folder``'s store, committing each row as it finishes.

    ``selection`` (tasks, methods, seeds, command, ...) is stored with the run keys, so
    the report covers exactly this selection. ``on_plan(to_run, already_done)`` is called
    once before training, ``on_start(spec)`` and ``on_result(row)`` around each run, and
    ``on_elsewhere(spec)`` for a run that another process stored meanwhile (all in this
    process). Runs go to local processes (``jobs``) or the Dask cluster at ``scheduler``
    (:func:`~sepneuron.bench.parallel.run_specs`); each is claimed first, with a lease of
    ``lease_s`` seconds, and a run another process holds is asked for again every
    ``poll_s`` seconds until it is stored or its lease expires. Returns ``{"ran",
    "skipped", "elsewhere", "errors", "wall_s", "jobs", "owner"}``.
    """
    t0 = time.perf_counter()
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    folder = Path(folder)
    owner = new_owner()
    errors = ran = elsewhere = 0
    redo = ("error", "skipped") if retry_errors else ()
    with ResultStore(folder) as store:
        record_selection(store, specs, **{**(selection or {}), "jobs": jobs})
        todo = pending_specs(store, specs, retry_errors=retry_errors)
        if on_plan is not None:
            on_plan(len(todo), len(specs) - len(todo))

        def claim(spec: dict[str, Any]) -> str:
            nonlocal elsewhere
            state = store.claim(run_key(spec), owner, lease_s, redo=redo, since=since)
            if state == "done":
                elsewhere += 1
                if on_elsewhere is not None:
                    on_elsewhere(spec)
            return state

        def commit(row: dict[str, Any]) -> None:
            nonlocal errors, ran
            store.add({**row, "owner": owner})
            ran += 1
            errors += row["status"] == "error"
            if on_result is not None:
                on_result(row)

        try:
            with Heartbeat(store.path, owner, lease_s):
                run_specs(todo, commit, jobs=jobs, on_start=on_start, threads=threads,
                          claim=claim, scheduler=scheduler, poll_s=poll_s)
        finally:
            store.release_claims(owner)
        summary = {"ran": ran, "skipped": len(specs) - len(todo), "elsewhere": elsewhere,
                   "errors": errors, "wall_s": time.perf_counter() - t0, "jobs": jobs,
                   "scheduler": scheduler, "owner": owner}
        store.set_meta("last_bench", summary)
    return summary
