"""P1 simulator on a real pty → the reader the driver uses: values, dropped CRC errors, reconnects."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridedge.protocols.dsmr import P1Reader, ReceivedTelegram, decode_telegram_bytes, normalize
from gridedge.sim.p1 import P1Simulator, ReplaySource, SynthSource

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
SITE = {
    "power_l1_w": 1234.0,
    "power_l2_w": -500.0,
    "power_l3_w": 250.0,
    "voltage_l1_v": 231.5,
    "voltage_l2_v": 229.8,
    "voltage_l3_v": 230.1,
    "tariff": 2,
    "gas_m3": 42.125,
}


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_synthesised_telegrams_arrive_and_corrupted_ones_are_dropped(tmp_path: Path) -> None:
    """Through a pty and its symlink, good telegrams carry the site's values; every bad CRC is counted."""
    link = tmp_path / "dev" / "p1"
    received: list[ReceivedTelegram] = []
    sim = P1Simulator(
        source=SynthSource(values_fn=lambda: dict(SITE)),
        interval_s=0.1,
        corrupt_crc_every=3,
        garbage_every=2,
        link_path=link,
        seed=1,
    )
    with sim:
        assert link.is_symlink() and str(link.resolve()) == sim.port_path
        reader = P1Reader(port=str(link), on_telegram=received.append, max_age_s=30)
        reader.start()
        try:
            assert _wait_for(lambda: reader.stats().telegrams >= 6 and reader.stats().crc_errors >= 2)
        finally:
            reader.stop()
    assert not link.exists()
    for telegram in received:
        r = telegram.reading
        assert (r.power_import_l1_w, r.power_export_l2_w, r.power_import_l3_w) == (1234.0, 500.0, 250.0)
        assert (r.power_import_w, r.power_export_w) == (984.0, 0.0)
        assert (r.voltage_l1_v, r.voltage_l2_v, r.voltage_l3_v) == (231.5, 229.8, 230.1)
        assert (r.tariff, r.tariff_period, r.gas_m3) == (2, "night", 42.125)
    # the first telegram may have been half-sent before the port was opened; none beyond that is lost
    stats = reader.stats()
    assert sim.stats.corrupted_sent >= stats.crc_errors >= 2
    assert stats.telegrams + stats.crc_errors + stats.frame_errors >= sim.stats.telegrams_sent - 2


def test_replayed_real_telegrams_arrive_unchanged() -> None:
    """Every captured file replayed over the pty decodes to the same reading as from disk."""
    expected = {p.name: normalize(decode_telegram_bytes(p.read_bytes())) for p in sorted(DATA.glob("*.txt"))}
    seen: dict[str, object] = {}
    with P1Simulator(source=ReplaySource(paths=[DATA]), interval_s=0.05) as sim:
        reader = P1Reader(
            port=sim.port_path, max_age_s=30, on_telegram=lambda t: seen.setdefault(t.decoded.text, t.reading)
        )
        reader.start()
        try:
            assert _wait_for(lambda: len(seen) >= len(expected))
        finally:
            reader.stop()
    assert sorted(seen.values(), key=repr) == sorted(expected.values(), key=repr)


def test_reader_reconnects_when_the_port_comes_back(tmp_path: Path) -> None:
    """The port vanishing is seen as disconnected; a new port at the same path is picked up."""
    link = tmp_path / "p1"
    reader = P1Reader(port=str(link), reconnect_delay_s=0.1, max_age_s=30)
    first = P1Simulator(
        source=SynthSource(values_fn=lambda: dict(SITE)), interval_s=0.1, link_path=link
    ).start()
    reader.start()
    try:
        assert _wait_for(lambda: reader.stats().telegrams >= 1)
        first.stop()
        assert _wait_for(lambda: not reader.stats().connected)
        before = reader.stats().telegrams
        with P1Simulator(
            source=SynthSource(values_fn=lambda: {**SITE, "tariff": 1}), interval_s=0.1, link_path=link
        ):
            assert _wait_for(lambda: reader.stats().telegrams > before + 1)
            assert reader.latest().reading.tariff_period == "day"
            assert reader.stats().reconnects >= 1
    finally:
        reader.stop()
        first.stop()


def test_legacy_9600_7e1_line() -> None:
    """The 9600 baud 7E1 option carries telegrams to a reader configured the same way."""
    with P1Simulator(
        source=SynthSource(values_fn=lambda: dict(SITE)), baudrate=9600, framing="7E1", interval_s=1.0
    ) as sim:
        reader = P1Reader(port=sim.port_path, baudrate=9600, max_age_s=30)
        assert reader.settings["bytesize"] == 7 and reader.settings["parity"] == "E"
        reader.start()
        try:
            assert _wait_for(lambda: reader.stats().telegrams >= 1)
        finally:
            reader.stop()
        assert reader.latest().reading.power_import_l1_w == 1234.0


def test_start_stop_leaks_no_fds_or_threads(tmp_path: Path) -> None:
    """After stop(), the simulator's pty fds and both threads are gone."""
    import os
    import threading

    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = {t.name for t in threading.enumerate()}
    sim = P1Simulator(
        source=SynthSource(values_fn=lambda: dict(SITE)), interval_s=0.1, link_path=tmp_path / "p1"
    )
    sim.start()
    reader = P1Reader(port=sim.port_path, max_age_s=30)
    reader.start()
    assert _wait_for(lambda: reader.stats().telegrams >= 1)
    reader.stop()
    sim.stop()
    assert not reader.running
    assert {t.name for t in threading.enumerate()} == threads_before
    assert set(os.listdir("/proc/self/fd")) == fds_before
