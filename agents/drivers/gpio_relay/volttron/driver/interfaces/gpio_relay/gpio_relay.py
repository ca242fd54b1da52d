"""Platform-driver interface for relays and PWM outputs on GPIO pins, through gpiozero.

One registry row per output: ``Volttron Point Name`` (the circuit id), ``Units``, ``Writable``,
``Notes``, ``Pin`` (BCM number), ``Mode`` (``relay``: on/off, read and written as 0/1; ``pwm``: a
duty level 0..1), ``Active High`` (TRUE/FALSE) and ``Safe State`` (the fail-safe value). A row
named ``all_off`` (no pin, no mode, writable) is the emergency all-off switch.

Safety behaviour:

- Every output is driven to its safe state when it is created, before anything else writes it.
- If a pin write fails, every output is driven to its safe state (as far as the pins still obey)
  and the error is raised, naming the point and pin.
- Writing 1 to ``all_off`` switches every output off at once, whatever its safe state, and latches:
  writes to outputs are refused (:class:`~gridedge.errors.SafetyError`) until ``all_off`` is written
  0 or the device is reverted. While latched, stop and error handling keep everything off.
- ``revert_point`` drives an output back to its safe state; ``revert_device`` releases the all-off
  latch and drives every output to its safe state.
- When the platform driver stops (its ``onstop``) or the process exits, outputs go to safe state.

Pin factories (``remote_config.pin_factory``): ``lgpio``, ``rpigpio``, ``native`` (gpiozero's own, by
name, on a Raspberry Pi), ``mock`` (gpiozero's MockFactory with PWM-capable mock pins) and ``site``
(:class:`gridedge.sim.pins.SitePinFactory`: pins drive the simulated site over
``site_host``/``site_port``).
"""

from __future__ import annotations

import atexit
import logging
import math
import weakref
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from gpiozero import DigitalOutputDevice, PWMOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pydantic import BeforeValidator, Field, model_validator
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import BaseInterface, BaseRegister

from gridedge.errors import ConfigError, DeviceError, SafetyError

__all__ = [
    "ALL_OFF_POINT",
    "GpioRelay",
    "GpioRelayPointConfig",
    "GpioRelayRegistryError",
    "GpioRelayRemoteConfig",
    "make_pin_factory",
    "validate_registry",
]

_log = logging.getLogger(__name__)

#: Name of the registry row that is the emergency all-off switch.
ALL_OFF_POINT = "all_off"

PinFactoryName = Literal["mock", "lgpio", "rpigpio", "native", "site"]
Mode = Literal["relay", "pwm"]

#: BCM numbers of the 40-pin header's GPIOs.
_BCM_PINS = range(28)

_TRUE = {"1", "true", "on", "yes", "high"}
_FALSE = {"0", "false", "off", "no", "low"}


class GpioRelayRegistryError(ConfigError, ValueError):
    """A registry row is invalid. A ValueError too, so the platform driver skips the device and
    logs the message instead of failing the whole configuration callback."""


def _parse_level(value: Any) -> float:
    """A switch or duty value from a CSV cell or an RPC argument: bool, number, or on/off words."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        level = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        try:
            level = float(text)
        except ValueError:
            raise ValueError(f"not a level: {value!r}") from None
    else:
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error
        raise ValueError(f"not a level: {value!r}")  # noqa: TRY004
    if not math.isfinite(level):
        raise ValueError(f"not a level: {value!r}")
    return level


def _empty_is(default: Any) -> BeforeValidator:
    return BeforeValidator(lambda v: default if isinstance(v, str) and not v.strip() else v)


class GpioRelayRemoteConfig(RemoteConfig):
    """``remote_config`` of a gpio_relay device."""

    pin_factory: PinFactoryName = "lgpio"
    site_host: str = "127.0.0.1"
    site_port: int | None = None
    site_timeout_s: float = Field(default=2.0, gt=0)
    pwm_frequency_hz: int = Field(default=100, gt=0)

    @model_validator(mode="after")
    def _site_needs_port(self) -> GpioRelayRemoteConfig:
        if self.pin_factory == "site" and self.site_port is None:
            raise ValueError("pin_factory 'site' needs site_port (the site model's control socket)")
        return self


class GpioRelayPointConfig(PointConfig):
    """One registry row of a gpio_relay device."""

    pin: Annotated[int | None, _empty_is(None)] = Field(default=None, alias="Pin")
    mode: Annotated[str, _empty_is("")] = Field(default="", alias="Mode")
    active_high: Annotated[bool, _empty_is(True)] = Field(default=True, alias="Active High")
    # before-validators run last-listed first: blank cell -> 0, then words/numbers -> a level
    safe_state: Annotated[float, BeforeValidator(_parse_level), _empty_is(0.0)] = Field(
        default=0.0, alias="Safe State")


def validate_registry(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check a whole registry (raw CSV rows) and return it unchanged; raise
    :class:`GpioRelayRegistryError` naming the first bad row (1-based, header not counted) and why:
    duplicate point names or pins, unknown modes, pins outside the header, safe states out of range,
    a misdefined ``all_off`` row."""
    names: dict[str, int] = {}
    pins: dict[int, int] = {}
    for index, raw in enumerate(rows, start=1):
        name = str(raw.get("Volttron Point Name", "")).strip()
        where = f"registry row {index} ({name!r})" if name else f"registry row {index}"
        if not name:
            raise GpioRelayRegistryError(f"{where}: 'Volttron Point Name' is empty")
        if name in names:
            raise GpioRelayRegistryError(f"{where}: point name already used in row {names[name]}")
        names[name] = index
        try:
            cfg = GpioRelayPointConfig(**raw)
        except ValueError as exc:
            raise GpioRelayRegistryError(f"{where}: {exc}") from exc
        pin = _check_row(cfg, where)
        if pin is not None:
            if pin in pins:
                raise GpioRelayRegistryError(f"{where}: Pin {pin} already used in row {pins[pin]}")
            pins[pin] = index
    return rows


