"""The dashboard: render(state) as text, the feed loop, the demo meter."""

from __future__ import annotations

import argparse
import io
import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from gridedge.cli.dashboard import (
    DashboardState,
    DemoMeter,
    port_feed,
    render,
    render_quarter,
    run,
    run_dashboard,
    state_from_recorder,
)
from gridedge.domain.capacity import MonthPeak
from gridedge.domain.tariffs import EXAMPLE_RATES, parse_rates
from gridedge.domain.usage import MeterReading
from gridedge.storage import MeterRecorder

BRU = ZoneInfo("Europe/Brussels")
RATES = parse_rates(EXAMPLE_RATES)


def text_of(renderable, width: int = 160) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def values(ts: datetime, kwh_t1: float, *, tariff: int = 1, power_w: float = 1000.0) -> dict:
    return {
        "ts": ts.isoformat(),
        "import_kwh_t1": kwh_t1,
        "import_kwh_t2": 50.0,
        "export_kwh_t1": 3.0,
        "export_kwh_t2": 1.0,
        "tariff": tariff,
        "power_import_w": power_w,
        "power_export_w": 0.0,
        "gas_m3": 10.0,
        "water_m3": 2.0,
    }


@pytest.fixture
def recorder(tmp_path):
    rec = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    yield rec
    rec.store.close()


def feed_quarter(rec: MeterRecorder, start: datetime, kw: float, minutes: int, kwh: float = 100.0) -> float:
    for m in range(minutes + 1):
        rec.feed(MeterReading.from_values(values(start + timedelta(minutes=m), kwh, power_w=kw * 1000)))
        kwh += kw / 60
    return kwh


def test_render_shows_meter_time_rates_usage_peaks_quarter_and_telegram(recorder):
    """One frame carries every section, with the active (day) rate marked."""
    t0 = datetime(2026, 1, 13, 9, 0, tzinfo=BRU)
    kwh = feed_quarter(recorder, t0, 2.0, 16)
    feed_quarter(recorder, t0 + timedelta(minutes=17), 1.0, 3, kwh)
    state = state_from_recorder(
        recorder, source="test", last_telegram="/FLU5\\253769484_A\n1-0:1.8.1(000100.000*kWh)"
    )
    text = text_of(render(state))
    assert "2026-01-13 09:20:00 CET" in text
    assert "tariff 1 (day)" in text
    assert "0.4000 ◀" in text and "0.3000 ◀" not in text
    for label in ("today", "2026-01-12", "2026-01-06", "week", "month", "year"):
        assert label in text
    assert "2026-01 (now)" in text and "2.000" in text  # month peak 2 kW at 09:00
    assert "09:15–09:30 CET" in text
    assert "headroom" in text and "NEW PEAK" not in text
    assert "1-0:1.8.1(000100.000*kWh)" in text
    assert "capacity (12-month mean" in text and "2.500 kW" in text


def test_quarter_panel_turns_red_when_a_new_peak_is_in_the_making(recorder):
    """Forecast above the month peak: red border, NEW PEAK and the overshoot."""
    t0 = datetime(2026, 1, 13, 9, 0, tzinfo=BRU)
    kwh = feed_quarter(recorder, t0, 3.0, 15)
    feed_quarter(recorder, t0 + timedelta(minutes=16), 5.0, 4, kwh)
    status = recorder.quarter_status()
    assert status.new_peak_likely
    panel = render_quarter(status, BRU)
    assert panel.border_style == "red"
    text = text_of(panel)
    assert "NEW PEAK" in text
    assert f"+{status.overshoot_kw:.3f} kW over the month peak" in text
    calm = render_quarter(replace(status, new_peak_likely=False), BRU)
    assert calm.border_style == "green" and "NEW PEAK" not in text_of(calm)


