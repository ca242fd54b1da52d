"""A simulated OWON XDM1041 bench multimeter on a pty, and a battery-monitor pair of them.

:class:`Xdm1041Device` is the meter's SCPI state machine without I/O: bytes in, reply bytes out.
It answers the subset a logger uses (``*IDN?``, ``*RST``, ``SYST:REM``/``SYST:LOC``,
``CONF:VOLT:DC|CURR:DC|RES|TEMP [range]``, ``RATE S|M|F``, ``RATE?``, ``MEAS?``, ``MEAS1?``,
``MEAS2?``, ``FUNC?``, ``FUNC1?``, ``FUNC2?``) the way real units do: replies end in CRLF,
unknown queries get no answer at all, numbers look like ``-3.803741E-05``, readings beyond the
range's full scale (+10 %) come back as ``1E+9``, and the function is a quoted name.

Real firmware quirks, each switchable in :class:`Xdm1041Quirks`:

- ``ok_lines``: every non-query is acknowledged with ``OK`` (``nOK`` when refused), as
  firmware from 2021 on does;
- ``double_replies``: every line is sent twice;
- ``timeout_every_n``: every n-th query (counting all queries, ``*IDN?`` included) gets no reply;
- ``gbk_units``: measurements carry their unit, GBK-encoded (``Ω``, ``℃`` are two bytes each).

:class:`Xdm1041Simulator` puts a device on a :class:`~gridedge.sim.serial_pacing.PacedPty`
whose bytes leave at the configured baud rate (115200 8N1 by default), optionally behind a symlink with a stable name. :class:`Xdm1041Loopback`
is the same device behind an in-memory pyserial-like port, for unit tests and dry runs.
:func:`make_battery_pair` builds the battery demo: a system-voltage meter and a shunt meter fed
from one battery model.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing_extensions import Self

from gridedge.errors import ConfigError
from gridedge.sim.serial_pacing import PacedPty

__all__ = [
    "BatteryMeterPair",
    "SimpleBattery",
    "Xdm1041Device",
    "Xdm1041Loopback",
    "Xdm1041Quirks",
    "Xdm1041Simulator",
    "demo_current_a",
    "make_battery_pair",
]

_log = logging.getLogger(__name__)

#: full-scale ranges per function (V, A, Ω); TEMP has none
_RANGES: dict[str, tuple[float, ...]] = {
    "VOLT:DC": (50e-3, 500e-3, 5.0, 50.0, 500.0, 1000.0),
    "CURR:DC": (500e-6, 5e-3, 50e-3, 500e-3, 5.0, 10.0),
    "RES": (500.0, 5e3, 50e3, 500e3, 5e6, 50e6),
    "TEMP": (),
}
_FUNC_NAME = {"VOLT:DC": "VOLT", "CURR:DC": "CURR", "RES": "RES", "TEMP": "TEMP"}
_UNIT = {"VOLT:DC": "V", "CURR:DC": "A", "RES": "Ω", "TEMP": "℃"}
_AUTO_ALLOWED = {"VOLT:DC", "RES"}
_LONG_FORMS = {
    "CONFIGURE": "CONF", "VOLTAGE": "VOLT", "CURRENT": "CURR", "MEASURE": "MEAS",
    "FUNCTION": "FUNC", "FUNCTION1": "FUNC1", "FUNCTION2": "FUNC2", "SYSTEM": "SYST",
    "REMOTE": "REM", "LOCAL": "LOC", "RESISTANCE": "RES", "TEMPERATURE": "TEMP",
    "MEASURE1": "MEAS1", "MEASURE2": "MEAS2",
}
#: overload report of OWON XDM meters (sigrok scpi-dmm's infinity limit for them)
_OVERLOAD = "1E+9"
#: the display reads up to 10 % beyond a range's nominal full scale before it overloads
_OVER_RANGE = 1.1
#: 4 1/2 digits: counts per full scale for slow/medium, and for fast sampling
_COUNTS = {"S": 50000, "M": 50000, "F": 5000}


@dataclass(frozen=True)
class Xdm1041Quirks:
    """Firmware quirks to reproduce (all off = a well-behaved meter)."""

    ok_lines: bool = False
    double_replies: bool = False
    #: every n-th query gets no reply (0 = never)
    timeout_every_n: int = 0
    gbk_units: bool = False

    def __post_init__(self) -> None:
        if self.timeout_every_n < 0:
            raise ConfigError(f"timeout_every_n must be >= 0, got {self.timeout_every_n}")


class Xdm1041Device:
    """The meter's SCPI behaviour, no I/O. Thread-safe.

    ``value_fn()`` returns what the inputs see, in the unit of the configured function: volts
    across the inputs for ``VOLT:DC`` (the normal case here), amps through them for ``CURR:DC``,
    ohms for ``RES``, °C for ``TEMP``. A non-finite value reads as overload.
    """

    def __init__(
        self,
        *,
        value_fn: Callable[[], float],
        quirks: Xdm1041Quirks | None = None,
        model: str = "XDM1041",
        serial: str = "22511040",
        firmware: str = "V4.0.0",
        hardware: str = "3",
    ) -> None:
        self._value_fn = value_fn
        self.quirks = quirks or Xdm1041Quirks()
        self._idn = ",".join(f for f in ("OWON", model, serial, firmware, hardware) if f)
        self._lock = threading.Lock()
        self._inbuf = bytearray()
        self.queries_seen = 0
        self.lines_seen: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self.function = "VOLT:DC"
        self.range_fs: float | None = None  # None = auto
        self.rate = "M"
        self.remote = False

    def set_quirks(self, quirks: Xdm1041Quirks) -> None:
        """Switch quirk modes at run time (the demo toggles them)."""
        with self._lock:
            self.quirks = quirks

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the host; return the bytes the meter sends back (maybe none)."""
        out = bytearray()
        with self._lock:
            self._inbuf += data
            while True:
                idx = self._inbuf.find(b"\n")
                if idx < 0:
                    break
                raw = bytes(self._inbuf[:idx]).rstrip(b"\r")
                del self._inbuf[: idx + 1]
                line = raw.decode("ascii", errors="replace").strip()
                if line:
                    out += self._respond(line)
            if len(self._inbuf) > 1024:  # a host spraying garbage without line ends
                self._inbuf.clear()
        return bytes(out)

    def _respond(self, line: str) -> bytes:
        self.lines_seen.append(line)
        is_query = line.endswith("?")
        if is_query:
            self.queries_seen += 1
            n = self.quirks.timeout_every_n
            if n and self.queries_seen % n == 0:
                return b""
        reply = self.handle_line(line)
        lines: list[bytes] = []
        if is_query:
            if reply is not None:
                lines.append(reply.encode("gbk"))
        elif self.quirks.ok_lines:
            lines.append(b"OK" if reply is not None else b"nOK")
        copies = 2 if self.quirks.double_replies else 1
        return b"".join(line_bytes + b"\r\n" for line_bytes in lines for _ in range(copies))

    def handle_line(self, line: str) -> str | None:
        """Execute one line. For a query: the reply text, or None for no reply (unknown query).
        For a command: "" when accepted, None when refused."""
        head, _, arg = line.strip().partition(" ")
        head = head.upper().lstrip(":")
        query = "?" if head.endswith("?") else ""
        words = [_LONG_FORMS.get(w, w) for w in head.rstrip("?").split(":")]
        cmd = ":".join(words) + query
        arg = arg.strip().upper()
        if cmd == "*IDN?":
            return self._idn
        if cmd == "*RST":
            self._reset()
            return ""
        if cmd == "SYST:REM":
            self.remote = True
            return ""
        if cmd == "SYST:LOC":
            self.remote = False
            return ""
        if cmd in ("MEAS?", "MEAS1?"):
            return self._measure()
        if cmd in ("MEAS2?", "FUNC2?"):
            return "NONe"
        if cmd in ("FUNC?", "FUNC1?"):
            return f'"{_FUNC_NAME[self.function]}"'
        if cmd == "RATE?":
            return self.rate
        if cmd == "RATE":
            if arg in ("S", "M", "F"):
                self.rate = arg
                return ""
            return None
        if cmd.startswith("CONF:"):
            return self._configure(cmd[5:], arg)
        return None

    def _configure(self, function: str, arg: str) -> str | None:
        if function in ("TEMP:RTD", "TEMP"):
            self.function, self.range_fs = "TEMP", None
            return ""
        if function not in _RANGES:
            return None
        ranges = _RANGES[function]
        if arg in ("", "AUTO"):
            if function not in _AUTO_ALLOWED:
                if arg == "AUTO":
                    return None
                self.function, self.range_fs = function, ranges[-1]
                return ""
            self.function, self.range_fs = function, None
            return ""
        try:
            full_scale = float(arg)
        except ValueError:
            return None
        match = [r for r in ranges if abs(r - full_scale) <= r * 1e-9]
        if not match:
            return None
        self.function, self.range_fs = function, match[0]
        return ""

    def _measure(self) -> str:
        text = self._measure_number()
        if self.quirks.gbk_units:
            text += _UNIT[self.function]
        return text

    def _measure_number(self) -> str:
        try:
            value = float(self._value_fn())
        except (ArithmeticError, TypeError, ValueError):  # a broken model reads as overload; keep serving
            _log.exception("xdm1041 sim: value_fn failed")
            return _OVERLOAD
        if not math.isfinite(value):
            return _OVERLOAD
        ranges = _RANGES[self.function]
        if ranges:
            full_scale = self.range_fs
            if full_scale is None:
                full_scale = next((r for r in ranges if abs(value) <= r), ranges[-1])
            if abs(value) > full_scale * _OVER_RANGE:
                return _OVERLOAD
            step = full_scale / _COUNTS[self.rate]
            value = round(value / step) * step
        return f"{value:.6E}"


