"""Platform-driver interface for a battery monitor made of two OWON XDM1041 multimeters.

Meter A (``voltage_port``) measures the battery voltage, meter B (``shunt_port``) the voltage
across a shunt (or the current, in series). Each scrape reads both meters once through
:class:`gridedge.protocols.xdm1041.BatteryMonitor` and publishes voltage, current, power and
the integrated charge/discharge energy, plus link diagnostics (timeouts, OK lines, duplicate
and stale lines seen). Current and power are positive when the battery discharges.

A meter that does not answer makes that scrape fail with a clear error (the platform driver
logs it and publishes nothing for it); the next scrape resynchronises and carries on. A port
that cannot be opened is retried on every scrape.

remote_config::

    {"driver_type": "xdm1041",
     "voltage_port": "/dev/ttyUSB0", "shunt_port": "/dev/ttyUSB1", "baud": 115200,
     "shunt_ohm": 0.00075, "polarity": 1, "rate": "M", "timeout": 1.0}

Registry columns: ``Volttron Point Name``, ``Quantity`` (one of :data:`QUANTITIES`),
``Units``, ``Writable`` (always FALSE), ``Notes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Literal

from gevent.lock import Semaphore
from pydantic import Field, field_validator, model_validator
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import BaseInterface, BaseRegister, BasicRevert, DriverInterfaceError

from gridedge.errors import ConfigError, GridEdgeError
from gridedge.protocols.xdm1041 import (
    BatteryMonitor,
    EnergyTotals,
    LinkStats,
    MeterSetup,
    PortUnavailable,
    ShuntSpec,
    Xdm1041Client,
    open_port,
)

__all__ = ["QUANTITIES", "Xdm1041", "Xdm1041PointConfig", "Xdm1041Register", "Xdm1041RemoteConfig"]

_log = logging.getLogger(__name__)

_MEASURED = ("voltage_v", "current_a", "power_w", "charge_wh", "discharge_wh", "charge_ah", "discharge_ah")
_LINK = tuple(f.name for f in fields(LinkStats))
#: every quantity a registry row may name
QUANTITIES: frozenset[str] = frozenset(
    _MEASURED
    + ("shunt_value", "skipped_gaps", "scrape_errors")
    + tuple(f"{meter}_{name}" for meter in ("voltage", "shunt") for name in _LINK)
)


class Xdm1041RemoteConfig(RemoteConfig):
    """Connection and shunt settings of one meter pair."""

    voltage_port: str
    shunt_port: str
    baud: int = 115200
    #: shunt resistance, Ω (75 mV / 100 A = 0.00075)
    shunt_ohm: float = Field(default=0.00075, gt=0)
    #: +1 when meter B reads positive during discharge, -1 when its leads are swapped
    polarity: Literal[1, -1] = 1
    #: meter B across a shunt (VOLT:DC) or in series (CURR:DC, readings in A, shunt_ohm unused)
    shunt_function: Literal["VOLT:DC", "CURR:DC"] = "VOLT:DC"
    voltage_range: float | str | None = "AUTO"
    shunt_range: float | str | None = "AUTO"
    #: sampling rate of both meters: S(low), M(edium), F(ast)
    rate: Literal["S", "M", "F"] = "M"
    #: per-query reply timeout, s
    timeout: float = Field(default=1.0, gt=0)
    #: samples further apart than this are not integrated across, s
    max_gap_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _setups_valid(self) -> Xdm1041RemoteConfig:
        try:
            self.voltage_setup()
            self.shunt_setup()
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def voltage_setup(self) -> MeterSetup:
        """Meter A's setup."""
        return MeterSetup(function="VOLT:DC", range=self.voltage_range, rate=self.rate)

    def shunt_setup(self) -> MeterSetup:
        """Meter B's setup (no AUTO range for current: the 10 A range then)."""
        rng = self.shunt_range
        if self.shunt_function == "CURR:DC" and isinstance(rng, str) and rng.strip().upper() == "AUTO":
            rng = 10.0
        return MeterSetup(function=self.shunt_function, range=rng, rate=self.rate)


class Xdm1041PointConfig(PointConfig):
    """A registry row: which quantity of the monitor a point publishes."""

    quantity: str = Field(alias="Quantity")

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, value: str) -> str:
        value = value.strip()
        if value not in QUANTITIES:
            raise ValueError(f"unknown Quantity {value!r}; known: {sorted(QUANTITIES)}")
        return value


class Xdm1041Register(BaseRegister):
    """A read-only point bound to one quantity."""

    def __init__(self, *, point_name: str, quantity: str, units: str, description: str = "") -> None:
        super().__init__("byte", True, point_name, units, description=description)
        self.quantity = quantity
        self.python_type = float if quantity in _MEASURED or quantity == "shunt_value" else int


