"""Run a selection of specs into a benchmark folder, resuming from what is stored."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .runner import run_key, run_specs
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
    jobs: int = 1,
    selection: dict[str, Any] | None = None,
    retry_errors: bool = False,
    on_plan: Callable[[int, int], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Train every spec not yet in ``folder``'s store, committing each row as it finishes.

    ``selection`` (tasks, methods, seeds, command, ...) is stored with the run keys, so
    the report covers exactly this selection. ``on_plan(to_run, already_done)`` is called
    once before training, ``on_start(spec)`` and ``on_result(row)`` around each run (all in
    this process). Returns ``{"ran", "skipped", "errors", "wall_s"}``.
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    errors = 0
    with ResultStore(folder) as store:
        record_selection(store, specs, **{**(selection or {}), "jobs": jobs})
        todo = pending_specs(store, specs, retry_errors=retry_errors)
        if on_plan is not None:
            on_plan(len(todo), len(specs) - len(todo))

        def commit(row: dict[str, Any]) -> None:
            nonlocal errors
            store.add(row)
            errors += row["status"] == "error"
            if on_result is not None:
                on_result(row)

        run_specs(todo, commit, jobs=jobs, on_start=on_start, threads=threads)
        summary = {"ran": len(todo), "skipped": len(specs) - len(todo), "errors": errors,
                   "wall_s": time.perf_counter() - t0, "jobs": jobs}
        store.set_meta("last_bench", summary)
    return summary
