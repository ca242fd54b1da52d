"""The P1 platform-driver interface: registry rows, scrapes, staleness, read-only points, push."""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
import tty
from pathlib import Path

import gevent
import gevent.event
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents" / "drivers" / "p1"))

from pydantic import ValidationError
from volttron.driver.base.config import RemoteConfig
from volttron.driver.base.interfaces import DriverInterfaceError
from volttron.driver.interfaces.p1.p1 import ALL_POINT_TYPES, P1, HubHandover, P1PointConfig

from gridedge.protocols.dsmr import P1Reader, crc16
from gridedge.sim.p1 import corrupt_crc

DATA = REPO.parent / "shared" / "data" / "p1"
FLUVIUS = (DATA / "fluvius_v171.txt").read_bytes()
REGISTRY = REPO / "driver_configs" / "registries" / "p1_meter.csv"
BASE = "devices/site/main/p1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _interface(
    clock: FakeClock,
    *,
    port: str = "/dev/null-p1",
    driver_agent: object = None,
    reader: P1Reader | None = None,
) -> tuple[P1, P1Reader]:
    iface = P1(RemoteConfig(driver_type="p1", port=port, max_age_s=10), driver_agent)
    with REGISTRY.open(newline="") as f:
        for row in csv.DictReader(f):
            iface.insert_register(iface.create_register(P1PointConfig(**row)), BASE)
    reader = reader or P1Reader(port=port, max_age_s=10, clock=clock)
    iface._reader = reader  # unless a test starts it, the port thread is replaced by feeding bytes
    return iface, reader


def _edited(telegram: bytes, old: bytes, new: bytes) -> bytes:
    """``telegram`` with ``old`` replaced by ``new`` and a CRC that matches again."""
    body = telegram.replace(old, new)[: telegram.rindex(b"!") + 1 + len(new) - len(old)]
    return body + f"{crc16(body.decode('latin-1')):04X}\r\n".encode("ascii")


class RecordingDriverAgent:
    """Stands in for the platform driver's DriverAgent: records publish_push calls and their thread."""

    def __init__(self) -> None:
        self.pushes: list[dict] = []
        self.threads: set[int] = set()
        self.arrived = gevent.event.Event()

    def publish_push(self, results: dict) -> None:
        self.pushes.append(dict(results))
        self.threads.add(threading.get_ident())
        self.arrived.set()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.pushes) < count and time.monotonic() < deadline:
            self.arrived.clear()
            self.arrived.wait(timeout=0.1)
        return self.pushes


def test_registry_csv_uses_only_known_keys_and_is_read_only() -> None:
    """Every row of the shipped registry maps to a point the library produces; none is writable."""
    with REGISTRY.open(newline="") as f:
        rows = [P1PointConfig(**row) for row in csv.DictReader(f)]
    assert {r.point_key for r in rows} <= set(ALL_POINT_TYPES)
    assert not any(r.writable for r in rows)
    assert "crc_errors" in {r.point_key for r in rows}


def test_device_config_keeps_run_dir_placeholder() -> None:
    """The example device config points at the simulator's link under {run_dir}."""
    config = json.loads((REPO / "driver_configs" / "devices" / "site" / "main" / "p1.json").read_text())
    assert config["remote_config"]["driver_type"] == "p1"
    assert config["remote_config"]["port"] == "{run_dir}/dev/p1"
    assert config["registry_config"] == "config://p1_meter.csv"


def test_scrape_maps_points_and_counts_crc_errors() -> None:
    """A scrape returns the latest good telegram's values; a bad-CRC telegram only bumps crc_errors."""
    clock = FakeClock()
    iface, reader = _interface(clock)
    reader.feed(FLUVIUS + corrupt_crc(FLUVIUS.replace(b"02.351", b"09.999")))
    results, errors = iface.get_multiple_points(iface.get_register_names())
    assert errors == {}
    assert results[f"{BASE}/AverageDemand"] == 2.351
    assert results[f"{BASE}/MonthPeakTime"] == "2020-05-09T13:45:58+02:00"
    assert results[f"{BASE}/TariffPeriod"] == "day"
    assert results[f"{BASE}/Water"] == 872.234
    assert results[f"{BASE}/CrcErrors"] == 1
    assert iface.get_point(f"{BASE}/Gas") == 112.384


