"""The P1 reader: latest good telegram, error counters, staleness, reconnects (no real port)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import serial

from gridedge.errors import ProtocolTimeout
from gridedge.protocols.dsmr import FluviusValues, P1Reader, build_fluvius_telegram, line_settings
from gridedge.sim.p1 import corrupt_crc

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
FLUVIUS = (DATA / "fluvius_v171.txt").read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _telegram(power_l1_w: float) -> bytes:
    return build_fluvius_telegram(
        FluviusValues(meter_time=datetime(2024, 5, 1, 12, tzinfo=timezone.utc), power_l1_w=power_l1_w)
    )


def test_latest_good_telegram_wins_and_bad_crc_is_counted_not_kept() -> None:
    """A bad-CRC telegram after a good one is counted and never replaces it."""
    reader = P1Reader(port="test", clock=FakeClock())
    reader.feed(_telegram(1000.0))
    reader.feed(corrupt_crc(_telegram(2000.0)))
    assert reader.latest().reading.power_import_l1_w == 1000.0
    assert reader.stats().crc_errors == 1
    reader.feed(_telegram(3000.0))
    assert reader.latest().reading.power_import_l1_w == 3000.0
    assert reader.diagnostics()["telegrams"] == 2


def test_truncated_telegram_counts_as_frame_error() -> None:
    """A telegram cut off by the next one counts as a frame error."""
    reader = P1Reader(port="test", clock=FakeClock())
    reader.feed(FLUVIUS[:500] + FLUVIUS)
    assert reader.stats().frame_errors == 1
    assert reader.stats().telegrams == 1


def test_stale_telegram_is_refused() -> None:
    """Older than max_age_s → ProtocolTimeout, not the old values."""
    clock = FakeClock()
    reader = P1Reader(port="test", max_age_s=10.0, clock=clock)
    with pytest.raises(ProtocolTimeout, match="no good telegram"):
        reader.latest()
    reader.feed(FLUVIUS)
    clock.now += 10.0
    assert reader.latest().reading.avg_demand_kw == 2.351
    clock.now += 0.5
    with pytest.raises(ProtocolTimeout, match="10.5 s old"):
        reader.latest()
    assert reader.diagnostics()["telegram_age_s"] == 10.5


def test_callback_gets_each_good_telegram() -> None:
    """on_telegram is called once per good telegram, outside the reader's lock."""
    got = []
    reader = P1Reader(
        port="test", clock=FakeClock(), on_telegram=lambda r: got.append(reader.stats().telegrams)
    )
    reader.feed(FLUVIUS + corrupt_crc(FLUVIUS) + FLUVIUS)
    assert got == [2, 2]


@pytest.mark.parametrize(
    ("baudrate", "bytesize", "parity", "expected"),
    [
        (115200, None, None, (8, "N")),
        (9600, None, None, (7, "E")),
        (9600, 8, "n", (8, "N")),
    ],
)
def test_line_settings(baudrate: int, bytesize: int | None, parity: str | None, expected: tuple) -> None:
    """DSMR 4+ is 115200 8N1, DSMR 2.2/3 is 9600 7E1, overrides win."""
    s = line_settings(baudrate, bytesize=bytesize, parity=parity)
    assert (s["bytesize"], s["parity"], s["stopbits"]) == (*expected, 1)


@pytest.mark.parametrize("kwargs", [{"baudrate": 0}, {"bytesize": 6}, {"parity": "X"}])
def test_line_settings_refuse_nonsense(kwargs: dict) -> None:
    """Impossible line settings are refused."""
    with pytest.raises(ValueError):
        line_settings(**{"baudrate": 115200, **kwargs})


class FlakyPort:
    """A fake serial port: serves its bytes, then fails like an unplugged USB adapter."""

    def __init__(self, chunks: list[bytes], done: threading.Event) -> None:
        self._chunks = list(chunks)
        self._done = done

    @property
    def in_waiting(self) -> int:
        return len(self._chunks[0]) if self._chunks else 0

    def read(self, size: int = 1) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        self._done.set()
        raise serial.SerialException("device disconnected")

    def close(self) -> None:
        """Nothing to release in this fake."""


def test_port_that_disappears_is_reopened() -> None:
    """After the port fails the reader reopens it and keeps reading; failures to open are retried."""
    opened: list[int] = []
    second_done = threading.Event()
    attempts = iter(["ok", "fail", "ok"])

    def factory(**kwargs):
        outcome = next(attempts, "block")
        if outcome == "fail":
            raise serial.SerialException("no such device")
        opened.append(1)
        if outcome == "block":
            return FlakyPort([], threading.Event())
        return FlakyPort(
            [FLUVIUS[:300], FLUVIUS[300:]], second_done if len(opened) == 2 else threading.Event()
        )

    reader = P1Reader(port="flaky", reconnect_delay_s=0.01, read_timeout_s=0.01, serial_factory=factory)
    reader.start()
    try:
        assert second_done.wait(5.0)
    finally:
        reader.stop()
    stats = reader.stats()
    assert stats.telegrams == 2
    assert stats.reconnects >= 1
    assert not reader.running
