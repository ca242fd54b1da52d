"""``gridedge p1 decode``: JSON on success, a named problem and a distinct exit code otherwise."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from gridedge.cli.main import main
from gridedge.cli.p1 import EXIT_CRC, EXIT_FRAME, EXIT_UNREADABLE

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
FLUVIUS = (DATA / "fluvius_v171.txt").read_bytes()


def test_decode_prints_json_keyed_by_dsmr_names(capsys: pytest.CaptureFixture[str]) -> None:
    """A good file prints dsmr-parser-named JSON and exits 0."""
    assert main(["p1", "decode", str(DATA / "fluvius_v171.txt")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ELECTRICITY_USED_TARIFF_2"] == {"value": 15.758, "unit": "kWh"}
    assert data["BELGIUM_MAXIMUM_DEMAND_MONTH"]["timestamp"] == "2020-05-09T13:45:58+02:00"


def test_decode_normalized(capsys: pytest.CaptureFixture[str]) -> None:
    """--normalized prints our point keys."""
    assert main(["p1", "decode", "--normalized", str(DATA / "fluvius_v171.txt")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["avg_demand_kw"], data["tariff_period"], data["water_m3"]) == (2.351, "day", 872.234)


def test_decode_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """'-' reads the telegram from stdin."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(FLUVIUS)))
    assert main(["p1", "decode", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["BELGIUM_CURRENT_AVERAGE_DEMAND"]["value"] == 2.351


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (
            FLUVIUS.replace(b"!3AD7", b"!3AD8"),
            EXIT_CRC,
            "bad CRC: CRC mismatch: telegram says 3AD8, content gives 3AD7",
        ),
        (FLUVIUS.replace(b"15.758", b"15.759"), EXIT_CRC, "bad CRC"),
        (FLUVIUS[:600], EXIT_FRAME, "truncated telegram: missing the '!' end marker"),
        (FLUVIUS[:-4], EXIT_FRAME, "CRC '3A' incomplete"),
        (b"", EXIT_FRAME, "missing the '/'"),
    ],
    ids=["crc-digits", "changed-value", "cut-body", "cut-crc", "empty"],
)
def test_decode_errors_name_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, code: int, message: str
) -> None:
    """Bad CRC and truncated telegrams exit non-zero with the reason on stderr and nothing on stdout."""
    path = tmp_path / "telegram.txt"
    path.write_bytes(content)
    assert main(["p1", "decode", str(path)]) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_decode_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file exits 2 and names the file."""
    missing = tmp_path / "nope.txt"
    assert main(["p1", "decode", str(missing)]) == EXIT_UNREADABLE
    assert f"cannot read {missing}" in capsys.readouterr().err
