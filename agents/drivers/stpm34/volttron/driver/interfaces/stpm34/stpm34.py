"""Platform driver interface for an STPM34 metering board (two channels) over UART.

Thin glue over :mod:`gridedge.protocols.stpm34`: each scrape is one latched, CRC-checked read of
both channels (:meth:`Stpm34Client.read_sample`), mapped onto the registry's points by their
``Channel`` and ``Quantity`` columns. Bad-CRC replies are retried and never published; the count
is the ``crc_errors`` quantity. A board that does not answer makes the scrape raise
:class:`~gridedge.errors.ProtocolTimeout` (the platform driver logs it and publishes nothing);
the port is reopened and the chip re-configured on the next scrape, so it recovers by itself.

remote_config::

    {"driver_type": "stpm34", "port": "/dev/ttyUSB0", "baudrate": 9600, "read_timeout_s": 0.3,
     "calibration": {...Stpm34Calibration...}, "temperature_file": null}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, ClassVar, Literal

from gevent.lock import Semaphore
from pydantic import Field, field_validator
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import (
    BaseInterface,
    BaseRegister,
    BasicRevert,
    DriverInterfaceError,
)

from gridedge.errors import ConfigError, ProtocolTimeout
from gridedge.protocols.stpm34 import (
    Stpm34Calibration,
    Stpm34Client,
    Stpm34Sample,
    thermal_zone_reader,
)

__all__ = [
    "QUANTITIES",
    "Stpm34Interface",
    "Stpm34PointConfig",
    "Stpm34Register",
    "Stpm34RemoteConfig",
]

_log = logging.getLogger(__name__)

Quantity = Literal[
    "v_rms", "i_rms", "active_power", "reactive_power", "apparent_power", "power_factor",
    "active_energy", "reactive_energy", "apparent_energy", "frequency", "temperature",
    "crc_errors",
]
#: quantity -> (needs a channel, attribute of ChannelSample / Stpm34Sample)
QUANTITIES: dict[str, tuple[bool, str]] = {
    "v_rms": (True, "v_rms_v"),
    "i_rms": (True, "i_rms_a"),
    "active_power": (True, "active_w"),
    "reactive_power": (True, "reactive_var"),
    "apparent_power": (True, "apparent_va"),
    "power_factor": (True, "power_factor"),
    "active_energy": (True, "active_energy_kwh"),
    "reactive_energy": (True, "reactive_energy_kvarh"),
    "apparent_energy": (True, "apparent_energy_kvah"),
    "frequency": (False, "frequency_hz"),
    "temperature": (False, "temperature_c"),
    "crc_errors": (False, "crc_errors"),
}


class Stpm34RemoteConfig(RemoteConfig):
    """Where the board is and how its front end is built."""

    port: str
    baudrate: int = Field(default=9600, gt=0)
    read_timeout_s: float = Field(default=0.3, gt=0, le=10)
    calibration: Stpm34Calibration = Stpm34Calibration()
    #: thermal-zone style file (integer millidegrees C) giving the board temperature
    temperature_file: str | None = None


class Stpm34PointConfig(PointConfig):
    """A registry row: which channel (1, 2, or blank for device-wide) and which quantity."""

    channel: int | None = Field(default=None, alias="Channel")
    quantity: Quantity = Field(alias="Quantity")

    @field_validator("channel", mode="before")
    @classmethod
    def _blank_channel(cls, v: Any) -> Any:
        return None if v in ("", None) else v

    @field_validator("quantity", mode="before")
    @classmethod
    def _normalise_quantity(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class Stpm34Register(BaseRegister):
    """A read-only point bound to one channel's quantity."""

    def __init__(self, *, point_name: str, units: str, channel: int | None, quantity: str,
                 description: str = "") -> None:
        super().__init__("byte", True, point_name, units, description=description)
        needs_channel, attribute = QUANTITIES[quantity]
        if needs_channel and channel not in (1, 2):
            raise ConfigError(f"point {point_name}: quantity {quantity} needs Channel 1 or 2")
        if not needs_channel and channel is not None:
            raise ConfigError(f"point {point_name}: quantity {quantity} takes no Channel")
        self.channel = channel
        self.quantity = quantity
        self.attribute = attribute
        self.python_type = int if quantity == "crc_errors" else float

    def value_from(self, sample: Stpm34Sample) -> float | int | None:
        """This point's value in a sample (None when the quantity is unavailable)."""
        holder = sample.channel(self.channel) if self.channel is not None else sample
        return getattr(holder, self.attribute)