def _check_row(cfg: GpioRelayPointConfig, where: str) -> int | None:
    """Check one parsed row on its own; return its pin (None for the all-off switch)."""
    mode = cfg.mode.strip().lower()
    if cfg.volttron_point_name == ALL_OFF_POINT:
        if cfg.pin is not None or mode:
            raise GpioRelayRegistryError(f"{where}: the all-off switch has no Pin and no Mode")
        if not cfg.writable:
            raise GpioRelayRegistryError(f"{where}: the all-off switch must be Writable")
        return None
    if mode not in ("relay", "pwm"):
        raise GpioRelayRegistryError(f"{where}: Mode must be 'relay' or 'pwm', got {cfg.mode!r}")
    if cfg.pin is None:
        raise GpioRelayRegistryError(f"{where}: Pin (BCM number) is required")
    if cfg.pin not in _BCM_PINS:
        raise GpioRelayRegistryError(f"{where}: Pin {cfg.pin} is not a BCM GPIO number (0..27)")
    if mode == "relay" and cfg.safe_state not in (0.0, 1.0):
        raise GpioRelayRegistryError(f"{where}: Safe State of a relay must be 0 or 1, got {cfg.safe_state}")
    if mode == "pwm" and not 0.0 <= cfg.safe_state <= 1.0:
        raise GpioRelayRegistryError(f"{where}: Safe State of a pwm output must be within 0..1, "
                                     f"got {cfg.safe_state}")
    return cfg.pin


def make_pin_factory(config: GpioRelayRemoteConfig) -> Any:
    """The gpiozero pin factory the config names (a fresh one per device, so devices never share
    pin reservations)."""
    name = config.pin_factory
    if name == "mock":
        return MockFactory(pin_class=MockPWMPin)
    if name == "site":
        from gridedge.sim.pins import SitePinFactory

        return SitePinFactory(host=config.site_host, port=int(config.site_port or 0),
                              timeout_s=config.site_timeout_s)
    for ep in entry_points(group="gpiozero_pin_factories"):
        if ep.name == name:
            try:
                return ep.load()()
            except Exception as exc:
                raise GpioRelayRegistryError(
                    f"gpiozero pin factory {name!r} is not usable on this machine: {exc}") from exc
    raise GpioRelayRegistryError(f"gpiozero pin factory {name!r} is not installed")


