"""Run the ``sepneuron`` CLI in the test's own process (shared by the CLI test modules)."""

from __future__ import annotations

from sepneuron.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)``; argparse's exit becomes a status. Returns ``(status, stdout, stderr)``."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err
