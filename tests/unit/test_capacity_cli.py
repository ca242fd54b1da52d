"""``gridedge capacity --peaks-kw A,B,...`` (public interface)."""

from __future__ import annotations

import json

import pytest

from gridedge.cli.main import main


@pytest.mark.parametrize(
    ("peaks", "expected"),
    [("1,4", 3.25), ("3,3,3,3,3,3,3,3,3,3,3,3", 3.0), (" 2.0 , 5.5 ", 4.0), ("0", 2.5)],
)
def test_capacity_command_prints_json(capsys, peaks, expected):
    """Prints {"capacity_kw": X} and exits 0."""
    assert main(["capacity", "--peaks-kw", peaks]) == 0
    assert json.loads(capsys.readouterr().out) == {"capacity_kw": expected}


@pytest.mark.parametrize(
    ("peaks", "named"),
    [
        ("1,2,x", "'x'"),
        ("1,,2", "''"),
        ("--peaks-kw=1,-2", "-2"),
        ("1,nan", "nan"),
        (",".join(["3"] * 13), "13"),
    ],
)
def test_capacity_command_rejects_bad_values_naming_them(capsys, peaks, named):
    """A bad number or more than 12 peaks: non-zero exit, message naming the bad value."""
    argv = ["capacity", peaks] if peaks.startswith("--") else ["capacity", "--peaks-kw", peaks]
    assert main(argv) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert named in captured.err
