"""The modbus_meter interface scraping the EM24 and SunSpec simulators over loopback TCP.

Values must match the site model's snapshot at each meter's resolution; failures must come
back as clear per-point errors. In a process patched as the platform driver's, concurrent
polls must take turns on the connection and recover after the simulator restarts or stalls.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from typing_extensions import Self

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents/drivers/modbus_meter"))

from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.modbus_meter.modbus_meter import (
    ModbusMeter,
    ModbusMeterPointConfig,
)

from gridedge.sim.modbus_meters import Em24Simulator, SunSpecMeterSimulator
from gridedge.sim.site import SiteModel, load_site_spec

pytestmark = pytest.mark.integration

BASE = "devices/site/meter"
SPEC = {
    "circuits": [
        {"id": "heater", "name": "Heater", "nominal_w": 2000, "pin": 17, "phase": 1},
        {"id": "pump", "name": "Pump", "nominal_w": 1500, "pin": 18, "phase": 2, "power_factor": 0.8},
        {"id": "oven", "name": "Oven", "nominal_w": 2500, "pin": 19, "phase": 3},
    ],
    "base_load_w": 300,
}


class Clock:
    """A settable clock for the simulators' refresh."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site() -> SiteModel:
    return SiteModel(spec=load_site_spec(SPEC), clock=lambda: 1_700_000_000.0)


def _interface(protocol: str, port: int, registry: str, extra_rows: list[dict] | None = None,
               **remote: object) -> ModbusMeter:
    config = {"driver_type": "modbus_meter", "protocol": protocol, "host": "127.0.0.1", "port": port,
              "unit_id": 1, "timeout_s": 0.5} | remote
    iface = ModbusMeter(RemoteConfig(**config), None)
    with open(REPO / "driver_configs/registries" / registry, newline="") as f:
        rows = list(csv.DictReader(f)) + (extra_rows or [])
    for row in rows:
        iface.insert_register(iface.create_register(ModbusMeterPointConfig(**row)), BASE)
    return iface


def _scrape(iface: ModbusMeter) -> tuple[dict, dict]:
    values, errors = iface.get_multiple_points(iface.get_register_names())
    return {k.rsplit("/", 1)[1]: v for k, v in values.items()}, {k.rsplit("/", 1)[1]: e for k, e in errors.items()}


def test_em24_scrape_matches_the_site_model(site: SiteModel) -> None:
    """Every EM24 registry point reads over TCP in two requests and matches the snapshot."""
    with Em24Simulator(snapshot_source=site.snapshot) as sim:
        iface = _interface("registers", sim.port, "cg_em24.csv")
        before = sim.requests
        values, errors = _scrape(iface)
        iface.close()
        assert sim.requests - before == 2
    snap = site.snapshot()
    assert errors == {}
    assert values["model_id"] == 72
    assert values["power_w"] == pytest.approx(snap.power_w, abs=0.05)
    assert values["frequency_hz"] == pytest.approx(snap.frequency_hz, abs=0.05)
    assert values["energy_import_kwh"] == pytest.approx(sum(snap.import_kwh), abs=0.05)
    assert values["energy_export_kwh"] == pytest.approx(sum(snap.export_kwh), abs=0.05)
    for i, n in enumerate(("l1", "l2", "l3")):
        assert values[f"voltage_{n}_v"] == pytest.approx(snap.phases[i].voltage_v, abs=0.05)
        assert values[f"current_{n}_a"] == pytest.approx(snap.phases[i].current_a, abs=0.0005)
        assert values[f"power_{n}_w"] == pytest.approx(snap.phases[i].power_w, abs=0.05)


