"""Capacity-tariff maths: quarters, month peaks, the 12-month figure and the live forecast."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gridedge.domain.capacity import (
    FLOOR_KW,
    CapacityTracker,
    MonthPeak,
    capacity_kw,
    month_key,
    quarter_start,
    rolling_capacity_kw,
)

BRU = ZoneInfo("Europe/Brussels")
UTC = timezone.utc


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BRU)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def feed_constant(
    tracker: CapacityTracker,
    start: datetime,
    end: datetime,
    kw: float,
    *,
    step_s: int = 60,
    energy_kwh: float = 1000.0,
) -> tuple[list, float]:
    """Feed a constant load from start to end (inclusive); return completed quarters and the final counter."""
    done = []
    ts = start
    while ts <= end:
        done += tracker.feed(ts, import_kwh=energy_kwh, power_w=kw * 1000)
        ts += timedelta(seconds=step_s)
        energy_kwh += kw * step_s / 3600
    return done, energy_kwh


# -- the billed figure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peaks", "expected"),
    [
        ([3.0] * 12, 3.0),
        ([1.0, 4.0], 3.25),  # (2.5 + 4.0) / 2
        ([2.0] * 6 + [5.0] * 6, 3.75),  # (6 x 2.5 + 6 x 5) / 12
        ([0.0], 2.5),
        ([10.0] + [1.0] * 11, 3.125),  # (10 + 11 x 2.5) / 12 = 37.5 / 12
        ([2.5, 2.6, 7.9], (2.5 + 2.6 + 7.9) / 3),
    ],
)
def test_capacity_is_mean_of_monthly_peaks_floored_at_2_5_kw(peaks, expected):
    """Each month counts for at least 2.5 kW; fewer than 12 months average what is given."""
    assert capacity_kw(peaks) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("peaks", "message"),
    [
        ([], "at least one"),
        ([3.0] * 13, "at most 12"),
        ([3.0, -0.1], "#2"),
        ([math.nan], "#1"),
        ([3.0, math.inf], "#2"),
        ([3.0, "x"], "not a number"),
        ("3,4", "sequence"),
    ],
)
def test_capacity_refuses_bad_peaks_naming_them(peaks, message):
    """Empty, more than 12, negative, NaN, infinite or non-numeric peaks are refused."""
    with pytest.raises(ValueError, match=message):
        capacity_kw(peaks)


def test_rolling_capacity_uses_the_12_months_ending_with_the_month_given():
    """A peak 13 months back no longer counts; missing months are skipped."""
    peaks = {month_key(local(2025, m, 15), BRU): 3.0 for m in range(2, 13)}
    peaks["2025-01"] = 9.0
    peaks["2026-01"] = 4.0
    assert rolling_capacity_kw(peaks, through_month="2026-01") == pytest.approx((11 * 3.0 + 4.0) / 12)
    assert rolling_capacity_kw(peaks, through_month="2025-12") == pytest.approx((9.0 + 11 * 3.0) / 12)
    assert rolling_capacity_kw({}, through_month="2026-01") is None


# -- quarter windows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (local(2026, 1, 10, 10, 0, 0), local(2026, 1, 10, 10, 0)),
        (local(2026, 1, 10, 10, 14, 59), local(2026, 1, 10, 10, 0)),
        (local(2026, 1, 10, 10, 15, 0), local(2026, 1, 10, 10, 15)),
        (local(2026, 1, 10, 23, 59, 59), local(2026, 1, 10, 23, 45)),
        # spring change: 02:00 CET -> 03:00 CEST at 01:00 UTC
        (utc(2026, 3, 29, 0, 59, 59), utc(2026, 3, 29, 0, 45)),
        (utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 29, 1, 0)),
        # autumn change: the 02:00-03:00 local hour happens in CEST then in CET
        (utc(2026, 10, 25, 0, 20), utc(2026, 10, 25, 0, 15)),
        (utc(2026, 10, 25, 1, 20), utc(2026, 10, 25, 1, 15)),
    ],
)
def test_quarters_are_fixed_local_windows(ts, expected):
    """Quarters start at :00, :15, :30, :45 local time, whatever the DST offset."""
    assert quarter_start(ts, BRU) == expected.astimezone(UTC)


def test_quarter_start_rejects_naive_time():
    """A naive timestamp cannot be placed in a local quarter."""
    with pytest.raises(ValueError, match="timezone-aware"):
        quarter_start(datetime(2026, 1, 1, 12, 0), BRU)


def test_autumn_change_hour_has_eight_quarters():
    """On 2026-10-25 the 02:00-03:00 local hour is lived twice: 8 quarters of 15 real minutes."""
    tracker = CapacityTracker(tz=BRU)
    done, _ = feed_constant(tracker, utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 15), 2.0)
    in_02h = [q for q in done if q.start.astimezone(BRU).hour == 2]
    assert len(in_02h) == 8
    assert {q.start.astimezone(BRU).utcoffset() for q in in_02h} == {timedelta(hours=2), timedelta(hours=1)}
    assert all(q.end - q.start == timedelta(minutes=15) for q in done)
    assert all(q.avg_kw == pytest.approx(2.0) for q in done if q.complete)


def test_spring_change_skips_the_missing_hour():
    """On 2026-03-29 local 01:45 CET is followed by 03:00 CEST: 15 real minutes, no 02:xx quarter."""
    tracker = CapacityTracker(tz=BRU)
    done, _ = feed_constant(tracker, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 30), 1.2)
    starts = [q.start.astimezone(BRU).strftime("%H:%M%z") for q in done]
    assert starts == ["01:00+0100", "01:15+0100", "01:30+0100", "01:45+0100", "03:00+0200", "03:15+0200"]
    assert all(q.avg_kw == pytest.approx(1.2) for q in done)


# -- quarter averages ----------------------------------------------------------------------------------


def test_quarter_average_is_energy_times_four():
    """1 kWh imported in a quarter is a 4 kW quarter average."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=100.0)
    tracker.feed(local(2026, 1, 10, 10, 5), import_kwh=100.25)
    tracker.feed(local(2026, 1, 10, 10, 10), import_kwh=100.5)
    (q,) = tracker.feed(local(2026, 1, 10, 10, 15), import_kwh=101.0)
    assert q.start == local(2026, 1, 10, 10, 0)
    assert q.avg_kw == pytest.approx(4.0)
    assert q.complete


