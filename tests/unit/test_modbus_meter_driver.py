"""The modbus_meter platform-driver interface: configuration, registry rows, refusals (no sockets)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents/drivers/modbus_meter"))

from volttron.driver.base.config import RemoteConfig
from volttron.driver.base.interfaces import BaseInterface
from volttron.driver.interfaces.modbus_meter.modbus_meter import (
    ModbusMeter,
    ModbusMeterConfigError,
    ModbusMeterPointConfig,
)

from gridedge.errors import DeviceError
from gridedge.protocols.modbus_meters import RtuTransport, TcpTransport


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
