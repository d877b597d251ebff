"""The benchmark: methods and suites, the runner, the SQLite store, the report and plots.

``sepneuron bench`` / ``sepneuron report`` are the command-line front end
(:mod:`sepneuron.cli`); this package does no printing.
"""

from .benchmark import pending_specs as pending_specs, run_benchmark as run_benchmark
from .methods import METHODS as METHODS, Method as Method, get_method as get_method
from .parallel import run_specs as run_specs
from .report import build_report as build_report
from .result import RunResult as RunResult
from .runner import (
    make_spec as make_spec,
    make_specs as make_specs,
    run_key as run_key,
    run_one as run_one,
)
from .store import ResultStore as ResultStore, ResultStoreError as ResultStoreError
from .suites import SUITES as SUITES, Budget as Budget, Suite as Suite, parse_budget as parse_budget

__all__ = [
    "METHODS", "Method", "get_method", "SUITES", "Suite", "Budget", "parse_budget",
    "make_spec", "make_specs", "run_key", "run_one", "run_specs", "ResultStore",
    "run_benchmark", "pending_specs", "build_report", "RunResult", "ResultStoreError",
]
