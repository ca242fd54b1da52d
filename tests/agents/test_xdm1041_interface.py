"""The xdm1041 platform-driver interface's configuration and registry (no ports opened)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT / "agents" / "drivers" / "xdm1041"))

from volttron.driver.interfaces.xdm1041.xdm1041 import (
    QUANTITIES,
    Xdm1041,
    Xdm1041PointConfig,
    Xdm1041RemoteConfig,
)

_BASE = {"driver_type": "xdm1041", "voltage_port": "/dev/ttyUSB0", "shunt_port": "/dev/ttyUSB1"}


@pytest.mark.parametrize(
    "extra",
    [{}, {"shunt_ohm": 0.0015, "polarity": -1, "rate": "S", "timeout": 0.5},
     {"shunt_function": "CURR:DC", "shunt_range": 5}, {"shunt_function": "CURR:DC"},
     {"voltage_range": 50, "shunt_range": "50E-3"}],
)
def test_valid_remote_configs(extra: dict) -> None:
    """Ports are required; shunt, polarity, rate, timeout and ranges have sane defaults."""
    cfg = Xdm1041RemoteConfig(**_BASE, **extra)
    assert cfg.voltage_setup().function == "VOLT:DC"
    assert cfg.shunt_setup().function == cfg.shunt_function


@pytest.mark.parametrize(
    "extra",
    [{"shunt_ohm": 0}, {"polarity": 2}, {"rate": "X"}, {"timeout": 0}, {"voltage_range": 7},
     {"shunt_function": "RES"}, {"shunt_function": "CURR:DC", "shunt_range": 50}],
)
def test_invalid_remote_configs(extra: dict) -> None:
    """Bad shunt values, rates, timeouts and ranges the meter lacks are refused at config time."""
    with pytest.raises(ValidationError):
        Xdm1041RemoteConfig(**_BASE, **extra)


def test_remote_config_needs_both_ports() -> None:
    """Without both ports there is no pair."""
    with pytest.raises(ValidationError):
        Xdm1041RemoteConfig(driver_type="xdm1041", voltage_port="/dev/ttyUSB0")


@pytest.mark.parametrize(
    ("row", "ok"),
    [({"Volttron Point Name": "v", "Quantity": "voltage_v", "Units": "V", "Writable": "FALSE"}, True),
     ({"Volttron Point Name": "t", "Quantity": "shunt_timeouts", "Units": "count"}, True),
     ({"Volttron Point Name": "x", "Quantity": "frequency_hz", "Units": "Hz"}, False),
     ({"Volttron Point Name": "x", "Units": "V"}, False)],
)
def test_registry_rows_name_a_known_quantity(row: dict, ok: bool) -> None:
    """Each registry row maps a point to one of the monitor's quantities."""
    if ok:
        assert Xdm1041PointConfig(**row).quantity in QUANTITIES
    else:
        with pytest.raises(ValidationError):
            Xdm1041PointConfig(**row)


def test_shipped_registry_and_device_config_are_valid() -> None:
    """driver_configs/devices/site/main/battery.json and its registry CSV validate against the interface."""
    device = json.loads((_ROOT / "driver_configs" / "devices" / "site" / "main" / "battery.json").read_text())
    remote = device["remote_config"]
    assert remote["voltage_port"] == "{run_dir}/dev/xdm_voltage"
    assert remote["shunt_port"] == "{run_dir}/dev/xdm_shunt"
    Xdm1041RemoteConfig(**remote)
    assert device["registry_config"] == "config://battery_monitor.csv"
    with (_ROOT / "driver_configs" / "registries" / "battery_monitor.csv").open(newline="") as fh:
        rows = [Xdm1041PointConfig(**row) for row in csv.DictReader(fh)]
    names = {r.quantity for r in rows}
    assert {"voltage_v", "current_a", "power_w", "charge_wh", "discharge_wh", "charge_ah",
            "discharge_ah", "voltage_timeouts", "shunt_timeouts"} <= names
    assert not any(r.writable for r in rows)


def test_writable_points_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter has nothing to set: a writable registry row is a configuration error."""
    monkeypatch.setattr(Xdm1041, "default_config", {})
    iface = Xdm1041(Xdm1041RemoteConfig(**_BASE), None)
    row = Xdm1041PointConfig(**{"Volttron Point Name": "v", "Quantity": "voltage_v", "Writable": "TRUE"})
    with pytest.raises(ValueError, match="read-only"):
        iface.create_register(row)
    assert Xdm1041.unique_remote_id("devices/a", Xdm1041RemoteConfig(**_BASE)) == (
        "xdm1041", "/dev/ttyUSB0", "/dev/ttyUSB1")
