"""Usage and cost from cumulative counters: tariff switches, DST days, restarts, the store, history."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gridedge.domain.capacity import MonthPeak
from gridedge.domain.tariffs import EXAMPLE_RATES, Tariff, parse_rates
from gridedge.domain.usage import (
    CounterRef,
    DayTotals,
    MeterReading,
    ReadingError,
    Usage,
    UsageLedger,
    booking_day,
    counter_delta,
)
from gridedge.storage import DailyHistory, MeterRecorder, StorageError, UsageStore

BRU = ZoneInfo("Europe/Brussels")
UTC = timezone.utc
RATES = parse_rates(EXAMPLE_RATES)
GAS_EUR_PER_M3 = 1.576


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BRU)


class FakeMeter:
    """A household on a Belgian two-rate meter: night before 07:00 and from 22:00.

    1 kW import all day except 11:00-13:00 when PV exports 1 kW; 0.1 m³ gas per hour (stamped
    on the hour, as gas meters report) and 0.01 m³ water per hour.
    """

    def __init__(self) -> None:
        self.c = {
            "import_kwh_t1": 1000.0,
            "import_kwh_t2": 2000.0,
            "export_kwh_t1": 50.0,
            "export_kwh_t2": 5.0,
            "gas_m3": 300.0,
            "water_m3": 40.0,
        }
        self.gas_at: datetime | None = None
        self.last: datetime | None = None

    def reading(self, ts: datetime) -> MeterReading:
        ts = ts.astimezone(UTC)
        if self.last is not None:
            prev_local = self.last.astimezone(BRU)
            tariff = "t2" if not 7 <= prev_local.hour < 22 else "t1"
            hours = (ts - self.last).total_seconds() / 3600
            exporting = 11 <= prev_local.hour < 13
            self.c[("export_kwh_" if exporting else "import_kwh_") + tariff] += 1.0 * hours
            self.c["water_m3"] += 0.01 * hours
        hour = ts.replace(minute=0, second=0, microsecond=0)
        if self.gas_at is not None and hour > self.gas_at:
            self.c["gas_m3"] += 0.1 * (hour - self.gas_at).total_seconds() / 3600
        self.gas_at = hour
        self.last = ts
        local_now = ts.astimezone(BRU)
        return MeterReading(
            ts=ts,
            tariff=1 if 7 <= local_now.hour < 22 else 2,
            power_import_w=0.0 if 11 <= local_now.hour < 13 else 1000.0,
            power_export_w=1000.0 if 11 <= local_now.hour < 13 else 0.0,
            gas_at=hour,
            **{k: round(v, 6) for k, v in self.c.items()},
        )

    def readings(self, start: datetime, end: datetime, step_s: int = 60) -> Iterator[MeterReading]:
        ts = start
        while ts <= end:
            yield self.reading(ts)
            ts += timedelta(seconds=step_s)


# one day of FakeMeter on Tuesday 2026-01-13: night 00-07 + 22-24 = 9 kWh import at 0.3,
# day 07-22 = 15 h of which 2 h export: 13 kWh import at 0.4, 2 kWh export at 0.1 credit
DAY_IMPORT_T1, DAY_IMPORT_T2, DAY_EXPORT_T1 = 13.0, 9.0, 2.0
DAY_ELEC_EUR = 13 * 0.4 + 9 * 0.3 - 2 * 0.1  # 7.70
DAY_GAS_M3, DAY_WATER_M3 = 2.4, 0.24


def check_full_day(totals: DayTotals) -> None:
    u, c = totals.usage, totals.cost
    assert u.import_kwh_t1 == pytest.approx(DAY_IMPORT_T1, abs=1e-5)
    assert u.import_kwh_t2 == pytest.approx(DAY_IMPORT_T2, abs=1e-5)
    assert u.export_kwh_t1 == pytest.approx(DAY_EXPORT_T1, abs=1e-5)
    assert u.export_kwh_t2 == 0.0
    assert u.net_kwh == pytest.approx(20.0, abs=1e-5)
    assert c.electricity_eur == pytest.approx(DAY_ELEC_EUR, abs=1e-5)
    assert u.gas_m3 == pytest.approx(DAY_GAS_M3, abs=1e-5)
    assert c.gas_eur == pytest.approx(DAY_GAS_M3 * GAS_EUR_PER_M3, abs=1e-4)
    assert u.water_m3 == pytest.approx(DAY_WATER_M3, abs=1e-5)
    assert c.water_eur == pytest.approx(DAY_WATER_M3 * 6.1, abs=1e-5)


# -- counting rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(("prev", "cur", "delta"), [(10.0, 12.5, 2.5), (10.0, 10.0, 0.0), (10.0, 0.3, 0.0)])
def test_counter_delta_is_never_negative(prev, cur, delta):
    """Usage is the counter delta; a counter that went backwards (meter replaced) counts 0."""
    assert counter_delta(prev, cur) == delta


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (local(2026, 1, 13, 0, 0), date(2026, 1, 12)),  # interval ending at midnight: the day before
        (local(2026, 1, 13, 0, 0, 1), date(2026, 1, 13)),
        (local(2026, 1, 13, 23, 59, 59), date(2026, 1, 13)),
    ],
)
def test_interval_is_booked_on_the_day_it_ends_in(at, day):
    """Intervals are (previous, current]: a value stamped 00:00 belongs to the day that just ended."""
    assert booking_day(at, BRU) == day


def test_simulated_day_with_tariff_switches():
    """A weekday with the 07:00 and 22:00 tariff switches: usage per tariff and cost worked by hand."""
    meter, ledger = FakeMeter(), UsageLedger(tz=BRU)
    for r in meter.readings(local(2026, 1, 13, 0, 0), local(2026, 1, 14, 0, 0)):
        ledger.add(r, RATES)
    check_full_day(ledger.days[date(2026, 1, 13)])
    assert set(ledger.days) == {date(2026, 1, 13)}


def test_meter_replacement_never_gives_negative_usage():
    """A counter reset contributes nothing for that step; later deltas count from the new value."""
    ledger = UsageLedger(tz=BRU)
    t = local(2026, 1, 13, 10, 0)
    for minutes, kwh in ((0, 100.0), (1, 101.0), (2, 3.0), (3, 4.5)):
        ledger.add(
            MeterReading(ts=t + timedelta(minutes=minutes), import_kwh_t1=kwh, import_kwh_t2=0.0), RATES
        )
    assert ledger.days[date(2026, 1, 13)].usage.import_kwh_t1 == pytest.approx(2.5)


def test_wall_clock_jump_loses_nothing():
    """The counters decide: a reading stamped earlier than the last still books its delta."""
    ledger = UsageLedger(tz=BRU)
    ledger.add(MeterReading(ts=local(2026, 1, 13, 10, 0), import_kwh_t1=1.0, import_kwh_t2=0.0), RATES)
    ledger.add(MeterReading(ts=local(2026, 1, 13, 9, 0), import_kwh_t1=1.5, import_kwh_t2=0.0), RATES)
    ledger.add(MeterReading(ts=local(2026, 1, 13, 9, 1), import_kwh_t1=2.0, import_kwh_t2=0.0), RATES)
    assert ledger.days[date(2026, 1, 13)].usage.import_kwh == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 6, 1), 24)]
)
def test_dst_days_have_23_or_25_hours(day, hours):
    """A constant 1 kW books 23 kWh on the spring change day and 25 kWh on the autumn one."""
    ledger = UsageLedger(tz=BRU)
    start = datetime.combine(day, datetime.min.time(), tzinfo=BRU).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=BRU).astimezone(UTC)
    ts, kwh = start, 0.0
    while ts <= end:
        ledger.add(MeterReading(ts=ts, import_kwh_t1=kwh, import_kwh_t2=0.0), RATES)
        ts += timedelta(minutes=5)
        kwh += 1.0 / 12
    assert ledger.days[day].usage.import_kwh == pytest.approx(hours)
    assert set(ledger.days) == {day}


def test_cost_uses_the_rates_in_force_when_booked():
    """A rate change does not rewrite usage already booked."""
    ledger = UsageLedger(tz=BRU)
    dear = parse_rates(
        {**EXAMPLE_RATES, "Electricity": {"+": {"Day": 1.0, "Night": 1.0}, "-": {"Day": 0, "Night": 0}}}
    )
    t = local(2026, 1, 13, 10, 0)
    ledger.add(MeterReading(ts=t, import_kwh_t1=0.0, import_kwh_t2=0.0), RATES)
    ledger.add(MeterReading(ts=t + timedelta(hours=1), import_kwh_t1=1.0, import_kwh_t2=0.0), RATES)
    ledger.add(MeterReading(ts=t + timedelta(hours=2), import_kwh_t1=2.0, import_kwh_t2=0.0), dear)
    assert ledger.days[date(2026, 1, 13)].cost.import_eur == pytest.approx(0.4 + 1.0)


def test_summary_periods_today_past_days_iso_week_month_year():
    """Periods are local: ISO week from Monday, month from the 1st, year from 1 January."""
    one = DayTotals(Usage(import_kwh_t1=1.0))
    days = {
        date(2025, 12, 31): one,  # last year
        date(2026, 1, 11): one,  # Sunday: previous ISO week
        date(2026, 1, 12): one,  # Monday
        date(2026, 1, 13): one,  # today (Tuesday)
        date(2026, 1, 5): one,  # 8 days ago: beyond the 7 past days
    }
    ledger = UsageLedger(tz=BRU, days=days)
    s = ledger.summary(local(2026, 1, 13, 23, 30))
    assert s.today.usage.import_kwh == 1.0
    assert [p.first for p in s.past_days] == [date(2026, 1, 13) - timedelta(days=n) for n in range(1, 8)]
    assert [p.usage.import_kwh for p in s.past_days] == [1.0, 1.0, 0, 0, 0, 0, 0]
    assert (s.week.first, s.week.usage.import_kwh) == (date(2026, 1, 12), 2.0)
    assert (s.month.first, s.month.usage.import_kwh) == (date(2026, 1, 1), 4.0)
    assert (s.year.first, s.year.usage.import_kwh) == (date(2026, 1, 1), 4.0)
    json.dumps(s.to_dict())
    # 23:30 UTC on the 13th is already the 14th in Brussels
    assert ledger.summary(datetime(2026, 1, 13, 23, 30, tzinfo=UTC)).today.first == date(2026, 1, 14)


# -- readings from plain dicts -------------------------------------------------------------------


def test_reading_from_driver_values_with_key_map():
    """Point names map onto reading fields; numeric strings and ISO stamps are accepted."""
    values = {
        "E_in_day": "123.456",
        "E_in_night": 7,
        "tariff": "2",
        "gas": 10.5,
        "gas_time": "2026-01-13T10:00:00+01:00",
        "ts": "2026-01-13T10:00:05Z",
    }
    r = MeterReading.from_values(
        values,
        key_map={
            "import_kwh_t1": "E_in_day",
            "import_kwh_t2": "E_in_night",
            "gas_m3": "gas",
            "gas_at": "gas_time",
        },
    )
    assert (r.import_kwh_t1, r.import_kwh_t2, r.tariff, r.gas_m3) == (123.456, 7.0, Tariff.NIGHT, 10.5)
    assert r.ts == datetime(2026, 1, 13, 10, 0, 5, tzinfo=UTC)
    assert r.gas_at == local(2026, 1, 13, 10, 0)
    assert json.loads(json.dumps(r.to_dict()))["tariff"] == 2
    naive = MeterReading.from_values(
        {**values, "ts": "2026-07-01T12:00:00"},
        key_map={"import_kwh_t1": "E_in_day", "import_kwh_t2": "E_in_night"},
        naive_tz=BRU,
    )
    assert naive.ts == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


GOOD = {"ts": "2026-01-13T10:00:00+01:00", "import_kwh_t1": 1.0, "import_kwh_t2": 2.0}


@pytest.mark.parametrize(
    ("values", "key_map", "error"),
    [
        (GOOD, None, None),
        ({**GOOD, "import_kwh_t2": None}, None, "lack 'import_kwh_t2'"),
        ({**GOOD, "import_kwh_t1": "12,5"}, None, "import_kwh_t1: expected a number"),
        ({**GOOD, "import_kwh_t1": -1}, None, "import_kwh_t1 must be a finite number >= 0"),
        ({**GOOD, "gas_m3": float("nan")}, None, "gas_m3 must be a finite"),
        ({**GOOD, "ts": "2026-01-13T10:00:00"}, None, "ts must be timezone-aware"),
        ({**GOOD, "ts": "yesterday"}, None, "ts: not an ISO 8601"),
        ({**GOOD, "tariff": 3}, None, "tariff indicator"),
        ({**GOOD, "power_import_w": True}, None, "power_import_w: expected a number"),
        (GOOD, {"import_kwh_t3": "x"}, "unknown fields"),
        ([1, 2], None, "must be a mapping"),
    ],
)
def test_reading_validation(values, key_map, error):
    """Bad values raise ReadingError naming the key."""
    if error is None:
        assert MeterReading.from_values(values, key_map=key_map).import_kwh == 3.0
    else:
        with pytest.raises(ReadingError, match=error):
            MeterReading.from_values(values, key_map=key_map)


# -- persistence --------------------------------------------------------------------------------------


class Tick:
    """Injected monotonic clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_restart_mid_day_loses_nothing(tmp_path):
    """Recorder killed at 14:50 with 50 min unflushed, reopened: the day's figures are exact."""
    meter, tick = FakeMeter(), Tick()
    first = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU, flush_interval_s=3600, monotonic=tick)
    for r in meter.readings(local(2026, 1, 13, 0, 0), local(2026, 1, 13, 14, 50)):
        tick.t = (r.ts - local(2026, 1, 13, 0, 0)).total_seconds()
        first.feed(r)
    in_memory = first.ledger.days[date(2026, 1, 13)].usage.import_kwh
    # killed without close(): the last flush was at 14:00, 50 minutes (0.83 kWh) are not on disk
    first.store.close()
    second = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU, flush_interval_s=3600, monotonic=tick)
    assert second.ledger.days[date(2026, 1, 13)].usage.import_kwh == pytest.approx(
        in_memory - 50 / 60, abs=1e-5
    )
    for r in meter.readings(local(2026, 1, 13, 15, 5), local(2026, 1, 14, 0, 0)):
        second.feed(r)
    second.close()
    third = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    check_full_day(third.ledger.days[date(2026, 1, 13)])
    summary = third.usage_summary(local(2026, 1, 14, 8, 0))
    assert summary.past_days[0].cost.electricity_eur == pytest.approx(DAY_ELEC_EUR, abs=1e-5)
    assert third.month_peaks()[-1].month == "2026-01"
    third.close()


