"""The XDM1041 SCPI client against the simulated meter behind an in-memory port.

The port is :class:`Xdm1041Loopback`: the simulator's own state machine, so these are real
bytes both ways; its reads advance an injected clock instead of sleeping.
"""

from __future__ import annotations

import pytest

from gridedge.errors import DeviceError, ProtocolTimeout
from gridedge.protocols.xdm1041 import MeterSetup, Xdm1041Client
from gridedge.sim.xdm1041 import Xdm1041Device, Xdm1041Loopback, Xdm1041Quirks


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def _client(device: object, clock: _Clock, timeout_s: float = 1.0) -> tuple[Xdm1041Client, Xdm1041Loopback]:
    port = Xdm1041Loopback(device=device, timeout=0.05, advance=clock.advance)  # type: ignore[arg-type]
    client = Xdm1041Client(port=port, name="meter", timeout_s=timeout_s, command_gap_s=0.0,
                           monotonic=clock, sleep=clock.advance)
    return client, port


def test_configure_sends_the_start_sequence_and_verifies_the_function() -> None:
    """At start: *IDN? check, SYST:REM, CONF with range, RATE, then FUNC1? must confirm."""
    clock = _Clock()
    dev = Xdm1041Device(value_fn=lambda: 0.0)
    client, port = _client(dev, clock)
    ident = client.configure(MeterSetup(function="CURR:DC", range=5, rate="F"))
    assert (ident.model, ident.serial) == ("XDM1041", "22511040")
    assert port.written == b"*IDN?\nSYST:REM\nCONF:CURR:DC 5\nRATE F\nFUNC1?\n"
    assert (dev.function, dev.range_fs, dev.rate, dev.remote) == ("CURR:DC", 5.0, "F", True)
    assert client.configured


@pytest.mark.parametrize(
    ("quirks", "counter", "expected"),
    [
        (Xdm1041Quirks(), "ok_lines", 0),
        (Xdm1041Quirks(ok_lines=True), "ok_lines", 3),  # SYST:REM, CONF, RATE
        (Xdm1041Quirks(double_replies=True), "duplicate_lines", 4),  # IDN, FUNC1?, 2 x MEAS1?
        (Xdm1041Quirks(ok_lines=True, double_replies=True), "ok_lines", 6),
    ],
)
def test_quirky_firmware_gives_the_same_readings(quirks: Xdm1041Quirks, counter: str, expected: int) -> None:
    """OK lines and doubled replies are skipped and counted; the readings are unaffected."""
    clock = _Clock()
    values = iter([12.5, 12.75])
    client, _ = _client(Xdm1041Device(value_fn=lambda: next(values), quirks=quirks), clock)
    client.configure(MeterSetup(range=50.0, rate="S"))
    assert client.measure().value == pytest.approx(12.5)
    assert client.measure().value == pytest.approx(12.75)
    assert getattr(client.stats, counter) == expected
    assert client.stats.timeouts == 0


def test_gbk_units_are_decoded() -> None:
    """A reading carrying a GBK unit (Ω is A6 B8) decodes to its base unit."""
    clock = _Clock()
    dev = Xdm1041Device(value_fn=lambda: 1234.0, quirks=Xdm1041Quirks(gbk_units=True))
    client, _ = _client(dev, clock)
    dev.handle_line("CONF:RES 5E3")
    reading = client.measure()
    assert (reading.value, reading.unit) == (pytest.approx(1234.0), "Ω")
    assert client.stats.undecodable_lines == 0


def test_timeout_then_recovery_on_an_injected_clock() -> None:
    """An unanswered query raises ProtocolTimeout after timeout_s; the next query works."""
    clock = _Clock()
    client, _ = _client(Xdm1041Device(value_fn=lambda: 3.3, quirks=Xdm1041Quirks(timeout_every_n=2)), clock,
                        timeout_s=0.5)
    assert client.measure().value == pytest.approx(3.3)
    start = clock.now
    with pytest.raises(ProtocolTimeout, match="MEAS1"):
        client.measure()
    assert clock.now - start == pytest.approx(0.5, abs=0.051)
    assert client.measure().value == pytest.approx(3.3)
    assert client.stats.timeouts == 1


