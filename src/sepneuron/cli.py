"""The ``sepneuron`` command (also ``python -m sepneuron``).

    sepneuron bench [--suite quick|paper] [--tasks ...] [--methods ...] [--seeds ...]
                    [--budget 2000|30s] [--out DIR] [--jobs N] [--scheduler ADDRESS]
    sepneuron train (--task NAME | --data FILE.npz) --checkpoint PATH [--checkpoint-every N]
                    [--resume] [--steps N] [--out model.pt] [--n-train N --n-test N --seed S]
                    [--kind softplus|relu] [--hidden 32,32]
                    [--rule newton|paper|gauss_newton|grad|none] [--optimizer adam|sgd|lbfgs|lm]
                    [--lr --gamma --max-step --max-time S --batch-size B --eval-every N]
                    [--dtype float32|float64] [--device cpu] [--threads T]
    sepneuron export MODEL.pt OUT.onnx [--dtype float64|float32]
    sepneuron predict MODEL --data X.npz|X.npy|X.csv --out Y.npz|Y.npy|Y.csv [--chunk-rows N]
    sepneuron report DIR
    sepneuron tasks
    sepneuron methods

``train`` (in :mod:`sepneuron.train_cli`) trains one separated MLP with checkpoints written
atomically; ``--resume`` continues from the checkpoint. Bad input exits with status 2 and a
one-line ``sepneuron train: ...`` message; so does a ``results.sqlite`` that is not a
readable results database (``bench --out``, ``report``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]


def _names(values: Sequence[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (commas or spaces both work)."""
    if values is None:
        return None
    return [v for chunk in values for v in chunk.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    from .bench.suites import SUITES

    p = argparse.ArgumentParser(
        prog="sepneuron",
        description="The separated formal neuron: benchmark against backprop baselines and peers.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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
    b.add_argument("--jobs", type=int, metavar="N",
                   help="runs in parallel processes (default: the suite's, 2); with "
                   "--scheduler, runs in flight on the cluster (default: its thread count)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="train on the existing Dask cluster at ADDRESS (e.g. "
                   "tcp://host:8786; needs dask[distributed] here and sepneuron on the "
                   "workers); this process alone writes the results")
    b.add_argument("--threads", type=int, default=1, metavar="T",
                   help="torch threads per run (default 1: small models slow down with more "
                   "threads on a shared machine)")
    b.add_argument("--n-train", type=int, metavar="N", help="training points per task and seed")
    b.add_argument("--n-test", type=int, metavar="N", help="test points per task and seed")
    b.add_argument("--retry-errors", action="store_true",
                   help="run again the runs stored as error or skipped")
    b.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")

    from .train_cli import add_parser as add_train_parser

    add_train_parser(sub)

    from .export_cli import add_parser as add_export_parser
    from .predict_cli import add_parser as add_predict_parser

    add_export_parser(sub)
    add_predict_parser(sub)

    r = sub.add_parser("report", help="rebuild report.md, results.csv and figures from DIR",
                       description="Rebuild DIR/report.md, DIR/results.csv and the PNG figures "
                       "from DIR/results.sqlite (no training).")
    r.add_argument("dir", metavar="DIR", help="a benchmark output folder")
    r.add_argument("--no-figures", action="store_true", help="skip the PNG figures")

    sub.add_parser("tasks", help="list the tasks")
    sub.add_parser("methods", help="list the methods")
    return p


def _cmd_tasks() -> int:
    from .tasks import TASKS

    print(f"{'name':16s} {'dim':>3s} {'difficulty':>10s}  description")
    for t in TASKS.values():
        print(f"{t.name:16s} {t.dim:3d} {t.difficulty:10d}  {t.description}")
    return 0


def _cmd_methods() -> int:
    from .bench.methods import METHODS
    from .bench.suites import SUITES

    width = max(len(m.name) for m in METHODS.values())
    print(f"{'name':{width}s} {'family':10s} {'suites':20s} description")
    for m in METHODS.values():
        suites = ",".join(s.name for s in SUITES.values() if m.name in s.methods)
        print(f"{m.name:{width}s} {m.family:10s} {suites:20s} {m.description}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .bench.report import build_report
    from .bench.store import ResultStoreError

    try:
        path = build_report(args.dir, figures=not args.no_figures)
    except (FileNotFoundError, ResultStoreError) as e:
        print(f"sepneuron report: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train_cli import run

    return run(args)


def _selection(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from .bench.methods import get_method
    from .bench.suites import get_suite, parse_budget
    from .tasks import get_task

    suite = get_suite(args.suite)
    try:
        tasks = [get_task(t).name for t in (_names(args.tasks) or suite.tasks)]
        methods = [get_method(m).name for m in (_names(args.methods) or suite.methods)]
        seeds = [int(s) for s in (_names(args.seeds) or suite.seeds)]
        budget = parse_budget(args.budget) if args.budget else suite.budget
    except ValueError as e:
        parser.error(str(e))
    jobs = args.jobs if args.jobs is not None or args.scheduler else suite.jobs
    if (jobs is not None and jobs < 1) or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    return suite, tasks, methods, seeds, budget, jobs


def _cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser, argv) -> int:
    from .bench.benchmark import run_benchmark
    from .bench.parallel import SchedulerError
    from .bench.runner import make_specs, spec_label
    from .bench.store import ResultStoreError

    t0 = time.perf_counter()
    suite, tasks, methods, seeds, budget, jobs = _selection(args, parser)
    out = Path(args.out) if args.out else Path("runs") / suite.name
    specs = make_specs(tasks, methods, seeds, budget,
                       n_train=args.n_train or suite.n_train, n_test=args.n_test or suite.n_test,
                       hidden=suite.hidden, grid_n=suite.grid_n, threads=args.threads)
    command = "sepneuron " + " ".join(shlex.quote(a) for a in argv)
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
        from .bench.plots import plot_neuron_tuning
        from .bench.report import NEURON_TUNING, build_report

        if not (out / NEURON_TUNING).exists():  # a demo that trains: bench's job, not report's
            plot_neuron_tuning(out)
        path = build_report(out)
        for line in path.read_text().splitlines():
            if line.startswith("**Summary"):
                print(line.replace("**", ""))
        print(f"wrote {path} and {out / 'results.csv'}")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "tasks":
            return _cmd_tasks()
        if args.command == "methods":
            return _cmd_methods()
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command in ("export", "predict"):
            from . import export_cli, predict_cli

            return (export_cli if args.command == "export" else predict_cli).run(args)
        return _cmd_bench(args, parser, argv)
    except BrokenPipeError:  # e.g. `sepneuron methods | head`
        sys.stdout = None  # nothing more to flush at exit
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