@pytest.mark.parametrize("model_id", [201, 202, 203, 204])
def test_sunspec_scrape_matches_the_site_model(site: SiteModel, model_id: int) -> None:
    """The SunSpec registry reads any meter model: discovery, then one read; unimplemented points are None."""
    with SunSpecMeterSimulator(snapshot_source=site.snapshot, model_id=model_id) as sim:
        iface = _interface("sunspec", sim.port, "sunspec_meter.csv")
        values, errors = _scrape(iface)
        iface.close()
    snap = site.snapshot()
    assert errors == {}
    assert values["model"] == f"SIM-{model_id}" and values["manufacturer"] == "GridEdge"
    assert values["power_w"] == pytest.approx(snap.power_w, abs=0.5)
    assert values["frequency_hz"] == pytest.approx(snap.frequency_hz, abs=0.005)
    assert values["energy_import_kwh"] == pytest.approx(sum(snap.import_kwh), abs=0.0005)
    assert values["energy_export_kwh"] == pytest.approx(sum(snap.export_kwh), abs=0.0005)
    assert values["current_l1_a"] == pytest.approx(snap.phases[0].current_a, abs=0.005)
    assert values["apparent_va"] is None and values["power_factor_l1_pct"] is None
    assert (values["voltage_l1_v"] is None) == (model_id == 204)
    assert (values["current_l3_a"] is None) == (model_id in (201, 202))


def test_values_follow_the_site_after_the_refresh_interval(site: SiteModel) -> None:
    """Registers are refreshed from the site model once per second (injected clock), not in between."""
    clock = Clock()
    with Em24Simulator(snapshot_source=site.snapshot, clock=clock) as sim:
        iface = _interface("registers", sim.port, "cg_em24.csv")
        first = iface.get_point(f"{BASE}/power_l1_w")
        site.set_pin(17, 0.0)  # heater off
        clock.now += 0.5
        assert iface.get_point(f"{BASE}/power_l1_w") == first
        clock.now += 0.5
        after = iface.get_point(f"{BASE}/power_l1_w")
        iface.close()
    assert first - after == pytest.approx(2000.0, abs=0.2)
    assert after == pytest.approx(site.snapshot().phases[0].power_w, abs=0.05)


def test_modbus_exception_is_a_clear_error_for_its_points(site: SiteModel) -> None:
    """A register the meter does not map answers exception 02; only that point fails, and says so."""
    extra = [{"Volttron Point Name": "unmapped", "Address": "0x0200", "Type": "uint16"}]
    with Em24Simulator(snapshot_source=site.snapshot) as sim:
        port = sim.port
        iface = _interface("registers", port, "cg_em24.csv", extra_rows=extra)
        values, errors = _scrape(iface)
        iface.close()
    assert set(errors) == {"unmapped"}
    assert "exception 2 (illegal data address)" in errors["unmapped"]
    assert "512..512" in errors["unmapped"] and f"127.0.0.1:{port}" in errors["unmapped"]
    assert values["power_w"] is not None