def test_stale_lines_are_drained_before_a_query() -> None:
    """A late reply already waiting when a query is sent is discarded, not taken as the answer."""
    clock = _Clock()
    client, port = _client(Xdm1041Device(value_fn=lambda: 5.0), clock)
    port.inject(b"9.999000E+00\r\nOK\r\n4.0E+0")  # a late reading, an OK and half a line
    assert client.measure().value == pytest.approx(5.0)
    assert client.stats.stale_lines == 2  # the late reading and the half line
    assert client.stats.ok_lines == 1


class _LateLineDevice:
    """A meter whose previous (timed-out) reading arrives just after the next query was sent."""

    def __init__(self, device: Xdm1041Device, late: bytes) -> None:
        self._device = device
        self._late = late

    def feed(self, data: bytes) -> bytes:
        late, self._late = self._late, b""
        return late + self._device.feed(data)


def test_replies_are_matched_to_their_query() -> None:
    """A late measurement arriving after FUNC1? was sent is skipped: FUNC1? wants a name."""
    clock = _Clock()
    dev = _LateLineDevice(Xdm1041Device(value_fn=lambda: 1.0), b"1.234000E+00\r\n")
    client, _ = _client(dev, clock)
    assert client.function() == "VOLT"
    assert client.stats.unmatched_lines == 1


def test_undecodable_bytes_do_not_break_the_link() -> None:
    """A reply with a byte that is not GBK is still used (unit unknown) and counted."""
    clock = _Clock()
    dev = _LateLineDevice(Xdm1041Device(value_fn=lambda: 0.0, quirks=Xdm1041Quirks(timeout_every_n=1)),
                          b"2.500000E+00\xff\r\n")
    client, _ = _client(dev, clock)
    reading = client.measure()
    assert (reading.value, reading.unit) == (2.5, "?")
    assert client.stats.undecodable_lines == 1


def test_overload_is_a_reading_without_value() -> None:
    """Beyond full scale the meter answers 1E+9: a reading with no value, counted."""
    clock = _Clock()
    dev = Xdm1041Device(value_fn=lambda: 0.08)
    client, _ = _client(dev, clock)
    dev.handle_line("CONF:VOLT:DC 50E-3")
    reading = client.measure()
    assert (reading.status, reading.value) == ("overload", None)
    assert client.stats.overloads == 1


def test_a_meter_that_is_not_an_owon_xdm_is_refused() -> None:
    """*IDN? must name an OWON XDM meter; anything else is a DeviceError, not retried."""
    clock = _Clock()
    client, _ = _client(Xdm1041Device(value_fn=lambda: 0.0, model="SPM3103"), clock)
    with pytest.raises(DeviceError, match="SPM3103") as info:
        client.configure(MeterSetup())
    assert not info.value.retryable
    assert not client.configured


class _KnobLockedDevice(Xdm1041Device):
    """A meter that acknowledges CONF but stays where it is (front panel locked)."""

    def _configure(self, function: str, arg: str) -> str | None:
        return ""


def test_configure_fails_when_the_function_does_not_change() -> None:
    """FUNC1? after CONF must report the asked function, or configuration fails."""
    clock = _Clock()
    client, _ = _client(_KnobLockedDevice(value_fn=lambda: 0.0), clock)
    with pytest.raises(DeviceError, match="CURR:DC"):
        client.configure(MeterSetup(function="CURR:DC", range=10))
    assert not client.configured


def test_refused_commands_are_counted_as_nok() -> None:
    """With OK-line firmware a refused command answers nOK; the client skips and counts it."""
    clock = _Clock()
    client, _ = _client(Xdm1041Device(value_fn=lambda: 1.0, quirks=Xdm1041Quirks(ok_lines=True)), clock)
    client.command("CONF:VOLT:DC 7")
    assert client.measure().value == pytest.approx(1.0)
    assert client.stats.nok_lines == 1