def test_render_before_any_reading():
    """No reading yet: the frame says so instead of failing."""
    text = text_of(
        render(DashboardState(tz=BRU, rates=RATES, month_peaks=(MonthPeak("2025-12", 4.2, None),)))
    )
    assert "waiting for the first reading" in text
    assert "no quarter yet" in text
    assert "2025-12" in text and "4.200" in text


def test_loop_books_a_finite_feed_and_reports_bad_readings(tmp_path):
    """The loop books every item, shows a skipped reading and ends with the feed."""
    t0 = datetime(2026, 1, 13, 21, 58, tzinfo=BRU)
    items = [
        (values(t0 + timedelta(minutes=m), 100 + m / 60, tariff=1 if m < 2 else 2), f"telegram {m}")
        for m in range(5)
    ]
    items.append(({"ts": "bad"}, "garbage"))
    rec = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)
    out = io.StringIO()
    code = run_dashboard(
        items, rec, console=Console(file=out, width=160, color_system=None), refresh_s=0.01, source="list"
    )
    assert code == 0
    assert rec.last_reading.ts == (t0 + timedelta(minutes=4)).astimezone(timezone.utc)
    screen = out.getvalue()
    assert "telegram 4" in screen and "reading skipped" in screen
    assert "0.3000 ◀" in screen  # night rate active after 22:00
    again = MeterRecorder(data_dir=tmp_path, rates=RATES, tz=BRU)  # closed and flushed by the loop
    assert again.ledger.refs["import_kwh_t1"].value == pytest.approx(100 + 4 / 60)
    again.store.close()


def test_demo_meter_is_monotonic_and_readable():
    """Demo values parse as readings, counters never go down, weekends are night tariff."""
    meter = DemoMeter(tz=BRU, seed=3)
    start = datetime(2026, 1, 17, 10, 0, tzinfo=timezone.utc)  # a Saturday
    items = meter.feed(start=start, step_s=30, pace_s=0)
    readings = [MeterReading.from_values(next(items)[0]) for _ in range(400)]
    for a, b in itertools.pairwise(readings):
        assert b.import_kwh >= a.import_kwh and b.export_kwh >= a.export_kwh and b.gas_m3 >= a.gas_m3
    assert {int(r.tariff) for r in readings} == {2}
    assert readings[-1].ts - readings[0].ts == timedelta(seconds=30 * 399)


def test_port_feed_adapts_reader_output():
    """A P1 reader may yield dicts or (dict, telegram) pairs."""

    def reader(port):
        assert port == "/dev/ttyP1"
        yield {"a": 1}
        yield ({"b": 2}, "raw")

    assert list(port_feed("/dev/ttyP1", reader)) == [({"a": 1}, None), ({"b": 2}, "raw")]


@pytest.mark.integration
def test_port_reads_a_real_p1_port_through_the_p1_reader(tmp_path):
    """--port reads a live P1 port (here the P1 simulator's pty replaying a real Fluvius telegram)
    through the project's P1 reader and books the readings."""
    from pathlib import Path

    from gridedge.sim.p1 import P1Simulator, ReplaySource

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1" / "fluvius_v171.txt"
    sim = P1Simulator(source=ReplaySource(paths=[shared]), interval_s=0.2)
    sim.start()
    try:
        args = argparse.Namespace(
            tz="Europe/Brussels", rates=None, demo=False, port=sim.port_path, data_dir=str(tmp_path),
            speed=1.0, seed=1, backfill_days=0, frames=2,
        )
        assert run(args) == 0
    finally:
        sim.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        refs = dict(db.execute("SELECT name, value FROM counter_ref").fetchall())
    # the Fluvius capture's counters (1-0:1.8.1, 1-0:1.8.2, 1-0:2.8.2, gas), as the meter gave them
    assert refs["import_kwh_t1"] == pytest.approx(0.034)
    assert refs["import_kwh_t2"] == pytest.approx(15.758)
    assert refs["export_kwh_t2"] == pytest.approx(0.011)
    assert refs["gas_m3"] == pytest.approx(112.384)
