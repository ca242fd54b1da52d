"""The modbus_meter interface scraping the EM24 and SunSpec simulators over loopback TCP.

Values must match the site model's snapshot at each meter's resolution; failures must come
back as clear per-point errors.
"""

from __future__ import annotations

import csv
import socket
import sys
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

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
