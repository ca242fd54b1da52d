"""The normalized reading of a P1 telegram: the values the driver publishes and the tariff code uses.

Meters differ in names (``EQUIPMENT_IDENTIFIER`` vs ``BELGIUM_EQUIPMENT_IDENTIFIER``), units
(kWh vs Wh, kW vs W) and M-Bus channel order. :func:`normalize` turns a
:class:`~gridedge.protocols.dsmr.decoder.DecodedTelegram` into one :class:`P1Reading` with fixed
units: energy in kWh, instantaneous power in W, demand (the capacity-tariff quantities) in kW.

A value whose unit is not what the OBIS code must carry, or that is not a finite number, makes
the whole telegram a :class:`~gridedge.errors.FrameError`: we publish nothing rather than a
number we cannot vouch for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from dsmr_parser.objects import Telegram

from gridedge.errors import FrameError
from gridedge.protocols.dsmr.decoder import DecodedTelegram
from gridedge.protocols.dsmr.json_export import iso

__all__ = [
    "MBUS_GAS",
    "MBUS_WATER",
    "POINT_KEYS",
    "POINT_TYPES",
    "TARIFF_PERIODS",
    "MBusReading",
    "P1Reading",
    "PeakRecord",
    "normalize",
]

#: M-Bus device types (EN 13757-3) announced in 0-n:24.1.0
MBUS_GAS = 3
MBUS_WATER = 7

#: meaning of the tariff indicator 0-0:96.14.0 per specification: Belgium 1 = day, 2 = night;
#: the Netherlands the other way round (1 = low/night, 2 = normal/day).
TARIFF_PERIODS: dict[str, dict[int, str]] = {
    "fluvius": {1: "day", 2: "night"},
    "v4": {1: "night", 2: "day"},
    "v5": {1: "night", 2: "day"},
}


@dataclass(frozen=True)
class PeakRecord:
    """One month of the Belgian peak history (0-0:98.1.0) or the running month peak (1-0:1.6.0)."""

    #: end of the month the peak belongs to: the meter stamps each record 00:00 on the first
    #: of the next month (None if the meter sent an invalid timestamp)
    month_end: datetime | None
    #: when the highest quarter-hour average demand of that month ended
    peak_time: datetime | None
    #: that quarter-hour average, kW
    demand_kw: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.demand_kw) or self.demand_kw < 0:
            raise ValueError(f"demand_kw must be a finite non-negative number, not {self.demand_kw!r}")


@dataclass(frozen=True)
class MBusReading:
    """The latest reading of one M-Bus device (gas, water, heat ...) relayed by the meter."""

    channel: int
    #: EN 13757-3 device type from 0-n:24.1.0 (3 gas, 7 water); None if not announced
    device_type: int | None
    value: float | None
    unit: str | None
    #: when the device captured the value
    timestamp: datetime | None
    equipment_id: str | None = None


@dataclass(frozen=True)
class P1Reading:
    """One telegram's values in fixed units. Power: positive numbers, import and export apart."""

    specification: str
    meter_time: datetime | None = None
    equipment_id: str | None = None
    energy_import_t1_kwh: float | None = None
    energy_import_t2_kwh: float | None = None
    energy_export_t1_kwh: float | None = None
    energy_export_t2_kwh: float | None = None
    energy_import_total_kwh: float | None = None
    energy_export_total_kwh: float | None = None
    #: raw tariff indicator 0-0:96.14.0 (see :attr:`tariff_period` for its meaning)
    tariff: int | None = None
    power_import_w: float | None = None
    power_export_w: float | None = None
    power_import_l1_w: float | None = None
    power_import_l2_w: float | None = None
    power_import_l3_w: float | None = None
    power_export_l1_w: float | None = None
    power_export_l2_w: float | None = None
    power_export_l3_w: float | None = None
    voltage_l1_v: float | None = None
    voltage_l2_v: float | None = None
    voltage_l3_v: float | None = None
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    #: average import demand of the current quarter hour so far (1-0:1.4.0), kW
    avg_demand_kw: float | None = None
    #: highest quarter-hour demand this month (1-0:1.6.0), kW, and when it ended
    month_peak_kw: float | None = None
    month_peak_time: datetime | None = None
    #: monthly peaks of the last 13 months (0-0:98.1.0), newest first as the meter sends them
    peak_history: tuple[PeakRecord, ...] = ()
    mbus: tuple[MBusReading, ...] = ()
    gas_m3: float | None = None
    gas_time: datetime | None = None
    water_m3: float | None = None
    water_time: datetime | None = None

    @property
    def tariff_period(self) -> str | None:
        """``"day"`` or ``"night"`` for the tariff indicator, in this meter's country convention."""
        if self.tariff is None:
            return None
        return TARIFF_PERIODS.get(self.specification, {}).get(self.tariff)

    @property
    def power_net_w(self) -> float | None:
        """Import minus export, W (positive = the site draws from the grid)."""
        if self.power_import_w is None or self.power_export_w is None:
            return None
        return self.power_import_w - self.power_export_w

    def as_points(self) -> dict[str, Any]:
        """Flat point-key → value map (floats, ints, ISO strings, None) for a driver scrape."""
        points: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("peak_history", "mbus"):
                continue
            value = getattr(self, f.name)
            points[f.name] = iso(value) if isinstance(value, datetime) else value
        points["tariff_period"] = self.tariff_period
        points["power_net_w"] = self.power_net_w
        points["peak_history"] = [
            [iso(p.month_end), iso(p.peak_time), p.demand_kw] for p in self.peak_history
        ]
        return points


