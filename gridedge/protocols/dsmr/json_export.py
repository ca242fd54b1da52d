"""A decoded telegram as plain JSON data, keyed by dsmr-parser's object names.

dsmr-parser's own ``Telegram.to_json`` returns a string with timestamps in UTC under
``datetime``; we want a dict (for the CLI and the bus) with the meter's local time in ISO 8601
under ``timestamp``, and the 13-month peak history as a list of entries.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dsmr_parser.objects import (
    CosemObject,
    MbusDevice,
    MBusObject,
    MBusObjectPeak,
    ProfileGenericObject,
    Telegram,
)

__all__ = ["METER_TZ", "iso", "to_json"]

#: Civil time of the meters we read (Belgium; the same offsets as the Netherlands).
METER_TZ = ZoneInfo("Europe/Brussels")


def iso(moment: datetime | None) -> str | None:
    """``moment`` in the meter's local time as ISO 8601 with its UTC offset (None stays None)."""
    return None if moment is None else moment.astimezone(METER_TZ).isoformat()


def to_json(telegram: Telegram) -> dict[str, Any]:
    """Every object of ``telegram`` as ``{name: {"value", "unit"[, "timestamp"]}}``.

    Lists (the 13-month peak history, the power-failure log) become lists of entries, each with
    its own timestamps, value and unit; M-Bus devices become ``MBUS_DEVICES``, a list of dicts
    with their ``CHANNEL_ID`` and objects. Decimals become floats, datetimes ISO strings.
    """
    out: dict[str, Any] = {}
    for name, obj in telegram:
        if name == "MBUS_DEVICES":
            out[name] = [_device(device) for device in obj]
        elif isinstance(obj, list):
            out[name] = [_entry(item) for item in obj]
        else:
            out[name] = _entry(obj)
    return out


def _device(device: MbusDevice) -> dict[str, Any]:
    data: dict[str, Any] = {"CHANNEL_ID": device.channel_id}
    for name, obj in device:
        data[name] = _entry(obj)
    return data


def _entry(obj: Any) -> Any:
    if isinstance(obj, MBusObjectPeak):
        return {
            "month_end": _plain(obj.datetime),
            "timestamp": _plain(obj.occurred),
            "value": _plain(obj.value),
            "unit": obj.unit,
        }
    if isinstance(obj, ProfileGenericObject):
        return [
            {"timestamp": _plain(item.datetime), "value": _plain(item.value), "unit": item.unit}
            for item in obj.buffer
        ]
    if isinstance(obj, MBusObject):
        return {"value": _plain(obj.value), "unit": obj.unit, "timestamp": _plain(obj.datetime)}
    if isinstance(obj, CosemObject):
        return {"value": _plain(obj.value), "unit": obj.unit}
    return _plain(obj)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return float(value)
    return value
