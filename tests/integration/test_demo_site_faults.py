"""Failure handling on the real platform: a metering board that stops answering and CRC noise on
its UART. The rule: clear errors in the log, the agents keep serving, nothing stored is lost,
and no corrupted value is ever published."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from conftest import wait_for

pytestmark = pytest.mark.integration


def stored(site, topic: str) -> list[tuple[str, float]]:
    """(timestamp, value) rows the historian holds for ``topic``."""
    with sqlite3.connect(site.data_dir / "historian.sqlite") as db:
        rows = db.execute(
            "SELECT d.ts, d.value_string FROM data d JOIN topics t ON d.topic_id = t.topic_id "
            "WHERE t.topic_name = ? ORDER BY d.ts", (topic,)).fetchall()
    return [(ts, float(v)) for ts, v in rows]


def fault(site, **settings: Any) -> None:
    from gridedge.sim.site_server import SiteClient

    client = SiteClient(port=site.ports.site)
    try:
        reply = client.request({"op": "fault", "device": "stpm34", **settings})
    finally:
        client.close()
    assert reply["ok"], reply


def test_meter_that_stops_answering_is_reported_and_nothing_stored_is_lost(demo_site) -> None:
    """The STPM34 board goes silent: the platform driver logs a clear error naming the device,
    the meter's rows stop growing (nothing made up), the other devices and the agents go on, the
    rows stored before are all still there, and readings resume when the board answers again."""
    meter, p1 = "site/main/meter/power_w", "site/main/p1/PowerImport"
    wait_for(lambda: len(stored(demo_site, meter)) >= 3 and len(stored(demo_site, p1)) >= 1,
             timeout_s=90, what="meter and P1 rows in the historian")
    log_size = demo_site.platform.log_path.stat().st_size
    try:
        fault(demo_site, silent=True)
        before_meter = stored(demo_site, meter)
        # the platform driver repeats a point's last value in its all-publish until the value
        # goes stale (3 polling intervals, 3 s for this meter); after that nothing is published
        time.sleep(6)
        settled = stored(demo_site, meter)
        before_p1 = len(stored(demo_site, p1))

        def logged_error() -> str | None:
            with open(demo_site.platform.log_path, errors="replace") as log:
                log.seek(log_size)
                text = log.read()
            lines = [ln for ln in text.splitlines() if "stpm34" in ln and ("ERROR" in ln or "WARNING" in ln)]
            return lines[-1] if lines else None

        line = wait_for(logged_error, timeout_s=30, what="a logged error naming the stpm34 device")
        assert "stpm34" in line
        wait_for(lambda: len(stored(demo_site, p1)) > before_p1, timeout_s=30,
                 what="the P1 meter to go on being stored")
        after_meter = stored(demo_site, meter)
        assert after_meter[: len(before_meter)] == before_meter, "stored rows changed"
        assert len(after_meter) == len(settled), "the silent meter produced readings"
        status = demo_site.status()
        assert status["platform"] == "running" and not status["errors"], status["errors"]
    finally:
        fault(demo_site, silent=False)
    count = len(stored(demo_site, meter))
    wait_for(lambda: len(stored(demo_site, meter)) > count + 1, timeout_s=60,
             what="meter readings to resume after the board answers again")


def test_crc_noise_on_the_uart_is_counted_and_never_published(demo_site) -> None:
    """CRC noise on every seventh reply: the driver re-reads, counts the bad frames in its
    crc_errors point, and every published site power is still the true one (10 kW)."""
    meter = "site/main/meter/power_w"
    wait_for(lambda: stored(demo_site, meter), timeout_s=60, what="meter rows")
    crc_before = stored(demo_site, "site/main/meter/crc_errors")
    start = len(stored(demo_site, meter))
    try:
        fault(demo_site, corrupt_every=7)
        wait_for(lambda: len(stored(demo_site, meter)) >= start + 5, timeout_s=60,
                 what="five readings under CRC noise")
    finally:
        fault(demo_site, corrupt_every=0)
    noisy = [v for _, v in stored(demo_site, meter)[start:]]
    assert noisy and all(abs(v - 10_000) < 100 for v in noisy), noisy
    crc_after = stored(demo_site, "site/main/meter/crc_errors")
    assert crc_after[-1][1] > (crc_before[-1][1] if crc_before else 0)