class _Output(BaseRegister):
    """One relay or PWM output. The gpiozero device is created on the first successful write
    (the safe state at configuration), so a pin that could not be driven reports that instead of
    a value it never had."""

    def __init__(self, *, cfg: GpioRelayPointConfig, factory: Any, pwm_frequency_hz: int) -> None:
        mode: Mode = "pwm" if cfg.mode.strip().lower() == "pwm" else "relay"
        super().__init__("byte", not cfg.writable, cfg.volttron_point_name, cfg.units or
                         ("fraction" if mode == "pwm" else "on/off"), description=cfg.notes)
        self.python_type = float if mode == "pwm" else int
        self.mode = mode
        self.pin = int(cfg.pin if cfg.pin is not None else -1)
        self.active_high = cfg.active_high
        self.safe_state = cfg.safe_state
        self._factory = factory
        self._frequency = pwm_frequency_hz
        self._device: DigitalOutputDevice | PWMOutputDevice | None = None
        self.fault: BaseException | None = None

    def coerce(self, value: Any) -> float:
        """The level a written value means, or ValueError."""
        level = _parse_level(value)
        if self.mode == "relay" and level not in (0.0, 1.0):
            raise ValueError(f"{self.point_name}: a relay takes 0 or 1, got {value!r}")
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"{self.point_name}: a pwm level must be within 0..1, got {value!r}")
        return level

    def write(self, level: float) -> None:
        """Drive the output (creating the gpiozero device on first use); raises what the pin raises."""
        try:
            if self._device is None:
                if self.mode == "pwm":
                    self._device = PWMOutputDevice(self.pin, active_high=self.active_high,
                                                   initial_value=level, frequency=self._frequency,
                                                   pin_factory=self._factory)
                    self.fault = None
                    return
                # Claim the pin first, then drive it: a failing first write then leaves a device
                # holding its pin (gpiozero would leave a half-built one reserving it).
                self._device = DigitalOutputDevice(self.pin, active_high=self.active_high,
                                                   initial_value=None, pin_factory=self._factory)
            if self.mode == "pwm":
                self._device.value = level
            else:
                self._device.value = bool(level)
        except BaseException as exc:
            self.fault = exc
            raise
        self.fault = None

    def read(self) -> int | float:
        """The output's actual state: 0/1 for a relay, the duty level for pwm."""
        if self._device is None or self.fault is not None:
            raise DeviceError(f"{self.point_name} (GPIO{self.pin}): state unknown, last write failed: "
                              f"{self.fault!r}")
        value = self._device.value
        return float(value) if self.mode == "pwm" else int(bool(value))

    def close(self) -> None:
        """Release the pin (its electrical state is left as last driven)."""
        if self._device is not None:
            try:
                self._device.close()
            finally:
                self._device = None


class _AllOff(BaseRegister):
    """The emergency all-off switch; its value is the latch (1 = everything forced off)."""

    def __init__(self, cfg: GpioRelayPointConfig) -> None:
        super().__init__("byte", False, cfg.volttron_point_name, cfg.units or "on/off",
                         description=cfg.notes or "emergency all-off: 1 switches every output off")
        self.python_type = int


