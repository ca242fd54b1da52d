"""The simulated meter's registers: energy per tariff, quarter-hour demand, month peak and history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gridedge.domain.tariffs import belgian_tariff
from gridedge.errors import CrcError
from gridedge.protocols.dsmr import METER_TZ, decode, decode_telegram_bytes, extract_telegram, normalize
from gridedge.sim.p1 import DemoHousehold, ReplaySource, SynthSource, corrupt_crc

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=METER_TZ)


def _run(source: SynthSource, start: datetime, seconds: int, step_s: int = 1):
    reading = None
    for i in range(0, seconds + 1, step_s):
        reading = normalize(decode_telegram_bytes(source.next_telegram(start + timedelta(seconds=i))))
    return reading


@pytest.mark.parametrize(
    ("moment", "tariff"),
    [
        (_local(2024, 5, 6, 12, 0), 1),  # Monday noon: day
        (_local(2024, 5, 6, 6, 59), 2),  # Monday before 07:00: night
        (_local(2024, 5, 6, 22, 0), 2),  # Monday 22:00: night
        (_local(2024, 5, 4, 12, 0), 2),  # Saturday: night all day
    ],
)
def test_belgian_tariff_schedule(moment: datetime, tariff: int) -> None:
    """Fluvius night tariff: 22:00–07:00 on weekdays and all weekend."""
    assert belgian_tariff(moment) == tariff


def test_energy_is_integrated_into_the_active_tariff_register() -> None:
    """3.6 kW import for 10 s adds 0.01 kWh to the day register only."""
    source = SynthSource(
        values_fn=lambda: {"power_l1_w": 3600.0, "tariff": 1}, initial={"energy_import_t2_kwh": 5.0}
    )
    reading = _run(source, _local(2024, 5, 6, 12, 0, 0), seconds=10)
    assert reading.energy_import_t1_kwh == pytest.approx(0.01, abs=1e-3)
    assert reading.energy_import_t2_kwh == 5.0
    assert reading.energy_export_t1_kwh == 0.0


def test_export_goes_to_export_register() -> None:
    """Negative net power counts as export, per phase and in total."""
    source = SynthSource(values_fn=lambda: {"power_l1_w": -7200.0, "power_l2_w": 3600.0, "tariff": 2})
    reading = _run(source, _local(2024, 5, 6, 23, 0, 0), seconds=10)
    assert reading.energy_export_t2_kwh == pytest.approx(0.01, abs=1e-3)
    assert (reading.power_export_w, reading.power_export_l1_w, reading.power_import_l2_w) == (
        3600.0,
        7200.0,
        3600.0,
    )


def test_quarter_hour_demand_and_month_peak() -> None:
    """A full quarter at 4 kW shows 4 kW running demand, then becomes the month peak at its end."""
    source = SynthSource(values_fn=lambda: {"power_l1_w": 4000.0})
    start = _local(2024, 5, 6, 12, 0, 0)
    reading = _run(source, start, seconds=899, step_s=10)
    assert reading.avg_demand_kw == pytest.approx(4.0, abs=0.1)
    assert reading.month_peak_kw == 0.0
    reading = normalize(decode_telegram_bytes(source.next_telegram(start + timedelta(seconds=901))))
    assert reading.month_peak_kw == pytest.approx(4.0, abs=0.1)
    assert reading.month_peak_time == start + timedelta(minutes=15)


def test_month_rollover_moves_peak_into_history() -> None:
    """At a new month the old month's peak enters the 13-month history, stamped at the month end."""
    source = SynthSource(values_fn=lambda: {"power_l1_w": 2000.0})
    start = _local(2024, 5, 31, 23, 44, 0)
    _run(source, start, seconds=60 * 17, step_s=10)  # one full quarter 23:45–00:00 and into June
    reading = normalize(decode_telegram_bytes(source.next_telegram(_local(2024, 6, 1, 0, 2, 0))))
    assert len(reading.peak_history) == 1
    record = reading.peak_history[0]
    assert record.month_end == _local(2024, 6, 1)
    assert record.peak_time == _local(2024, 6, 1, 0, 0)
    assert record.demand_kw == pytest.approx(2.0, abs=0.05)


def test_values_fn_with_unknown_key_is_refused() -> None:
    """A typo in the site model's keys is an error, not a silent zero."""
    source = SynthSource(values_fn=lambda: {"power_L1_w": 1.0})
    with pytest.raises(ValueError, match="power_L1_w"):
        source.next_telegram(_local(2024, 5, 6, 12))


def test_demo_household_makes_valid_telegrams_all_day() -> None:
    """The default values_fn yields a decodable telegram at every hour."""
    moments = [_local(2024, 6, 21, h, 30) for h in range(24)]
    clock = iter(moments)
    source = SynthSource(values_fn=DemoHousehold(clock=lambda: next(clock)))
    for moment in moments:
        reading = normalize(decode_telegram_bytes(source.next_telegram(moment)))
        assert reading.voltage_l1_v > 200
        assert reading.gas_m3 is not None


def test_replay_source_cycles_files_unchanged() -> None:
    """Replay returns the captured bytes, in file order, round and round."""
    source = ReplaySource(paths=[DATA])
    files = sorted(DATA.glob("*.txt"))
    now = datetime.now(timezone.utc)
    sent = [source.next_telegram(now) for _ in range(len(files) + 1)]
    assert sent[: len(files)] == [f.read_bytes() for f in files]
    assert sent[-1] == files[0].read_bytes()


def test_corrupt_crc_is_caught() -> None:
    """The injected fault is a CRC mismatch (including three-digit CRCs)."""
    for name in ("fluvius_v171.txt", "dsmr_unpadded_crc.txt"):
        with pytest.raises(CrcError):
            decode(extract_telegram(corrupt_crc((DATA / name).read_bytes())))
