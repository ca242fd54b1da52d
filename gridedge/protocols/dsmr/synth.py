"""Build Belgian Fluvius (e-MUCS 1.7.1 style) telegrams from values, with a correct CRC.

The simulator and the tests need telegrams that a real reader cannot tell from a meter's: the
same lines, number widths, units, ``S``/``W`` timestamps in Belgian civil time, and the CRC-16
(CRC-16/ARC, as computed by dsmr-parser) over ``/`` through ``!``. Line layout and widths follow
the captured ``/FLU5`` telegram in ``shared/data/p1/fluvius_v171.txt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gridedge.protocols.dsmr.decoder import crc16
from gridedge.protocols.dsmr.framing import WIRE_ENCODING
from gridedge.protocols.dsmr.json_export import METER_TZ
from gridedge.protocols.dsmr.points import PeakRecord

__all__ = ["FLUVIUS_HEADER", "FluviusValues", "build_fluvius_telegram", "dsmr_timestamp"]

FLUVIUS_HEADER = "/FLU5\\253769484_A"
_MAX_PEAK_HISTORY = 13


def dsmr_timestamp(moment: datetime) -> str:
    """``YYMMDDhhmmssX`` in Belgian civil time, X = ``S`` (summer time) or ``W`` (winter time).

    Two-digit years read back as 2000–2068 (Python's ``%y`` pivot, used by dsmr-parser), so
    other years are refused rather than written as a date that reads back wrong.
    """
    if moment.tzinfo is None:
        raise ValueError("DSMR timestamps need a timezone-aware datetime")
    local = moment.astimezone(METER_TZ)
    if not 2000 <= local.year <= 2068:
        raise ValueError(f"DSMR two-digit years cover 2000-2068, not {local.year}")
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() != timedelta(0) else "W")


@dataclass(frozen=True)
class FluviusValues:
    """What one e-MUCS telegram reports. Power per phase is net: positive = import from grid.

    Totals (1-0:1.7.0 / 2.7.0) are the net sum over the phases, split into import and export,
    as the meter nets the phases. A current left as None is derived as ``|P| / U`` (unity power
    factor). Timestamps left as None default to ``meter_time``.
    """

    meter_time: datetime
    energy_import_t1_kwh: float = 0.0
    energy_import_t2_kwh: float = 0.0
    energy_export_t1_kwh: float = 0.0
    energy_export_t2_kwh: float = 0.0
    #: Belgian tariff indicator: 1 = day, 2 = night
    tariff: int = 1
    power_l1_w: float = 0.0
    power_l2_w: float = 0.0
    power_l3_w: float = 0.0
    voltage_l1_v: float = 230.0
    voltage_l2_v: float = 230.0
    voltage_l3_v: float = 230.0
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    #: 1-0:1.4.0, average import demand of the running quarter hour, kW
    avg_demand_kw: float = 0.0
    #: 1-0:1.6.0, the month's highest quarter-hour demand, kW, and when it ended
    month_peak_kw: float = 0.0
    month_peak_time: datetime | None = None
    #: 0-0:98.1.0, newest month first, at most 13
    peak_history: tuple[PeakRecord, ...] = ()
    gas_m3: float | None = None
    gas_time: datetime | None = None
    water_m3: float | None = None
    water_time: datetime | None = None
    equipment_id: str = "3153414733313031303231363035"
    gas_equipment_id: str = "37464C4F32313139303333373333"
    water_equipment_id: str = "3853414731323334353637383930"
    breaker_closed: bool = True
    power_limit_kw: float = 999.9
    fuse_limit_a: float = 999.0
    header: str = field(default=FLUVIUS_HEADER)

    def __post_init__(self) -> None:
        for name in ("meter_time", "month_peak_time", "gas_time", "water_time"):
            moment = getattr(self, name)
            if moment is not None:
                dsmr_timestamp(moment)  # raises ValueError when it cannot be written
        if self.tariff not in (1, 2):
            raise ValueError(f"tariff must be 1 (day) or 2 (night), not {self.tariff!r}")
        non_negative = (
            "energy_import_t1_kwh",
            "energy_import_t2_kwh",
            "energy_export_t1_kwh",
            "energy_export_t2_kwh",
            "voltage_l1_v",
            "voltage_l2_v",
            "voltage_l3_v",
            "avg_demand_kw",
            "month_peak_kw",
            "power_limit_kw",
            "fuse_limit_a",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in ("power_l1_w", "power_l2_w", "power_l3_w"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        for name in ("current_l1_a", "current_l2_a", "current_l3_a", "gas_m3", "water_m3"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be None or a finite number >= 0, not {value!r}")
        if len(self.peak_history) > _MAX_PEAK_HISTORY:
            raise ValueError(f"peak_history holds at most {_MAX_PEAK_HISTORY} months")
        if "/" in self.header[1:] or not self.header.startswith("/") or "!" in self.header:
            raise ValueError("header must start with '/' and contain no other '/' or '!'")


def _current(current_a: float | None, power_w: float, voltage_v: float) -> float:
    if current_a is not None:
        return current_a
    return abs(power_w) / voltage_v if voltage_v > 0 else 0.0


def build_fluvius_telegram(values: FluviusValues) -> bytes:
    """The complete telegram for ``values`` as wire bytes, ``/FLU5...`` through ``!CRC\\r\\n``."""
    v = values
    now = dsmr_timestamp(v.meter_time)
    phases = (v.power_l1_w, v.power_l2_w, v.power_l3_w)
    voltages = (v.voltage_l1_v, v.voltage_l2_v, v.voltage_l3_v)
    currents = tuple(
        _current(c, p, u)
        for c, p, u in zip((v.current_l1_a, v.current_l2_a, v.current_l3_a), phases, voltages)
    )
    net_w = sum(phases)
    history = "".join(
        f"({dsmr_timestamp(p.month_end or v.meter_time)})({dsmr_timestamp(p.peak_time or v.meter_time)})"
        f"({p.demand_kw:06.3f}*kW)"
        for p in v.peak_history
    )
    lines = [
        v.header,
        "",
        "0-0:96.1.4(50217)",
        f"0-0:96.1.1({v.equipment_id})",
        f"0-0:1.0.0({now})",
        f"1-0:1.8.1({v.energy_import_t1_kwh:010.3f}*kWh)",
        f"1-0:1.8.2({v.energy_import_t2_kwh:010.3f}*kWh)",
        f"1-0:2.8.1({v.energy_export_t1_kwh:010.3f}*kWh)",
        f"1-0:2.8.2({v.energy_export_t2_kwh:010.3f}*kWh)",
        f"1-0:1.4.0({v.avg_demand_kw:06.3f}*kW)",
        f"1-0:1.6.0({dsmr_timestamp(v.month_peak_time or v.meter_time)})({v.month_peak_kw:06.3f}*kW)",
        f"0-0:98.1.0({len(v.peak_history)})(1-0:1.6.0)(1-0:1.6.0){history}",
        f"0-0:96.14.0({v.tariff:04d})",
        f"1-0:1.7.0({max(0.0, net_w) / 1000:06.3f}*kW)",
        f"1-0:2.7.0({max(0.0, -net_w) / 1000:06.3f}*kW)",
        *(f"1-0:{code}.7.0({max(0.0, p) / 1000:06.3f}*kW)" for code, p in zip((21, 41, 61), phases)),
        *(f"1-0:{code}.7.0({max(0.0, -p) / 1000:06.3f}*kW)" for code, p in zip((22, 42, 62), phases)),
        *(f"1-0:{code}.7.0({u:05.1f}*V)" for code, u in zip((32, 52, 72), voltages)),
        *(f"1-0:{code}.7.0({i:06.2f}*A)" for code, i in zip((31, 51, 71), currents)),
        f"0-0:96.3.10({1 if v.breaker_closed else 0})",
        f"0-0:17.0.0({v.power_limit_kw:05.1f}*kW)",
        f"1-0:31.4.0({v.fuse_limit_a:03.0f}*A)",
        "0-0:96.13.0()",
    ]
    if v.gas_m3 is not None:
        lines += [
            "0-1:24.1.0(003)",
            f"0-1:96.1.1({v.gas_equipment_id})",
            "0-1:24.4.0(1)",
            f"0-1:24.2.3({dsmr_timestamp(v.gas_time or v.meter_time)})({v.gas_m3:09.3f}*m3)",
        ]
    if v.water_m3 is not None:
        lines += [
            "0-2:24.1.0(007)",
            f"0-2:96.1.1({v.water_equipment_id})",
            f"0-2:24.2.1({dsmr_timestamp(v.water_time or v.meter_time)})({v.water_m3:09.3f}*m3)",
        ]
    body = "\r\n".join(lines) + "\r\n!"
    return (body + f"{crc16(body):04X}\r\n").encode(WIRE_ENCODING)