class Xdm1041(BasicRevert, BaseInterface):
    """The meter pair as one platform-driver remote."""

    REGISTER_CONFIG_CLASS = Xdm1041PointConfig
    INTERFACE_CONFIG_CLASS = Xdm1041RemoteConfig

    def __init__(self, config: Xdm1041RemoteConfig, *args: Any, **kwargs: Any) -> None:
        BasicRevert.__init__(self, **kwargs)
        BaseInterface.__init__(self, config, *args, **kwargs)
        # the driver runs each scrape and each get_point RPC in its own greenlet and the serial
        # waits yield to the hub, so without this two of them interleave queries on one port
        self._lock = Semaphore()
        self._monitor: BatteryMonitor | None = None
        self._ports: list[Any] = []
        self._scrape_errors = 0
        #: energy counted before the ports were last reopened
        self._kept_totals: EnergyTotals | None = None

    @classmethod
    def unique_remote_id(cls, config_name: str, config: RemoteConfig) -> tuple:
        """One remote per pair of ports."""
        extra = config.model_dump()
        return ("xdm1041", extra.get("voltage_port"), extra.get("shunt_port"))

    def create_register(self, register_definition: Xdm1041PointConfig) -> Xdm1041Register:
        """A register for one registry row; refuses writable rows (a meter has nothing to set)."""
        if register_definition.writable:
            raise ValueError(f"{register_definition.volttron_point_name}: xdm1041 points are read-only")
        return Xdm1041Register(point_name=register_definition.volttron_point_name,
                               quantity=register_definition.quantity,
                               units=register_definition.units,
                               description=register_definition.notes)

    def get_point(self, topic: str, **kwargs: Any) -> Any:
        """Read the pair once and return one point's value."""
        results, _ = self._get_multiple_points([topic])
        return results[topic]

    def _set_point(self, topic: str, value: Any) -> Any:
        raise DriverInterfaceError(f"{topic}: xdm1041 points are read-only")

    def _get_multiple_points(self, topics: Iterable[str], **kwargs: Any) -> tuple[dict, dict]:
        topics = list(topics)
        registers = {t: self.get_register_by_name(t) for t in topics}
        with self._lock:
            try:
                monitor = self._ensure_monitor()
                sample = monitor.read()
            except GridEdgeError as exc:
                self._scrape_errors += 1
                if not exc.retryable or isinstance(exc, PortUnavailable):
                    self._close()  # reopen and reconfigure from scratch next time
                raise DriverInterfaceError(f"xdm1041 scrape failed: {exc}") from exc
            values: dict[str, Any] = dict(sample.as_dict())
            values["shunt_value"] = sample.shunt_value
            values.update(monitor.diagnostics())
            values["scrape_errors"] = self._scrape_errors
        results = {topic: values[reg.quantity] for topic, reg in registers.items()}
        return results, {}

    def _ensure_monitor(self) -> BatteryMonitor:
        if self._monitor is not None:
            return self._monitor
        cfg: Xdm1041RemoteConfig = self.config  # type: ignore[assignment]
        self._close()
        voltage_port = open_port(cfg.voltage_port, baudrate=cfg.baud)
        self._ports.append(voltage_port)
        shunt_port = open_port(cfg.shunt_port, baudrate=cfg.baud)
        self._ports.append(shunt_port)
        shunt = ShuntSpec(shunt_ohm=cfg.shunt_ohm, polarity=cfg.polarity, function=cfg.shunt_function)
        self._monitor = BatteryMonitor(
            voltage_meter=Xdm1041Client(port=voltage_port, name=f"voltage meter {cfg.voltage_port}",
                                        timeout_s=cfg.timeout),
            shunt_meter=Xdm1041Client(port=shunt_port, name=f"shunt meter {cfg.shunt_port}",
                                      timeout_s=cfg.timeout),
            shunt=shunt,
            voltage_setup=cfg.voltage_setup(),
            shunt_setup=cfg.shunt_setup(),
            clock=time.time,
            max_gap_s=cfg.max_gap_s,
            totals=self._kept_totals,
        )
        return self._monitor

    def _close(self) -> None:
        totals = self._monitor.totals if self._monitor is not None else None
        self._monitor = None
        for port in self._ports:
            try:
                port.close()
            except OSError as exc:  # closing a vanished USB adapter may fail; nothing to do
                _log.debug("closing %s: %s", port, exc)
        self._ports = []
        if totals is not None:
            self._kept_totals = totals

    def close(self) -> None:
        """Release both ports (after a scrape in progress)."""
        with self._lock:
            self._close()