def test_stale_data_is_an_error_but_diagnostics_still_publish() -> None:
    """Past max_age_s data points are errors (never old values); crc_errors and age still publish."""
    clock = FakeClock()
    iface, reader = _interface(clock)
    reader.feed(FLUVIUS)
    clock.now = 11.0
    results, errors = iface.get_multiple_points(iface.get_register_names())
    assert f"{BASE}/PowerImport" in errors and "11.0 s old" in errors[f"{BASE}/PowerImport"]
    assert f"{BASE}/PowerImport" not in results
    assert results[f"{BASE}/TelegramAge"] == 11.0
    assert results[f"{BASE}/CrcErrors"] == 0
    with pytest.raises(DriverInterfaceError):
        iface.get_point(f"{BASE}/EnergyImportDay")


def test_points_are_read_only() -> None:
    """set_point is refused."""
    iface, _ = _interface(FakeClock())
    with pytest.raises(DriverInterfaceError, match="read-only"):
        iface.set_point(f"{BASE}/Tariff", 2)


@pytest.mark.parametrize(
    "row",
    [
        {"Volttron Point Name": "X", "Point Key": "no_such_point", "Units": "", "Writable": "FALSE"},
    ],
)
def test_unknown_point_key_is_a_config_error(row: dict) -> None:
    """A registry row naming a point the library does not produce is refused."""
    with pytest.raises(ValidationError, match="unknown P1 point key"):
        P1PointConfig(**row)


@pytest.mark.parametrize(
    "changes", [{"baudrate": 0}, {"parity": "Q"}, {"max_age_s": -1}, {"specification": "v9"}]
)
def test_bad_remote_config_is_refused(changes: dict) -> None:
    """Impossible remote_config values fail validation."""
    with pytest.raises(ValidationError):
        P1(RemoteConfig(driver_type="p1", port="/dev/x", **changes), None)


def test_registry_publishes_multi_and_has_received_at() -> None:
    """Every point is published on devices/<device>/multi (the push topic); ReceivedAt is a point."""
    with REGISTRY.open(newline="") as f:
        rows = [P1PointConfig(**row) for row in csv.DictReader(f)]
    assert all(r.publish_multi_depth for r in rows)
    assert {"ReceivedAt": "received_at"}.items() <= {r.volttron_point_name: r.point_key for r in rows}.items()


def test_telegram_is_stamped_when_its_last_byte_is_read() -> None:
    """received_at (monotonic) and received_wall_s (epoch) are the time feed() got the bytes."""
    clock, wall = FakeClock(), FakeClock()
    wall.now = 1_700_000_000.5
    reader = P1Reader(port="test", clock=clock, wall_clock=wall)
    reader.feed(FLUVIUS[:-10])
    clock.now, wall.now = 3.0, 1_700_000_003.5
    reader.feed(FLUVIUS[-10:])
    assert (reader.latest().received_at, reader.latest().received_wall_s) == (3.0, 1_700_000_003.5)
    assert reader.diagnostics()["received_at"] == 1_700_000_003.5


def test_listeners_are_added_and_removed() -> None:
    """A listener gets every good telegram until it is removed; a bad CRC reaches none."""
    reader = P1Reader(port="test", clock=FakeClock())
    got: list[float] = []
    reader.add_listener(lambda r: got.append(r.reading.avg_demand_kw))
    listener = got.append
    reader.add_listener(listener)
    reader.feed(FLUVIUS + corrupt_crc(FLUVIUS))
    reader.remove_listener(listener)
    reader.feed(FLUVIUS)
    assert got[0] == 2.351 and got[2] == 2.351 and len(got) == 3


def _pty_reader() -> tuple[int, P1Reader]:
    master, slave = os.openpty()
    tty.setraw(slave)
    reader = P1Reader(port=os.ttyname(slave), max_age_s=10)
    reader.start()
    os.close(slave)  # the reader opens its own descriptor through the path
    return master, reader


