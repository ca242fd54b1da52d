"""GPIO relay and PWM output interface for the VOLTTRON platform driver (``driver_type: gpio_relay``)."""

from volttron.driver.interfaces.gpio_relay.gpio_relay import (
    GpioRelay,
    GpioRelayPointConfig,
    GpioRelayRegistryError,
    GpioRelayRemoteConfig,
    make_pin_factory,
    validate_registry,
)

__all__ = [
    "GpioRelay",
    "GpioRelayPointConfig",
    "GpioRelayRegistryError",
    "GpioRelayRemoteConfig",
    "make_pin_factory",
    "validate_registry",
]
