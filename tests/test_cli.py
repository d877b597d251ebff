"""The `sepneuron` command's help and listings (fast; the bench itself is in test_bench.py)."""

from __future__ import annotations

import pytest

from sepneuron.bench import METHODS
from sepneuron.cli import main
from sepneuron.tasks import TASKS


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("bench", "report", "tasks", "methods"):
        assert cmd in out


def test_bench_help_lists_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--suite", "--tasks", "--methods", "--seeds", "--budget", "--out", "--jobs"):
        assert opt in out


def test_tasks_and_methods_list_every_name(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TASKS)
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in METHODS)


@pytest.mark.parametrize("bad", [["bench", "--tasks", "nope"], ["bench", "--methods", "nope"],
                                 ["bench", "--budget", "ten"], ["bench", "--jobs", "0"],
                                 ["frobnicate"]])
def test_bad_arguments_exit_2(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(bad)
    assert e.value.code == 2
    assert capsys.readouterr().err


def test_report_of_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "sepneuron bench" in capsys.readouterr().err