def test_push_publishes_each_good_telegram_from_the_reader_thread_in_the_hub() -> None:
    """A telegram read by the real reader thread from a pty reaches DriverAgent.publish_push in the
    gevent hub's thread (never the reader's), in order, with ReceivedAt from before the publish;
    a bad-CRC telegram is not pushed and only shows in the next push's CrcErrors."""
    master, reader = _pty_reader()
    agent = RecordingDriverAgent()
    try:
        iface, _ = _interface(FakeClock(), port=reader.port, driver_agent=agent, reader=reader)
        iface.finalize_setup(initial_setup=True)
        deadline = time.monotonic() + 5
        while not reader.stats().connected and time.monotonic() < deadline:
            gevent.sleep(0.01)
        before = time.time()
        second = _edited(FLUVIUS, b"02.351", b"03.500")
        os.write(master, FLUVIUS + corrupt_crc(FLUVIUS) + second)
        pushes = agent.wait_for(2)
        after = time.time()
    finally:
        reader.stop()
        os.close(master)
    assert len(pushes) == 2
    assert agent.threads == {threading.get_ident()}
    assert [p[f"{BASE}/AverageDemand"] for p in pushes] == [2.351, 3.5]
    assert [p[f"{BASE}/CrcErrors"] for p in pushes][-1] == 1
    stamps = [p[f"{BASE}/ReceivedAt"] for p in pushes]
    assert before <= stamps[0] <= stamps[1] <= after
    assert pushes[0][f"{BASE}/MonthPeakTime"] == "2020-05-09T13:45:58+02:00"


def test_polls_still_return_the_latest_pushed_values() -> None:
    """Push does not replace polling: a scrape returns the newest telegram and its ReceivedAt."""
    agent = RecordingDriverAgent()
    iface, reader = _interface(FakeClock(), port="/dev/null-poll", driver_agent=agent)
    iface.finalize_setup(initial_setup=True)
    reader.feed(FLUVIUS)
    pushes = agent.wait_for(1)
    results, errors = iface.get_multiple_points(iface.get_register_names())
    assert errors == {}
    assert results[f"{BASE}/ReceivedAt"] == pushes[0][f"{BASE}/ReceivedAt"]
    assert results[f"{BASE}/PowerImport"] == pushes[0][f"{BASE}/PowerImport"]


def test_a_reconfigured_device_replaces_the_push_target_of_its_port() -> None:
    """Two interfaces set up on one port (a config update) never publish the same telegram twice."""
    old_agent, new_agent = RecordingDriverAgent(), RecordingDriverAgent()
    reader = P1Reader(port="/dev/null-reconf", clock=FakeClock())
    for agent in (old_agent, new_agent):
        iface, _ = _interface(FakeClock(), port=reader.port, driver_agent=agent, reader=reader)
        iface.finalize_setup(initial_setup=True)
    reader.feed(FLUVIUS)
    new_agent.wait_for(1)
    gevent.sleep(0.05)
    assert (len(old_agent.pushes), len(new_agent.pushes)) == (0, 1)


def test_handover_delivers_in_order_one_drainer_at_a_time() -> None:
    """Items put from another thread while a delivery blocks arrive in order, never concurrently."""
    delivered: list[int] = []
    active = [0, 0]  # now, most at once

    def deliver(item: int) -> None:
        active[0] += 1
        active[1] = max(active)
        gevent.sleep(0.001)
        delivered.append(item)
        active[0] -= 1

    handover = HubHandover(deliver=deliver, max_pending=200)  # type: ignore[arg-type]
    producer = threading.Thread(target=lambda: [handover.put(i) for i in range(200)])  # type: ignore[func-returns-value]
    producer.start()
    deadline = time.monotonic() + 5
    while len(delivered) < 200 and time.monotonic() < deadline:
        gevent.sleep(0.005)
    producer.join()
    handover.close()
    assert delivered == list(range(200))
    assert active[1] == 1


def test_handover_drops_the_oldest_when_the_hub_falls_behind() -> None:
    """Past max_pending queued telegrams the oldest go: a late reading is worth less than a new one."""
    delivered: list[int] = []
    handover = HubHandover(deliver=delivered.append, max_pending=4)  # type: ignore[arg-type]
    for i in range(10):
        handover.put(i)  # type: ignore[arg-type]
    gevent.sleep(0.05)
    handover.close()
    assert delivered == [6, 7, 8, 9]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.name)
def test_crc_the_driver_checks_is_dsmr_parsers_crc(path: Path) -> None:
    """The driver's CRC-16/ARC (table-driven for speed) equals dsmr-parser's on real telegrams."""
    from dsmr_parser.parsers import TelegramParser

    text = path.read_bytes().decode("latin-1")
    body = text[text.index("/") : text.rindex("!") + 1]
    assert crc16(body) == TelegramParser.crc16(body)
    assert crc16(body + "x") == TelegramParser.crc16(body + "x")
