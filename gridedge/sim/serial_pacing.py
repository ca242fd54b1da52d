"""A pseudo-terminal whose output leaves at a serial line's rate.

A pty hands bytes over instantly; a real UART at 9600 baud 8N1 needs about 1.04 ms per byte
(10 bits: start, 8 data, stop). Serial simulators write their replies through
:meth:`PacedPty.write`, which queues them and releases them on schedule from a background
thread, so a client sees the same timing as on the wire (and timeouts, frame gaps and
throughput limits behave as they would on hardware). What the client writes is read with
:meth:`PacedPty.read` unpaced: the client side has its own UART.

Generic: it knows nothing of any protocol.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from pathlib import Path

from typing_extensions import Self

__all__ = ["PacedPty"]


class PacedPty:
    """A raw-mode pty pair: the client opens :attr:`port_path`; we hold the master side."""

    def __init__(
        self,
        *,
        baudrate: int,
        bits_per_byte: int = 10,
        link_path: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if baudrate <= 0:
            raise ValueError(f"baudrate must be > 0, got {baudrate}")
        if bits_per_byte <= 0:
            raise ValueError(f"bits_per_byte must be > 0, got {bits_per_byte}")
        self._baudrate = int(baudrate)
        self._bits_per_byte = int(bits_per_byte)
        self._clock = clock
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._port_path = os.ttyname(self._slave)
        self._link_path = Path(link_path) if link_path is not None else None
        if self._link_path is not None:
            self._make_link(self._link_path)
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy_until = 0.0
        self._unsent = 0  # bytes written but not yet handed to the pty
        self._thread = threading.Thread(target=self._pump, name=f"paced-pty {self._port_path}",
                                        daemon=True)
        self._thread.start()

    @property
    def port_path(self) -> str:
        """Device name of the slave side, for the client to open."""
        return self._port_path

    @property
    def link_path(self) -> Path | None:
        """The symlink pointing at :attr:`port_path`, if one was asked for."""
        return self._link_path

    @property
    def baudrate(self) -> int:
        """Line rate the output is paced at, bit/s."""
        return self._baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        if value <= 0:
            raise ValueError(f"baudrate must be > 0, got {value}")
        with self._cond:
            self._baudrate = int(value)

    @property
    def byte_time_s(self) -> float:
        """Time one byte occupies the line, s."""
        return self._bits_per_byte / self._baudrate

    def fileno(self) -> int:
        """The master fd (readable when the client has written something)."""
        return self._master

    def write(self, data: bytes) -> None:
        """Queue ``data`` for transmission at the line rate; returns at once (a TX FIFO)."""
        if self._closed:
            raise OSError("PacedPty is closed")
        if data:
            with self._cond:
                self._queue.append(bytes(data))
                self._unsent += len(data)
                self._cond.notify()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued byte has left; False on timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._unsent or self._clock() < self._busy_until:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                wait = max(0.0005, self._busy_until - self._clock())
                self._cond.wait(wait if remaining is None else min(wait, remaining))
        return True

    def read(self, size: int = 4096, timeout: float | None = 0.0) -> bytes:
        """Up to ``size`` bytes the client wrote; waits up to ``timeout`` s (None: forever) for
        the first one. b"" when nothing came."""
        if self._closed:
            return b""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: no client has the slave open
            return b""

    def discard_output(self) -> None:
        """Drop bytes queued but not yet sent (a device reset)."""
        with self._cond:
            self._unsent -= sum(len(chunk) for chunk in self._queue)
            self._queue.clear()

    def close(self) -> None:
        """Stop pacing, close both sides and remove the symlink."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._link_path is not None and self._link_path.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self._link_path) == self._port_path:
                    self._link_path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_link(self, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(self._port_path, tmp)
        os.replace(tmp, link)

    def _pump(self) -> None:
        """Release queued bytes no faster than the line rate.

        A byte is handed to the pty when its last bit would have left the wire: byte k of a
        burst that starts on an idle line at t0 is released at t0 + (k + 1) * byte_time.
        """
        pending = bytearray()
        while True:
            with self._cond:
                while not self._queue and not pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                while self._queue:
                    pending += self._queue.popleft()
                byte_time = self._bits_per_byte / self._baudrate
                now = self._clock()
                self._busy_until = max(self._busy_until, now)  # line was idle: the burst starts now
                self._cond.notify_all()
            # how many bytes are due: those whose end-of-byte time has passed
            start = self._busy_until
            due_at = start + byte_time
            now = self._clock()
            if now < due_at:
                time.sleep(due_at - now)
                now = self._clock()
            count = max(1, min(len(pending), int((now - start) / byte_time)))
            chunk, pending = bytes(pending[:count]), pending[count:]
            self._send(chunk)
            with self._cond:
                self._busy_until = start + count * byte_time
                self._unsent -= count
                self._cond.notify_all()

    def _send(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and not self._closed:
            try:
                written = os.write(self._master, view)
                view = view[written:]
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
            except OSError:
                return  # no reader; a UART with nothing on the line just sends into the void