#: Every key :meth:`P1Reading.as_points` produces, with the Python type of its value.
POINT_TYPES: dict[str, type] = {
    **{
        f.name: (
            int
            if f.name == "tariff"
            else str
            if f.name.endswith(("_time", "_id")) or f.name == "specification"
            else float
        )
        for f in fields(P1Reading)
        if f.name not in ("peak_history", "mbus")
    },
    "tariff_period": str,
    "power_net_w": float,
    "peak_history": list,
}
POINT_KEYS: tuple[str, ...] = tuple(POINT_TYPES)

# point field -> (dsmr-parser object name, unit we publish)
_SCALARS: dict[str, tuple[str, str]] = {
    "energy_import_t1_kwh": ("ELECTRICITY_USED_TARIFF_1", "kWh"),
    "energy_import_t2_kwh": ("ELECTRICITY_USED_TARIFF_2", "kWh"),
    "energy_export_t1_kwh": ("ELECTRICITY_DELIVERED_TARIFF_1", "kWh"),
    "energy_export_t2_kwh": ("ELECTRICITY_DELIVERED_TARIFF_2", "kWh"),
    "energy_import_total_kwh": ("ELECTRICITY_IMPORTED_TOTAL", "kWh"),
    "energy_export_total_kwh": ("ELECTRICITY_EXPORTED_TOTAL", "kWh"),
    "power_import_w": ("CURRENT_ELECTRICITY_USAGE", "W"),
    "power_export_w": ("CURRENT_ELECTRICITY_DELIVERY", "W"),
    "power_import_l1_w": ("INSTANTANEOUS_ACTIVE_POWER_L1_POSITIVE", "W"),
    "power_import_l2_w": ("INSTANTANEOUS_ACTIVE_POWER_L2_POSITIVE", "W"),
    "power_import_l3_w": ("INSTANTANEOUS_ACTIVE_POWER_L3_POSITIVE", "W"),
    "power_export_l1_w": ("INSTANTANEOUS_ACTIVE_POWER_L1_NEGATIVE", "W"),
    "power_export_l2_w": ("INSTANTANEOUS_ACTIVE_POWER_L2_NEGATIVE", "W"),
    "power_export_l3_w": ("INSTANTANEOUS_ACTIVE_POWER_L3_NEGATIVE", "W"),
    "voltage_l1_v": ("INSTANTANEOUS_VOLTAGE_L1", "V"),
    "voltage_l2_v": ("INSTANTANEOUS_VOLTAGE_L2", "V"),
    "voltage_l3_v": ("INSTANTANEOUS_VOLTAGE_L3", "V"),
    "current_l1_a": ("INSTANTANEOUS_CURRENT_L1", "A"),
    "current_l2_a": ("INSTANTANEOUS_CURRENT_L2", "A"),
    "current_l3_a": ("INSTANTANEOUS_CURRENT_L3", "A"),
    "avg_demand_kw": ("BELGIUM_CURRENT_AVERAGE_DEMAND", "kW"),
}

# (meter unit, published unit) -> factor
_FACTORS: dict[tuple[str, str], Decimal] = {
    ("kWh", "kWh"): Decimal(1),
    ("Wh", "kWh"): Decimal("0.001"),
    ("kW", "W"): Decimal(1000),
    ("W", "W"): Decimal(1),
    ("kW", "kW"): Decimal(1),
    ("W", "kW"): Decimal("0.001"),
    ("V", "V"): Decimal(1),
    ("A", "A"): Decimal(1),
    ("m3", "m3"): Decimal(1),
}


def _convert(raw: Any, unit: str | None, target: str, what: str) -> float | None:
    if raw is None:
        return None
    factor = _FACTORS.get((unit or "", target))
    if factor is None:
        raise FrameError(f"{what}: unit {unit!r} where {target} (or a multiple) is expected")
    if not isinstance(raw, Decimal) or not raw.is_finite():
        raise FrameError(f"{what}: value {raw!r} is not a finite number")
    return float(raw * factor)


