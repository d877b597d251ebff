"""The ``sepneuron`` command (also ``python -m sepneuron``), one module per subcommand.

    sepneuron bench [--suite NAME] [--tasks ...] [--methods ...] [--seeds ...] [--budget B]
    sepneuron train (--task NAME | --data FILE.npz) --checkpoint PATH [--resume] [options]
    sepneuron export MODEL.pt OUT.onnx [--dtype float64|float32]
    sepneuron predict MODEL --data X.npz|X.npy|X.csv --out Y.npz|Y.npy|Y.csv
    sepneuron report DIR
    sepneuron tasks
    sepneuron methods

Each module (:mod:`~sepneuron.cli.bench`, :mod:`~sepneuron.cli.train`, ...) has
``add_parser(subparsers)`` and ``run(args) -> exit status``; ``sepneuron COMMAND --help``
lists the options, whose names (tasks, methods, rules, optimizers, ...) come from their
registries and whose checks from :data:`sepneuron.settings.PARAMS`. Bad input exits with
status 2 and one line ``sepneuron COMMAND: ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, export, methods, predict, report, tasks, train

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {m.__name__.rsplit(".", 1)[1]: m
            for m in (bench, train, export, predict, report, tasks, methods)}
"""Subcommand name -> its module (``add_parser``, ``run``), in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``sepneuron`` parser with every subcommand of :data:`COMMANDS`."""
    p = argparse.ArgumentParser(
        prog="sepneuron",
        description="The separated formal neuron: benchmark against backprop baselines and peers.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line, which the bench records with its results
    try:
        return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # e.g. `sepneuron methods | head`
        sys.stdout = None  # nothing more to flush at exit
        return 0
