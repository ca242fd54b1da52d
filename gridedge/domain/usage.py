"""Usage and cost of electricity, gas and water from successive cumulative meter readings.

Counting rules (pure; storage lives in :mod:`gridedge.storage`):

* Meters report cumulative counters, so usage is a counter *delta* between two readings. A
  restart, a missed telegram or a jump of the wall clock loses nothing: the next reading's delta
  covers the whole interval.
* A counter that goes backwards (meter replaced or reset) contributes **0** for that step and its
  new value becomes the reference; usage is never negative.
* The delta between two readings is booked on the local day holding the instant just before the
  later reading (intervals are ``(previous, current]``), so a gas value stamped exactly 00:00
  counts for the day that just ended. Days are local calendar days (``zoneinfo``): 23 or 25 hours
  on DST changes. After a long silence spanning midnight the whole delta lands on the day it was
  read (not spread).
* Electricity import/export use the meter's per-tariff counters (Belgian 1 = day, 2 = night),
  so the tariff split is exact whatever the reporting rate. Gas and water deltas are booked at
  their own measurement time (``gas_at`` / ``water_at``) when the meter gives one.
* Cost is computed when the usage is booked, with the rates in force then, so a later rate change
  does not rewrite the past.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from gridedge.domain.tariffs import Rates, Tariff
from gridedge.errors import ProtocolError

__all__ = [
    "COUNTERS",
    "DEFAULT_KEY_MAP",
    "Cost",
    "CounterRef",
    "DayTotals",
    "MeterReading",
    "PeriodFigures",
    "ReadingError",
    "Usage",
    "UsageLedger",
    "UsageSummary",
    "booking_day",
    "cost_of",
    "counter_delta",
]

#: Cumulative counters tracked, named like the :class:`MeterReading` fields.
COUNTERS: tuple[str, ...] = (
    "import_kwh_t1",
    "import_kwh_t2",
    "export_kwh_t1",
    "export_kwh_t2",
    "gas_m3",
    "water_m3",
)

#: MeterReading field -> key in a plain dict of normalized meter values (identity by default).
DEFAULT_KEY_MAP: dict[str, str] = {
    name: name
    for name in (
        "ts",
        *COUNTERS,
        "tariff",
        "power_import_w",
        "power_export_w",
        "avg_demand_kw",
        "month_peak_kw",
        "month_peak_at",
        "gas_at",
        "water_at",
    )
}


class ReadingError(ProtocolError, ValueError):
    """A meter reading is missing a value or carries one that cannot be right."""

    retryable = True


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ReadingError(f"{name} must be timezone-aware, got {value.isoformat()}")


def _number(value: float | None, name: str, *, optional: bool) -> None:
    if value is None:
        if not optional:
            raise ReadingError(f"{name} is required")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReadingError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ReadingError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class MeterReading:
    """One telegram's normalized values. Counters are cumulative; powers are >= 0.

    ``tariff`` is the Belgian indicator: 1 = day, 2 = night.
    """

    ts: datetime
    import_kwh_t1: float
    import_kwh_t2: float
    export_kwh_t1: float = 0.0
    export_kwh_t2: float = 0.0
    tariff: int = Tariff.DAY
    power_import_w: float | None = None
    power_export_w: float | None = None
    avg_demand_kw: float | None = None
    month_peak_kw: float | None = None
    month_peak_at: datetime | None = None
    gas_m3: float | None = None
    gas_at: datetime | None = None
    water_m3: float | None = None
    water_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ts, datetime):
            raise ReadingError(f"ts must be a datetime, got {self.ts!r}")
        for name in ("ts", "month_peak_at", "gas_at", "water_at"):
            _aware(getattr(self, name), name)
        for name in ("import_kwh_t1", "import_kwh_t2", "export_kwh_t1", "export_kwh_t2"):
            _number(getattr(self, name), name, optional=False)
        for name in (
            "power_import_w",
            "power_export_w",
            "avg_demand_kw",
            "month_peak_kw",
            "gas_m3",
            "water_m3",
        ):
            _number(getattr(self, name), name, optional=True)
        try:
            object.__setattr__(self, "tariff", Tariff.from_indicator(self.tariff))
        except ValueError as exc:
            raise ReadingError(str(exc)) from exc

    @property
    def import_kwh(self) -> float:
        """Total import counter (all tariffs)."""
        return self.import_kwh_t1 + self.import_kwh_t2

    @property
    def export_kwh(self) -> float:
        """Total export counter (all tariffs)."""
        return self.export_kwh_t1 + self.export_kwh_t2

    @property
    def net_power_w(self) -> float | None:
        """Import minus export power (positive = taking from the grid)."""
        if self.power_import_w is None and self.power_export_w is None:
            return None
        return (self.power_import_w or 0.0) - (self.power_export_w or 0.0)

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, Any],
        *,
        ts: datetime | None = None,
        key_map: Mapping[str, str] | None = None,
        naive_tz: tzinfo | None = None,
    ) -> MeterReading:
        """Build a reading from a plain dict of meter values.

        ``key_map`` maps a field name to the dict key holding it (missing entries: same name);
        ``ts`` overrides the dict's own timestamp. Numbers may be numeric strings; timestamps
        ISO 8601 strings, epoch seconds or datetimes; naive ones are read in ``naive_tz`` when given
        (meters keep local time), refused otherwise. Raises :class:`ReadingError` naming the key.
        """
        if not isinstance(values, Mapping):
            raise ReadingError(f"meter values must be a mapping, got {type(values).__name__}")
        keys = {**DEFAULT_KEY_MAP, **(key_map or {})}
        unknown = set(keys) - set(DEFAULT_KEY_MAP)
        if unknown:
            raise ReadingError(f"key_map names unknown fields: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, key in keys.items():
            if key not in values or values[key] is None:
                continue
            raw = values[key]
            if name in ("ts", "month_peak_at", "gas_at", "water_at"):
                stamp = _to_datetime(raw, key)
                if stamp.tzinfo is None and naive_tz is not None:
                    stamp = stamp.replace(tzinfo=naive_tz)
                kwargs[name] = stamp
            elif name == "tariff":
                kwargs[name] = raw
            else:
                kwargs[name] = _to_float(raw, key)
        if ts is not None:
            kwargs["ts"] = ts
        for required in ("ts", "import_kwh_t1", "import_kwh_t2"):
            if required not in kwargs:
                raise ReadingError(f"meter values lack {keys[required]!r} ({required})")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (timestamps as ISO 8601)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["tariff"] = int(self.tariff)
        return data


def _to_float(raw: Any, key: str) -> float:
    if isinstance(raw, bool):
        raise ReadingError(f"{key}: expected a number, got {raw!r}")
    try:
        return float(raw)
    except (TypeError, ValueError) as exc:
        raise ReadingError(f"{key}: expected a number, got {raw!r}") from exc


def _to_datetime(raw: Any, key: str) -> datetime:
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, tz=timezone.utc)
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ReadingError(f"{key}: not an ISO 8601 timestamp: {raw!r}") from exc
    raise ReadingError(f"{key}: expected a timestamp, got {raw!r}")


def counter_delta(previous: float, current: float) -> float:
    """Usage between two values of a cumulative counter: never negative.

    A counter that went backwards (meter replaced/reset) yields 0; the caller then takes the
    new value as reference.
    """
    return current - previous if current >= previous else 0.0


def booking_day(at: datetime, tz: tzinfo) -> date:
    """Local day an interval ending at ``at`` is booked on (the day holding ``at`` - 1 µs)."""
    return (at - timedelta(microseconds=1)).astimezone(tz).date()


def _add_fields(a: Any, b: Any) -> dict[str, float]:
    return {f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(a)}


@dataclass(frozen=True)
class Usage:
    """Amounts used over a period (kWh, m³), split per tariff for electricity."""

    import_kwh_t1: float = 0.0
    import_kwh_t2: float = 0.0
    export_kwh_t1: float = 0.0
    export_kwh_t2: float = 0.0
    gas_m3: float = 0.0
    water_m3: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**_add_fields(self, other))

    @property
    def import_kwh(self) -> float:
        """Electricity taken from the grid."""
        return self.import_kwh_t1 + self.import_kwh_t2

    @property
    def export_kwh(self) -> float:
        """Electricity injected into the grid."""
        return self.export_kwh_t1 + self.export_kwh_t2

    @property
    def net_kwh(self) -> float:
        """Import minus export (positive = net consumer)."""
        return self.import_kwh - self.export_kwh

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict with the totals added."""
        return {
            **asdict(self),
            "import_kwh": self.import_kwh,
            "export_kwh": self.export_kwh,
            "net_kwh": self.net_kwh,
        }


