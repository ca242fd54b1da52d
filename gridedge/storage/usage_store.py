"""SQLite persistence of usage days, counter references, quarter averages and month peaks.

Plain stdlib ``sqlite3`` (no pickle): every value is a number or an ISO 8601 string, readable
with any SQLite tool. :meth:`UsageStore.save` writes everything a flush carries in one
transaction: it lands whole or not at all, so a crash or a bad value never leaves day totals
out of step with the counter references they were computed from. Because day totals and
references move together, flushing only every few seconds loses nothing either: after a
restart the next reading's counter delta covers the unflushed interval.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from typing_extensions import Self

from gridedge.domain.capacity import MonthPeak, QuarterAverage
from gridedge.domain.usage import Cost, CounterRef, DayTotals, Usage
from gridedge.errors import GridEdgeError

__all__ = ["StorageError", "UsageStore"]

_SCHEMA_VERSION = 1
_USAGE_COLS = [f.name for f in fields(Usage)]
_COST_COLS = [f.name for f in fields(Cost)]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS day_totals (
    day TEXT PRIMARY KEY,
    {", ".join(f"{c} REAL NOT NULL" for c in _USAGE_COLS + _COST_COLS)}
);
CREATE TABLE IF NOT EXISTS counter_ref (name TEXT PRIMARY KEY, value REAL NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarter (
    start TEXT PRIMARY KEY, end TEXT NOT NULL, avg_kw REAL NOT NULL, complete INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS month_peak (month TEXT PRIMARY KEY, peak_kw REAL NOT NULL, peak_at TEXT);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StorageError(GridEdgeError):
    """The usage store could not be read or written; in-memory figures are kept for a retry."""

    retryable = True


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise StorageError(f"refusing to store non-finite {what}: {value!r}")
    return value


class UsageStore:
    """One SQLite file holding the usage ledger and the capacity history of a site."""

    def __init__(self, *, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise StorageError(
                    f"{self.path}: schema version {version} is newer than this code ({_SCHEMA_VERSION})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{self.path}: cannot open usage store: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def save(
        self,
        *,
        days: Mapping[date, DayTotals] = {},
        refs: Mapping[str, CounterRef] = {},
        quarters: Iterable[QuarterAverage] = (),
        month_peaks: Iterable[MonthPeak] = (),
        state: Mapping[str, Any] = {},
    ) -> None:
        """Upsert all given rows in one transaction (all or nothing)."""
        try:
            day_rows = [
                (
                    d.isoformat(),
                    *(_finite(getattr(t.usage, c), c) for c in _USAGE_COLS),
                    *(_finite(getattr(t.cost, c), c) for c in _COST_COLS),
                )
                for d, t in days.items()
            ]
            ref_rows = [(n, _finite(r.value, n), r.at.isoformat()) for n, r in refs.items()]
            quarter_rows = [
                (
                    q.start.astimezone(timezone.utc).isoformat(),
                    q.end.astimezone(timezone.utc).isoformat(),
                    _finite(q.avg_kw, "avg_kw"),
                    int(q.complete),
                )
                for q in quarters
            ]
            peak_rows = [
                (p.month, _finite(p.peak_kw, "peak_kw"), p.peak_at.isoformat() if p.peak_at else None)
                for p in month_peaks
            ]
            state_rows = [(k, json.dumps(v, allow_nan=False)) for k, v in state.items()]
        except (TypeError, ValueError) as exc:
            raise StorageError(f"refusing to store bad data: {exc}") from exc
        cols = ["day", *_USAGE_COLS, *_COST_COLS]
        try:
            with self._transaction() as db:
                marks = ", ".join("?" * len(cols))
                db.executemany(
                    f"INSERT OR REPLACE INTO day_totals ({', '.join(cols)}) VALUES ({marks})", day_rows
                )
                db.executemany("INSERT OR REPLACE INTO counter_ref VALUES (?, ?, ?)", ref_rows)
                db.executemany("INSERT OR REPLACE INTO quarter VALUES (?, ?, ?, ?)", quarter_rows)
                db.executemany("INSERT OR REPLACE INTO month_peak VALUES (?, ?, ?)", peak_rows)
                db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state_rows)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: write failed, nothing stored: {exc}") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def prune(self, *, days_before: date, quarters_before: datetime, months_before: str) -> None:
        """Delete day totals, quarters and month peaks older than the given limits."""
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM day_totals WHERE day < ?", (days_before.isoformat(),))
                db.execute("DELETE FROM quarter WHERE start < ?", (quarters_before.isoformat(),))
                db.execute("DELETE FROM month_peak WHERE month < ?", (months_before,))
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: prune failed: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: read failed: {exc}") from exc

    def load_days(self) -> dict[date, DayTotals]:
        """All stored day totals."""
        out: dict[date, DayTotals] = {}
        n = len(_USAGE_COLS)
        for row in self._rows(f"SELECT day, {', '.join(_USAGE_COLS + _COST_COLS)} FROM day_totals"):
            usage = Usage(**dict(zip(_USAGE_COLS, row[1 : 1 + n], strict=True)))
            cost = Cost(**dict(zip(_COST_COLS, row[1 + n :], strict=True)))
            out[date.fromisoformat(row[0])] = DayTotals(usage, cost)
        return out

    def load_refs(self) -> dict[str, CounterRef]:
        """Last value of each counter."""
        return {
            name: CounterRef(value, datetime.fromisoformat(at))
            for name, value, at in self._rows("SELECT name, value, at FROM counter_ref")
        }

    def load_quarters(self, start: datetime, end: datetime) -> list[QuarterAverage]:
        """Quarters starting in ``[start, end)`` (aware datetimes), oldest first."""
        # starts are stored as UTC ISO strings, which sort like the instants they name
        rows = self._rows(
            "SELECT start, end, avg_kw, complete FROM quarter WHERE start >= ? AND start < ? ORDER BY start",
            (start.astimezone(timezone.utc).isoformat(), end.astimezone(timezone.utc).isoformat()),
        )
        out = [
            QuarterAverage(datetime.fromisoformat(s), datetime.fromisoformat(e), kw, bool(complete))
            for s, e, kw, complete in rows
        ]
        return out

    def load_month_peaks(self) -> dict[str, MonthPeak]:
        """Stored month peaks by ``YYYY-MM``."""
        return {
            month: MonthPeak(month, kw, datetime.fromisoformat(at) if at else None)
            for month, kw, at in self._rows("SELECT month, peak_kw, peak_at FROM month_peak")
        }

    def load_state(self, key: str) -> Any:
        """A JSON value saved under ``key`` in :meth:`save`'s ``state``, or None."""
        rows = self._rows("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` / ``ROLLBACK`` on error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