def test_unreachable_meter_fails_the_scrape_with_a_clear_error() -> None:
    """Nothing listening: every point fails with a message naming the address, quickly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    iface = _interface("registers", port, "cg_em24.csv", timeout_s=0.2)
    values, errors = _scrape(iface)
    assert values == {}
    assert len(errors) == len(iface.get_register_names())
    assert all(f"127.0.0.1:{port}" in e for e in errors.values())


def test_simulators_answer_exception_codes_like_the_meters(site: SiteModel) -> None:
    """EM24: FC3/FC4 same table, 000Bh alone = identification code, coils exception 01, writes 02.
    SunSpec: FC3 only (FC4 exception 01), outside the map exception 02, "SunS" at 40000."""
    with Em24Simulator(snapshot_source=site.snapshot) as em, SunSpecMeterSimulator(snapshot_source=site.snapshot) as ss:
        c = ModbusTcpClient("127.0.0.1", port=em.port, timeout=1)
        try:
            assert c.read_holding_registers(0, count=4, device_id=1).registers == \
                c.read_input_registers(0, count=4, device_id=1).registers
            assert c.read_holding_registers(0x0B, count=1, device_id=1).registers == [72]
            assert c.read_holding_registers(0x0A, count=2, device_id=1).registers[1] != 72
            assert c.read_coils(0, count=1, device_id=1).exception_code == 1
            assert c.write_register(0x28, 1, device_id=1).exception_code == 2
            assert c.read_holding_registers(0x60, count=1, device_id=1).exception_code == 2
        finally:
            c.close()
        c = ModbusTcpClient("127.0.0.1", port=ss.port, timeout=1)
        try:
            assert c.read_holding_registers(40000, count=2, device_id=1).registers == [0x5375, 0x6E53]
            assert c.read_input_registers(40000, count=2, device_id=1).exception_code == 1
            assert c.read_holding_registers(0, count=2, device_id=1).exception_code == 2
        finally:
            c.close()


# --- the interface in a process patched like the platform driver's ------------------------

#: A scrape loop in a process patched as the platform driver's is (``volttron.client.commands``
#: calls ``gevent.monkey.patch_all()``: select, socket, threading... all cooperative). Each
#: line on stdin runs one poll cycle: ``pollers`` greenlets scrape the same interface at once,
#: as the platform driver's pollers and ``get_point`` calls do; one JSON line per cycle comes
#: back: ``[[ok, first error], ...]`` per poller.
_PATCHED_SCRAPER = r"""
from gevent import monkey
monkey.patch_all()
import csv, json, sys
import gevent
import volttron.client  # noqa: F401 - the agent runtime, imported after patching as in the platform
_, driver_path, protocol, port, registry, pollers, timeout_s = sys.argv
sys.path.insert(0, driver_path)
from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.modbus_meter.modbus_meter import ModbusMeter, ModbusMeterPointConfig

iface = ModbusMeter(RemoteConfig(driver_type="modbus_meter", protocol=protocol, host="127.0.0.1",
                                 port=int(port), unit_id=1, timeout_s=float(timeout_s)), None)
with open(registry, newline="") as f:
    for row in csv.DictReader(f):
        iface.insert_register(iface.create_register(ModbusMeterPointConfig(**row)), "devices/site/main/m")
names = iface.get_register_names()

def poll():
    values, errors = iface.get_multiple_points(names)
    return [len(values) == len(names) and not errors, next(iter(errors.values()), "")]

for _ in sys.stdin:
    polls = [gevent.spawn(poll) for _ in range(int(pollers))]
    gevent.joinall(polls, raise_error=True)
    print(json.dumps([p.value for p in polls]), flush=True)
"""


class PatchedScraper:
    """The modbus_meter interface in a gevent-patched subprocess, driven one poll cycle at a time."""

    def __init__(self, *, protocol: str, port: int, registry: str, pollers: int = 3,
                 timeout_s: float = 0.3) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _PATCHED_SCRAPER, str(REPO / "agents/drivers/modbus_meter"), protocol,
             str(port), str(REPO / "driver_configs/registries" / registry), str(pollers), str(timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )

    def cycle(self) -> list[tuple[bool, str]]:
        """One poll cycle: (all points read without error, first error) per poller."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("poll\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        assert line, f"scraper process ended (exit code {self._proc.poll()})"
        return [(bool(ok), str(error)) for ok, error in json.loads(line)]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_DEVICES = {
    "sunspec-201": ("sunspec", "sunspec_meter.csv", lambda site, **kw: SunSpecMeterSimulator(
        snapshot_source=site.snapshot, model_id=201, **kw)),
    "em24": ("registers", "cg_em24.csv", lambda site, **kw: Em24Simulator(snapshot_source=site.snapshot, **kw)),
}


def _all_ok(cycle: list[tuple[bool, str]]) -> bool:
    return all(ok for ok, _ in cycle)


