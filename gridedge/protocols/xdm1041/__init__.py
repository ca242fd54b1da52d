"""OWON XDM1041 bench multimeter over USB-serial SCPI, and a battery monitor built from a pair.

- :mod:`.parsing`: pure decoding of the meter's lines (GBK units, overload, OK lines);
- :mod:`.client`: a resynchronising SCPI client over any pyserial-like port;
- :mod:`.energy`: trapezoidal charge/discharge integration with an injected clock;
- :mod:`.monitor`: the meter pair as a battery voltage/current/power/energy monitor.
"""

from gridedge.protocols.xdm1041.client import (
    EXPECTED_FUNCTION,
    RANGES,
    LinkStats,
    MeterFunction,
    MeterSetup,
    PortUnavailable,
    Rate,
    SerialLike,
    Xdm1041Client,
    open_port,
)
from gridedge.protocols.xdm1041.energy import EnergyIntegrator, EnergyTotals, split_trapezoid
from gridedge.protocols.xdm1041.monitor import BatteryMonitor, BatterySample, ShuntSpec, battery_current_a
from gridedge.protocols.xdm1041.parsing import (
    OVERLOAD_LIMIT,
    Identity,
    Reading,
    ReadingStatus,
    decode_line,
    format_range,
    parse_function,
    parse_idn,
    parse_measurement,
)

__all__ = [
    "EXPECTED_FUNCTION",
    "OVERLOAD_LIMIT",
    "RANGES",
    "BatteryMonitor",
    "BatterySample",
    "EnergyIntegrator",
    "EnergyTotals",
    "Identity",
    "LinkStats",
    "MeterFunction",
    "MeterSetup",
    "PortUnavailable",
    "Rate",
    "Reading",
    "ReadingStatus",
    "SerialLike",
    "ShuntSpec",
    "Xdm1041Client",
    "battery_current_a",
    "decode_line",
    "format_range",
    "open_port",
    "parse_function",
    "parse_idn",
    "parse_measurement",
    "split_trapezoid",
]
