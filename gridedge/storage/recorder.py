"""The site meter book: feeds readings to the usage ledger and the capacity tracker, persists both.

Shared by the tariff agent and the dashboard so both count the same way. Flushes to SQLite every
``flush_interval_s`` (by an injected monotonic clock), on a change of local day and on
:meth:`MeterRecorder.close`. Day totals and counter references are saved together, so an
unflushed interval is never lost: after a restart the next reading's counter delta covers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal

from gridedge.domain.capacity import (
    CapacityTracker,
    MonthPeak,
    QuarterAverage,
    QuarterStatus,
    month_key,
    rolling_capacity_kw,
)
from gridedge.domain.tariffs import Rates
from gridedge.domain.usage import MeterReading, UsageLedger, UsageSummary
from gridedge.storage.history import DailyHistory
from gridedge.storage.usage_store import UsageStore

__all__ = ["MeterRecorder"]

#: Day totals older than this are pruned from SQLite (long enough for "this year" + last year).
_KEEP_DAYS = 800
#: Quarter averages kept (the per-day history files keep a year of them as well).
_KEEP_QUARTER_DAYS = 400
#: Month peaks kept (two billing windows).
_KEEP_MONTHS = 24


def _months_back(month: str, n: int) -> str:
    year, mon = (int(p) for p in month.split("-"))
    total = year * 12 + (mon - 1) - n
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


class MeterRecorder:
    """Usage, cost and capacity of one site meter, persisted under ``data_dir``.

    Files: ``usage.sqlite3`` (source of truth) and ``history/YYYY-MM-DD.json`` (one per day,
    kept ``history_days``).
    """

    def __init__(
        self,
        *,
        data_dir: str | Path,
        rates: Rates,
        tz: tzinfo,
        flush_interval_s: float = 30.0,
        history_days: int = 366,
        past_days: int = 7,
        capacity_source: Literal["energy", "power"] = "energy",
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.rates = rates
        self.tz = tz
        self.flush_interval_s = flush_interval_s
        self.past_days = past_days
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self.store = UsageStore(path=self.data_dir / "usage.sqlite3")
        self.history = DailyHistory(directory=self.data_dir / "history", keep_days=history_days)
        self.ledger = UsageLedger(tz=tz, days=self.store.load_days(), refs=self.store.load_refs())
        self.tracker = CapacityTracker(
            tz=tz, source=capacity_source, month_peaks=self.store.load_month_peaks()
        )
        snapshot = self.store.load_state("capacity")
        if snapshot:
            self.tracker.restore(snapshot)
        self.last_reading: MeterReading | None = None
        self._dirty_days: set[date] = set()
        self._pending_quarters: list[QuarterAverage] = []
        self._last_flush = monotonic()
        self._last_day: date | None = None

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, reading: MeterReading) -> list[QuarterAverage]:
        """Book one reading; return the quarters it completed.

        May raise :class:`~gridedge.storage.usage_store.StorageError` from a flush: the reading
        is then booked in memory and the flush is retried after the next interval.
        """
        touched = self.ledger.add(reading, self.rates)
        completed = self.tracker.feed(
            reading.ts,
            import_kwh=reading.import_kwh,
            power_w=reading.power_import_w,
            meter_month_peak_kw=reading.month_peak_kw,
            meter_month_peak_at=reading.month_peak_at,
        )
        self.last_reading = reading
        self._dirty_days |= touched
        self._dirty_days |= {q.start.astimezone(self.tz).date() for q in completed}
        self._pending_quarters.extend(completed)
        day = reading.ts.astimezone(self.tz).date()
        day_changed = self._last_day is not None and day != self._last_day
        if day_changed or self._monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush(prune=day_changed)
        self._last_day = day
        return completed

    def flush(self, *, prune: bool = False) -> None:
        """Write pending figures to SQLite (one transaction) and refresh the day history files."""
        self._last_flush = self._monotonic()
        days = set(self._dirty_days)
        if self.last_reading is not None:
            days.add(self.last_reading.ts.astimezone(self.tz).date())
        self.store.save(
            days={d: self.ledger.days[d] for d in days if d in self.ledger.days},
            refs=self.ledger.refs,
            quarters=self._pending_quarters,
            month_peaks=list(self.tracker.month_peaks.values()),
            state={"capacity": self.tracker.snapshot()},
        )
        self._pending_quarters = []
        self._dirty_days = set()
        for day in sorted(days):
            self.history.write(day, self.day_record(day))
        if prune:
            self.prune()

    def prune(self) -> None:
        """Drop stored data past its retention."""
        now = self.now()
        today = now.astimezone(self.tz).date()
        self.store.prune(
            days_before=today - timedelta(days=_KEEP_DAYS),
            quarters_before=now - timedelta(days=_KEEP_QUARTER_DAYS),
            months_before=_months_back(month_key(now, self.tz), _KEEP_MONTHS),
        )
        for month in [
            m for m in self.tracker.month_peaks if m < _months_back(month_key(now, self.tz), _KEEP_MONTHS)
        ]:
            del self.tracker.month_peaks[month]
        self.history.prune(today)

    def close(self) -> None:
        """Flush and close the store."""
        try:
            self.flush()
        finally:
            self.store.close()

    # -- reading -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Meter time of the last reading, else the wall clock."""
        return self.last_reading.ts if self.last_reading is not None else self._wall_clock()

    def usage_summary(self, now: datetime | None = None) -> UsageSummary:
        """Usage and cost for today, past days, week, month, year."""
        return self.ledger.summary(now or self.now(), past_days=self.past_days)

    def quarter_status(self, now: datetime | None = None) -> QuarterStatus | None:
        """The running quarter against the month peak (None before the first reading)."""
        return self.tracker.status(now)

    def month_peaks(self) -> list[MonthPeak]:
        """Known month peaks, oldest first."""
        return [self.tracker.month_peaks[m] for m in sorted(self.tracker.month_peaks)]

    def capacity_kw(self, now: datetime | None = None) -> float | None:
        """Billed capacity over the 12 months ending with the current month (None if no peak yet)."""
        peaks = {m: p.peak_kw for m, p in self.tracker.month_peaks.items()}
        return rolling_capacity_kw(peaks, through_month=month_key(now or self.now(), self.tz))

    def day_record(self, day: date) -> dict[str, Any]:
        """The JSON record of ``day`` written to ``history/``."""
        # in UTC: subtracting two datetimes sharing a tzinfo ignores a DST change between them
        start = datetime.combine(day, dtime(0), tzinfo=self.tz).astimezone(timezone.utc)
        end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=self.tz).astimezone(timezone.utc)
        quarters = self.store.load_quarters(start, end)
        totals = self.ledger.total(day, day)
        return {
            "date": day.isoformat(),
            "timezone": str(self.tz),
            "hours": (end - start).total_seconds() / 3600.0,
            "usage": totals.usage.to_dict(),
            "cost": totals.cost.to_dict(),
            "quarters": [
                {
                    "start": q.start.astimezone(self.tz).isoformat(),
                    "avg_kw": round(q.avg_kw, 4),
                    "complete": q.complete,
                }
                for q in quarters
            ],
            "peak_kw": max((q.avg_kw for q in quarters), default=None),
            "rates": self.rates.to_json_dict(),
        }
