"""The simulated XDM1041's behaviour on the wire (bytes in, bytes out; no pty)."""

from __future__ import annotations

import math

import pytest

from gridedge.errors import ConfigError
from gridedge.sim.xdm1041 import SimpleBattery, Xdm1041Device, Xdm1041Quirks, make_battery_pair


def _dev(value: float = 12.345678, **quirks: object) -> Xdm1041Device:
    return Xdm1041Device(value_fn=lambda: value, quirks=Xdm1041Quirks(**quirks))


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"*IDN?\n", b"OWON,XDM1041,22511040,V4.0.0,3\r\n"),
        (b"*IDN?\r\n", b"OWON,XDM1041,22511040,V4.0.0,3\r\n"),
        (b"FUNC1?\n", b'"VOLT"\r\n'),
        (b"FUNC?\n", b'"VOLT"\r\n'),
        (b"FUNC2?\n", b"NONe\r\n"),
        (b"MEAS2?\n", b"NONe\r\n"),
        (b"RATE?\n", b"M\r\n"),
        (b"MEAS1?\n", b"1.234600E+01\r\n"),  # auto range 50 V: 50000 counts, 1 mV steps
        (b"measure1?\n", b"1.234600E+01\r\n"),
    ],
)
def test_queries_are_answered_with_crlf_lines(line: bytes, reply: bytes) -> None:
    """Replies end in CRLF; commands may end in LF or CRLF and use long or lower-case forms."""
    assert _dev().feed(line) == reply


@pytest.mark.parametrize("line", [b"SYST:ERR?\n", b"MEAS:VOLT:DC?\n", b"VOLT:RANG?\n"])
def test_unknown_queries_get_no_reply(line: bytes) -> None:
    """The XDM dialect is flat: hierarchical SCPI queries time out with no answer."""
    assert _dev(ok_lines=True).feed(line) == b""


@pytest.mark.parametrize(
    ("line", "ok"),
    [(b"SYST:REM\n", b"OK\r\n"), (b"CONF:VOLT:DC 50E-3\n", b"OK\r\n"), (b"RATE F\n", b"OK\r\n"),
     (b":CONFigure:VOLTage:DC 5\r\n", b"OK\r\n"),
     (b"CONF:VOLT:DC 7\n", b"nOK\r\n"), (b"RATE X\n", b"nOK\r\n"), (b"CONF:CURR:DC AUTO\n", b"nOK\r\n"),
     (b"BOGUS\n", b"nOK\r\n")],
)
def test_ok_line_firmware_acknowledges_every_command(line: bytes, ok: bytes) -> None:
    """With ok_lines, accepted commands answer OK and refused ones nOK; without, nothing."""
    assert _dev(ok_lines=True).feed(line) == ok
    assert _dev().feed(line) == b""


def test_double_replies_send_every_line_twice() -> None:
    """double_replies: the same line twice."""
    assert _dev(double_replies=True).feed(b"FUNC1?\n") == b'"VOLT"\r\n"VOLT"\r\n'


def test_every_nth_query_is_lost() -> None:
    """timeout_every_n counts all queries and leaves every n-th one unanswered."""
    dev = _dev(timeout_every_n=3)
    replies = [dev.feed(b"MEAS1?\n") for _ in range(6)]
    assert [bool(r) for r in replies] == [True, True, False, True, True, False]


@pytest.mark.parametrize(
    ("conf", "value", "reply"),
    [
        (b"CONF:RES 5E3\n", 1234.0, "1.234000E+03Ω"),
        (b"CONF:TEMP:RTD PT100\n", 23.45, "2.345000E+01℃"),
        (b"CONF:VOLT:DC 5\n", 3.3, "3.300000E+00V"),
    ],
)
def test_gbk_units_go_on_the_wire_as_gbk(conf: bytes, value: float, reply: str) -> None:
    """gbk_units: the unit follows the number, encoded in GBK (Ω = A6 B8, ℃ = A1 E6)."""
    dev = _dev(value, gbk_units=True)
    dev.feed(conf)
    assert dev.feed(b"MEAS1?\n") == reply.encode("gbk") + b"\r\n"


@pytest.mark.parametrize(
    ("conf", "value", "reply"),
    [
        (b"CONF:VOLT:DC 50E-3\n", 0.0549, b"5.490000E-02\r\n"),  # within 110 % of full scale
        (b"CONF:VOLT:DC 50E-3\n", 0.0551, b"1E+9\r\n"),
        (b"CONF:VOLT:DC AUTO\n", 1200.0, b"1E+9\r\n"),
        (b"CONF:VOLT:DC AUTO\n", math.nan, b"1E+9\r\n"),
        (b"CONF:VOLT:DC 5\n", 1.234567, b"1.234600E+00\r\n"),  # 0.1 mV steps on the 5 V range
    ],
)
def test_readings_follow_range_resolution_and_overload(conf: bytes, value: float, reply: bytes) -> None:
    """A reading is quantised to full scale / 50000 counts; beyond 110 % it is 1E+9."""
    dev = _dev(value)
    dev.feed(conf)
    assert dev.feed(b"MEAS1?\n") == reply


def test_simple_battery_sags_under_load_and_counts_charge() -> None:
    """Terminal voltage = OCV(SoC) - I·R; state of charge follows the current on the clock."""
    now = [0.0]
    battery = SimpleBattery(capacity_ah=100.0, empty_v=12.0, full_v=13.6, internal_ohm=0.01, soc=0.5,
                            current_fn=lambda t: 50.0, clock=lambda: now[0])
    volts, amps = battery()
    assert (volts, amps) == (pytest.approx(12.8 - 0.5), 50.0)
    now[0] = 3600.0
    battery()
    assert battery.soc == pytest.approx(0.0)


@pytest.mark.parametrize("kwargs", [{"shunt_ohm": 0.0}, {"polarity": 2}])
def test_invalid_battery_pairs(kwargs: dict) -> None:
    """A pair needs a positive shunt and a polarity of ±1."""
    with pytest.raises(ConfigError):
        make_battery_pair(battery=lambda: (12.0, 1.0), **kwargs)