def test_boundary_energy_is_interpolated_between_readings():
    """Readings straddling the boundary: the energy at :15 is interpolated linearly."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=10.0)
    tracker.feed(local(2026, 1, 10, 10, 14, 50), import_kwh=10.5)
    (q,) = tracker.feed(local(2026, 1, 10, 10, 15, 10), import_kwh=10.52)
    assert q.avg_kw == pytest.approx((10.51 - 10.0) * 4)
    status = tracker.status()
    assert status.quarter_start == local(2026, 1, 10, 10, 15)
    assert status.min_final_kw == pytest.approx(0.01 * 4)


def test_power_samples_are_integrated_holding_each_sample():
    """Without an energy counter, each power sample holds until the next one."""
    tracker = CapacityTracker(tz=BRU, source="power")
    tracker.feed(local(2026, 1, 10, 10, 0), power_w=3000)
    tracker.feed(local(2026, 1, 10, 10, 7, 30), power_w=1000)
    (q,) = tracker.feed(local(2026, 1, 10, 10, 15), power_w=0)
    assert q.avg_kw == pytest.approx((3 * 0.125 + 1 * 0.125) * 4)  # 2.0 kW


def test_counter_going_backwards_counts_nothing_for_that_step():
    """A replaced meter restarts its counter: that step counts 0, later steps count normally."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=100.0)
    tracker.feed(local(2026, 1, 10, 10, 5), import_kwh=100.5)
    tracker.feed(local(2026, 1, 10, 10, 10), import_kwh=5.0)
    (q,) = tracker.feed(local(2026, 1, 10, 10, 15), import_kwh=5.25)
    assert q.avg_kw == pytest.approx((0.5 + 0.25) * 4)