class GpioRelay(BaseInterface):
    """Relays (on/off) and PWM outputs on GPIO pins, with safe states and an emergency all-off."""

    REGISTER_CONFIG_CLASS = GpioRelayPointConfig
    INTERFACE_CONFIG_CLASS = GpioRelayRemoteConfig

    def __init__(self, config: RemoteConfig, driver_agent: Any = None, *args: Any,
                 pin_factory: Any = None, **kwargs: Any) -> None:
        """``pin_factory`` overrides the one named in the config (tests, embedding)."""
        if self.default_config is None:
            # The platform driver fills this from its config store; outside it there is none.
            self.default_config = {}
        super().__init__(config, driver_agent, *args, **kwargs)
        self.config: GpioRelayRemoteConfig
        self.pin_factory = pin_factory if pin_factory is not None else make_pin_factory(self.config)
        self._outputs: dict[str, _Output] = {}
        self._all_off_latched = False
        self._stopped = False
        core = getattr(driver_agent, "core", None)
        onstop = getattr(core, "onstop", None)
        if onstop is not None and hasattr(onstop, "connect"):
            onstop.connect(self._on_platform_stop, self)
        ref = weakref.WeakMethod(self.stop)
        atexit.register(lambda: (m := ref()) is not None and m())

    # -- configuration -------------------------------------------------------------------------

    def prepare_registry_config(self, registry_config: list[dict],
                                remote_config: RemoteConfig | None = None) -> list[dict]:
        """Validate the whole registry before the platform driver builds points from it."""
        return validate_registry(registry_config)

    def create_register(self, register_definition: GpioRelayPointConfig) -> BaseRegister:
        """Build one point; an output is driven to its safe state right here, before anything else."""
        cfg = register_definition
        name = cfg.volttron_point_name
        if name == ALL_OFF_POINT:
            return _AllOff(cfg)
        _check_row(cfg, f"point {name!r}")
        previous = self._outputs.pop(name, None)
        if previous is not None:
            previous.close()
        for other in self._outputs.values():
            if other.pin == cfg.pin:
                raise GpioRelayRegistryError(f"point {name!r}: Pin {cfg.pin} is already used by point "
                                             f"{other.point_name!r}")
        output = _Output(cfg=cfg, factory=self.pin_factory, pwm_frequency_hz=self.config.pwm_frequency_hz)
        self._outputs[name] = output
        level = 0.0 if self._all_off_latched else output.safe_state
        try:
            output.write(level)
        except Exception as exc:  # noqa: BLE001 - any pin failure: log it, report it on read
            _log.error("gpio_relay: could not drive %s (GPIO%s) to its safe state %s at start: %r; "
                       "the point reports an error until a write succeeds", name, output.pin, level, exc)
        return output

    # -- reads ---------------------------------------------------------------------------------

    def get_point(self, topic: str, **kwargs: Any) -> int | float:
        """The actual output state (relay 0/1, pwm level), or the all-off latch."""
        register = self._register(topic)
        if isinstance(register, _AllOff):
            return int(self._all_off_latched)
        assert isinstance(register, _Output)
        return register.read()

    def get_multiple_points(self, topics: Iterable[str], **kwargs: Any) -> tuple[dict, dict]:
        """Read several points; per-point errors are returned, not raised."""
        return BaseInterface.get_multiple_points(self, topics, **kwargs)

    # -- writes --------------------------------------------------------------------------------

    def set_point(self, topic: str, value: Any, **kwargs: Any) -> int | float:
        """Drive an output (or the all-off switch) and return the state read back."""
        register = self._register(topic)
        if isinstance(register, _AllOff):
            if _parse_level(value) >= 0.5:
                self.all_off()
            else:
                self._all_off_latched = False
                _log.warning("gpio_relay: emergency all-off released; outputs stay off until written")
            return int(self._all_off_latched)
        assert isinstance(register, _Output)
        if register.read_only:
            raise DeviceError(f"point {register.point_name!r} is not writable")
        level = register.coerce(value)
        if self._all_off_latched:
            raise SafetyError(f"emergency all-off is active: {register.point_name!r} stays off "
                              f"(write {ALL_OFF_POINT}=0 or revert the device first)")
        self._write_or_fail_safe(register, level)
        return register.read()

    def all_off(self) -> None:
        """Emergency all-off: every output off now, whatever its safe state; latches."""
        self._all_off_latched = True
        _log.warning("gpio_relay: EMERGENCY ALL-OFF, switching every output off")
        errors = []
        for output in self._outputs.values():
            try:
                output.write(0.0)
            except Exception as exc:  # noqa: BLE001 - switch off the rest whatever one pin raises
                errors.append(f"{output.point_name} (GPIO{output.pin}): {exc!r}")
        if errors:
            raise DeviceError("emergency all-off could not switch off: " + "; ".join(errors))

    def revert_point(self, topic: str, **kwargs: Any) -> None:
        """All-off switch: release the latch. Output: drive it to its safe state."""
        register = self._register(topic)
        if isinstance(register, _AllOff):
            self._all_off_latched = False
            return
        assert isinstance(register, _Output)
        if self._all_off_latched:
            raise SafetyError(f"emergency all-off is active: {register.point_name!r} stays off "
                              f"(revert the device to release it)")
        self._write_or_fail_safe(register, register.safe_state)

    def revert_all(self, **kwargs: Any) -> None:
        """Release the all-off latch and drive every output to its safe state."""
        self._all_off_latched = False
        errors = self._apply_safe_state()
        if errors:
            raise DeviceError("revert could not drive to safe state: " + "; ".join(errors))

    # -- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Drive every output to its safe state (off, if all-off is latched) and release the pins."""
        if self._stopped:
            return
        self._stopped = True
        errors = self._apply_safe_state()
        for error in errors:
            _log.error("gpio_relay: at stop, %s", error)
        for output in self._outputs.values():
            try:
                output.close()
            except Exception as exc:  # noqa: BLE001 - release the other pins whatever one raises
                _log.warning("gpio_relay: closing %s failed: %r", output.point_name, exc)
        close = getattr(self.pin_factory, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - stopping: nothing left to protect
                _log.warning("gpio_relay: closing the pin factory failed: %r", exc)

    def _on_platform_stop(self, sender: Any, **kwargs: Any) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------

    def _register(self, topic: str) -> BaseRegister:
        if topic in self.point_map:
            return self.point_map[topic]
        name = topic.rsplit("/", 1)[-1]
        if name in self._outputs:
            return self._outputs[name]
        for register in self.point_map.values():
            if register.point_name == name:
                return register
        return self.get_register_by_name(topic)  # raises DriverInterfaceError naming the point

    def _write_or_fail_safe(self, output: _Output, level: float) -> None:
        try:
            output.write(level)
        except Exception as exc:
            errors = self._apply_safe_state()
            outcome = ("outputs driven to safe state" if not errors
                       else "safe state failed too: " + "; ".join(errors))
            raise DeviceError(f"{output.point_name} (GPIO{output.pin}): writing {level} failed: {exc}; "
                              f"{outcome}") from exc

    def _apply_safe_state(self) -> list[str]:
        errors = []
        for output in self._outputs.values():
            level = 0.0 if self._all_off_latched else output.safe_state
            try:
                output.write(level)
            except Exception as exc:  # noqa: BLE001 - fail-safe: try every output whatever one raises
                errors.append(f"{output.point_name} (GPIO{output.pin}) -> {level}: {exc!r}")
        return errors
