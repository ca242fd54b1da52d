"""The Fluvius telegram synthesiser: real layout, correct CRC, values that parse back."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge.protocols.dsmr import (
    METER_TZ,
    FluviusValues,
    PeakRecord,
    build_fluvius_telegram,
    crc16,
    decode_telegram_bytes,
    dsmr_timestamp,
    normalize,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"


def _t(*args: int) -> datetime:
    return datetime(*args, tzinfo=METER_TZ)


CAPTURED_VALUES = FluviusValues(
    meter_time=_t(2020, 5, 12, 13, 54, 9),
    energy_import_t1_kwh=0.034,
    energy_import_t2_kwh=15.758,
    energy_export_t2_kwh=0.011,
    tariff=1,
    voltage_l1_v=234.7,
    voltage_l2_v=234.7,
    voltage_l3_v=234.7,
    avg_demand_kw=2.351,
    month_peak_kw=2.589,
    month_peak_time=_t(2020, 5, 9, 13, 45, 58),
    peak_history=(
        PeakRecord(_t(2020, 5, 1), _t(2020, 4, 23, 19, 25, 38), 3.695),
        PeakRecord(_t(2020, 4, 1), _t(2020, 3, 5, 12, 21, 39), 5.98),
        PeakRecord(_t(2020, 3, 1), _t(2020, 2, 10, 3, 54, 21), 4.318),
    ),
    gas_m3=112.384,
    gas_time=_t(2020, 5, 12, 13, 45, 58),
    water_m3=872.234,
    water_time=_t(2020, 5, 12, 13, 45, 58),
)


def test_synthesised_lines_match_the_captured_fluvius_telegram() -> None:
    """Given the captured meter's values, every line is byte-identical except DST flags in the history.

    The real meter marked its winter-time history entries with 'S'; we write the flag the
    clock actually had, which changes that one line and therefore the CRC.
    """
    ours = build_fluvius_telegram(CAPTURED_VALUES).decode("latin-1").split("\r\n")
    real = (DATA / "fluvius_v171.txt").read_bytes().decode("latin-1").split("\r\n")
    differing = [(a, b) for a, b in zip(real, ours) if a != b]
    assert len(ours) == len(real)
    assert [a.split("(")[0] for a, _ in differing] == ["0-0:98.1.0", "!3AD7"]


def test_synthesised_crc_is_crc16_arc_of_slash_through_bang() -> None:
    """The four CRC digits are CRC-16/ARC over '/' .. '!' inclusive."""
    text = build_fluvius_telegram(CAPTURED_VALUES).decode("latin-1")
    body = text[: text.rindex("!") + 1]
    assert text.endswith(f"!{crc16(body):04X}\r\n")
    assert crc16("123456789") == 0xBB3D  # CRC-16/ARC check value


def test_round_trip_of_captured_values() -> None:
    """The synthesised telegram decodes to the values it was built from."""
    reading = normalize(decode_telegram_bytes(build_fluvius_telegram(CAPTURED_VALUES)))
    assert reading.specification == "fluvius"
    assert reading.meter_time == CAPTURED_VALUES.meter_time
    assert reading.avg_demand_kw == 2.351
    assert reading.month_peak_time == CAPTURED_VALUES.month_peak_time
    assert reading.peak_history == CAPTURED_VALUES.peak_history
    assert (reading.gas_m3, reading.water_m3) == (112.384, 872.234)


@pytest.mark.parametrize(
    ("moment", "stamp"),
    [
        (datetime(2020, 5, 12, 11, 54, 9, tzinfo=timezone.utc), "200512135409S"),
        (datetime(2020, 1, 12, 11, 54, 9, tzinfo=timezone.utc), "200112125409W"),
        # 2021-10-31 02:30 happened twice in Belgium: first in summer time, then in winter time
        (datetime(2021, 10, 31, 0, 30, tzinfo=timezone.utc), "211031023000S"),
        (datetime(2021, 10, 31, 1, 30, tzinfo=timezone.utc), "211031023000W"),
    ],
)
def test_dsmr_timestamp_uses_belgian_time_and_dst_flag(moment: datetime, stamp: str) -> None:
    """Timestamps are Belgian civil time with S (summer) or W (winter), which disambiguates the fall-back hour."""
    assert dsmr_timestamp(moment) == stamp


def test_ambiguous_hour_round_trips() -> None:
    """Both 02:30 of the fall-back night decode to the instant they were written from."""
    for moment in (
        datetime(2021, 10, 31, 0, 30, tzinfo=timezone.utc),
        datetime(2021, 10, 31, 1, 30, tzinfo=timezone.utc),
    ):
        reading = normalize(decode_telegram_bytes(build_fluvius_telegram(FluviusValues(meter_time=moment))))
        assert reading.meter_time == moment


@pytest.mark.parametrize(
    "changes",
    [
        {"tariff": 3},
        {"energy_import_t1_kwh": -1.0},
        {"voltage_l1_v": float("nan")},
        {"power_l2_w": float("inf")},
        {"gas_m3": -0.1},
        {"meter_time": datetime(2020, 1, 1)},
        {"header": "/FLU5/x"},
        {"meter_time": datetime(2069, 6, 1, tzinfo=timezone.utc)},
    ],
)
def test_invalid_values_are_refused(changes: dict) -> None:
    """FluviusValues refuses values no meter sends."""
    kwargs = {"meter_time": _t(2020, 1, 1), **changes}
    with pytest.raises(ValueError):
        FluviusValues(**kwargs)


milli = st.integers(min_value=0, max_value=999_999_999).map(lambda n: n / 1000)
watts = st.integers(min_value=-25_000, max_value=25_000).map(float)
moments = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2068, 12, 30), timezones=st.just(timezone.utc)
).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=60, deadline=None)
@given(
    t1=milli,
    t2=milli,
    e1=milli,
    e2=milli,
    tariff=st.sampled_from([1, 2]),
    phases=st.tuples(watts, watts, watts),
    volts=st.tuples(*[st.integers(1800, 2600).map(lambda n: n / 10)] * 3),
    demand=st.integers(0, 99_999).map(lambda n: n / 1000),
    gas=st.none() | milli.filter(lambda g: g < 99_999),
    now=moments,
)
def test_round_trip_property(t1, t2, e1, e2, tariff, phases, volts, demand, gas, now) -> None:
    """Whatever the values, dsmr-parser reads back exactly what the synthesiser wrote."""
    values = FluviusValues(
        meter_time=now,
        energy_import_t1_kwh=t1,
        energy_import_t2_kwh=t2,
        energy_export_t1_kwh=e1,
        energy_export_t2_kwh=e2,
        tariff=tariff,
        power_l1_w=phases[0],
        power_l2_w=phases[1],
        power_l3_w=phases[2],
        voltage_l1_v=volts[0],
        voltage_l2_v=volts[1],
        voltage_l3_v=volts[2],
        avg_demand_kw=demand,
        month_peak_kw=demand,
        gas_m3=gas,
    )
    r = normalize(decode_telegram_bytes(build_fluvius_telegram(values)))
    assert (r.energy_import_t1_kwh, r.energy_import_t2_kwh) == (t1, t2)
    assert (r.energy_export_t1_kwh, r.energy_export_t2_kwh) == (e1, e2)
    assert r.tariff == tariff
    assert r.tariff_period == {1: "day", 2: "night"}[tariff]
    assert (r.power_import_l1_w, r.power_import_l2_w, r.power_import_l3_w) == tuple(
        max(0.0, p) for p in phases
    )
    assert (r.power_export_l1_w, r.power_export_l2_w, r.power_export_l3_w) == tuple(
        max(0.0, -p) for p in phases
    )
    assert r.power_net_w == sum(phases)
    assert (r.voltage_l1_v, r.voltage_l2_v, r.voltage_l3_v) == volts
    assert r.avg_demand_kw == demand
    assert r.meter_time == now
    assert r.gas_m3 == gas
