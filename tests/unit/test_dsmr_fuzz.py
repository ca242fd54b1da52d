"""Fuzzing the decode chain: damaged input is refused or read identically, never misread.

CRC-16 detects every error burst of up to 16 bits, so any single changed byte inside the
checked span must be caught; that is the property checked here (several scattered changes can,
in rare cases, collide, which is why a meter's CRC is not a cryptographic check).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridedge.errors import CrcError, FrameError
from gridedge.protocols.dsmr import (
    FluviusValues,
    P1Reader,
    build_fluvius_telegram,
    crc16,
    decode,
    decode_telegram_bytes,
    normalize,
    to_json,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
TELEGRAMS = {p.name: p.read_bytes() for p in sorted(DATA.glob("*.txt"))}
REFERENCE = {name: to_json(decode_telegram_bytes(data).telegram) for name, data in TELEGRAMS.items()}

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(name=st.sampled_from(sorted(TELEGRAMS)), data=st.data())
def test_single_changed_byte_is_caught_or_harmless(name: str, data: st.DataObject) -> None:
    """Any one byte replaced: CrcError/FrameError, or exactly the original values."""
    original = TELEGRAMS[name]
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="byte")
    damaged = original[:index] + bytes([new]) + original[index + 1 :]
    try:
        decoded = decode_telegram_bytes(damaged)
    except (CrcError, FrameError):
        return
    assert to_json(decoded.telegram) == REFERENCE[name]


@FUZZ
@given(name=st.sampled_from(sorted(TELEGRAMS)), data=st.data())
def test_truncation_is_a_frame_error_or_complete(name: str, data: st.DataObject) -> None:
    """Any prefix of a telegram: FrameError, or (when only the line end is lost) the original values."""
    original = TELEGRAMS[name]
    length = data.draw(st.integers(0, len(original)), label="length")
    try:
        decoded = decode_telegram_bytes(original[:length])
    except FrameError:
        assert length < len(original)
        return
    assert length >= original.rindex(b"!") + 5  # four CRC digits arrived
    assert to_json(decoded.telegram) == REFERENCE[name]


stream_parts = st.lists(
    st.tuples(st.binary(max_size=40), st.sampled_from(sorted(TELEGRAMS))), min_size=1, max_size=5
)


@FUZZ
@given(parts=stream_parts, cuts=st.lists(st.integers(1, 300), max_size=40))
def test_stream_with_garbage_and_arbitrary_reads(parts: list[tuple[bytes, str]], cuts: list[int]) -> None:
    """Garbage prefixes and arbitrary read sizes: every telegram that comes out is a sent one, unchanged.

    When the garbage holds no '/', nothing can mimic a telegram start and every telegram arrives.
    """
    stream = b"".join(garbage + TELEGRAMS[name] for garbage, name in parts)
    reader = P1Reader(port="fuzz", clock=lambda: 0.0)
    received = []
    position = 0
    for size in cuts + [len(stream)]:
        received += reader.feed(stream[position : position + size])
        position += size
    sent = [REFERENCE[name] for _, name in parts]
    got = [to_json(r.decoded.telegram) for r in received]
    assert all(g in sent for g in got)
    if not any(b"/" in garbage for garbage, _ in parts):
        # dsmr_unpadded_crc has no electricity values; all others must arrive in order
        assert got == sent


TIMESTAMP_CHARS = st.text(alphabet="0123456789SWX:-.*abc", max_size=15)


@FUZZ
@given(stamp=TIMESTAMP_CHARS, peak_stamp=TIMESTAMP_CHARS)
def test_bad_timestamps_never_crash_nor_shift_values(stamp: str, peak_stamp: str) -> None:
    """A CRC-valid telegram with nonsense timestamps: no crash, times None or parsed, values intact."""
    good = build_fluvius_telegram(
        FluviusValues(
            meter_time=datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
            energy_import_t1_kwh=12.5,
            month_peak_kw=3.25,
            gas_m3=10.0,
        )
    ).decode("latin-1")
    body = good[: good.rindex("!") + 1]
    body = body.replace("0-0:1.0.0(240301130000W)", f"0-0:1.0.0({stamp})")
    body = body.replace("1-0:1.6.0(240301130000W)", f"1-0:1.6.0({peak_stamp})")
    try:
        reading = normalize(decode(body + f"{crc16(body):04X}\r\n"))
    except FrameError:
        return
    assert reading.energy_import_t1_kwh == 12.5
    assert reading.month_peak_kw == 3.25
    assert reading.gas_m3 == 10.0
    for moment in (reading.meter_time, reading.month_peak_time):
        assert moment is None or isinstance(moment, datetime)


@FUZZ
@given(value=st.text(alphabet="0123456789.-*kWhNaInfy", max_size=14))
def test_odd_numbers_are_refused_or_exact(value: str) -> None:
    """A CRC-valid register with a malformed number is dropped, never published as something else."""
    good = build_fluvius_telegram(FluviusValues(meter_time=datetime(2024, 3, 1, tzinfo=timezone.utc))).decode(
        "latin-1"
    )
    body = good[: good.rindex("!") + 1].replace("1-0:1.8.1(000000.000*kWh)", f"1-0:1.8.1({value})")
    try:
        reading = normalize(decode(body + f"{crc16(body):04X}\r\n"))
    except FrameError:
        return
    published = reading.energy_import_t1_kwh
    assert published is None or (published >= 0 or value.startswith("-"))
    if published is not None:
        number, _, unit = value.partition("*")
        assert unit in ("kWh", "Wh")
        assert published == float(Decimal(number) * (Decimal(1) if unit == "kWh" else Decimal("0.001")))