def normalize(decoded: DecodedTelegram) -> P1Reading:
    """The :class:`P1Reading` of a decoded telegram; raises :class:`FrameError` on bad units/values.

    Totals are taken from 1-0:1.8.0/2.8.0 when the meter sends them, else summed over tariffs.
    Gas and water are found by the M-Bus device type each channel announces (0-n:24.1.0), not
    by channel number; of several devices of one type, the lowest channel with a reading in m3
    wins (meters list absent devices with a placeholder reading without unit).
    """
    telegram = decoded.telegram
    values: dict[str, Any] = {}
    for key, (name, target) in _SCALARS.items():
        obj = getattr(telegram, name, None)
        if obj is not None:
            values[key] = _convert(obj.value, obj.unit, target, name)
    for total, parts in (
        ("energy_import_total_kwh", ("energy_import_t1_kwh", "energy_import_t2_kwh")),
        ("energy_export_total_kwh", ("energy_export_t1_kwh", "energy_export_t2_kwh")),
    ):
        if total not in values and all(values.get(p) is not None for p in parts):
            values[total] = float(sum(Decimal(str(values[p])) for p in parts))

    values["tariff"] = _tariff(telegram)
    values["meter_time"] = _value(telegram, "P1_MESSAGE_TIMESTAMP")
    values["equipment_id"] = _value(telegram, "BELGIUM_EQUIPMENT_IDENTIFIER", "EQUIPMENT_IDENTIFIER")

    month_peak = getattr(telegram, "BELGIUM_MAXIMUM_DEMAND_MONTH", None)
    if month_peak is not None:
        values["month_peak_kw"] = _convert(
            month_peak.value, month_peak.unit, "kW", "BELGIUM_MAXIMUM_DEMAND_MONTH"
        )
        values["month_peak_time"] = month_peak.datetime
    values["peak_history"] = tuple(
        PeakRecord(
            month_end=item.datetime,
            peak_time=item.occurred,
            demand_kw=_required(_convert(item.value, item.unit, "kW", "BELGIUM_MAXIMUM_DEMAND_13_MONTHS")),
        )
        for item in getattr(telegram, "BELGIUM_MAXIMUM_DEMAND_13_MONTHS", None) or ()
    )

    mbus = _mbus(telegram)
    values["mbus"] = mbus
    for prefix, device_type in (("gas", MBUS_GAS), ("water", MBUS_WATER)):
        chosen = next(
            (m for m in mbus if m.device_type == device_type and m.unit == "m3" and m.value is not None), None
        )
        if chosen is not None:
            values[f"{prefix}_m3"] = chosen.value
            values[f"{prefix}_time"] = chosen.timestamp
    return P1Reading(specification=decoded.specification, **values)


def _required(value: float | None) -> float:
    if value is None:
        raise FrameError("BELGIUM_MAXIMUM_DEMAND_13_MONTHS: a month without its peak value")
    return value


def _value(telegram: Telegram, *names: str) -> Any:
    for name in names:
        obj = getattr(telegram, name, None)
        if obj is not None:
            return obj.value
    return None


def _tariff(telegram: Telegram) -> int | None:
    raw = _value(telegram, "ELECTRICITY_ACTIVE_TARIFF")
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise FrameError(f"ELECTRICITY_ACTIVE_TARIFF: {raw!r} is not a tariff number") from exc


def _mbus(telegram: Telegram) -> tuple[MBusReading, ...]:
    readings = []
    for device in sorted(getattr(telegram, "MBUS_DEVICES", None) or (), key=lambda d: d.channel_id):
        type_obj = getattr(device, "MBUS_DEVICE_TYPE", None) or getattr(device, "DEVICE_TYPE", None)
        reading = getattr(device, "MBUS_METER_READING", None) or getattr(
            device, "HOURLY_GAS_METER_READING", None
        )
        ident = getattr(device, "MBUS_EQUIPMENT_IDENTIFIER", None) or getattr(
            device, "EQUIPMENT_IDENTIFIER_GAS", None
        )
        value = unit = timestamp = None
        if reading is not None:
            unit = reading.unit
            timestamp = reading.datetime
            raw = reading.value
            if raw is not None:
                if not isinstance(raw, Decimal) or not raw.is_finite():
                    raise FrameError(
                        f"M-Bus channel {device.channel_id}: value {raw!r} is not a finite number"
                    )
                value = float(raw)
        readings.append(
            MBusReading(
                channel=device.channel_id,
                device_type=type_obj.value if type_obj is not None else None,
                value=value,
                unit=unit,
                timestamp=timestamp,
                equipment_id=ident.value if ident is not None else None,
            )
        )
    return tuple(readings)
