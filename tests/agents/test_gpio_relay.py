"""The gpio_relay platform-driver interface on gpiozero's MockFactory: safe states, all-off, PWM,
registry validation and revert."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "agents" / "drivers" / "gpio_relay"))

from volttron.client.vip.agent.dispatch import Signal
from volttron.driver.base.config import RemoteConfig
from volttron.driver.base.interfaces import BaseInterface
from volttron.driver.interfaces.gpio_relay.gpio_relay import (
    GpioRelay,
    GpioRelayPointConfig,
    GpioRelayRegistryError,
    GpioRelayRemoteConfig,
    make_pin_factory,
    validate_registry,
)

from gridedge.errors import DeviceError, SafetyError

REGISTRY = ROOT / "driver_configs" / "registries" / "relays.csv"
BASE = "devices/site/main/relays"


class RecordingPin(MockPWMPin):
    """A mock pin that records every level driven on it and can be told to fail."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.driven: list[float] = []
        self.fail: Exception | None = None

    def _set_state(self, value: float) -> None:
        if self._function == "output":
            if self.fail is not None:
                raise self.fail
            self.driven.append(float(value))
        super()._set_state(value)


def registry_rows() -> list[dict[str, str]]:
    """The demo site's real registry."""
    with REGISTRY.open(newline="") as f:
        return list(csv.DictReader(f))


def build(rows: list[dict[str, Any]] | None = None, driver_agent: Any = None) -> GpioRelay:
    """Configure an interface the way the platform driver does: prepare, create, insert."""
    factory = MockFactory(pin_class=RecordingPin)
    iface = GpioRelay(RemoteConfig(driver_type="gpio_relay", pin_factory="mock"), driver_agent,
                      pin_factory=factory)
    for row in iface.prepare_registry_config(rows if rows is not None else registry_rows()):
        register = iface.create_register(GpioRelayPointConfig(**row))
        iface.insert_register(register, BASE)
    return iface


def pin(iface: GpioRelay, bcm: int) -> RecordingPin:
    return iface.pin_factory.pin(bcm)


def topic(point: str) -> str:
    return f"{BASE}/{point}"


@pytest.fixture
def iface() -> GpioRelay:
    iface = build()
    yield iface
    iface.stop()


def test_safe_state_is_the_first_thing_driven() -> None:
    """Each output's first driven level is its safe state (active-low inverts the pin)."""
    rows = registry_rows()
    rows[0] = {**rows[0], "Active High": "FALSE", "Safe State": "0"}  # heater: active-low, safe off
    iface = build(rows)
    try:
        assert pin(iface, 17).driven == [1.0]  # off on an active-low relay = pin high
        assert iface.get_point(topic("heater")) == 0
        for bcm in (18, 27, 22, 23):
            assert pin(iface, bcm).driven == [1.0]
    finally:
        iface.stop()


def test_stop_drives_safe_state(iface: GpioRelay) -> None:
    """Stopping drives every output back to its safe state before releasing the pins."""
    heater, lights = pin(iface, 17), pin(iface, 18)
    iface.set_point(topic("heater"), 0)
    iface.set_point(topic("lights"), 0.3)
    iface.stop()
    assert heater.driven == [1.0, 0.0, 1.0]
    assert lights.driven == [1.0, 0.3, 1.0]


def test_platform_onstop_signal_drives_safe_state() -> None:
    """The interface hooks the platform driver's onstop signal."""
    core = type("Core", (), {"onstop": Signal()})()
    agent = type("DriverAgent", (), {"core": core})()
    iface = build(driver_agent=agent)
    heater = pin(iface, 17)
    iface.set_point(topic("heater"), 0)
    core.onstop.send(core)
    assert heater.driven == [1.0, 0.0, 1.0]


def test_failing_write_goes_to_safe_state_and_raises(iface: GpioRelay) -> None:
    """A failing pin write drives the outputs to safe state and raises naming point and pin."""
    iface.set_point(topic("heater"), 0)
    pin(iface, 18).fail = OSError("bus fault")
    with pytest.raises(DeviceError, match=r"lights \(GPIO18\).*bus fault") as info:
        iface.set_point(topic("lights"), 0.5)
    assert isinstance(info.value.__cause__, OSError)
    assert pin(iface, 17).driven[-1] == 1.0
    with pytest.raises(DeviceError, match="state unknown"):
        iface.get_point(topic("lights"))
    pin(iface, 18).fail = None
    assert iface.set_point(topic("lights"), 0.5) == pytest.approx(0.5)


