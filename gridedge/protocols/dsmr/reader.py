"""A P1 port reader: a thread that keeps the latest good telegram of one meter.

This is the library behind the P1 platform-driver interface and ``gridedge p1 read``. The
thread opens the port with pyserial, feeds every chunk it reads to :meth:`P1Reader.feed`
(framing, CRC, decode, normalize) and keeps the newest good reading. Telegrams with a bad CRC
or a broken frame are counted and never become the latest reading. A port that fails or
disappears is closed and reopened every ``reconnect_delay_s`` with one log line per state
change. :meth:`P1Reader.latest` refuses a reading older than ``max_age_s`` (the meter or the
cable went quiet) instead of returning stale values.

``feed`` is public and thread-safe, so tests drive the whole chain with real bytes and an
injected clock, without a port. Listeners (:meth:`P1Reader.add_listener`) are called with each
good telegram as soon as its last byte is read, in the thread that fed it, so a consumer can push
the telegram on instead of polling for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gridedge.errors import CrcError, FrameError, ProtocolTimeout
from gridedge.protocols.dsmr.decoder import DecodedTelegram, TelegramDecoder
from gridedge.protocols.dsmr.framing import TelegramReassembler
from gridedge.protocols.dsmr.points import P1Reading, normalize

__all__ = [
    "DIAGNOSTIC_POINT_TYPES",
    "P1Reader",
    "ReaderStats",
    "ReceivedTelegram",
    "SerialLike",
    "line_settings",
]

_log = logging.getLogger(__name__)

#: Points the reader adds to a reading's points: its own health, published even when stale.
DIAGNOSTIC_POINT_TYPES: dict[str, type] = {
    "crc_errors": int,
    "frame_errors": int,
    "telegrams": int,
    "telegram_age_s": float,
    "connected": bool,
    #: wall clock (epoch seconds) when the newest good telegram's last byte was read
    "received_at": float,
}


class SerialLike(Protocol):
    """The part of :class:`serial.Serial` the reader uses."""

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...

    @property
    def in_waiting(self) -> int: ...


def line_settings(baudrate: int, *, bytesize: int | None = None, parity: str | None = None) -> dict[str, Any]:
    """pyserial line settings for a P1 port: 115200 8N1 (DSMR 4+), 9600 7E1 (DSMR 2.2/3).

    ``bytesize``/``parity`` override the defaults implied by the baud rate.
    """
    if baudrate <= 0:
        raise ValueError(f"baudrate must be positive, not {baudrate}")
    legacy = baudrate == 9600
    size = bytesize if bytesize is not None else (7 if legacy else 8)
    par = (parity if parity is not None else ("E" if legacy else "N")).upper()
    if size not in (7, 8):
        raise ValueError(f"bytesize must be 7 or 8, not {size}")
    if par not in ("N", "E", "O"):
        raise ValueError(f"parity must be N, E or O, not {par!r}")
    return {"baudrate": baudrate, "bytesize": size, "parity": par, "stopbits": 1}


@dataclass(frozen=True)
class ReceivedTelegram:
    """A good telegram as received: the parsed telegram, its reading, and when it arrived."""

    decoded: DecodedTelegram
    reading: P1Reading
    #: reader clock (monotonic seconds) when the chunk holding the telegram's last byte was read
    received_at: float
    #: wall clock (epoch seconds) at the same moment: comparable across processes on one machine
    received_wall_s: float = 0.0


@dataclass
class ReaderStats:
    """Counters since the reader was created."""

    telegrams: int = 0
    crc_errors: int = 0
    frame_errors: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class P1Reader:
    """Reads one P1 port in a background thread and keeps the latest good telegram."""

    def __init__(
        self,
        *,
        port: str,
        baudrate: int = 115200,
        bytesize: int | None = None,
        parity: str | None = None,
        max_age_s: float = 10.0,
        reconnect_delay_s: float = 2.0,
        read_timeout_s: float = 0.2,
        specification: str = "auto",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        serial_factory: Callable[..., SerialLike] | None = None,
        on_telegram: Callable[[ReceivedTelegram], None] | None = None,
    ) -> None:
        if max_age_s <= 0 or reconnect_delay_s <= 0 or read_timeout_s <= 0:
            raise ValueError("max_age_s, reconnect_delay_s and read_timeout_s must be positive")
        self.port = port
        self.settings = line_settings(baudrate, bytesize=bytesize, parity=parity)
        self.max_age_s = max_age_s
        self.reconnect_delay_s = reconnect_delay_s
        self.read_timeout_s = read_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._serial_factory = serial_factory
        self._listeners: list[Callable[[ReceivedTelegram], None]] = (
            [on_telegram] if on_telegram is not None else []
        )
        self._decoder = TelegramDecoder(specification=specification)
        self._reassembler = TelegramReassembler()
        self._lock = threading.Lock()
        self._latest: ReceivedTelegram | None = None
        self._stats = ReaderStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opens = 0

    # -- the decode chain ---------------------------------------------------------------------

    def feed(self, data: bytes) -> list[ReceivedTelegram]:
        """Process bytes from the port; return the good telegrams they completed.

        Telegrams are stamped with the time ``feed`` was called: the moment their last byte was
        read, before framing and parsing, so latency figures include our own decoding.
        """
        arrived, arrived_wall_s = self._clock(), self._wall_clock()
        good: list[ReceivedTelegram] = []
        with self._lock:
            truncated_before = self._reassembler.stats.truncated
            texts = self._reassembler.feed(data)
            self._stats.frame_errors += self._reassembler.stats.truncated - truncated_before
            for text in texts:
                try:
                    decoded = self._decoder.decode(text)
                    reading = normalize(decoded)
                except CrcError as exc:
                    self._stats.crc_errors += 1
                    self._stats.last_error = str(exc)
                    _log.debug("P1 %s: dropped telegram: %s", self.port, exc)
                    continue
                except FrameError as exc:
                    self._stats.frame_errors += 1
                    self._stats.last_error = str(exc)
                    _log.debug("P1 %s: dropped telegram: %s", self.port, exc)
                    continue
                received = ReceivedTelegram(
                    decoded=decoded, reading=reading, received_at=arrived, received_wall_s=arrived_wall_s
                )
                self._latest = received
                self._stats.telegrams += 1
                good.append(received)
        listeners = self._listeners
        for received in good:
            for listener in listeners:
                listener(received)
        return good

    def add_listener(self, listener: Callable[[ReceivedTelegram], None]) -> None:
        """Call ``listener`` with every good telegram from now on, in the thread that read it.

        A listener must be quick and thread-safe (hand the telegram over, do not work on it): the
        reader thread does not read the port while it runs.
        """
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Callable[[ReceivedTelegram], None]) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        with self._lock:
            self._listeners = [registered for registered in self._listeners if registered != listener]

    # -- what callers read ----------------------------------------------------------------------

    def latest(self) -> ReceivedTelegram:
        """The newest good telegram; :class:`ProtocolTimeout` if none or older than ``max_age_s``."""
        with self._lock:
            latest = self._latest
        if latest is None:
            raise ProtocolTimeout(f"P1 {self.port}: no good telegram received yet")
        age_s = self._clock() - latest.received_at
        if age_s > self.max_age_s:
            raise ProtocolTimeout(
                f"P1 {self.port}: last good telegram is {age_s:.1f} s old (max_age_s={self.max_age_s:g})"
            )
        return latest

    def stats(self) -> ReaderStats:
        """A copy of the counters."""
        with self._lock:
            s = self._stats
            return ReaderStats(
                telegrams=s.telegrams,
                crc_errors=s.crc_errors,
                frame_errors=s.frame_errors,
                reconnects=s.reconnects,
                connected=s.connected,
                last_error=s.last_error,
                extra={"garbage_chars": self._reassembler.stats.garbage_chars},
            )

    def diagnostics(self) -> dict[str, Any]:
        """The :data:`DIAGNOSTIC_POINT_TYPES` points, valid whether or not the data is fresh."""
        stats = self.stats()
        with self._lock:
            latest = self._latest
        return {
            "crc_errors": stats.crc_errors,
            "frame_errors": stats.frame_errors,
            "telegrams": stats.telegrams,
            "telegram_age_s": None if latest is None else round(self._clock() - latest.received_at, 3),
            "connected": stats.connected,
            "received_at": None if latest is None else latest.received_wall_s,
        }

    # -- the port thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"p1-reader:{self.port}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """True while the reader thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _open(self) -> SerialLike:
        factory = self._serial_factory
        if factory is None:
            import serial  # pyserial; imported here so decoding never needs it

            factory = serial.Serial
        return factory(port=self.port, timeout=self.read_timeout_s, **self.settings)

    def _run(self) -> None:
        import serial

        failing_since_logged = False
        while not self._stop.is_set():
            try:
                port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._set_connected(False, f"cannot open: {exc}")
                if not failing_since_logged:
                    _log.warning(
                        "P1 %s: cannot open port (%s); retrying every %g s",
                        self.port,
                        exc,
                        self.reconnect_delay_s,
                    )
                    failing_since_logged = True
                self._stop.wait(self.reconnect_delay_s)
                continue
            failing_since_logged = False
            with self._lock:
                self._reassembler.reset()  # a tail from before the gap belongs to no telegram
                self._opens += 1
                self._stats.reconnects = self._opens - 1
            self._set_connected(True, None)
            _log.info("P1 %s: port open (%s)", self.port, self.settings)
            try:
                while not self._stop.is_set():
                    data = port.read(max(1, port.in_waiting))
                    if data:
                        self.feed(data)
            except (serial.SerialException, OSError) as exc:
                self._set_connected(False, f"port lost: {exc}")
                _log.warning(
                    "P1 %s: port lost (%s); reconnecting every %g s", self.port, exc, self.reconnect_delay_s
                )
                self._stop.wait(self.reconnect_delay_s)
            finally:
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    pass
        self._set_connected(False, None)

    def _set_connected(self, connected: bool, error: str | None) -> None:
        with self._lock:
            self._stats.connected = connected
            if error is not None:
                self._stats.last_error = error