@dataclass(frozen=True)
class Cost:
    """Money for a :class:`Usage` (EUR). Export is a credit, counted positive here."""

    import_eur_t1: float = 0.0
    import_eur_t2: float = 0.0
    export_eur_t1: float = 0.0
    export_eur_t2: float = 0.0
    gas_eur: float = 0.0
    water_eur: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(**_add_fields(self, other))

    @property
    def import_eur(self) -> float:
        """Paid for electricity import."""
        return self.import_eur_t1 + self.import_eur_t2

    @property
    def export_eur(self) -> float:
        """Credited for electricity export."""
        return self.export_eur_t1 + self.export_eur_t2

    @property
    def electricity_eur(self) -> float:
        """Net electricity cost (import paid minus export credit)."""
        return self.import_eur - self.export_eur

    @property
    def total_eur(self) -> float:
        """Electricity (net) + gas + water."""
        return self.electricity_eur + self.gas_eur + self.water_eur

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict with the totals added."""
        return {
            **asdict(self),
            "import_eur": self.import_eur,
            "export_eur": self.export_eur,
            "electricity_eur": self.electricity_eur,
            "total_eur": self.total_eur,
        }


def cost_of(usage: Usage, rates: Rates) -> Cost:
    """Price ``usage`` with ``rates``."""
    return Cost(
        import_eur_t1=usage.import_kwh_t1 * rates.import_eur_per_kwh(Tariff.DAY),
        import_eur_t2=usage.import_kwh_t2 * rates.import_eur_per_kwh(Tariff.NIGHT),
        export_eur_t1=usage.export_kwh_t1 * rates.export_eur_per_kwh(Tariff.DAY),
        export_eur_t2=usage.export_kwh_t2 * rates.export_eur_per_kwh(Tariff.NIGHT),
        gas_eur=usage.gas_m3 * rates.gas.eur_per_m3,
        water_eur=usage.water_m3 * rates.water.eur_per_m3,
    )


@dataclass(frozen=True)
class DayTotals:
    """A day's usage and its cost at the rates in force when it was booked."""

    usage: Usage = field(default_factory=Usage)
    cost: Cost = field(default_factory=Cost)

    def __add__(self, other: DayTotals) -> DayTotals:
        return DayTotals(self.usage + other.usage, self.cost + other.cost)


