"""``sepneuron tasks``: the registered tasks (:data:`sepneuron.tasks.TASKS`), one a line."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``tasks`` subcommand to the subparsers ``sub``; returns its parser."""
    return sub.add_parser("tasks", help="list the tasks")


def run(args: argparse.Namespace) -> int:
    """Print name, input dimension, difficulty and description of every task."""
    from ..tasks import TASKS

    print(f"{'name':16s} {'dim':>3s} {'difficulty':>10s}  description")
    for t in TASKS.values():
        print(f"{t.name:16s} {t.dim:3d} {t.difficulty:10d}  {t.description}")
    return 0
