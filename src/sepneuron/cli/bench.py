"""``sepneuron bench``: train every task x method x seed of a suite, resumably, then report.

    sepneuron bench [--suite NAME] [--tasks ...] [--methods ...] [--seeds ...]
                    [--budget 2000|30s] [--out DIR] [--jobs N] [--scheduler ADDRESS]

Runs go into ``OUT/results.sqlite`` (one row per finished run; stored runs are skipped,
so an interrupted benchmark resumes); then ``OUT/results.csv``, ``OUT/report.md`` and the
figures. A ``results.sqlite`` that is not a readable results database, or a scheduler that
cannot be reached, exits with status 2 and one line ``sepneuron bench: ...``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..params import Param

__all__ = ["add_parser", "run"]

_AT_LEAST_1 = Param("int", low=1)


def _names(values: Sequence[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (commas or spaces both work)."""
    if values is None:
        return None
    return [v for chunk in values for v in chunk.split(",") if v]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to the subparsers ``sub``; returns its parser."""
    from ..bench.suites import SUITES

    b = sub.add_parser(
        "bench", help="run a benchmark suite (resumable) and write its report",
        description="Train every task x method x seed of a suite into OUT/results.sqlite "
        "(one row per finished run; runs already there are skipped, so an interrupted "
        "benchmark resumes), then write OUT/results.csv, OUT/report.md and the figures. "
        + " ".join(f"Suite {s.name!r}: {s.description}." for s in SUITES.values()),
    )
    b.add_argument("--suite", default="quick", choices=sorted(SUITES),
                   help="the selection and budget to start from (default: quick)")
    b.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="tasks to run instead of the suite's (names, comma/space separated; "
                   "see `sepneuron tasks`)")
    b.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="methods to run instead of the suite's (see `sepneuron methods`)")
    b.add_argument("--seeds", nargs="+", metavar="SEED",
                   help="seeds instead of the suite's, e.g. --seeds 0 1 2")
    b.add_argument("--budget", metavar="B",
                   help="per run: optimizer steps (e.g. 2000) or training seconds with an s "
                   "suffix (e.g. 30s); default: the suite's")
    b.add_argument("--out", metavar="DIR", help="output folder (default: runs/<suite>)")
    b.add_argument("--jobs", type=_AT_LEAST_1.parse, metavar="N",
                   help="runs in parallel processes (default: the suite's, 2); with "
                   "--scheduler, runs in flight on the cluster (default: its thread count)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="train on the existing Dask cluster at ADDRESS (e.g. "
                   "tcp://host:8786; needs dask[distributed] here and sepneuron on the "
                   "workers); this process alone writes the results")
    b.add_argument("--threads", type=_AT_LEAST_1.parse, default=1, metavar="T",
                   help="torch threads per run (default 1: small models slow down with more "
                   "threads on a shared machine)")
    b.add_argument("--n-train", type=int, metavar="N", help="training points per task and seed")
    b.add_argument("--n-test", type=int, metavar="N", help="test points per task and seed")
    b.add_argument("--retry-errors", action="store_true",
                   help="run again the runs stored as error or skipped")
    b.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(parser=b)  # for usage errors found after parsing (unknown task, ...)
    return b


def _selection(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from ..bench.methods import get_method
    from ..bench.suites import get_suite, parse_budget
    from ..tasks import get_task

    suite = get_suite(args.suite)
    try:
        tasks = [get_task(t).name for t in (_names(args.tasks) or suite.tasks)]
        methods = [get_method(m).name for m in (_names(args.methods) or suite.methods)]
        seeds = [int(s) for s in (_names(args.seeds) or suite.seeds)]
        budget = parse_budget(args.budget) if args.budget else suite.budget
    except ValueError as e:
        parser.error(str(e))
    jobs = args.jobs if args.jobs is not None or args.scheduler else suite.jobs
    return suite, tasks, methods, seeds, budget, jobs


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron bench``; returns the exit status (2: bad results store or scheduler).

    ``args.argv``, the command line, is recorded with the results."""
    from ..bench.benchmark import run_benchmark
    from ..bench.parallel import SchedulerError
    from ..bench.runner import make_specs, spec_label
    from ..bench.store import ResultStoreError

    t0 = time.perf_counter()
    suite, tasks, methods, seeds, budget, jobs = _selection(args, args.parser)
    out = Path(args.out) if args.out else Path("runs") / suite.name
    specs = make_specs(tasks, methods, seeds, budget,
                       n_train=args.n_train or suite.n_train, n_test=args.n_test or suite.n_test,
                       hidden=suite.hidden, grid_n=suite.grid_n, threads=args.threads)
    command = "sepneuron " + " ".join(shlex.quote(a) for a in args.argv)
    selection = {"command": command, "suite": suite.name, "tasks": tasks, "methods": methods,
                 "seeds": seeds, "budget": budget.label}
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else f"{jobs} job(s)"
    print(f"sepneuron bench: {len(specs)} runs ({len(tasks)} tasks x {len(methods)} methods x "
          f"{len(seeds)} seeds), budget {budget.label} per run, {where} -> {out}")

    bar = None
    running: list[str] = []

    def show() -> None:
        if bar is not None:
            left = bar.total - bar.n
            bar.set_postfix_str(f"{left} left; training {', '.join(running)}", refresh=True)

    def on_plan(todo: int, done: int) -> None:
        nonlocal bar
        if done:
            print(f"{done} runs already in {out / 'results.sqlite'}: skipped")
        if todo and not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=todo, unit="run", desc="bench", dynamic_ncols=True)

    def on_start(spec) -> None:
        running.append(spec_label(spec))
        show()

    def on_result(row) -> None:
        label = f"{row['task']}/{row['method']}/s{row['seed']}"
        if label in running:
            running.remove(label)
        if row["status"] == "error":
            msg = (row.get("error") or "").strip().splitlines()[:1]
            (bar.write if bar is not None else print)(f"error in {label}: {msg[0] if msg else ''}")
        if bar is not None:
            bar.n += 1  # counted first, so the postfix and the count agree when drawn
            show()

    def on_elsewhere(spec) -> None:  # another process sharing --out stored it
        if bar is not None:
            bar.n += 1
            show()

    try:
        summary = run_benchmark(out, specs, jobs=jobs, selection=selection,
                                retry_errors=args.retry_errors, on_plan=on_plan,
                                on_start=on_start, on_result=on_result,
                                on_elsewhere=on_elsewhere, threads=args.threads,
                                scheduler=args.scheduler)
    except (ResultStoreError, SchedulerError) as e:  # bad results.sqlite, no scheduler
        if bar is not None:
            bar.close()
        print(f"sepneuron bench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("\ninterrupted: finished runs are saved; run the same command again to resume",
              file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    others = (f", {summary['elsewhere']} trained by another process sharing {out}"
              if summary["elsewhere"] else "")
    print(f"trained {summary['ran']} runs ({summary['errors']} errors), skipped "
          f"{summary['skipped']} stored ones{others}, in {summary['wall_s']:.0f} s")
    if not args.no_report:
        from ..bench.plots import plot_neuron_tuning
        from ..bench.report import NEURON_TUNING, build_report

        if not (out / NEURON_TUNING).exists():  # a demo that trains: bench's job, not report's
            plot_neuron_tuning(out)
        path = build_report(out)
        for line in path.read_text().splitlines():
            if line.startswith("**Summary"):
                print(line.replace("**", ""))
        print(f"wrote {path} and {out / 'results.csv'}")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return 0
