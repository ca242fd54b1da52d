"""The EMS agent's configuration (``platform_config/agents/ems.json``), validated with pydantic."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridedge.domain.curtailment import Circuit
from gridedge.errors import ConfigError

__all__ = ["CircuitConfig", "EmsConfig"]

_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class CircuitConfig(BaseModel):
    """One switchable circuit; ``id`` is its point name on the relay device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    #: power the circuit draws at level 1, W
    nominal_w: float = Field(ge=0)
    critical: bool = False
    #: lower numbers are shed first
    priority: int = 10
    sheddable_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    modulation: Literal["binary", "continuous"] = "binary"

    @field_validator("id")
    @classmethod
    def _id_is_a_point_name(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"circuit id {value!r} must be a point name (letters, digits, _ and -)")
        return value

    def planner_circuit(self, *, usable: bool = True) -> Circuit:
        """The circuit as the planner sees it, at its nominal power; an unusable circuit (its point
        is not on the relay device) is planned as critical: it cannot be switched."""
        return Circuit(id=self.id, power_kw=self.nominal_w / 1000.0, priority=self.priority,
                       sheddable_fraction=self.sheddable_fraction,
                       critical=self.critical or not usable, modulation=self.modulation)


class EmsConfig(BaseModel):
    """EMS agent settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: platform-driver device path of the relay board
    relay_device: str = "site/main/relays"
    #: platform-driver identity to send set_point/get_point to
    driver_identity: str = "platform.driver"
    #: the site meter's scrape topic and the point in it holding site power, W (positive = import)
    meter_topic: str = "devices/site/main/meter/all"
    meter_point: str = "power_w"
    #: status publish and retry period, s
    status_interval_s: float = Field(default=5.0, gt=0, le=3600)
    #: how long one RPC to the platform driver may take, s
    rpc_timeout_s: float = Field(default=5.0, gt=0, le=120)
    circuits: tuple[CircuitConfig, ...] = Field(min_length=1)

    @field_validator("circuits")
    @classmethod
    def _unique_ids(cls, circuits: tuple[CircuitConfig, ...]) -> tuple[CircuitConfig, ...]:
        seen: set[str] = set()
        for c in circuits:
            if c.id in seen:
                raise ValueError(f"duplicate circuit id {c.id!r}")
            seen.add(c.id)
        return circuits

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EmsConfig:
        """Validate a config-store mapping; :class:`ConfigError` naming every problem."""
        try:
            return cls.model_validate({k: v for k, v in data.items() if not k.startswith("_")})
        except ValidationError as exc:
            raise ConfigError(f"invalid EMS configuration: {exc}") from exc

    def circuit(self, circuit_id: str) -> CircuitConfig:
        """The configured circuit ``circuit_id``; :class:`ConfigError` naming it if unknown."""
        for c in self.circuits:
            if c.id == circuit_id:
                return c
        raise ConfigError(f"unknown circuit {circuit_id!r}; configured: {[c.id for c in self.circuits]}")
