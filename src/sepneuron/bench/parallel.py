"""Running many specs: in this process, in local worker processes, or on a Dask cluster.

:func:`run_specs` keeps at most ``jobs`` runs in flight on one of three executors and calls
``on_result(row)`` in this process as each finishes, so only this process writes results:

* ``jobs == 1``: in this process, one run after the other;
* ``jobs > 1``: a spawn-context ``ProcessPoolExecutor``. Each worker watches its parent
  (:func:`_watch_parent`) and exits within :data:`PARENT_POLL_S` seconds after the parent
  dies, even by ``kill -9``; the pool's resource tracker then sees its pipe close and exits
  too. A worker that dies takes its run with it as an ``error`` row (after a second try),
  the pool is rebuilt and the rest go on;
* ``scheduler="tcp://host:8786"``: an existing Dask cluster (``dask.distributed``'s
  ``concurrent.futures`` executor), ``jobs`` runs in flight (default: the cluster's threads).

``claim(spec)``, when given, is asked right before a run starts: ``"claimed"`` starts it,
``"done"`` drops it (stored meanwhile, e.g. by another process), ``"busy"`` puts it aside
and asks again every ``poll_s`` seconds (another process holds it under a lease).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from .keys import run_key
from .result import crash_row
from .runner import run_one

__all__ = ["run_specs", "PARENT_POLL_S", "SchedulerError"]

PARENT_POLL_S = 0.25
CONNECT_TIMEOUT_S = 20.0  # to reach a Dask scheduler

Spec = dict[str, Any]


class SchedulerError(ValueError):
    """The Dask scheduler cannot be used: dask.distributed missing, or unreachable."""


def _watch_parent(parent_pid: int) -> None:
    """Exit this process (a worker) as soon as ``parent_pid`` is no longer its parent."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _worker_init(threads: int, parent_pid: int | None = None) -> None:
    """Per worker process: thread count, parent watch, and the one-off import cost paid
    before timing."""
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch",
                         daemon=True).start()
    torch.set_num_threads(threads)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo once


class _InlineExecutor(Executor):
    """Runs each call at submit, in this process, on ``threads`` torch threads."""

    def __init__(self, threads: int) -> None:
        self._before = torch.get_num_threads()
        _worker_init(threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        torch.set_num_threads(self._before)  # this process is the caller's: leave it as it was


def _dask_executor(scheduler: str) -> tuple[Executor, int, Callable[[], None]]:
    """An executor on the Dask cluster at ``scheduler``, its thread count and a closer."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError("a Dask scheduler needs dask.distributed: "
                         "pip install 'sepneuron[dask]'") from None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
    slots = max(1, sum(client.nthreads().values()))
    return client.get_executor(pure=False), slots, client.close


def run_specs(
    specs: Sequence[Spec],
    on_result: Callable[[Spec], None],
    *,
    jobs: int | None = 1,
    on_start: Callable[[Spec], None] | None = None,
    threads: int = 1,
    claim: Callable[[Spec], str] | None = None,
    scheduler: str | None = None,
    poll_s: float = 2.0,
) -> None:
    """Run every spec, calling ``on_result(row)`` in this process as each one finishes.

    At most ``jobs`` runs are in flight (so ``on_start`` sees exactly the runs being
    trained); see the module docstring for the executors and ``claim``. ``jobs=None``
    means 1 locally and the cluster's thread count with a ``scheduler``.
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    if not poll_s > 0:
        raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
    close_client: Callable[[], None] = lambda: None  # noqa: E731
    if scheduler is not None:
        pool, slots, close_client = _dask_executor(scheduler)
        slots = jobs or slots
    elif (jobs or 1) == 1:
        pool, slots = _InlineExecutor(threads), 1
    else:
        slots = int(jobs or 1)
        pool = _local_pool(slots, threads)
    queue: list[Spec] = list(specs)[::-1]
    deferred: list[Spec] = []
    running: dict[Future[Any], Spec] = {}
    crashes: dict[str, int] = {}  # run key -> pools it was in when the pool broke
    finished = False
    try:
        while queue or running or deferred:
            while queue and len(running) < slots:
                spec = queue.pop()
                state = "claimed" if claim is None else claim(spec)
                if state == "busy":
                    deferred.append(spec)
                elif state == "claimed":
                    if on_start is not None:
                        on_start(spec)
                    running[pool.submit(run_one, spec)] = spec
            if not running:
                if deferred and not queue:  # all left are held by others: wait for them
                    time.sleep(poll_s)
                    queue, deferred = deferred[::-1], []
                continue
            done, _ = wait(running, timeout=poll_s if deferred else None,
                           return_when=FIRST_COMPLETED)
            if deferred and not queue:
                queue, deferred = deferred[::-1], []
            broken = False
            for fut in done:
                spec = running.pop(fut)
                try:
                    row = fut.result()
                except BrokenProcessPool as e:
                    # Which of the runs in flight killed the worker is unknown: each gets
                    # a second try in the new pool, and an error row after that.
                    broken = True
                    key = run_key(spec)
                    crashes[key] = crashes.get(key, 0) + 1
                    if crashes[key] < 2:
                        queue.append(spec)
                        continue
                    row = crash_row(spec, f"worker process died (twice): {e!r}")
                except Exception as e:  # noqa: BLE001 - e.g. a result that failed to pickle
                    row = crash_row(spec, f"{type(e).__name__}: {e}")
                on_result(row)
            if broken:
                _shutdown(pool, wait_for_runs=False)
                pool = _local_pool(slots, threads)
        finished = True
    finally:
        _shutdown(pool, wait_for_runs=finished or isinstance(pool, ProcessPoolExecutor))
        close_client()


def _local_pool(jobs: int, threads: int) -> ProcessPoolExecutor:
    import multiprocessing

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads, os.getpid()))


def _shutdown(pool: Executor, *, wait_for_runs: bool) -> None:
    """Stop ``pool``: pending runs are cancelled; local workers finish their run (they die
    with this process anyway), cluster runs are waited for only after a normal end."""
    if isinstance(pool, ProcessPoolExecutor):
        pool.shutdown(wait=wait_for_runs, cancel_futures=True)
    else:
        pool.shutdown(wait=wait_for_runs)
