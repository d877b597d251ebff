"""``sepneuron methods``: the benchmark's methods (:data:`sepneuron.bench.METHODS`), one a
line, with the suites (:data:`sepneuron.bench.suites.SUITES`) that run each."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``methods`` subcommand to the subparsers ``sub``; returns its parser."""
    return sub.add_parser("methods", help="list the methods")


def run(args: argparse.Namespace) -> int:
    """Print name, family, suites and description of every method."""
    from ..bench.methods import METHODS
    from ..bench.suites import SUITES

    width = max(len(m.name) for m in METHODS.values())
    print(f"{'name':{width}s} {'family':10s} {'suites':20s} description")
    for m in METHODS.values():
        suites = ",".join(s.name for s in SUITES.values() if m.name in s.methods)
        print(f"{m.name:{width}s} {m.family:10s} {suites:20s} {m.description}")
    return 0
