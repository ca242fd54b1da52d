"""A P1 port simulator on a pty: a Belgian digital meter as a serial client sees it.

A pty delivers bytes instantly, a meter's UART does not: :class:`P1Simulator` writes each
telegram in small chunks paced to the line rate (115200 baud 8N1 = 11520 bytes/s; the legacy
9600 7E1 = 960 bytes/s; both 10 bits per character), once per ``interval_s``. A serial client
opens :attr:`P1Simulator.port_path` (or the symlink given as ``link_path``) with pyserial like a
real ``/dev/ttyUSB0``. With 7E1 the simulator sends plain 7-bit ASCII: a UART strips the
parity bit, and a pty has none to strip.

Bytes nobody reads are lost, as on a real line: when the pty buffer is full the simulator
flushes it instead of blocking.

Two sources of telegrams:

* :class:`ReplaySource` cycles through captured telegram files (``shared/data/p1``).
* :class:`SynthSource` builds a live Fluvius e-MUCS telegram every time from ``values_fn()``
  (see its docstring for the keys), and plays the meter's own registers: it integrates the
  energy counters per tariff, computes the quarter-hour average demand, the month peak and
  the 13-month peak history, unless ``values_fn`` supplies them.

Fault injection: ``corrupt_crc_every=N`` sends every Nth telegram with a wrong CRC;
``garbage_every=N`` puts ``garbage_bytes`` random bytes (never ``/`` or ``!``) before every
Nth telegram.
"""

from __future__ import annotations

import logging
import math
import os
import pty
import random
import re
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gridedge.domain.tariffs import belgian_tariff
from gridedge.protocols.dsmr.framing import extract_telegram
from gridedge.protocols.dsmr.json_export import METER_TZ
from gridedge.protocols.dsmr.points import PeakRecord
from gridedge.protocols.dsmr.synth import FluviusValues, build_fluvius_telegram

__all__ = [
    "VALUE_KEYS",
    "DemoHousehold",
    "P1Simulator",
    "ReplaySource",
    "SimulatorStats",
    "SynthSource",
    "TelegramSource",
    "corrupt_crc",
]

if TYPE_CHECKING:
    from typing_extensions import Self

_log = logging.getLogger(__name__)

_BITS_PER_CHAR = {"8N1": 10, "7E1": 10}
_QUARTER = timedelta(minutes=15)
_GAS_CAPTURE = timedelta(minutes=5)
_MAX_STEP_S = 10.0  # longer gaps (a paused process) are not integrated as if power had flowed

#: keys ``values_fn`` may return (all optional)
VALUE_KEYS: frozenset[str] = frozenset(
    {
        "power_l1_w",
        "power_l2_w",
        "power_l3_w",
        "voltage_l1_v",
        "voltage_l2_v",
        "voltage_l3_v",
        "current_l1_a",
        "current_l2_a",
        "current_l3_a",
        "tariff",
        "energy_import_t1_kwh",
        "energy_import_t2_kwh",
        "energy_export_t1_kwh",
        "energy_export_t2_kwh",
        "avg_demand_kw",
        "month_peak_kw",
        "month_peak_time",
        "gas_m3",
        "gas_flow_m3_h",
        "water_m3",
        "water_flow_m3_h",
    }
)


class TelegramSource(Protocol):
    """Produces the next telegram's bytes for the moment ``now`` (timezone-aware)."""

    def next_telegram(self, now: datetime) -> bytes: ...


def corrupt_crc(telegram: bytes) -> bytes:
    """``telegram`` with a CRC that cannot match (the checksum XOR 0x5A5A, four digits)."""
    match = re.search(rb"!([0-9A-F]{1,4})\r\n", telegram)
    if not match:
        raise ValueError("telegram has no CRC to corrupt")
    wrong = f"{int(match.group(1), 16) ^ 0x5A5A:04X}".encode("ascii")
    return telegram[: match.start(1)] + wrong + telegram[match.end(1) :]


class ReplaySource:
    """Cycles through captured telegrams, one file per telegram, bytes unchanged."""

    def __init__(self, *, paths: Iterable[Path | str]) -> None:
        files: list[Path] = []
        for p in map(Path, paths):
            files.extend(sorted(p.glob("*.txt")) if p.is_dir() else [p])
        self._telegrams: list[bytes] = []
        for f in files:
            data = f.read_bytes()
            extract_telegram(data)  # refuse files that hold no complete telegram
            self._telegrams.append(data)
        if not self._telegrams:
            raise ValueError("no telegram files to replay")
        self._index = 0

    def next_telegram(self, now: datetime) -> bytes:
        telegram = self._telegrams[self._index % len(self._telegrams)]
        self._index += 1
        return telegram