def test_recorder_keeps_quarters_month_peak_and_day_history(tmp_path):
    """Completed quarters land in SQLite and in history/YYYY-MM-DD.json; the month peak survives a restart."""
    meter = FakeMeter()
    rec = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    for r in meter.readings(local(2026, 1, 13, 0, 0), local(2026, 1, 14, 0, 0)):
        rec.feed(r)
    rec.close()
    record = json.loads((tmp_path / "history" / "2026-01-13.json").read_text())
    assert record["hours"] == 24
    assert len(record["quarters"]) == 96
    assert record["peak_kw"] == pytest.approx(1.0)
    assert record["usage"]["import_kwh"] == pytest.approx(22.0, abs=1e-5)
    assert record["rates"] == EXAMPLE_RATES
    again = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    assert again.tracker.month_peak("2026-01").peak_kw == pytest.approx(1.0)
    assert again.capacity_kw(local(2026, 1, 20, 0, 0)) == pytest.approx(2.5)
    again.close()


def test_history_of_a_dst_day_has_100_quarters(tmp_path):
    """The autumn change day has 25 h and 100 quarters in its history file."""
    rec = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    day_start = local(2026, 10, 25, 0, 0).astimezone(UTC)
    ts, kwh = day_start, 0.0
    while ts <= local(2026, 10, 26, 0, 0).astimezone(UTC):
        rec.feed(MeterReading(ts=ts, import_kwh_t1=0.0, import_kwh_t2=kwh))
        ts += timedelta(minutes=1)
        kwh += 2.0 / 60
    rec.close()
    record = json.loads((tmp_path / "history" / "2026-10-25.json").read_text())
    assert record["hours"] == 25
    assert len(record["quarters"]) == 100
    assert record["usage"]["import_kwh_t2"] == pytest.approx(50.0)