def test_unreachable_pin_at_start_is_reported_not_hidden() -> None:
    """An output whose safe state cannot be driven at start reads as an error until a write works."""
    factory = MockFactory(pin_class=RecordingPin)
    factory.pin(17).fail = OSError("no such chip")
    iface = GpioRelay(RemoteConfig(driver_type="gpio_relay", pin_factory="mock"), pin_factory=factory)
    for row in iface.prepare_registry_config(registry_rows()):
        iface.insert_register(iface.create_register(GpioRelayPointConfig(**row)), BASE)
    results, errors = iface.get_multiple_points([topic("heater"), topic("hvac")])
    assert results == {topic("hvac"): 1}
    assert "state unknown" in errors[topic("heater")]
    factory.pin(17).fail = None
    iface.revert_point(topic("heater"))
    assert iface.get_point(topic("heater")) == 1
    iface.stop()


def test_all_off_switches_everything_off_and_latches(iface: GpioRelay) -> None:
    """all_off=1 switches every output off (critical ones too) and refuses writes until released."""
    assert iface.get_point(topic("all_off")) == 0
    assert iface.set_point(topic("all_off"), 1) == 1
    for bcm in (17, 18, 27, 22, 23):
        assert pin(iface, bcm).driven[-1] == 0.0
    with pytest.raises(SafetyError, match="all-off"):
        iface.set_point(topic("hvac"), 1)
    with pytest.raises(SafetyError):
        iface.revert_point(topic("hvac"))
    hvac = pin(iface, 22)
    iface.stop()
    assert hvac.driven == [1.0, 0.0, 0.0]  # stop while latched keeps everything off


def test_all_off_release(iface: GpioRelay) -> None:
    """Writing all_off=0 releases the latch; outputs stay off until written."""
    iface.set_point(topic("all_off"), True)
    assert iface.set_point(topic("all_off"), 0) == 0
    assert iface.get_point(topic("hvac")) == 0
    assert iface.set_point(topic("hvac"), 1) == 1


def test_revert_device_releases_all_off_and_restores_safe_state(iface: GpioRelay) -> None:
    """revert_device releases the latch and drives every output to its safe state."""
    iface.set_point(topic("all_off"), 1)
    iface.revert_all()
    assert iface.get_point(topic("all_off")) == 0
    assert {p: iface.get_point(topic(p)) for p in ("heater", "lights", "house", "hvac", "fridge")} == {
        "heater": 1, "lights": 1.0, "house": 1.0, "hvac": 1, "fridge": 1}


def test_revert_point_restores_safe_state(iface: GpioRelay) -> None:
    """revert_point drives one output back to its safe state and leaves the others."""
    iface.set_point(topic("heater"), 0)
    iface.set_point(topic("house"), 0.6)
    iface.revert_point(topic("house"))
    assert iface.get_point(topic("house")) == 1.0
    assert iface.get_point(topic("heater")) == 0


@pytest.mark.parametrize(("active_high", "level", "pin_level"),
                         [("TRUE", 0.42, 0.42), ("FALSE", 0.42, 0.58), ("TRUE", 0.0, 0.0)])
def test_pwm_level(active_high: str, level: float, pin_level: float) -> None:
    """A pwm output takes and reads back a level 0..1; active-low inverts the duty on the pin."""
    rows = [{"Volttron Point Name": "lights", "Writable": "TRUE", "Pin": "18", "Mode": "pwm",
             "Active High": active_high, "Safe State": "1"}]
    iface = build(rows)
    try:
        assert iface.set_point(topic("lights"), level) == pytest.approx(level)
        assert pin(iface, 18).state == pytest.approx(pin_level)
    finally:
        iface.stop()


@pytest.mark.parametrize(("point", "value"), [("heater", 0.5), ("heater", "maybe"), ("lights", 1.2),
                                              ("lights", -0.1), ("lights", float("nan"))])
def test_invalid_values_rejected_without_touching_pins(iface: GpioRelay, point: str, value: Any) -> None:
    """A relay takes 0/1 and a pwm output 0..1; anything else is refused before any pin moves."""
    before = {bcm: list(pin(iface, bcm).driven) for bcm in (17, 18)}
    with pytest.raises(ValueError):
        iface.set_point(topic(point), value)
    assert {bcm: pin(iface, bcm).driven for bcm in (17, 18)} == before


@pytest.mark.parametrize(("value", "expected"), [(True, 1), ("on", 1), ("OFF", 0), (0, 0), ("1", 1)])
def test_relay_accepts_switch_words(iface: GpioRelay, value: Any, expected: int) -> None:
    """Relays take booleans, 0/1 and on/off words and read back 0/1."""
    assert iface.set_point(topic("heater"), value) == expected


def test_read_only_point_refuses_writes() -> None:
    """A point not marked Writable cannot be set."""
    rows = [{"Volttron Point Name": "pump", "Writable": "FALSE", "Pin": "5", "Mode": "relay",
             "Safe State": "0"}]
    iface = build(rows)
    with pytest.raises(DeviceError, match="not writable"):
        iface.set_point(topic("pump"), 1)
    iface.stop()