def test_clock_set_back_restarts_running_quarter_and_keeps_peak():
    """A timestamp earlier than the last one restarts the running quarter; the month peak stays."""
    tracker = CapacityTracker(tz=BRU)
    _, energy = feed_constant(tracker, local(2026, 1, 10, 9, 0), local(2026, 1, 10, 10, 5), 5.0)
    assert tracker.month_peak("2026-01").peak_kw == pytest.approx(5.0)
    assert tracker.feed(local(2026, 1, 10, 9, 50), import_kwh=energy + 0.01) == []
    status = tracker.status()
    assert status.quarter_start == local(2026, 1, 10, 9, 45)
    assert status.month_peak_kw == pytest.approx(5.0)


def test_long_silence_is_not_interpolated():
    """After more than max_gap without readings the running quarter restarts instead of spreading energy."""
    tracker = CapacityTracker(tz=BRU, max_gap=timedelta(hours=1))
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=0.0)
    assert tracker.feed(local(2026, 1, 10, 13, 2), import_kwh=30.0) == []
    assert tracker.status().quarter_start == local(2026, 1, 10, 13, 0)
    assert tracker.month_peak("2026-01") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"import_kwh": -1.0}, "import_kwh"),
        ({"import_kwh": math.nan}, "import_kwh"),
        ({"import_kwh": 1.0, "power_w": -5.0}, "power_w"),
        ({}, "import_kwh"),
    ],
)
def test_bad_readings_are_refused_without_changing_state(kwargs, message):
    """Invalid values raise ValueError and leave the tracker as it was."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=1.0)
    before = tracker.snapshot()
    with pytest.raises(ValueError, match=message):
        tracker.feed(local(2026, 1, 10, 10, 1), **kwargs)
    assert tracker.snapshot() == before


# -- month peaks -----------------------------------------------------------------------------------


def test_month_peak_follows_the_local_calendar_month():
    """The quarter 00:00-00:15 CEST on 1 April starts on 31 March in UTC but belongs to April."""
    tracker = CapacityTracker(tz=BRU)
    _, energy = feed_constant(tracker, local(2026, 3, 31, 23, 30), local(2026, 3, 31, 23, 45), 1.0)
    _, energy = feed_constant(
        tracker, local(2026, 3, 31, 23, 46), local(2026, 4, 1, 0, 0), 8.0, energy_kwh=energy
    )
    _, energy = feed_constant(
        tracker, local(2026, 4, 1, 0, 1), local(2026, 4, 1, 0, 30), 3.0, energy_kwh=energy
    )
    march, april = tracker.month_peak("2026-03"), tracker.month_peak("2026-04")
    assert march.peak_at == local(2026, 3, 31, 23, 45).astimezone(UTC)
    # each segment's last step runs at its own load: 1 min at 1 kW then 14 at 8 kW, and so on
    assert march.peak_kw == pytest.approx((1.0 + 8.0 * 14) / 15)
    assert april.peak_kw == pytest.approx((8.0 + 3.0 * 14) / 15)
    assert april.peak_at.astimezone(BRU) == local(2026, 4, 1, 0, 0)
    status = tracker.status()
    assert status.month == "2026-04"
    assert status.month_peak_kw == pytest.approx(april.peak_kw)


def test_meter_reported_peak_counts_only_with_its_timestamp():
    """The meter's month peak (1-0:1.6.0) raises the month it is stamped in; without a time it is ignored."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 2, 1, 0, 1), import_kwh=1.0, meter_month_peak_kw=6.0)
    assert tracker.month_peaks == {}
    tracker.feed(
        local(2026, 2, 1, 0, 2),
        import_kwh=1.0,
        meter_month_peak_kw=6.0,
        meter_month_peak_at=local(2026, 1, 20, 18, 30),
    )
    assert tracker.month_peak("2026-01").peak_kw == 6.0
    assert tracker.month_peak("2026-02") is None
    # stamped with the end of the 23:45-00:00 quarter of 31 January
    tracker.feed(
        local(2026, 2, 1, 0, 3),
        import_kwh=1.0,
        meter_month_peak_kw=7.0,
        meter_month_peak_at=local(2026, 2, 1, 0, 0),
    )
    assert tracker.month_peak("2026-01").peak_kw == 7.0
    assert tracker.month_peak("2026-02") is None