@pytest.mark.parametrize("absent_cycles", [0, 1], ids=["restart-at-once", "absent-for-a-cycle"])
@pytest.mark.parametrize("device", sorted(_DEVICES))
def test_concurrent_polls_recover_after_the_simulator_restarts(site: SiteModel, device: str,
                                                               absent_cycles: int) -> None:
    """Rule: in a gevent-patched process, several greenlets polling one device at once each get
    complete scrapes, and after the simulator restarts on the same port (old server gone, new
    one bound) the polls recover within two cycles and stay recovered."""
    protocol, registry, make = _DEVICES[device]
    old = make(site)
    port = old.start()
    new = make(site, port=port)
    try:
        with PatchedScraper(protocol=protocol, port=port, registry=registry) as scraper:
            assert _all_ok(scraper.cycle()), "concurrent polls of a running meter must all succeed"
            old.stop()
            for _ in range(absent_cycles):
                absent = scraper.cycle()
                assert not any(ok for ok, _ in absent)
                assert all(f"127.0.0.1:{port}" in error for _, error in absent)
            new.start()
            after = [scraper.cycle() for _ in range(4)]
    finally:
        old.stop()
        new.stop()
    assert _all_ok(after[1]) or _all_ok(after[0]), f"no recovery within two cycles: {after[:2]}"
    assert all(_all_ok(c) for c in after[2:]), f"polls failed again after recovering: {after}"


@pytest.mark.parametrize("device", sorted(_DEVICES))
def test_concurrent_polls_recover_after_the_meter_was_busy(site: SiteModel, device: str) -> None:
    """Rule: a meter that answers nothing for a while (requests answered late, after the
    client gave up) fails the polls of that while only; the next cycles succeed."""
    protocol, registry, make = _DEVICES[device]
    with make(site) as sim, PatchedScraper(protocol=protocol, port=sim.port, registry=registry,
                                           timeout_s=0.3) as scraper:
        assert _all_ok(scraper.cycle())
        sim.stall(0.5)
        busy = scraper.cycle()  # three pollers in turn, 0.3 s each: outlasts the stall
        after = [scraper.cycle() for _ in range(3)]
    assert not busy[0][0] and "no valid answer" in busy[0][1]
    assert _all_ok(after[0]) or _all_ok(after[1]), f"no recovery within two cycles: {after[:2]}"
    assert _all_ok(after[2]), f"polls failed again after recovering: {after}"


def test_simulators_answer_back_to_back_requests_in_order(site: SiteModel) -> None:
    """Rule (Modbus TCP): a device answers every request it receives, in order, also when
    several arrive in one TCP segment; requests it cannot serve get an exception response
    (count out of 1..125: 03; unknown unit behind the TCP front end: 0Bh), never silence."""

    def request(tid: int, address: int, count: int, unit: int = 1) -> bytes:
        return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count)

    def answers(sock: socket.socket, n: int) -> list[tuple[int, int, bytes]]:
        got, out = b"", []
        while len(out) < n:
            data = sock.recv(4096)
            assert data, "connection closed before every request was answered"
            got += data
            while len(got) >= 6 and len(got) >= 6 + int.from_bytes(got[4:6], "big"):
                size = 6 + int.from_bytes(got[4:6], "big")
                frame, got = got[:size], got[size:]
                out.append((int.from_bytes(frame[:2], "big"), frame[7], frame[8:]))
        return out

    with SunSpecMeterSimulator(snapshot_source=site.snapshot, model_id=201) as sim, \
            socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
        sock.sendall(request(1, 40000, 2) + request(2, 40002, 2) + request(3, 40000, 126)
                     + request(4, 40000, 2, unit=2) + request(5, 40177, 2))
        got = answers(sock, 5)
    assert [tid for tid, _, _ in got] == [1, 2, 3, 4, 5]
    assert got[0][1:] == (0x03, bytes([4]) + struct.pack(">HH", 0x5375, 0x6E53))
    assert got[1][1:] == (0x03, bytes([4]) + struct.pack(">HH", 1, 66))
    assert got[2][1:] == (0x83, bytes([3]))
    assert got[3][1:] == (0x83, bytes([0x0B]))
    assert got[4][1:] == (0x03, bytes([4]) + struct.pack(">HH", 0xFFFF, 0))
