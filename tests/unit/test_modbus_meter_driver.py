"""The modbus_meter platform-driver interface: configuration, registry rows, refusals (no sockets)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import gevent
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents/drivers/modbus_meter"))

from volttron.driver.base.config import RemoteConfig
from volttron.driver.base.interfaces import BaseInterface
from volttron.driver.interfaces.modbus_meter import modbus_meter as modbus_meter_module
from volttron.driver.interfaces.modbus_meter.modbus_meter import (
    ModbusMeter,
    ModbusMeterConfigError,
    ModbusMeterPointConfig,
)

from gridedge.errors import DeviceError
from gridedge.protocols.modbus_meters import Function, RtuTransport, TcpTransport
from gridedge.sim.modbus_meters import sunspec_meter_image
from gridedge.sim.site import SiteModel, load_site_spec


def _interface(**remote: object) -> ModbusMeter:
    config = {"driver_type": "modbus_meter", "host": "127.0.0.1", "port": 5021} | remote
    return ModbusMeter(RemoteConfig(**config), None)


def _rows(name: str) -> list[dict[str, str]]:
    with open(REPO / "driver_configs/registries" / name, newline="") as f:
        return list(csv.DictReader(f))


def test_platform_driver_finds_the_interface_by_name() -> None:
    """driver_type "modbus_meter" resolves to this interface, as the platform driver looks it up."""
    assert BaseInterface.get_interface_subclass("modbus_meter") is ModbusMeter


@pytest.mark.parametrize(("device_config", "protocol", "registry"),
                         [("em24.json", "registers", "cg_em24.csv"),
                          ("sunspec_meter.json", "sunspec", "sunspec_meter.csv")])
def test_example_configs_load_every_registry_row(device_config: str, protocol: str, registry: str) -> None:
    """The shipped device configs and registries configure without error, one register per row."""
    text = (REPO / "driver_configs" / "devices" / "site" / "main" / device_config).read_text()
    # rendered as gridedge up renders it
    text = text.replace("{em24_port}", "5021").replace("{sunspec_port}", "5022")
    config = json.loads(text)
    assert config["registry_config"] == f"config://{registry}"
    iface = ModbusMeter(RemoteConfig(**config["remote_config"]), None)
    assert iface.config.protocol == protocol
    for row in _rows(registry):
        reg = iface.create_register(ModbusMeterPointConfig(**row))
        iface.insert_register(reg, "devices/site/meter")
        assert reg.read_only and reg.get_register_type() == ("byte", True)
    assert len(iface.get_register_names()) == len(_rows(registry))


@pytest.mark.parametrize(
    ("protocol", "row", "message"),
    [
        ("registers", {"Volttron Point Name": "w", "Address": "0x28", "Type": "int32", "Writable": "TRUE"},
         "read-only"),
        ("registers", {"Volttron Point Name": "w", "Type": "int32"}, "Address"),
        ("registers", {"Volttron Point Name": "w", "Address": "0x28", "Type": "int48"}, "int48"),
        ("registers", {"Volttron Point Name": "w", "Address": "0x28", "Type": "int32", "Word Order": "x"},
         "word order"),
        ("sunspec", {"Volttron Point Name": "w"}, "SunSpec Point"),
        ("sunspec", {"Volttron Point Name": "w", "SunSpec Point": "Watts", "Model ID": "203"}, "Watts"),
    ],
)
def test_unusable_registry_rows_are_refused(protocol: str, row: dict, message: str) -> None:
    """A bad row raises a ValueError (what the platform driver skips a device on) naming the problem."""
    iface = _interface(protocol=protocol)
    with pytest.raises(ModbusMeterConfigError, match=message) as info:
        iface.create_register(ModbusMeterPointConfig(**row))
    assert isinstance(info.value, ValueError)


def test_writes_are_refused() -> None:
    """Meters take no writes: set_point raises a DeviceError naming the point."""
    iface = _interface()
    row = {"Volttron Point Name": "power_w", "Address": "0x28", "Type": "int32", "Word Order": "lsw", "Scale": "10"}
    iface.insert_register(iface.create_register(ModbusMeterPointConfig(**row)), "devices/m")
    with pytest.raises(DeviceError, match="read-only"):
        iface.set_point("devices/m/power_w", 5)


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ({"host": "10.0.0.5", "port": 502}, TcpTransport(host="10.0.0.5", port=502)),
        ({"host": None, "port": "/dev/ttyUSB0", "baudrate": 19200, "parity": "E"},
         RtuTransport(port="/dev/ttyUSB0", baudrate=19200, parity="E")),
    ],
)
def test_transport_follows_the_remote_config(remote: dict, expected: object) -> None:
    """host set: Modbus TCP; no host: Modbus RTU on the serial port (same interface)."""
    assert _interface(**remote).config.transport() == expected


@pytest.mark.parametrize("remote", [{"host": None, "port": 502}, {"protocol": "modbus"}, {"unit_id": 300},
                                    {"max_registers_per_read": 200}, {"parity": "X"}])
def test_invalid_remote_configs_are_refused(remote: dict) -> None:
    """Bad transport settings fail at construction with a ValueError."""
    with pytest.raises(ValueError):
        _interface(**remote)


def test_devices_on_one_meter_share_a_remote() -> None:
    """The remote id is the transport and unit, so two device configs for one meter share its connection."""
    a = ModbusMeter.unique_remote_id("devices/a", RemoteConfig(driver_type="modbus_meter", host="h", port=502))
    b = ModbusMeter.unique_remote_id("devices/b", RemoteConfig(driver_type="modbus_meter", host="h", port=502))
    c = ModbusMeter.unique_remote_id("devices/c", RemoteConfig(driver_type="modbus_meter", host="h", port=502,
                                                                 unit_id=2))
    assert a == b != c


class CooperativeMeter:
    """A SunSpec meter behind a connection that yields to other greenlets mid-transaction, as
    a gevent socket does; counts how many transactions overlap on it."""

    def __init__(self, **_: object) -> None:
        site = SiteModel(spec=load_site_spec({"circuits": [], "base_load_w": 1000, "phases": 1}),
                         clock=lambda: 1_700_000_000.0)
        snapshot = site.snapshot()
        self.power_w = snapshot.power_w
        self.words = sunspec_meter_image(snapshot, model_id=201)
        self.in_flight = 0
        self.max_in_flight = 0
        self.reads = 0

    def read(self, function: Function, address: int, count: int) -> list[int]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            gevent.sleep(0.001)  # request sent; the answer is on its way
            self.reads += 1
            start = address - 40000
            if start < 0 or start + count > len(self.words):
                raise DeviceError("answered Modbus exception 2 (illegal data address)")
            return self.words[start : start + count]
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        """Nothing to release in this fake."""


def test_concurrent_scrapes_take_turns_on_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: greenlets scraping one device at once (several pollers, get_point calls) never
    overlap on its connection, SunSpec discovery included, and each gets a complete scrape."""
    meter = CooperativeMeter()
    monkeypatch.setattr(modbus_meter_module, "ModbusRegisterReader", lambda **kw: meter)
    iface = _interface(protocol="sunspec", port=5022)
    for row in _rows("sunspec_meter.csv"):
        iface.insert_register(iface.create_register(ModbusMeterPointConfig(**row)), "devices/site/main/m")
    names = iface.get_register_names()
    polls = [gevent.spawn(iface.get_multiple_points, names) for _ in range(3)]
    polls.append(gevent.spawn(iface.get_point, "devices/site/main/m/power_w"))
    gevent.joinall(polls, raise_error=True)
    assert meter.max_in_flight == 1
    for poll in polls[:3]:
        values, errors = poll.value
        assert errors == {} and set(values) == set(names)
    assert polls[3].value == polls[0].value[0]["devices/site/main/m/power_w"] == pytest.approx(meter.power_w, abs=0.5)