class Xdm1041Simulator:
    """An :class:`Xdm1041Device` served on a paced pty by a background thread.

    ``port_path`` (after :meth:`start`) is the name the client opens; with ``link_path`` a
    symlink of that name points to it.
    """

    def __init__(
        self,
        *,
        value_fn: Callable[[], float],
        quirks: Xdm1041Quirks | None = None,
        baudrate: int = 115200,
        link_path: str | os.PathLike | None = None,
        serial: str = "22511040",
        firmware: str = "V4.0.0",
    ) -> None:
        self.device = Xdm1041Device(value_fn=value_fn, quirks=quirks, serial=serial, firmware=firmware)
        self._baudrate = baudrate
        self._link_path = link_path
        self._pty: PacedPty | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port_path(self) -> str:
        """The pty the host opens (the symlink when one was asked for)."""
        if self._pty is None:
            raise RuntimeError("simulator not started")
        return str(self._link_path) if self._link_path else self._pty.port_path

    def start(self) -> Xdm1041Simulator:
        """Open the pty and start answering."""
        if self._thread is not None:
            return self
        self._pty = PacedPty(baudrate=self._baudrate, bits_per_byte=10, link_path=self._link_path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"xdm1041-sim {self._pty.port_path}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and release the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        pty = self._pty
        assert pty is not None
        while not self._stop.is_set():
            data = pty.read(timeout=0.05)
            if not data:
                continue
            reply = self.device.feed(data)
            if reply:
                pty.write(reply)


class Xdm1041Loopback:
    """A pyserial-like in-memory port wired to an :class:`Xdm1041Device`.

    Replies are available as soon as the command is written. ``read`` on an empty buffer
    advances the injected ``advance`` clock by ``timeout`` (what a real port would have waited)
    and returns b"", so timeouts are exercised without sleeping.
    """

    def __init__(self, *, device: Xdm1041Device, timeout: float = 0.05,
                 advance: Callable[[float], None] | None = None) -> None:
        self.device = device
        self.timeout = timeout
        self._advance = advance
        self._rx = bytearray()
        self.written = bytearray()

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read."""
        return len(self._rx)

    def inject(self, data: bytes) -> None:
        """Put bytes on the line as if the meter had sent them (stale replies, noise)."""
        self._rx += data

    def write(self, data: bytes) -> int:
        self.written += data
        self._rx += self.device.feed(bytes(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self._rx:
            if self._advance is not None:
                self._advance(self.timeout)
            return b""
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def flush(self) -> None:
        """Nothing is buffered on the way out."""


class SimpleBattery:
    """A battery as the two meters see it: ``battery() -> (terminal_voltage_v, current_a)``.

    Current is positive when the battery discharges. The open-circuit voltage is linear in
    state of charge between ``empty_v`` and ``full_v``; the terminal voltage sags by
    ``current × internal_ohm``. State of charge follows the current (coulomb counting on the
    injected clock). Thread-safe: both meters' threads call it.
    """

    def __init__(
        self,
        *,
        capacity_ah: float = 100.0,
        empty_v: float = 12.0,
        full_v: float = 13.6,
        internal_ohm: float = 0.01,
        soc: float = 0.8,
        current_fn: Callable[[float], float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity_ah <= 0 or not empty_v < full_v or internal_ohm < 0 or not 0.0 <= soc <= 1.0:
            raise ConfigError("battery: capacity_ah > 0, empty_v < full_v, internal_ohm >= 0, 0 <= soc <= 1")
        self.capacity_ah = capacity_ah
        self.empty_v = empty_v
        self.full_v = full_v
        self.internal_ohm = internal_ohm
        self.soc = soc
        self._current_fn = current_fn or demo_current_a
        self._clock = clock
        self._last_ts = clock()
        self._lock = threading.Lock()

    def __call__(self) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            current_a = float(self._current_fn(now))
            dt_h = max(0.0, now - self._last_ts) / 3600.0
            self._last_ts = max(self._last_ts, now)
            self.soc = min(1.0, max(0.0, self.soc - current_a * dt_h / self.capacity_ah))
            ocv = self.empty_v + (self.full_v - self.empty_v) * self.soc
            return ocv - current_a * self.internal_ohm, current_a


def demo_current_a(ts: float) -> float:
    """A demo load: a 10-minute swing between 20 A charging and 30 A discharging."""
    return 5.0 + 25.0 * math.sin(2.0 * math.pi * ts / 600.0)


@dataclass
class BatteryMeterPair:
    """The battery demo's two simulated meters: system voltage and shunt voltage."""

    voltage: Xdm1041Simulator
    shunt: Xdm1041Simulator

    def start(self) -> BatteryMeterPair:
        """Start both simulators."""
        self.voltage.start()
        self.shunt.start()
        return self

    def stop(self) -> None:
        """Stop both simulators."""
        self.voltage.stop()
        self.shunt.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_battery_pair(
    *,
    battery: Callable[[], tuple[float, float]],
    shunt_ohm: float = 0.00075,
    polarity: int = 1,
    quirks: Xdm1041Quirks | None = None,
    shunt_quirks: Xdm1041Quirks | None = None,
    link_dir: str | os.PathLike | None = None,
    baudrate: int = 115200,
) -> BatteryMeterPair:
    """Two simulated meters on one battery: meter A sees the terminal voltage, meter B the
    voltage across a shunt of ``shunt_ohm`` (``current × shunt_ohm × polarity``; polarity -1
    models leads wired the other way round). With ``link_dir`` the ptys are reachable as
    ``<link_dir>/xdm_voltage`` and ``<link_dir>/xdm_shunt``. Not started."""
    if shunt_ohm <= 0:
        raise ConfigError(f"shunt_ohm must be > 0, got {shunt_ohm}")
    if polarity not in (1, -1):
        raise ConfigError(f"polarity must be +1 or -1, got {polarity}")
    base = Path(link_dir) if link_dir else None
    voltage = Xdm1041Simulator(
        value_fn=lambda: battery()[0], quirks=quirks, baudrate=baudrate,
        link_path=base / "xdm_voltage" if base else None, serial="22511040")
    shunt = Xdm1041Simulator(
        value_fn=lambda: battery()[1] * shunt_ohm * polarity,
        quirks=shunt_quirks if shunt_quirks is not None else quirks, baudrate=baudrate,
        link_path=base / "xdm_shunt" if base else None, serial="22511041")
    return BatteryMeterPair(voltage=voltage, shunt=shunt)
