"""A transport-agnostic SCPI client for one OWON XDM1041 over a pyserial-like port.

The meter's line discipline is loose: some firmware acknowledges every command with ``OK``,
some units send a reply twice, a query now and then goes unanswered, and a reply that arrives
after its query timed out would otherwise be taken for the answer to the next one. The client
therefore resynchronises before every query (drains whatever is waiting, finishing any half
line), skips ``OK``/``nOK`` lines, matches the reply to the query with a per-query matcher
(a number for ``MEAS1?``, a quoted name for ``FUNC1?``), swallows an immediate duplicate, and
counts every quirk it saw in :class:`LinkStats` so that diagnostics can show them.

The port only needs ``write(bytes)`` and ``read(size) -> bytes`` returning after at most a short
timeout (pyserial with ``timeout=0.05`` does); ``in_waiting`` and ``flush()`` are used when
present. Deadlines use an injected monotonic clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from gridedge.errors import ConfigError, DeviceError, ProtocolTimeout
from gridedge.protocols.xdm1041.parsing import (
    Identity,
    Reading,
    decode_line,
    format_range,
    is_ack_line,
    is_nack_line,
    looks_like_function,
    looks_like_idn,
    looks_like_measurement,
    parse_function,
    parse_idn,
    parse_measurement,
)

__all__ = [
    "EXPECTED_FUNCTION",
    "RANGES",
    "LinkStats",
    "MeterFunction",
    "MeterSetup",
    "PortUnavailable",
    "Rate",
    "SerialLike",
    "Xdm1041Client",
    "open_port",
]

_log = logging.getLogger(__name__)

MeterFunction = Literal["VOLT:DC", "CURR:DC"]
Rate = Literal["S", "M", "F"]

#: what ``FUNC1?`` answers after ``CONF:<function>``
EXPECTED_FUNCTION: dict[str, str] = {"VOLT:DC": "VOLT", "CURR:DC": "CURR"}

#: full-scale ranges the XDM1041 accepts after ``CONF:<function>``, in V or A
RANGES: dict[str, tuple[float, ...]] = {
    "VOLT:DC": (50e-3, 500e-3, 5.0, 50.0, 500.0, 1000.0),
    "CURR:DC": (500e-6, 5e-3, 50e-3, 500e-3, 5.0, 10.0),
}

_MAX_LINE_BYTES = 256
#: how long a drain waits for the end of a half-received stale line (20 bytes at 9600 baud)
_DRAIN_LINE_S = 0.025


class PortUnavailable(DeviceError):
    """A meter's port is missing or busy now (a USB adapter unplugged, a simulator not yet up)."""

    retryable = True


class SerialLike(Protocol):
    """The part of a pyserial ``Serial`` the client uses."""

    def write(self, data: bytes, /) -> int | None:
        """Send bytes."""

    def read(self, size: int = 1, /) -> bytes:
        """Return up to ``size`` bytes, after at most the port's (short) timeout."""


