"""Blocking register reads over Modbus TCP or RTU with pymodbus's sync client.

The same :class:`ModbusRegisterReader` serves both transports; only the pymodbus client
behind it differs. Failures are translated into GridEdge errors:

- the device answered with a Modbus exception -> :class:`~gridedge.errors.DeviceError`
  naming the exception code (will not change by retrying the same request);
- no answer, a broken frame or a lost connection -> :class:`~gridedge.errors.ProtocolTimeout`
  (retryable; the connection is closed and reopened on the next read).

One transaction at a time: pymodbus's sync client is not safe for concurrent callers. Its own
lock covers only send-and-receive, not the connect before it, so two callers that meet while
connecting each set the client's socket and then send, receive and close on each other's
connection; answers go to the wrong caller and every read fails while the callers keep
meeting. Each :meth:`ModbusRegisterReader.read` and :meth:`ModbusRegisterReader.close` therefore
holds the reader's lock: a thread lock by default, the caller's own where callers are not
threads (greenlets hand in a gevent lock).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

from gridedge.errors import ConfigError, DeviceError, ProtocolTimeout
from gridedge.protocols.modbus_meters.registers import MAX_READ_REGISTERS, Function

__all__ = ["EXCEPTION_NAMES", "ModbusRegisterReader", "RtuTransport", "TcpTransport"]

#: Modbus exception codes as the application protocol names them
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass(frozen=True)
class TcpTransport:
    """Modbus TCP to ``host``:``port``."""

    host: str
    port: int = 502

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("Modbus TCP needs a host")
        if not 0 < self.port < 65536:
            raise ConfigError(f"TCP port must be within 1..65535, got {self.port}")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RtuTransport:
    """Modbus RTU on a serial port (a device path, or a pty in the demo)."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    bytesize: int = 8
    stopbits: int = 1

    def __post_init__(self) -> None:
        if not self.port:
            raise ConfigError("Modbus RTU needs a serial port")
        if self.parity not in ("N", "E", "O"):
            raise ConfigError(f"parity must be 'N', 'E' or 'O', got {self.parity!r}")
        if self.baudrate <= 0 or self.bytesize not in (7, 8) or self.stopbits not in (1, 2):
            raise ConfigError(f"invalid serial settings {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}")

    def __str__(self) -> str:
        return f"{self.port}@{self.baudrate}{self.parity}"


class ModbusRegisterReader:
    """Reads blocks of registers from one unit; connects lazily and reconnects after errors.

    ``lock`` serialises the reads (and :meth:`close`) of every caller sharing this reader; it
    must be re-entrant for its holder and suit the callers' concurrency (default: a thread
    ``RLock``; a gevent ``RLock`` for greenlets, which a thread lock does not keep apart).
    """

    def __init__(
        self,
        *,
        transport: TcpTransport | RtuTransport,
        unit_id: int = 1,
        timeout_s: float = 1.0,
        retries: int = 0,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        if not 0 <= unit_id <= 247:
            raise ConfigError(f"unit id must be within 0..247, got {unit_id}")
        if timeout_s <= 0:
            raise ConfigError(f"timeout must be > 0 s, got {timeout_s}")
        self._transport = transport
        self._unit_id = unit_id
        self._timeout_s = timeout_s
        self._retries = retries
        self._lock: AbstractContextManager[object] = lock if lock is not None else threading.RLock()
        self._client: ModbusTcpClient | ModbusSerialClient | None = None

    @property
    def transport(self) -> TcpTransport | RtuTransport:
        """Where the meter is."""
        return self._transport

    def _make_client(self) -> ModbusTcpClient | ModbusSerialClient:
        t = self._transport
        if isinstance(t, TcpTransport):
            return ModbusTcpClient(t.host, port=t.port, timeout=self._timeout_s, retries=self._retries)
        return ModbusSerialClient(
            t.port, baudrate=t.baudrate, parity=t.parity, bytesize=t.bytesize, stopbits=t.stopbits,
            timeout=self._timeout_s, retries=self._retries,
        )

    def read(self, function: Function, address: int, count: int) -> list[int]:
        """``count`` registers of ``function``'s table from ``address``."""
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ConfigError(f"a read covers 1..{MAX_READ_REGISTERS} registers, not {count}")
        with self._lock:
            return self._read_locked(function, address, count)

    def _read_locked(self, function: Function, address: int, count: int) -> list[int]:
        where = f"unit {self._unit_id} at {self._transport}"
        if self._client is None:
            self._client = self._make_client()
        call = (self._client.read_holding_registers if function is Function.HOLDING
                else self._client.read_input_registers)
        try:
            response = call(address, count=count, device_id=self._unit_id)
        except ModbusException as exc:
            self.close()
            raise ProtocolTimeout(f"no valid answer from {where}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise ProtocolTimeout(f"cannot reach {where}: {exc}") from exc
        if response.isError():
            code = getattr(response, "exception_code", None)
            name = EXCEPTION_NAMES.get(code, "unknown exception") if code is not None else "error"
            raise DeviceError(f"{where} answered Modbus exception {code} ({name})")
        return list(response.registers)

    def close(self) -> None:
        """Close the connection (the next read reopens it)."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
