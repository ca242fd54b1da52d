"""Configuration of the tariff agent (pure pydantic; no volttron import, testable alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridedge.domain.tariffs import Rates, load_rates, parse_rates
from gridedge.domain.usage import DEFAULT_KEY_MAP

__all__ = ["TariffAgentConfig"]


class TariffAgentConfig(BaseModel):
    """What the tariff agent reads from its config store entry ``config``.

    Give the rates inline (``rates``, the ``rates.json`` object) or as a file (``rates_path``).
    ``key_map`` maps a MeterReading field (``import_kwh_t1``, ``gas_m3``, ``ts``...) to the point
    name in the meter scrape when they differ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rates: dict[str, Any] | None = None
    rates_path: str | None = None
    data_dir: str = "~/.gridedge/tariff"
    timezone: str = "Europe/Brussels"
    meter_topic: str = "devices/site/main/p1/all"
    key_map: dict[str, str] = Field(default_factory=dict)
    quarter_topic: str = "gridedge/capacity/quarter"
    usage_topic: str = "gridedge/tariff/usage"
    #: seconds between quarter-status publishes
    quarter_interval_s: float = Field(default=1.0, gt=0)
    #: seconds between usage publishes (sooner on a change of tariff or day)
    usage_interval_s: float = Field(default=10.0, gt=0)
    #: seconds between SQLite flushes
    flush_interval_s: float = Field(default=30.0, gt=0)
    past_days: int = Field(default=7, ge=0, le=31)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("key_map")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_KEY_MAP))
        if unknown:
            raise ValueError(f"unknown reading fields {unknown}; known: {sorted(DEFAULT_KEY_MAP)}")
        return value

    @model_validator(mode="after")
    def _one_rates_source(self) -> TariffAgentConfig:
        if (self.rates is None) == (self.rates_path is None):
            raise ValueError("give exactly one of 'rates' (inline) or 'rates_path'")
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The timezone of the usage periods and quarters."""
        return ZoneInfo(self.timezone)

    @property
    def data_path(self) -> Path:
        """``data_dir`` with ``~`` expanded."""
        return Path(self.data_dir).expanduser()

    def load_rates(self) -> Rates:
        """Validated rates; :class:`~gridedge.errors.ConfigError` naming the bad key."""
        if self.rates is not None:
            return parse_rates(self.rates, source="config 'rates'")
        assert self.rates_path is not None
        return load_rates(Path(self.rates_path).expanduser())
