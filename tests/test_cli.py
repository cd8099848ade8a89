"""The CLI dispatcher: help, and bad input as one line with exit code 2."""

import subprocess
import sys

import pytest

from refconv.cli import main


def test_cases_lists_ids(capsys):
    assert main(["cases", "edge"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("n1-5x5x3-k1x1x4-s1x1-same-f32")


@pytest.mark.parametrize("argv", [["cases", "bogus"], ["cases", "n1-bad"], ["cases", "random:-1"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refconv cases: error: ") and "Traceback" not in err


def test_unknown_command_and_option_exit_2():
    for argv in (["refconv-nope"], ["cases", "--bogus"]):
        proc = subprocess.run([sys.executable, "-m", "refconv", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, argv
        assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_help_lists_the_commands():
    proc = subprocess.run([sys.executable, "-m", "refconv", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "cases" in proc.stdout
