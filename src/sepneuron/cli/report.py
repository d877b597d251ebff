"""``sepneuron report DIR``: rebuild a benchmark's report from its results, training nothing.

Writes ``DIR/report.md``, ``DIR/results.csv`` and the PNG figures from
``DIR/results.sqlite``. A missing folder or a ``results.sqlite`` that is not a readable
results database exits with status 2 and one line ``sepneuron report: ...``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to the subparsers ``sub``; returns its parser."""
    r = sub.add_parser("report", help="rebuild report.md, results.csv and figures from DIR",
                       description="Rebuild DIR/report.md, DIR/results.csv and the PNG figures "
                       "from DIR/results.sqlite (no training).")
    r.add_argument("dir", metavar="DIR", help="a benchmark output folder")
    r.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    return r


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron report``; returns the exit status (2: no readable results)."""
    from ..bench.report import build_report
    from ..bench.store import ResultStoreError

    try:
        path = build_report(args.dir, figures=not args.no_figures)
    except (FileNotFoundError, ResultStoreError) as e:
        print(f"sepneuron report: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