class Stpm34Interface(BasicRevert, BaseInterface):
    """The ``stpm34`` driver interface."""

    REGISTER_CONFIG_CLASS = Stpm34PointConfig
    INTERFACE_CONFIG_CLASS = Stpm34RemoteConfig
    default_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: RemoteConfig, *args: Any, **kwargs: Any) -> None:
        BasicRevert.__init__(self, **kwargs)
        BaseInterface.__init__(self, config, *args, **kwargs)
        # a gevent lock: the platform driver runs greenlets, and a thread lock held across a
        # cooperative serial read would block the whole hub when a second greenlet asks
        self._lock = Semaphore()
        self._serial: Any = None
        self._client: Stpm34Client | None = None
        self._crc_errors_before = 0

    # -- registry ------------------------------------------------------------------------------

    def create_register(self, register_definition: Stpm34PointConfig) -> Stpm34Register:
        """A register for one registry row; ConfigError for a channel/quantity mismatch."""
        if register_definition.writable:
            raise ConfigError(f"point {register_definition.volttron_point_name}: STPM34 points "
                              "are measurements and cannot be writable")
        return Stpm34Register(
            point_name=register_definition.volttron_point_name,
            units=register_definition.units,
            channel=register_definition.channel,
            quantity=register_definition.quantity,
            description=register_definition.notes,
        )

    # -- reads -----------------------------------------------------------------------------------

    def get_point(self, topic: str, **kwargs: Any) -> float | int | None:
        """One point, from a fresh coherent sample."""
        register = self.get_register_by_name(topic)
        return register.value_from(self.read_sample())

    def _get_multiple_points(self, topics: Iterable[str], **kwargs: Any) -> tuple[dict, dict]:
        sample = self.read_sample()  # raises on a silent board: the driver logs it
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for topic in topics:
            try:
                register = self.get_register_by_name(topic)
            except DriverInterfaceError as exc:
                errors[topic] = repr(exc)
                continue
            value = register.value_from(sample)
            if value is None:
                errors[topic] = f"{register.quantity} is not available (no temperature_file set?)"
            else:
                results[topic] = value
        return results, errors

    def _set_point(self, topic: str, value: Any) -> Any:
        raise RuntimeError(f"{topic}: STPM34 points are read only")

    def read_sample(self) -> Stpm34Sample:
        """One latched sample; reopens the port after an error so the next scrape recovers."""
        with self._lock:
            client = self._ensure_client()
            try:
                sample = client.read_sample()
            except ProtocolTimeout as exc:
                self._close_port()
                raise ProtocolTimeout(f"STPM34 on {self.config.port} did not answer: {exc}") from exc
            except Exception:
                self._close_port()
                raise
            # the count survives reconnects: diagnostics must not reset when the port reopens
            return replace(sample, crc_errors=sample.crc_errors + self._crc_errors_before)

    def _ensure_client(self) -> Stpm34Client:
        if self._client is not None:
            return self._client
        import serial  # pyserial; imported here so the module loads without a port

        config: Stpm34RemoteConfig = self.config  # type: ignore[assignment]
        try:
            self._serial = serial.Serial(config.port, config.baudrate, timeout=config.read_timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise ProtocolTimeout(f"cannot open STPM34 port {config.port}: {exc}") from exc
        temperature = thermal_zone_reader(config.temperature_file) if config.temperature_file else None
        self._client = Stpm34Client(self._serial, calibration=config.calibration,
                                    temperature_source=temperature)
        return self._client

    def _close_port(self) -> None:
        if self._client is not None:
            self._crc_errors_before += self._client.crc_errors
        self._client = None
        if self._serial is not None:
            try:
                self._serial.close()
            except OSError as exc:  # closing a vanished port must not hide the real error
                _log.debug("closing %s: %s", self.config.port, exc)
            self._serial = None

    @classmethod
    def unique_remote_id(cls, config_name: str, config: RemoteConfig) -> tuple:
        """One remote per serial port."""
        return (getattr(config, "port", config_name),)
