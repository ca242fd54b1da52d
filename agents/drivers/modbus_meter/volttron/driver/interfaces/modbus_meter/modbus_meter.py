"""Platform-driver interface for Modbus energy meters: fixed register maps and SunSpec meters.

One interface, two register styles (``remote_config.protocol``):

- ``"registers"``: each registry row names its register (``Address``, ``Type``,
  ``Word Order``, ``Scale`` = value weight, ``Function``, optional ``Read Alone``), e.g. the Carlo Gavazzi EM24 map in
  ``driver_configs/registries/cg_em24.csv``;
- ``"sunspec"``: each row names a SunSpec point (``SunSpec Point``, ``Model ID``; an empty
  model id means "the device's meter model, 201..204"); offsets, types and scale factors come
  from pysunspec2's model definitions, and the model chain is discovered on the device on the
  first scrape (again after a failed scrape).

Transport: Modbus TCP when ``host`` is set (``port`` = TCP port), Modbus RTU otherwise
(``port`` = serial device, with ``baudrate``, ``parity``, ``bytesize``, ``stopbits``). Both
go through pymodbus's sync client; only the client class differs.

A scrape reads in as few block reads as the device allows (contiguous registers, at most
``max_registers_per_read``; SunSpec maps may bridge gaps). A Modbus exception fails the points
of that read; a timeout fails the whole scrape; both with a message naming the registers,
the unit and the address.

"No value": a SunSpec point whose register holds the "not implemented" marker (or whose
scale factor does) is published as ``None`` rather than left out, so every scrape carries the
same point set and a historian records the gap explicitly.

Meters take no writes: a registry row marked writable is refused at configuration, and
``set_point`` raises.

One scrape at a time per device: the platform driver runs polls and ``get_point`` calls in
greenlets, and after a configuration update it may run several pollers for the same device at
once. Every scrape (SunSpec discovery included) and ``close`` hold the interface's gevent lock,
which the Modbus reader takes too, so concurrent callers queue instead of sharing one
connection mid-transaction (see :mod:`gridedge.protocols.modbus_meters.client`).

The decoding, read planning and discovery are the gridedge library's
(:mod:`gridedge.protocols.modbus_meters`, :mod:`gridedge.protocols.sunspec`); this module only
maps them onto the platform driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from gevent.lock import RLock
from pydantic import BeforeValidator, Field
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import BaseInterface, BaseRegister, BasicRevert

from gridedge.errors import ConfigError, DeviceError, GridEdgeError
from gridedge.protocols.modbus_meters import (
    MAX_READ_REGISTERS,
    Function,
    ModbusRegisterReader,
    RegisterPoint,
    RtuTransport,
    ScrapeResult,
    TcpTransport,
    scrape_registers,
)
from gridedge.protocols.sunspec import SunSpecMap, SunSpecPointRef, discover, model_def, scrape_sunspec

__all__ = [
    "ModbusMeter",
    "ModbusMeterConfigError",
    "ModbusMeterPointConfig",
    "ModbusMeterRegister",
    "ModbusMeterRemoteConfig",
]

_log = logging.getLogger(__name__)


class ModbusMeterConfigError(ConfigError, ValueError):
    """A device or registry configuration this interface cannot use.

    Also a ValueError, which is what the platform driver catches to skip a bad device
    configuration and keep running.
    """


def _blank_is(default: Any) -> BeforeValidator:
    return BeforeValidator(lambda v: default if v is None or (isinstance(v, str) and not v.strip()) else v)


class ModbusMeterRemoteConfig(RemoteConfig):
    """``remote_config`` of a modbus_meter device."""

    protocol: Literal["registers", "sunspec"] = "registers"
    #: Modbus TCP host; leave unset for Modbus RTU
    host: str | None = None
    #: TCP port, or the serial device for RTU
    port: int | str = 502
    unit_id: int = Field(default=1, ge=0, le=247)
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(default=1.0, gt=0)
    max_registers_per_read: int = Field(default=MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    #: unwanted registers a read may bridge; default 0 for "registers", 125 for "sunspec"
    max_gap_registers: int | None = Field(default=None, ge=0)
    #: SunSpec base address; unset = try 40000, 0, 50000
    sunspec_base_address: int | None = Field(default=None, ge=0, le=0xFFFF)

    def transport(self) -> TcpTransport | RtuTransport:
        """TCP when a host is given, RTU on the serial ``port`` otherwise."""
        try:
            if self.host:
                return TcpTransport(host=self.host, port=int(self.port))
            if isinstance(self.port, int):
                raise ConfigError("Modbus RTU needs 'port' to be a serial device (or set 'host' for TCP)")
            return RtuTransport(port=self.port, baudrate=self.baudrate, parity=self.parity,
                                bytesize=self.bytesize, stopbits=self.stopbits)
        except (ConfigError, ValueError) as exc:
            raise ModbusMeterConfigError(f"modbus_meter remote_config: {exc}") from exc

    def max_gap(self) -> int:
        """Gap bridged between wanted registers in one read."""
        if self.max_gap_registers is not None:
            return self.max_gap_registers
        return MAX_READ_REGISTERS if self.protocol == "sunspec" else 0


class ModbusMeterPointConfig(PointConfig):
    """One registry row: the classic columns plus this interface's own."""

    address: Annotated[int | str, _blank_is("")] = Field(default="", alias="Address")
    type: str = Field(default="", alias="Type")
    word_order: str = Field(default="", alias="Word Order")
    scale: Annotated[float, _blank_is(1.0)] = Field(default=1.0, alias="Scale")
    function: str = Field(default="", alias="Function")
    #: TRUE for registers the device only serves to a request of their own (CG 000Bh)
    read_alone: Annotated[bool, _blank_is(False)] = Field(default=False, alias="Read Alone")
    sunspec_point: str = Field(default="", alias="SunSpec Point")
    model_id: Annotated[int | None, _blank_is(None)] = Field(default=None, alias="Model ID")