@dataclass(frozen=True)
class CounterRef:
    """Last value seen of a cumulative counter and when it was measured."""

    value: float
    at: datetime

    def __post_init__(self) -> None:
        _aware(self.at, "at")
        if not math.isfinite(self.value):
            raise ReadingError(f"counter value must be finite, got {self.value!r}")


@dataclass(frozen=True)
class PeriodFigures:
    """Usage and cost over local days ``first``..``last`` (inclusive)."""

    label: str
    first: date
    last: date
    usage: Usage
    cost: Cost

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "label": self.label,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "usage": self.usage.to_dict(),
            "cost": self.cost.to_dict(),
        }


@dataclass(frozen=True)
class UsageSummary:
    """Figures for today, the past days, this ISO week, this month and this year."""

    at: datetime
    today: PeriodFigures
    past_days: tuple[PeriodFigures, ...]
    week: PeriodFigures
    month: PeriodFigures
    year: PeriodFigures

    def periods(self) -> list[PeriodFigures]:
        """All periods, in display order."""
        return [self.today, *self.past_days, self.week, self.month, self.year]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "at": self.at.isoformat(),
            "today": self.today.to_dict(),
            "past_days": [p.to_dict() for p in self.past_days],
            "week": self.week.to_dict(),
            "month": self.month.to_dict(),
            "year": self.year.to_dict(),
        }


class UsageLedger:
    """Books counter deltas of successive readings onto local days (see module rules).

    State is plain data (``days``, ``refs``) so a store can persist and restore it.
    """

    def __init__(
        self,
        *,
        tz: tzinfo,
        days: Mapping[date, DayTotals] | None = None,
        refs: Mapping[str, CounterRef] | None = None,
    ) -> None:
        self.tz = tz
        self.days: dict[date, DayTotals] = dict(days or {})
        self.refs: dict[str, CounterRef] = dict(refs or {})

    def add(self, reading: MeterReading, rates: Rates) -> set[date]:
        """Book ``reading``'s deltas against the previous references; return the days touched."""
        if not isinstance(reading, MeterReading):
            raise ReadingError(f"expected a MeterReading, got {type(reading).__name__}")
        at_of = {"gas_m3": reading.gas_at or reading.ts, "water_m3": reading.water_at or reading.ts}
        per_day: dict[date, dict[str, float]] = {}
        new_refs: dict[str, CounterRef] = {}
        for name in COUNTERS:
            value = getattr(reading, name)
            if value is None:
                continue
            at = at_of.get(name, reading.ts)
            new_refs[name] = CounterRef(float(value), at)
            ref = self.refs.get(name)
            if ref is None:
                continue
            delta = counter_delta(ref.value, value)
            if delta > 0:
                per_day.setdefault(booking_day(at, self.tz), {})[name] = delta
        for day, amounts in per_day.items():
            usage = Usage(**amounts)
            self.days[day] = self.days.get(day, DayTotals()) + DayTotals(usage, cost_of(usage, rates))
        self.refs.update(new_refs)
        return set(per_day)

    def total(self, first: date, last: date) -> DayTotals:
        """Sum of the booked days ``first``..``last`` inclusive."""
        total = DayTotals()
        for day, totals in self.days.items():
            if first <= day <= last:
                total = total + totals
        return total

    def _period(self, label: str, first: date, last: date) -> PeriodFigures:
        t = self.total(first, last)
        return PeriodFigures(label, first, last, t.usage, t.cost)

    def summary(self, now: datetime, *, past_days: int = 7) -> UsageSummary:
        """Figures as of ``now`` (local periods in the ledger's timezone)."""
        _aware(now, "now")
        today = now.astimezone(self.tz).date()
        past = tuple(
            self._period(d.isoformat(), d, d)
            for d in (today - timedelta(days=n) for n in range(1, past_days + 1))
        )
        return UsageSummary(
            at=now,
            today=self._period("today", today, today),
            past_days=past,
            week=self._period("week", today - timedelta(days=today.weekday()), today),
            month=self._period("month", today.replace(day=1), today),
            year=self._period("year", today.replace(month=1, day=1), today),
        )