@dataclass
class _Registers:
    energy_import_t1_kwh: float = 0.0
    energy_import_t2_kwh: float = 0.0
    energy_export_t1_kwh: float = 0.0
    energy_export_t2_kwh: float = 0.0
    gas_m3: float = 0.0
    water_m3: float = 0.0


class SynthSource:
    """Live Fluvius telegrams from ``values_fn() -> dict``; the meter's registers are kept here.

    ``values_fn`` is called once per telegram and returns any of :data:`VALUE_KEYS`:

    * ``power_l1_w``, ``power_l2_w``, ``power_l3_w`` — net active power per phase, W,
      positive = the site imports from the grid, negative = it exports (PV, battery).
    * ``voltage_lN_v`` (default 230 V), ``current_lN_a`` (default ``|P| / U``).
    * ``tariff`` — 1 (day) or 2 (night); default :func:`belgian_tariff` of the meter time.
    * ``energy_import_t1_kwh`` ... ``energy_export_t2_kwh`` — counters; if absent, the
      simulator integrates the net power into the counter of the active tariff.
    * ``avg_demand_kw``, ``month_peak_kw``, ``month_peak_time`` — if absent, computed as the
      meter does: the running quarter-hour average import (energy so far / time so far), and the
      highest completed quarter of the month. Months roll into the 13-month history.
    * ``gas_m3`` / ``water_m3`` counters, or ``gas_flow_m3_h`` / ``water_flow_m3_h`` to
      integrate; gas is reported with a 5-minute capture time like the real M-Bus relay.

    ``initial`` seeds the counters (same ``energy_*``/``gas_m3``/``water_m3`` keys).
    """

    def __init__(
        self,
        *,
        values_fn: Callable[[], Mapping[str, Any]] | None = None,
        initial: Mapping[str, float] | None = None,
        with_water: bool = False,
    ) -> None:
        self._values_fn = values_fn or DemoHousehold()
        self._reg = _Registers()
        for key, value in (initial or {}).items():
            if key not in {f.name for f in fields(_Registers)}:
                raise ValueError(f"unknown initial counter {key!r}")
            setattr(self._reg, key, float(value))
        self._with_water = with_water
        self._last: datetime | None = None
        self._quarter_start: datetime | None = None
        self._quarter_kwh = 0.0
        self._month_peak_kw = 0.0
        self._month_peak_time: datetime | None = None
        self._month: tuple[int, int] | None = None
        self._history: list[PeakRecord] = []

    def next_telegram(self, now: datetime) -> bytes:
        return build_fluvius_telegram(self.step(now))

    def step(self, now: datetime) -> FluviusValues:
        """Advance the meter to ``now`` with fresh ``values_fn()`` values; return the telegram values."""
        values = dict(self._values_fn())
        unknown = set(values) - VALUE_KEYS
        if unknown:
            raise ValueError(
                f"values_fn returned unknown keys {sorted(unknown)}; allowed: {sorted(VALUE_KEYS)}"
            )
        phases = tuple(float(values.get(f"power_l{n}_w", 0.0)) for n in (1, 2, 3))
        net_w = sum(phases)
        tariff = int(values.get("tariff") or belgian_tariff(now))
        dt_h = (
            0.0
            if self._last is None
            else min(max((now - self._last).total_seconds(), 0.0), _MAX_STEP_S) / 3600
        )
        self._last = now

        reg = self._reg
        import_kwh = max(0.0, net_w) / 1000 * dt_h
        export_kwh = max(0.0, -net_w) / 1000 * dt_h
        suffix = "t1" if tariff == 1 else "t2"
        setattr(reg, f"energy_import_{suffix}_kwh", getattr(reg, f"energy_import_{suffix}_kwh") + import_kwh)
        setattr(reg, f"energy_export_{suffix}_kwh", getattr(reg, f"energy_export_{suffix}_kwh") + export_kwh)
        for key in (
            "energy_import_t1_kwh",
            "energy_import_t2_kwh",
            "energy_export_t1_kwh",
            "energy_export_t2_kwh",
        ):
            if key in values:
                setattr(reg, key, float(values[key]))
        for medium in ("gas", "water"):
            if f"{medium}_m3" in values:
                setattr(reg, f"{medium}_m3", float(values[f"{medium}_m3"]))
            else:
                flow = float(values.get(f"{medium}_flow_m3_h", 0.0))
                setattr(reg, f"{medium}_m3", getattr(reg, f"{medium}_m3") + flow * dt_h)

        avg_demand_kw = self._demand(now, import_kwh)
        gas_time = _floor(now, _GAS_CAPTURE)
        return FluviusValues(
            meter_time=now,
            energy_import_t1_kwh=reg.energy_import_t1_kwh,
            energy_import_t2_kwh=reg.energy_import_t2_kwh,
            energy_export_t1_kwh=reg.energy_export_t1_kwh,
            energy_export_t2_kwh=reg.energy_export_t2_kwh,
            tariff=tariff,
            power_l1_w=phases[0],
            power_l2_w=phases[1],
            power_l3_w=phases[2],
            voltage_l1_v=float(values.get("voltage_l1_v", 230.0)),
            voltage_l2_v=float(values.get("voltage_l2_v", 230.0)),
            voltage_l3_v=float(values.get("voltage_l3_v", 230.0)),
            current_l1_a=values.get("current_l1_a"),
            current_l2_a=values.get("current_l2_a"),
            current_l3_a=values.get("current_l3_a"),
            avg_demand_kw=float(values.get("avg_demand_kw", avg_demand_kw)),
            month_peak_kw=float(values.get("month_peak_kw", self._month_peak_kw)),
            month_peak_time=values.get("month_peak_time", self._month_peak_time),
            peak_history=tuple(self._history),
            gas_m3=reg.gas_m3,
            gas_time=gas_time,
            water_m3=reg.water_m3 if self._with_water or "water_m3" in values else None,
            water_time=gas_time,
        )

    def _demand(self, now: datetime, import_kwh: float) -> float:
        quarter = _floor(now, _QUARTER)
        month = (now.astimezone(METER_TZ).year, now.astimezone(METER_TZ).month)
        if self._quarter_start is not None and quarter != self._quarter_start:
            # the quarter that just ended counts for the month it belongs to
            full_kw = self._quarter_kwh / 0.25
            if full_kw > self._month_peak_kw:
                self._month_peak_kw, self._month_peak_time = full_kw, quarter
            self._quarter_kwh = 0.0
        if self._month is not None and month != self._month:
            local = now.astimezone(METER_TZ)
            month_end = datetime(local.year, local.month, 1, tzinfo=METER_TZ)
            self._history.insert(
                0,
                PeakRecord(
                    month_end=month_end,
                    peak_time=self._month_peak_time or month_end,
                    demand_kw=round(self._month_peak_kw, 3),
                ),
            )
            del self._history[13:]
            self._month_peak_kw, self._month_peak_time = 0.0, None
        self._month = month
        self._quarter_start = quarter
        self._quarter_kwh += import_kwh
        elapsed_h = max((now - quarter).total_seconds(), 1.0) / 3600
        return self._quarter_kwh / elapsed_h


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((moment - epoch) // step) * step


class DemoHousehold:
    """A default ``values_fn``: a Belgian household with PV, following the time of day.

    Base load on three phases, an evening cooking peak on L1, PV exporting on L2 around noon,
    gas heating in the morning and evening. ``clock`` returns the current aware datetime.
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def __call__(self) -> dict[str, float]:
        local = self._clock().astimezone(METER_TZ)
        hour = local.hour + local.minute / 60 + local.second / 3600
        base_w = 220 + 80 * math.sin(2 * math.pi * hour / 24)
        cooking_w = 2400 if 18 <= hour < 19.5 else 0
        pv_w = 3200 * max(0.0, math.sin(math.pi * (hour - 7) / 13)) if 7 <= hour < 20 else 0.0
        heating = 6 <= hour < 9 or 17 <= hour < 23
        return {
            "power_l1_w": base_w + cooking_w,
            "power_l2_w": 140 - pv_w,
            "power_l3_w": 90 + 60 * math.sin(2 * math.pi * hour / 6),
            "voltage_l1_v": 231.4 + (pv_w / 1000),
            "voltage_l2_v": 232.0 + (pv_w / 800),
            "voltage_l3_v": 230.6,
            "gas_flow_m3_h": 0.9 if heating else 0.05,
        }


@dataclass
class SimulatorStats:
    """What the simulator has put on the line."""

    telegrams_sent: int = 0
    corrupted_sent: int = 0
    garbage_sent: int = 0
    bytes_sent: int = 0
    #: bytes discarded because nobody was reading the pty
    dropped_bytes: int = 0
    source_errors: int = 0


class P1Simulator:
    """Serve telegrams from ``source`` on a new pty, paced to the line's byte rate."""

    def __init__(
        self,
        *,
        source: TelegramSource,
        baudrate: int = 115200,
        framing: str = "8N1",
        interval_s: float = 1.0,
        corrupt_crc_every: int = 0,
        garbage_every: int = 0,
        garbage_bytes: int = 24,
        link_path: Path | str | None = None,
        chunk_bytes: int = 32,
        seed: int | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        if framing not in _BITS_PER_CHAR:
            raise ValueError(f"framing must be one of {sorted(_BITS_PER_CHAR)}, not {framing!r}")
        if baudrate <= 0 or interval_s <= 0 or chunk_bytes <= 0:
            raise ValueError("baudrate, interval_s and chunk_bytes must be positive")
        if corrupt_crc_every < 0 or garbage_every < 0 or garbage_bytes < 0:
            raise ValueError("fault injection settings must be >= 0")
        self.source = source
        self.baudrate = baudrate
        self.framing = framing
        self.bytes_per_s = baudrate / _BITS_PER_CHAR[framing]
        self.interval_s = interval_s
        self.corrupt_crc_every = corrupt_crc_every
        self.garbage_every = garbage_every
        self.garbage_bytes = garbage_bytes
        self.link_path = Path(link_path) if link_path is not None else None
        self.chunk_bytes = chunk_bytes
        self._rng = random.Random(seed)
        self._wall_clock = wall_clock or (lambda: datetime.now(timezone.utc))
        self._garbage_alphabet = bytes(b for b in range(256) if b not in b"/!")
        self.stats = SimulatorStats()
        self._master: int | None = None
        self._slave: int | None = None
        self._port_path: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0

    @property
    def port_path(self) -> str:
        """The pty a client opens (``/dev/pts/N``); valid after :meth:`start`."""
        if self._port_path is None:
            raise RuntimeError("simulator not started")
        return self._port_path

    def start(self) -> Self:
        """Open the pty, create the symlink, start sending. Returns self."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._port_path = os.ttyname(slave)
        if self.link_path is not None:
            self.link_path.parent.mkdir(parents=True, exist_ok=True)
            if self.link_path.is_symlink():
                self.link_path.unlink()
            elif self.link_path.exists():
                self._close_fds()
                raise FileExistsError(f"{self.link_path} exists and is not a symlink; not replacing it")
            self.link_path.symlink_to(self._port_path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="p1-simulator", daemon=True)
        self._thread.start()
        _log.info("P1 simulator on %s (%s baud %s)", self._port_path, self.baudrate, self.framing)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending, remove the symlink, close the pty (clients then see the port vanish)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        link = self.link_path
        if link is not None and link.is_symlink() and os.readlink(link) == self._port_path:
            link.unlink()
        self._close_fds()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            self._send_one()
            next_due += self.interval_s
            now = time.monotonic()
            next_due = max(next_due, now)  # fell behind (slow line at 9600): do not burst to catch up
            if self._stop.wait(next_due - now):
                break

    def _send_one(self) -> None:
        try:
            telegram = self.source.next_telegram(self._wall_clock())
        except Exception:  # noqa: BLE001 - a broken values_fn must not kill the meter; skip one telegram
            self.stats.source_errors += 1
            _log.exception("P1 simulator: telegram source failed; skipping this telegram")
            return
        self._count += 1
        payload = telegram
        if self.corrupt_crc_every and self._count % self.corrupt_crc_every == 0:
            payload = corrupt_crc(payload)
            self.stats.corrupted_sent += 1
        if self.garbage_every and self._count % self.garbage_every == 0 and self.garbage_bytes:
            noise = bytes(self._rng.choice(self._garbage_alphabet) for _ in range(self.garbage_bytes))
            payload = noise + payload
            self.stats.garbage_sent += 1
        if self._write_paced(payload):
            self.stats.telegrams_sent += 1

    def _write_paced(self, payload: bytes) -> bool:
        start = time.monotonic()
        sent = 0
        for offset in range(0, len(payload), self.chunk_bytes):
            chunk = payload[offset : offset + self.chunk_bytes]
            self._write(chunk)
            sent += len(chunk)
            delay = start + sent / self.bytes_per_s - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return False
        return True

    def _write(self, chunk: bytes) -> None:
        master, slave = self._master, self._slave
        if master is None or slave is None:
            return
        view = memoryview(chunk)
        flushed = False
        while view:
            try:
                written = os.write(master, view)
            except BlockingIOError:
                if flushed:
                    self.stats.dropped_bytes += len(view)
                    return
                # Nobody reads: a real line loses what is not read, so drop the backlog.
                termios.tcflush(slave, termios.TCIFLUSH)
                flushed = True
                continue
            except OSError:
                self.stats.dropped_bytes += len(view)
                return
            self.stats.bytes_sent += written
            view = view[written:]