class ModbusMeterRegister(BaseRegister):
    """A read-only meter point: a register-map point or a SunSpec point."""

    def __init__(
        self,
        *,
        point_name: str,
        units: str,
        description: str,
        register: RegisterPoint | None = None,
        sunspec: SunSpecPointRef | None = None,
        python_type: type = float,
    ) -> None:
        super().__init__("byte", True, point_name, units, description)
        self.register = register
        self.sunspec = sunspec
        self.python_type = python_type


class ModbusMeter(BasicRevert, BaseInterface):
    """A Modbus energy meter scraped through the platform driver."""

    REGISTER_CONFIG_CLASS = ModbusMeterPointConfig
    INTERFACE_CONFIG_CLASS = ModbusMeterRemoteConfig
    default_config: ClassVar[dict | None] = None

    def __init__(self, config: RemoteConfig, *args: Any, **kwargs: Any) -> None:
        if self.default_config is None:
            # the platform driver fills this from the config store; direct construction has none
            self.default_config = {}
        BasicRevert.__init__(self, **kwargs)
        BaseInterface.__init__(self, config, *args, **kwargs)
        self._transport = self.config.transport()
        # a gevent lock: the callers are greenlets of one thread, which a thread lock would
        # either not keep apart (unpatched threading) or block the whole hub on
        self._lock = RLock()
        self._reader: ModbusRegisterReader | None = None
        self._sunspec_map: SunSpecMap | None = None

    # --- configuration ----------------------------------------------------------------------

    def create_register(self, register_definition: ModbusMeterPointConfig) -> ModbusMeterRegister:
        """A register from one registry row; ModbusMeterConfigError naming the row if it is unusable."""
        d = register_definition
        name = d.volttron_point_name
        if d.writable:
            raise ModbusMeterConfigError(f"point {name}: meter points are read-only; set Writable to FALSE")
        try:
            if self.config.protocol == "registers":
                if d.address == "" or not d.type:
                    raise ConfigError(f"point {name}: 'registers' rows need Address and Type")
                reg = RegisterPoint.parse(
                    name=name, address=d.address, reg_type=d.type, word_order=d.word_order,
                    scale=d.scale, function=d.function, units=d.units, description=d.notes,
                    read_alone=d.read_alone,
                )
                py_type: type = int if (reg.scale == 1 and reg.reg_type.is_integer) else float
                return ModbusMeterRegister(point_name=name, units=d.units, description=d.notes,
                                           register=reg, python_type=py_type)
            if not d.sunspec_point:
                raise ConfigError(f"point {name}: 'sunspec' rows need a SunSpec Point")
            ref = SunSpecPointRef(name=name, point_id=d.sunspec_point.strip(), model_id=d.model_id,
                                  scale=d.scale, units=d.units)
            py_type = float
            if d.model_id is not None:
                ptype = model_def(d.model_id).point(ref.point_id).sunspec_type
                py_type = str if ptype == "string" else float
            return ModbusMeterRegister(point_name=name, units=d.units, description=d.notes,
                                       sunspec=ref, python_type=py_type)
        except ModbusMeterConfigError:
            raise
        except (ConfigError, ValueError) as exc:
            raise ModbusMeterConfigError(str(exc)) from exc

    @classmethod
    def unique_remote_id(cls, config_name: str, config: RemoteConfig) -> tuple:
        """One remote per (transport, unit): devices sharing a meter share its connection."""
        host = getattr(config, "host", None)
        port = getattr(config, "port", 502)
        unit_id = getattr(config, "unit_id", 1)
        return ("modbus_meter", host or "rtu", str(port), int(unit_id))

    # --- reading ----------------------------------------------------------------------------

    def _get_reader(self) -> ModbusRegisterReader:
        if self._reader is None:
            self._reader = ModbusRegisterReader(
                transport=self._transport, unit_id=self.config.unit_id, timeout_s=self.config.timeout_s,
                lock=self._lock,
            )
        return self._reader

    def _scrape(self, topics: Iterable[str]) -> ScrapeResult:
        with self._lock:
            return self._scrape_locked(topics)

    def _scrape_locked(self, topics: Iterable[str]) -> ScrapeResult:
        registers: dict[str, ModbusMeterRegister] = {}
        result = ScrapeResult()
        for topic in topics:
            reg = self.point_map.get(topic)
            if reg is None:
                result.errors[topic] = f"point not configured on device: {topic}"
            else:
                registers[topic] = reg
        if not registers:
            return result
        reader = self._get_reader()
        try:
            if self.config.protocol == "registers":
                got = scrape_registers(
                    {t: r.register for t, r in registers.items() if r.register is not None},
                    reader.read,
                    max_count=self.config.max_registers_per_read,
                    max_gap=self.config.max_gap(),
                )
            else:
                got = self._scrape_sunspec(registers, reader)
        except GridEdgeError as exc:
            got = ScrapeResult(errors={t: f"{type(exc).__name__}: {exc}" for t in registers})
        for topic, value in got.values.items():
            # publish one type per point: a scaled value stays float even when it is whole
            reg = registers[topic]
            result.values[topic] = float(value) if reg.python_type is float and isinstance(value, int) else value
        result.errors.update(got.errors)
        if result.errors:
            _log.warning("modbus_meter %s: %d of %d points failed, e.g. %s", self._transport,
                         len(result.errors), len(registers), next(iter(result.errors.values())))
        return result

    def _scrape_sunspec(self, registers: dict[str, ModbusMeterRegister],
                        reader: ModbusRegisterReader) -> ScrapeResult:
        if self._sunspec_map is None:
            bases = ((self.config.sunspec_base_address,) if self.config.sunspec_base_address is not None
                     else None)
            holding = lambda address, count: reader.read(Function.HOLDING, address, count)
            self._sunspec_map = discover(holding) if bases is None else discover(holding, base_addresses=bases)
            _log.info("modbus_meter %s: SunSpec models %s", self._transport,
                      [m.model_id for m in self._sunspec_map.models])
        got = scrape_sunspec(
            {t: r.sunspec for t, r in registers.items() if r.sunspec is not None},
            reader.read,
            self._sunspec_map,
            max_count=self.config.max_registers_per_read,
            max_gap=self.config.max_gap(),
        )
        if got.errors:
            self._sunspec_map = None  # the device may have changed: rediscover next time
        return got

    def get_point(self, topic: str, **kwargs: Any) -> Any:
        """Read one point now (None = the device reports no value)."""
        result = self._scrape([topic])
        if topic in result.errors:
            raise DeviceError(result.errors[topic])
        return result.values[topic]

    def _get_multiple_points(self, topics: Iterable[str], **kwargs: Any) -> tuple[dict, dict]:
        result = self._scrape(list(topics))
        return result.values, result.errors

    def _set_point(self, topic: str, value: Any) -> Any:
        raise DeviceError(f"{topic}: meter points are read-only; modbus_meter takes no writes")

    def close(self) -> None:
        """Close the Modbus connection."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

