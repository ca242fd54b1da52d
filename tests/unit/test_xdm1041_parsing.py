"""Decoding and parsing of OWON XDM1041 reply lines (pure, real bytes)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridedge.errors import ConfigError, FrameError
from gridedge.protocols.xdm1041 import MeterSetup, decode_line, format_range, parse_function, parse_idn
from gridedge.protocols.xdm1041.parsing import (
    is_ack_line,
    is_nack_line,
    looks_like_function,
    looks_like_measurement,
    parse_measurement,
)


@pytest.mark.parametrize(
    ("raw", "value", "unit"),
    [
        (b"1.234567E+01\r\n", 12.34567, ""),
        (b"-3.803741E-05\r\n", -3.803741e-05, ""),
        (b"+0.000000E+00\n", 0.0, ""),
        (b"-00.107mVDC\r\n", -0.000107, "V"),
        (b"12.3 V\r\n", 12.3, "V"),
        (b"1.000000E+02\xa6\xb8\r\n", 100.0, "Ω"),  # Ω in GBK
        (b"2.5k\xa6\xb8\r\n", 2500.0, "Ω"),
        (b"2.345000E+01\xa1\xe6\r\n", 23.45, "°C"),  # ℃ in GBK
        (b"5.0 mA\r\n", 0.005, "A"),
        (b"4.2 MOHM\r\n", 4.2e6, "Ω"),
        (b"7.5E-01ADC\r\n", 0.75, "A"),
    ],
)
def test_valid_measurement_lines_parse_to_base_units(raw: bytes, value: float, unit: str) -> None:
    """A reading is a number in engineering notation, optionally with a (prefixed, GBK) unit."""
    text, clean = decode_line(raw)
    reading = parse_measurement(text)
    assert clean
    assert reading.status == "ok"
    assert reading.value == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert reading.unit == unit
    assert looks_like_measurement(text)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "12 furlongs", "E+01", "1.2E", '"VOLT"', "OK", "m", "5 m"])
def test_invalid_measurement_lines_raise_frame_error(text: str) -> None:
    """Anything that is not a number with a known unit, an overload or NONe is refused."""
    with pytest.raises(FrameError):
        parse_measurement(text)
    assert not looks_like_measurement(text)


@pytest.mark.parametrize("text", ["1E+9", "1.000000E+09", "-1E+9", "9.9E37", "OVERLOAD", "OL", " overload ", "-OL"])
def test_overload_reports_have_no_value(text: str) -> None:
    """OWON meters report overload as 1E+9 (sigrok's limit for them) or as a word: no value."""
    reading = parse_measurement(text)
    assert reading.status == "overload"
    assert reading.value is None


def test_none_reply_of_an_unused_display_has_no_value() -> None:
    """MEAS2? answers NONe when the second display is off."""
    reading = parse_measurement("NONe")
    assert (reading.status, reading.value) == ("none", None)


def test_undecodable_bytes_are_replaced_never_raised() -> None:
    """A byte that is not valid GBK is replaced; the number before it still counts."""
    text, clean = decode_line(b"1.500000E+00\xff\r\n")
    assert not clean
    reading = parse_measurement(text)
    assert reading.value == 1.5
    assert reading.unit == "?"


def test_control_bytes_and_line_endings_are_stripped() -> None:
    """NUL bytes a meter emits after power-up and CR/LF never reach the parser."""
    assert decode_line(b"\x00\x00\x00\x01OWON,XDM1041,1,V1\r\n") == ("OWON,XDM1041,1,V1", True)


@given(st.binary(max_size=64))
def test_decode_line_never_raises(raw: bytes) -> None:
    """Whatever bytes arrive, decoding yields text (the link cannot be wedged by noise)."""
    text, _ = decode_line(raw)
    assert isinstance(text, str)
    assert "\n" not in text and "\r" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OWON,XDM1041,22511040,V4.0.0,3", ("OWON", "XDM1041", "22511040", "V4.0.0", "3")),
        ("OWON,XDM1041,24412417,V3.7.2", ("OWON", "XDM1041", "24412417", "V3.7.2", "")),
    ],
)
def test_valid_idn_replies(text: str, expected: tuple[str, ...]) -> None:
    """*IDN? answers manufacturer, model, serial, firmware and (firmware 4.x) hardware."""
    ident = parse_idn(text)
    assert (ident.manufacturer, ident.model, ident.serial, ident.firmware, ident.hardware) == expected
    assert ident.is_owon_xdm


@pytest.mark.parametrize("text", ["OWON", "OK", "1.2E+00", ",XDM1041,1,V1", "a,b,c,d,e,f"])
def test_invalid_idn_replies(text: str) -> None:
    """A line that is not a 4- or 5-field IDN is refused."""
    with pytest.raises(FrameError):
        parse_idn(text)


@pytest.mark.parametrize(("text", "name"), [('"VOLT"', "VOLT"), ('"CURR"', "CURR"), ('"VOLT AC"', "VOLT AC"),
                                            ("RES", "RES"), ("NONe", "NONE")])
def test_valid_function_replies(text: str, name: str) -> None:
    """FUNC1? answers a quoted function name; AC is spelled with a space."""
    assert parse_function(text) == name


@pytest.mark.parametrize("text", ["1.234E+00", "", '"V"', "OK", '"VOLT:DC:RANGE"'])
def test_invalid_function_replies(text: str) -> None:
    """A measurement or an OK line is never taken for a function name."""
    assert not looks_like_function(text)


@pytest.mark.parametrize(("text", "ack", "nack"), [("OK", True, False), ("ok", True, False), ("nOK", False, True),
                                                   ("OKAY", False, False), ("1E+0", False, False)])
def test_ack_lines(text: str, ack: bool, nack: bool) -> None:
    """Newer firmware acknowledges commands with OK, refuses them with nOK."""
    assert (is_ack_line(text), is_nack_line(text)) == (ack, nack)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.05, "50E-3"), (0.5, "500E-3"), (5, "5"), (50.0, "50"), (1000, "1000"), (500e-6, "500E-6"),
     ("auto", "AUTO"), ("10", "10"), (None, "")],
)
def test_valid_range_arguments(value: float | str | None, text: str) -> None:
    """Ranges go on the wire as AUTO, a plain number from 1 up, engineering notation below."""
    assert format_range(value) == text


@pytest.mark.parametrize("value", [0, -1, "x", math.inf])
def test_invalid_range_arguments(value: float | str) -> None:
    """A range must be AUTO or a positive number."""
    with pytest.raises(FrameError):
        format_range(value)


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        (MeterSetup(), "CONF:VOLT:DC"),
        (MeterSetup(range="AUTO"), "CONF:VOLT:DC AUTO"),
        (MeterSetup(range=0.05, rate="S"), "CONF:VOLT:DC 50E-3"),
        (MeterSetup(function="CURR:DC", range=10), "CONF:CURR:DC 10"),
    ],
)
def test_valid_meter_setups(setup: MeterSetup, command: str) -> None:
    """A setup names a function, a range the meter has and a sampling rate."""
    assert setup.conf_command() == command


@pytest.mark.parametrize(
    "kwargs",
    [{"function": "RES"}, {"rate": "X"}, {"range": 7.0}, {"function": "CURR:DC", "range": "AUTO"},
     {"range": "fast"}],
)
def test_invalid_meter_setups(kwargs: dict) -> None:
    """Unknown functions and rates, ranges the meter lacks, and auto current range are refused."""
    with pytest.raises(ConfigError):
        MeterSetup(**kwargs)