# -- live status ---------------------------------------------------------------------------------------


def test_forecast_assumes_current_power_continues():
    """3 kW average for 5 min then 6 kW now: forecast (0.25 + 6 x 10/60) / 0.25 = 5 kW vs a 4 kW peak."""
    peak_at = local(2026, 1, 5, 18, 0)
    tracker = CapacityTracker(tz=BRU, month_peaks={"2026-01": MonthPeak("2026-01", 4.0, peak_at)})
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=50.0, power_w=3000)
    tracker.feed(local(2026, 1, 10, 10, 5), import_kwh=50.25, power_w=6000)
    s = tracker.status()
    assert s.elapsed_s == 300
    assert s.avg_kw_so_far == pytest.approx(3.0)
    assert s.forecast_linear_kw == pytest.approx(3.0)
    assert s.forecast_kw == pytest.approx(5.0)
    assert s.min_final_kw == pytest.approx(1.0)
    assert s.threshold_kw == 4.0
    assert s.overshoot_kw == pytest.approx(1.0)
    assert s.gap_kw == 0.0
    assert s.allowed_power_kw == pytest.approx((4.0 * 0.25 - 0.25) / (10 / 60))  # 4.5 kW
    assert s.new_peak_likely and not s.new_peak_certain
    assert s.month_peak_at == peak_at


def test_status_advances_with_now_between_readings():
    """Between readings the estimate grows at the current power; now is clamped to the quarter end."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=0.0, power_w=2000)
    tracker.feed(local(2026, 1, 10, 10, 3), import_kwh=0.1, power_w=2000)
    s = tracker.status(local(2026, 1, 10, 10, 6))
    assert s.elapsed_s == 360
    assert s.forecast_kw == pytest.approx((0.1 + 2.0 * 12 / 60) * 4)
    assert tracker.status(local(2026, 1, 10, 11, 0)).elapsed_s == 900


def test_gap_uses_the_2_5_kw_floor():
    """A month peak under 2.5 kW costs nothing to raise: the threshold is the floor."""
    tracker = CapacityTracker(tz=BRU, month_peaks={"2026-01": MonthPeak("2026-01", 1.0, None)})
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=0.0, power_w=1000)
    tracker.feed(local(2026, 1, 10, 10, 5), import_kwh=1 / 12, power_w=1500)
    s = tracker.status()
    assert s.threshold_kw == FLOOR_KW
    assert s.forecast_kw == pytest.approx((1 / 12 + 1.5 / 6) * 4)  # 1.333 kW
    assert s.gap_kw == pytest.approx(FLOOR_KW - s.forecast_kw)
    assert s.allowed_power_kw == pytest.approx((2.5 * 0.25 - 1 / 12) * 6)  # 3.25 kW
    assert not s.new_peak_likely and s.overshoot_kw == 0.0


def test_status_is_json_able():
    """QuarterStatus.to_dict() goes onto the bus as JSON."""
    tracker = CapacityTracker(tz=BRU)
    tracker.feed(local(2026, 1, 10, 10, 0), import_kwh=0.0, power_w=500)
    data = json.loads(json.dumps(tracker.status().to_dict()))
    assert data["quarter_start"] == "2026-01-10T09:00:00+00:00"
    assert data["remaining_s"] == 900
    assert tracker.status() is not None and CapacityTracker(tz=BRU).status() is None


def test_snapshot_restore_continues_the_quarter():
    """A restored tracker closes the quarter exactly as one that never stopped."""
    a = CapacityTracker(tz=BRU)
    a.feed(local(2026, 1, 10, 10, 0), import_kwh=7.0)
    a.feed(local(2026, 1, 10, 10, 5), import_kwh=7.2)
    b = CapacityTracker(tz=BRU)
    b.restore(json.loads(json.dumps(a.snapshot())))
    (qa,) = a.feed(local(2026, 1, 10, 10, 20), import_kwh=7.6)
    (qb,) = b.feed(local(2026, 1, 10, 10, 20), import_kwh=7.6)
    assert qa == qb
    assert qa.avg_kw == pytest.approx((7.2 + 0.4 * 10 / 15 - 7.0) * 4)