def test_store_write_is_all_or_nothing(tmp_path):
    """A failure in the middle of a save rolls back every row of it."""
    store = UsageStore(path=tmp_path / "u.sqlite3")
    store.save(days={date(2026, 1, 13): DayTotals(Usage(import_kwh_t1=1.0))})
    raw = sqlite3.connect(tmp_path / "u.sqlite3")
    raw.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON month_peak BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="nothing stored"):
        store.save(
            days={date(2026, 1, 13): DayTotals(Usage(import_kwh_t1=99.0))},
            refs={"import_kwh_t1": CounterRef(99.0, local(2026, 1, 13, 12, 0))},
            month_peaks=[MonthPeak("2026-01", 3.0, None)],
        )
    assert store.load_days()[date(2026, 1, 13)].usage.import_kwh_t1 == 1.0
    assert store.load_refs() == {}
    store.close()


def test_store_refuses_non_finite_values(tmp_path):
    """NaN never reaches the database."""
    with UsageStore(path=tmp_path / "u.sqlite3") as store:
        with pytest.raises(StorageError, match="non-finite"):
            store.save(days={date(2026, 1, 13): DayTotals(Usage(import_kwh_t1=float("nan")))})
        assert store.load_days() == {}


def test_history_is_pruned_after_a_year(tmp_path):
    """Files older than keep_days are deleted; others and foreign files stay."""
    history = DailyHistory(directory=tmp_path, keep_days=366)
    for day in (date(2025, 1, 10), date(2025, 1, 12), date(2026, 1, 12)):
        history.write(day, {"date": day.isoformat()})
    (tmp_path / "notes.txt").write_text("keep me")
    assert history.prune(date(2026, 1, 13)) == [date(2025, 1, 10)]
    assert history.days() == [date(2025, 1, 12), date(2026, 1, 12)]
    assert history.read(date(2026, 1, 12)) == {"date": "2026-01-12"}
    assert (tmp_path / "notes.txt").exists()
    assert not list(tmp_path.glob("*.tmp"))