@dataclass
class LinkStats:
    """Counters of what one meter's link went through (for diagnostics points)."""

    queries: int = 0
    timeouts: int = 0
    ok_lines: int = 0
    nok_lines: int = 0
    duplicate_lines: int = 0
    stale_lines: int = 0
    unmatched_lines: int = 0
    undecodable_lines: int = 0
    overloads: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain mapping."""
        return asdict(self)


@dataclass(frozen=True)
class MeterSetup:
    """How to configure one meter at start: function, range (None = no range argument,
    "AUTO" (voltage only), or a full scale in V/A from :data:`RANGES`) and sampling rate
    (S/M/F = slow/medium/fast)."""

    function: MeterFunction = "VOLT:DC"
    range: float | str | None = None
    rate: Rate = "M"

    def __post_init__(self) -> None:
        if self.function not in EXPECTED_FUNCTION:
            raise ConfigError(f"function must be one of {sorted(EXPECTED_FUNCTION)}, got {self.function!r}")
        if self.rate not in ("S", "M", "F"):
            raise ConfigError(f"rate must be S, M or F, got {self.rate!r}")
        if self.range is None or (isinstance(self.range, str) and self.range.strip().upper() == "AUTO"):
            if self.function == "CURR:DC" and self.range is not None:
                raise ConfigError("the XDM1041 has no auto range for DC current; give a full scale")
            return
        try:
            full_scale = float(self.range)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"range must be AUTO or a number, got {self.range!r}") from exc
        if not any(abs(full_scale - r) <= r * 1e-9 for r in RANGES[self.function]):
            raise ConfigError(
                f"{self.function} range {self.range!r} is not one of {RANGES[self.function]}")

    def conf_command(self) -> str:
        """The ``CONF:...`` line for this setup."""
        arg = format_range(self.range)
        return f"CONF:{self.function}" + (f" {arg}" if arg else "")


class Xdm1041Client:
    """Talks SCPI to one XDM1041 over ``port``. Not thread-safe: one caller at a time.

    ``name`` labels errors and logs ("voltage meter"); ``timeout_s`` bounds each query.
    ``command_gap_s`` is waited (with the injected ``sleep``) after each command, because the
    meter drops lines that arrive while it is switching relays. ``duplicate_window_s`` is how
    long to wait for the copy of a reply once the meter has been seen to double its replies.
    """

    def __init__(
        self,
        *,
        port: SerialLike,
        name: str = "xdm1041",
        timeout_s: float = 1.0,
        command_gap_s: float = 0.05,
        duplicate_window_s: float = 0.01,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self._port = port
        self._name = name
        self._timeout_s = timeout_s
        self._gap_s = max(0.0, command_gap_s)
        self._duplicate_window_s = max(0.0, duplicate_window_s)
        self._monotonic = monotonic
        self._sleep = sleep
        self._buf = bytearray()
        self.stats = LinkStats()
        self.identity: Identity | None = None
        self._last_reply: str | None = None
        self.configured: bool = False

    @property
    def name(self) -> str:
        """The label used in errors and logs."""
        return self._name

    def command(self, line: str) -> None:
        """Send a command that has no reply (an ``OK`` some firmware adds is skipped later)."""
        self._write(line)
        if self._gap_s:
            self._sleep(self._gap_s)

    def query(
        self,
        line: str,
        *,
        accept: Callable[[str], bool] | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Send a query and return its reply line.

        Stale input is drained first; ``OK``/``nOK`` lines and lines ``accept`` rejects are
        skipped and counted. Raises ProtocolTimeout (retryable) when no acceptable line arrives
        within ``timeout_s``.
        """
        self._drain()
        self.stats.queries += 1
        self._write(line)
        limit = self._timeout_s if timeout_s is None else timeout_s
        deadline = self._monotonic() + limit
        while True:
            reply = self._read_line(deadline)
            if reply is None:
                self.stats.timeouts += 1
                raise ProtocolTimeout(f"{self._name}: no reply to {line!r} within {limit:g} s")
            if not reply:
                continue
            if is_ack_line(reply):
                self.stats.ok_lines += 1
                continue
            if is_nack_line(reply):
                self.stats.nok_lines += 1
                _log.warning("%s: the meter refused a command (nOK)", self._name)
                continue
            if accept is not None and not accept(reply):
                if reply == self._last_reply:
                    self.stats.duplicate_lines += 1
                    continue
                self.stats.unmatched_lines += 1
                _log.debug("%s: skipped %r while waiting for the reply to %r", self._name, reply, line)
                continue
            self._swallow_duplicate(reply)
            self._last_reply = reply
            return reply

    def identify(self) -> Identity:
        """Ask ``*IDN?``; DeviceError (not retryable) if the device is not an OWON XDM meter."""
        ident = parse_idn(self.query("*IDN?", accept=looks_like_idn))
        if not ident.is_owon_xdm:
            raise DeviceError(f"{self._name}: expected an OWON XDM meter, found {ident.manufacturer} {ident.model}")
        self.identity = ident
        return ident

    def function(self) -> str:
        """The main display's function as ``FUNC1?`` names it (``VOLT``, ``CURR`` ...)."""
        return parse_function(self.query("FUNC1?", accept=looks_like_function))

    def measure(self) -> Reading:
        """Read the main display (``MEAS1?``); overload gives a reading without value."""
        reading = parse_measurement(self.query("MEAS1?", accept=looks_like_measurement))
        if reading.status == "overload":
            self.stats.overloads += 1
        return reading

    def configure(self, setup: MeterSetup) -> Identity:
        """Bring the meter into a known state: IDN check, remote mode, function and range,
        sampling rate, then verify with ``FUNC1?``. DeviceError if the meter ends up in
        another function."""
        self.configured = False
        ident = self.identify()
        self.command("SYST:REM")
        self.command(setup.conf_command())
        self.command(f"RATE {setup.rate}")
        actual = self.function()
        expected = EXPECTED_FUNCTION[setup.function]
        if actual != expected:
            raise DeviceError(
                f"{self._name}: asked for {setup.function}, the meter reports FUNC1? {actual!r}")
        self.configured = True
        _log.info("%s: %s %s serial %s firmware %s configured %s rate %s", self._name,
                  ident.manufacturer, ident.model, ident.serial, ident.firmware,
                  setup.conf_command(), setup.rate)
        return ident

    def _write(self, line: str) -> None:
        try:
            self._port.write(line.encode("ascii") + b"\n")
            flush = getattr(self._port, "flush", None)
            if flush is not None:
                flush()
        except OSError as exc:  # pyserial's SerialException is an OSError
            raise PortUnavailable(f"{self._name}: cannot send {line!r}: {exc}") from exc

    def _waiting(self) -> int:
        try:
            return int(getattr(self._port, "in_waiting", 0) or 0)
        except OSError as exc:
            raise PortUnavailable(f"{self._name}: port failed: {exc}") from exc

    def _fill(self) -> bool:
        """Read what the port has (waiting at most its timeout); True if bytes arrived."""
        try:
            chunk = self._port.read(1)
            if not chunk:
                return False
            waiting = int(getattr(self._port, "in_waiting", 0) or 0)
            if waiting:
                chunk += self._port.read(waiting)
        except OSError as exc:
            raise PortUnavailable(f"{self._name}: port failed: {exc}") from exc
        self._buf += chunk
        if len(self._buf) > 4 * _MAX_LINE_BYTES and b"\n" not in self._buf:
            # no line end in sight: noise, not a reply
            self.stats.unmatched_lines += 1
            self._buf.clear()
        return True

    def _take_line(self) -> str | None:
        idx = self._buf.find(b"\n")
        if idx < 0:
            return None
        raw = bytes(self._buf[:idx])
        del self._buf[: idx + 1]
        text, clean = decode_line(raw)
        if not clean:
            self.stats.undecodable_lines += 1
        return text

    def _read_line(self, deadline: float) -> str | None:
        while True:
            line = self._take_line()
            if line is not None:
                return line
            if self._monotonic() >= deadline:
                return None
            self._fill()

    def _drain(self) -> None:
        """Discard everything already received, finishing a half-received line first."""
        while self._waiting() > 0:
            if not self._fill():
                break
        if self._buf and not self._buf.endswith(b"\n"):
            deadline = self._monotonic() + _DRAIN_LINE_S
            while not self._buf.endswith(b"\n") and self._monotonic() < deadline:
                self._fill()
        while True:
            line = self._take_line()
            if line is None:
                break
            if is_ack_line(line):
                self.stats.ok_lines += 1
            elif is_nack_line(line):
                self.stats.nok_lines += 1
            elif line and line == self._last_reply:
                # the second copy of the last reply, arrived after we took the first
                self.stats.duplicate_lines += 1
            elif line:
                self.stats.stale_lines += 1
                _log.debug("%s: drained stale line %r", self._name, line)
        if self._buf:  # a fragment that never completed
            self.stats.stale_lines += 1
        self._buf.clear()

    def _swallow_duplicate(self, reply: str) -> None:
        """Drop an immediate copy of ``reply`` (double-reply firmware).

        Once the link has shown a doubled reply, wait up to ``duplicate_window_s`` for the copy
        so that it cannot be taken for the answer to the next query; before that, only a copy
        already received is dropped (no delay for well-behaved firmware)."""
        if self.stats.duplicate_lines > 0:
            deadline = self._monotonic() + self._duplicate_window_s
            while b"\n" not in self._buf and self._monotonic() < deadline:
                self._fill()
        while self._waiting() > 0 and b"\n" not in self._buf:
            if not self._fill():
                break
        idx = self._buf.find(b"\n")
        if idx < 0:
            return
        text, _ = decode_line(bytes(self._buf[:idx]))
        if text == reply:
            del self._buf[: idx + 1]
            self.stats.duplicate_lines += 1



def open_port(url: str, *, baudrate: int = 115200, read_timeout_s: float = 0.02) -> Any:
    """Open a meter's port with pyserial: a device path (``/dev/ttyUSB0``, a simulator's pty)
    or any pyserial URL (``socket://host:port`` for a serial server, ``loop://``), 8N1.

    ``read_timeout_s`` is pyserial's per-read wait, kept short: the client enforces the query
    timeout itself. DeviceError (retryable) when the port cannot be opened."""
    import serial  # pyserial; imported here so the pure parts need no serial stack

    try:
        return serial.serial_for_url(url, baudrate=baudrate, bytesize=8, parity="N", stopbits=1,
                                     timeout=read_timeout_s, write_timeout=1.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortUnavailable(f"cannot open {url!r}: {exc}") from exc
