"""Energy rates (``rates.json``) and the cost of an amount of usage.

The file keeps its public shape::

    {"Gas": {"+": 1.576, "cnv": ["kWh", 11.510]},
     "Water": {"+": 6.1},
     "Electricity": {"+": {"Day": 0.4, "Night": 0.3}, "-": {"Day": 0.1, "Night": 0.1}}}

``+`` is what is paid per unit taken from the grid/network, ``-`` what is credited per unit
injected. Electricity is priced in EUR/kWh per tariff; gas in EUR per m³ as metered (1.576 EUR/m³
is the realistic figure; read as EUR/kWh it would put gas at 18 EUR/m³), with ``cnv`` the m³ -> kWh
conversion factor used to show gas in kWh (and its price per kWh, 1.576 / 11.510); water in EUR/m³. The file is validated
on load; any bad key or value raises :class:`~gridedge.errors.ConfigError` naming it.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridedge.errors import ConfigError

__all__ = [
    "BELGIAN_TZ",
    "EXAMPLE_RATES",
    "ElectricityRates",
    "GasRates",
    "Rates",
    "Tariff",
    "TariffPrices",
    "WaterRates",
    "belgian_tariff",
    "load_rates",
    "parse_rates",
]


#: The example ``rates.json`` (also ``platform_config/rates.json``); used by the demo dashboard.
EXAMPLE_RATES: dict[str, Any] = {
    "Gas": {"+": 1.576, "cnv": ["kWh", 11.510]},
    "Water": {"+": 6.1},
    "Electricity": {"+": {"Day": 0.4, "Night": 0.3}, "-": {"Day": 0.1, "Night": 0.1}},
}


class Tariff(enum.IntEnum):
    """Belgian tariff indicator (OBIS 0-0:96.14.0): 1 = day (peak), 2 = night (off-peak).

    The Netherlands use the opposite numbering; this project follows the Belgian meters.
    """

    DAY = 1
    NIGHT = 2

    @property
    def label(self) -> str:
        """Name used in ``rates.json`` (``Day`` / ``Night``)."""
        return "Day" if self is Tariff.DAY else "Night"

    @classmethod
    def from_indicator(cls, value: Any) -> Tariff:
        """Map a meter's tariff indicator (int or numeric string) to a :class:`Tariff`."""
        try:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return cls(int(number))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tariff indicator must be 1 (day) or 2 (night), got {value!r}") from exc


def _price(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("price must be a finite number")
    if value < 0:
        raise ValueError("price must not be negative")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: Belgian meters and tariffs run on Brussels local time.
BELGIAN_TZ = ZoneInfo("Europe/Brussels")


def belgian_tariff(moment: datetime, tz: tzinfo = BELGIAN_TZ) -> Tariff:
    """The usual Belgian two-rate schedule (Fluvius): night 22:00-07:00 on weekdays and all
    weekend, day otherwise. An aware ``moment`` is read in ``tz``; a naive one as local time."""
    local = moment.astimezone(tz) if moment.tzinfo is not None else moment
    if local.weekday() >= 5 or not 7 <= local.hour < 22:
        return Tariff.NIGHT
    return Tariff.DAY


class TariffPrices(_Strict):
    """A price per tariff, EUR per unit."""

    day_eur: float = Field(alias="Day")
    night_eur: float = Field(alias="Night")

    _check = field_validator("day_eur", "night_eur")(_price)

    def for_tariff(self, tariff: Tariff) -> float:
        """The price that applies under ``tariff``."""
        return self.day_eur if tariff is Tariff.DAY else self.night_eur


class ElectricityRates(_Strict):
    """Electricity: import (``+``) and export (``-``) prices per tariff, EUR/kWh."""

    import_eur_per_kwh: TariffPrices = Field(alias="+")
    export_eur_per_kwh: TariffPrices = Field(alias="-")


class GasRates(_Strict):
    """Gas: price per m³ as the meter counts it, and the m³ -> kWh conversion (``["kWh", factor]``)."""

    eur_per_m3: float = Field(alias="+")
    cnv: tuple[Literal["kWh"], float]

    _check = field_validator("eur_per_m3")(_price)

    @field_validator("cnv")
    @classmethod
    def _positive_factor(cls, value: tuple[str, float]) -> tuple[str, float]:
        if not math.isfinite(value[1]) or value[1] <= 0:
            raise ValueError("conversion factor (kWh per m³) must be a positive number")
        return value

    @property
    def kwh_per_m3(self) -> float:
        """Energy content of one cubic metre of gas."""
        return self.cnv[1]

    @property
    def eur_per_kwh(self) -> float:
        """Price of one kWh of gas (price per m³ / kWh per m³)."""
        return self.eur_per_m3 / self.cnv[1]


class WaterRates(_Strict):
    """Water: price per m³."""

    eur_per_m3: float = Field(alias="+")

    _check = field_validator("eur_per_m3")(_price)


class Rates(_Strict):
    """The whole ``rates.json``; serialise back with :meth:`to_json_dict`."""

    gas: GasRates = Field(alias="Gas")
    water: WaterRates = Field(alias="Water")
    electricity: ElectricityRates = Field(alias="Electricity")

    def import_eur_per_kwh(self, tariff: Tariff) -> float:
        """Electricity import price under ``tariff``."""
        return self.electricity.import_eur_per_kwh.for_tariff(tariff)

    def export_eur_per_kwh(self, tariff: Tariff) -> float:
        """Electricity export credit under ``tariff``."""
        return self.electricity.export_eur_per_kwh.for_tariff(tariff)

    def to_json_dict(self) -> dict[str, Any]:
        """The public ``rates.json`` shape (aliases as keys)."""
        data = self.model_dump(by_alias=True, mode="json")
        data["Gas"]["cnv"] = list(data["Gas"]["cnv"])
        return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            parts.append(f"{loc}: missing")
        else:
            parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
    return "; ".join(parts)


def parse_rates(data: Mapping[str, Any], *, source: str = "rates") -> Rates:
    """Validate a ``rates.json`` mapping; raise :class:`ConfigError` naming each bad key/value."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        return Rates.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid rates: {_describe(exc)}") from exc


def load_rates(path: str | Path) -> Rates:
    """Read and validate a ``rates.json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read rates: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    return parse_rates(data, source=str(path))
