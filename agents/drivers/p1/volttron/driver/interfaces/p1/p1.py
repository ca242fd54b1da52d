"""VOLTTRON platform-driver interface for a P1 digital meter (``driver_type: p1``).

Glue only: a :class:`gridedge.protocols.dsmr.P1Reader` thread reads the port and keeps the
latest good telegram; a scrape maps its normalized points (registry column ``Point Key``) to
the registry's point names. Telegrams with a bad CRC are counted (point key ``crc_errors``) and
never published; when the latest good telegram is older than ``max_age_s`` every data point is
returned as an error (the driver logs it and publishes no value) while the diagnostic points
(``crc_errors``, ``frame_errors``, ``telegrams``, ``telegram_age_s``, ``connected``) still
publish. All points are read-only.

remote_config::

    {"driver_type": "p1", "port": "/dev/ttyUSB0", "baudrate": 115200,
     "max_age_s": 10, "reconnect_delay_s": 2}

``baudrate`` 9600 implies 7E1 (DSMR 2.2/3); ``bytesize``/``parity`` override.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field, field_validator
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import BaseInterface, BaseRegister, BasicRevert, DriverInterfaceError

from gridedge.errors import ProtocolTimeout
from gridedge.protocols.dsmr import DIAGNOSTIC_POINT_TYPES, POINT_TYPES, SPECIFICATIONS, P1Reader

_log = logging.getLogger(__name__)

#: every point key a registry may use
ALL_POINT_TYPES: dict[str, type] = {**POINT_TYPES, **DIAGNOSTIC_POINT_TYPES}


class P1RemoteConfig(RemoteConfig):
    """The ``remote_config`` of a P1 device."""

    port: str
    baudrate: int = Field(default=115200, gt=0)
    bytesize: int | None = None
    parity: str | None = None
    max_age_s: float = Field(default=10.0, gt=0)
    reconnect_delay_s: float = Field(default=2.0, gt=0)
    specification: str = "auto"

    @field_validator("specification")
    @classmethod
    def _known_specification(cls, value: str) -> str:
        if value != "auto" and value not in SPECIFICATIONS:
            raise ValueError(f"specification must be 'auto' or one of {sorted(SPECIFICATIONS)}")
        return value

    @field_validator("parity")
    @classmethod
    def _parity(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ("N", "E", "O"):
            raise ValueError("parity must be N, E or O")
        return value


class P1PointConfig(PointConfig):
    """A registry row: ``Volttron Point Name``, ``Point Key``, ``Units``, ``Writable``, ``Notes``."""

    point_key: str = Field(alias="Point Key")

    @field_validator("point_key")
    @classmethod
    def _known_key(cls, value: str) -> str:
        value = value.strip()
        if value not in ALL_POINT_TYPES:
            raise ValueError(f"unknown P1 point key {value!r}; known: {sorted(ALL_POINT_TYPES)}")
        return value


class P1Register(BaseRegister):
    """A read-only point backed by one normalized P1 value."""

    def __init__(self, *, point_name: str, point_key: str, units: str, description: str = "") -> None:
        super().__init__("byte", True, point_name, units, description=description)
        self.point_key = point_key
        python_type = ALL_POINT_TYPES[point_key]
        self.python_type = python_type if python_type in (int, float, str, bool) else str


_readers: dict[str, P1Reader] = {}
_readers_lock = threading.Lock()


def _reader_for(config: P1RemoteConfig) -> P1Reader:
    """One reader per port: a serial port can be opened once. A changed config replaces it."""
    wanted = {
        "port": config.port,
        "baudrate": config.baudrate,
        "bytesize": config.bytesize,
        "parity": config.parity,
        "max_age_s": config.max_age_s,
        "reconnect_delay_s": config.reconnect_delay_s,
        "specification": config.specification,
    }
    with _readers_lock:
        reader = _readers.get(config.port)
        if reader is not None and getattr(reader, "_gridedge_config", None) == wanted:
            reader.start()
            return reader
        if reader is not None:
            _log.info("P1 %s: configuration changed; restarting the reader", config.port)
            reader.stop()
        reader = P1Reader(**wanted)
        reader._gridedge_config = wanted  # type: ignore[attr-defined]
        _readers[config.port] = reader
        reader.start()
        return reader


class P1(BasicRevert, BaseInterface):
    """Platform-driver interface over :class:`~gridedge.protocols.dsmr.P1Reader`."""

    REGISTER_CONFIG_CLASS = P1PointConfig
    INTERFACE_CONFIG_CLASS = P1RemoteConfig
    default_config: ClassVar[dict] = {}  # BaseInterface merges it with remote_config (None would fail)

    def __init__(self, config: RemoteConfig, *args, **kwargs) -> None:
        BasicRevert.__init__(self, **kwargs)
        BaseInterface.__init__(self, config, *args, **kwargs)
        self._reader: P1Reader | None = None

    @property
    def reader(self) -> P1Reader:
        """The port reader, started on first use."""
        if self._reader is None:
            self._reader = _reader_for(self.config)
        return self._reader

    def finalize_setup(self, initial_setup: bool = False) -> None:
        """Open the port once the registers are known."""
        _ = self.reader

    def create_register(self, register_definition: P1PointConfig) -> P1Register:
        """A read-only :class:`P1Register`; a row marked writable is logged and made read-only."""
        if register_definition.writable:
            _log.error(
                "P1 point %s is marked Writable; a P1 port is read-only, treating it as read-only",
                register_definition.volttron_point_name,
            )
        return P1Register(
            point_name=register_definition.volttron_point_name,
            point_key=register_definition.point_key,
            units=register_definition.units,
            description=register_definition.notes,
        )

    def get_point(self, topic: str, **kwargs) -> object:
        """The current value of one point; raises when the data is stale."""
        results, errors = self._get_multiple_points([topic])
        if topic in errors:
            raise DriverInterfaceError(errors[topic])
        return results[topic]

    def _get_multiple_points(self, topics: Iterable[str], **kwargs) -> tuple[dict, dict]:
        reader = self.reader
        diagnostics = reader.diagnostics()
        try:
            points = reader.latest().reading.as_points()
            stale = None
        except ProtocolTimeout as exc:
            points, stale = {}, str(exc)
        results: dict = {}
        errors: dict = {}
        for topic in topics:
            register = self.get_register_by_name(topic)
            key = register.point_key
            if key in diagnostics:
                results[topic] = diagnostics[key]
            elif stale is not None:
                errors[topic] = stale
            elif points.get(key) is not None:
                results[topic] = points[key]
            # a value this meter does not send (no water meter, no per-phase voltage) is left out
        return results, errors

    def _set_point(self, topic: str, value: object) -> object:
        raise DriverInterfaceError(f"P1 points are read-only: {topic}")

    @classmethod
    def unique_remote_id(cls, config_name: str, config: P1RemoteConfig) -> tuple:
        """One remote per serial port."""
        return ("p1", getattr(config, "port", config_name))
