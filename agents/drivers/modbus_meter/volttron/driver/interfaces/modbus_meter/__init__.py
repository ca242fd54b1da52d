"""Platform-driver interface ``modbus_meter``: Modbus energy meters (register maps and SunSpec)."""

from volttron.driver.interfaces.modbus_meter.modbus_meter import (
    ModbusMeter,
    ModbusMeterConfigError,
    ModbusMeterPointConfig,
    ModbusMeterRegister,
    ModbusMeterRemoteConfig,
)

__all__ = [
    "ModbusMeter",
    "ModbusMeterConfigError",
    "ModbusMeterPointConfig",
    "ModbusMeterRegister",
    "ModbusMeterRemoteConfig",
]