def _row(name: str, pin: str, mode: str = "relay", safe: str = "0", writable: str = "TRUE") -> dict:
    return {"Volttron Point Name": name, "Units": "", "Writable": writable, "Notes": "", "Pin": pin,
            "Mode": mode, "Active High": "TRUE", "Safe State": safe}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("a", "17"), _row("b", "17")], r"row 2 \('b'\): Pin 17 already used in row 1"),
        ([_row("a", "17"), _row("a", "18")], r"row 2 \('a'\): point name already used in row 1"),
        ([_row("a", "17", mode="dimmer")], r"row 1 \('a'\): Mode must be 'relay' or 'pwm'"),
        ([_row("a", "")], r"row 1 \('a'\): Pin \(BCM number\) is required"),
        ([_row("a", "40")], r"row 1 \('a'\): Pin 40 is not a BCM GPIO number"),
        ([_row("a", "x17")], r"row 1 \('a'\)"),
        ([_row("a", "17", safe="0.5")], r"Safe State of a relay must be 0 or 1"),
        ([_row("a", "17", mode="pwm", safe="1.5")], r"Safe State of a pwm output must be within 0..1"),
        ([_row("a", "17", safe="sometimes")], r"row 1 \('a'\)"),
        ([_row("all_off", "4")], r"all-off switch has no Pin and no Mode"),
        ([_row("all_off", "", mode="", writable="FALSE")], r"all-off switch must be Writable"),
        ([_row("", "17")], r"row 1: 'Volttron Point Name' is empty"),
    ],
)
def test_registry_rejects_bad_rows(rows: list[dict], message: str) -> None:
    """Bad registry rows are refused with an error naming the row and the reason."""
    with pytest.raises(GpioRelayRegistryError, match=message):
        validate_registry(rows)


def test_registry_error_is_a_value_error() -> None:
    """The platform driver skips a device on ValueError; a registry error must be one."""
    with pytest.raises(ValueError):
        validate_registry([_row("a", "17", mode="dimmer")])


def test_demo_registry_is_valid() -> None:
    """The shipped registry passes validation and names the demo site's circuits."""
    names = [r["Volttron Point Name"] for r in validate_registry(registry_rows())]
    assert names == ["heater", "lights", "house", "hvac", "fridge", "all_off"]


def test_reconfiguring_a_point_reuses_its_pin(iface: GpioRelay) -> None:
    """On a registry update the platform driver recreates a point: its pin is released first; a
    second point on a pin in use is refused."""
    register = iface.create_register(GpioRelayPointConfig(**_row("heater", "17", safe="0")))
    iface.insert_register(register, BASE)
    assert iface.get_point(topic("heater")) == 0
    with pytest.raises(GpioRelayRegistryError, match="Pin 22 is already used by point 'hvac'"):
        iface.create_register(GpioRelayPointConfig(**_row("boiler", "22")))


def test_site_factory_needs_a_port() -> None:
    """pin_factory 'site' without site_port is a config error."""
    with pytest.raises(ValueError, match="site_port"):
        GpioRelayRemoteConfig(driver_type="gpio_relay", pin_factory="site")


@pytest.mark.parametrize("name", ["lgpio", "rpigpio"])
def test_hardware_factory_unavailable_is_clear(name: str) -> None:
    """Asking for a Pi pin factory where it cannot load names the factory (this machine is no Pi)."""
    pytest.importorskip("gpiozero")
    if name == "lgpio" and _importable("lgpio") or name == "rpigpio" and _importable("RPi.GPIO"):
        pytest.skip(f"{name} is installed here")
    with pytest.raises(GpioRelayRegistryError, match=name):
        make_pin_factory(GpioRelayRemoteConfig(driver_type="gpio_relay", pin_factory=name))


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except (ImportError, RuntimeError):  # RPi.GPIO raises RuntimeError off a Pi
        return False
    return True


def test_mock_factory_from_config_drives_relays_and_pwm() -> None:
    """pin_factory 'mock' builds gpiozero's MockFactory with PWM-capable pins."""
    iface = GpioRelay(RemoteConfig(driver_type="gpio_relay", pin_factory="mock"))
    assert isinstance(iface.pin_factory, MockFactory)
    for row in iface.prepare_registry_config(registry_rows()):
        iface.insert_register(iface.create_register(GpioRelayPointConfig(**row)), BASE)
    assert iface.set_point(topic("house"), 0.25) == pytest.approx(0.25)
    assert iface.set_point(topic("fridge"), 0) == 0
    iface.stop()


def test_platform_driver_finds_the_interface() -> None:
    """driver_type 'gpio_relay' resolves to this interface the way the platform driver looks it up."""
    assert BaseInterface.get_interface_subclass("gpio_relay") is GpioRelay
