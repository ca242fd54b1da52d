"""A battery power monitor built from two XDM1041 meters.

Meter A measures the system (battery) voltage. Meter B measures the voltage across a shunt in
the battery lead (``shunt_function="VOLT:DC"``: current = shunt voltage / shunt resistance), or
sits in series and measures the current itself (``"CURR:DC"``, up to 10 A).

Sign convention: ``current_a`` and ``power_w`` are positive when the battery discharges
(delivers power) and negative when it charges. ``polarity`` (+1/-1) says how meter B is wired:
+1 when its reading is positive during discharge, -1 when the leads are the other way round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gridedge.errors import ConfigError, DeviceError
from gridedge.protocols.xdm1041.client import MeterFunction, MeterSetup, Xdm1041Client
from gridedge.protocols.xdm1041.energy import EnergyIntegrator, EnergyTotals
from gridedge.protocols.xdm1041.parsing import Identity, Reading

__all__ = ["BatteryMonitor", "BatterySample", "ShuntSpec", "battery_current_a"]


@dataclass(frozen=True)
class ShuntSpec:
    """How the current is measured: shunt resistance in Ω (75 mV / 100 A = 0.00075 Ω),
    polarity of meter B (+1: positive reading = discharge) and meter B's function."""

    shunt_ohm: float = 0.00075
    polarity: int = 1
    function: MeterFunction = "VOLT:DC"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shunt_ohm) and self.shunt_ohm > 0):
            raise ConfigError(f"shunt_ohm must be > 0, got {self.shunt_ohm!r}")
        if self.polarity not in (1, -1):
            raise ConfigError(f"polarity must be +1 or -1, got {self.polarity!r}")
        if self.function not in ("VOLT:DC", "CURR:DC"):
            raise ConfigError(f"shunt meter function must be VOLT:DC or CURR:DC, got {self.function!r}")


def battery_current_a(reading_value: float, shunt: ShuntSpec) -> float:
    """Battery current, A (positive = discharge), from meter B's reading (V across the shunt,
    or A when meter B is in series)."""
    amps = reading_value / shunt.shunt_ohm if shunt.function == "VOLT:DC" else reading_value
    return amps * shunt.polarity


@dataclass(frozen=True)
class BatterySample:
    """One reading of the pair. Values are None when a meter reported overload."""

    ts: float
    voltage_v: float | None
    #: battery current, A; positive = discharge
    current_a: float | None
    #: battery power, W; positive = discharge
    power_w: float | None
    energy: EnergyTotals
    #: meter B's raw reading (V across the shunt, or A in series)
    shunt_value: float | None

    def as_dict(self) -> dict[str, float | None]:
        """Flat mapping with unit-named keys (for publishing and JSON)."""
        return {
            "ts": self.ts,
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "power_w": self.power_w,
            "charge_wh": self.energy.charge_wh,
            "discharge_wh": self.energy.discharge_wh,
            "charge_ah": self.energy.charge_ah,
            "discharge_ah": self.energy.discharge_ah,
        }


class BatteryMonitor:
    """Reads the meter pair and integrates energy. Not thread-safe: one caller at a time.

    Each meter is configured on first use (and again after it was found in the wrong function).
    A timeout on either meter propagates as ProtocolTimeout (retryable) and leaves the energy
    chain as it was: the next good sample integrates across the miss if it is within
    ``max_gap_s``.
    """

    def __init__(
        self,
        *,
        voltage_meter: Xdm1041Client,
        shunt_meter: Xdm1041Client,
        shunt: ShuntSpec | None = None,
        voltage_setup: MeterSetup | None = None,
        shunt_setup: MeterSetup | None = None,
        clock: Callable[[], float] = time.time,
        max_gap_s: float = 30.0,
        totals: EnergyTotals | None = None,
    ) -> None:
        self._shunt = shunt or ShuntSpec()
        self._voltage_setup = voltage_setup or MeterSetup(function="VOLT:DC", range="AUTO", rate="M")
        self._shunt_setup = shunt_setup or MeterSetup(
            function=self._shunt.function, range="AUTO" if self._shunt.function == "VOLT:DC" else 10.0,
            rate="M")
        if self._voltage_setup.function != "VOLT:DC":
            raise ConfigError("the voltage meter must be set up for VOLT:DC")
        if self._shunt_setup.function != self._shunt.function:
            raise ConfigError(
                f"shunt meter setup {self._shunt_setup.function} differs from shunt function {self._shunt.function}")
        self.voltage_meter = voltage_meter
        self.shunt_meter = shunt_meter
        self._clock = clock
        self._integrator = EnergyIntegrator(max_gap_s=max_gap_s, totals=totals)
        self.last_sample: BatterySample | None = None

    @property
    def shunt(self) -> ShuntSpec:
        """The shunt as configured."""
        return self._shunt

    @property
    def totals(self) -> EnergyTotals:
        """Energy counted so far."""
        return self._integrator.totals

    def configure(self) -> tuple[Identity, Identity]:
        """Configure both meters now (IDN check, remote, function, range, rate, verify)."""
        return (self.voltage_meter.configure(self._voltage_setup),
                self.shunt_meter.configure(self._shunt_setup))

    def read(self) -> BatterySample:
        """Read both meters once, integrate, and return the sample."""
        if not self.voltage_meter.configured:
            self.voltage_meter.configure(self._voltage_setup)
        if not self.shunt_meter.configured:
            self.shunt_meter.configure(self._shunt_setup)
        voltage = self._checked(self.voltage_meter, self.voltage_meter.measure(), "V")
        shunt_unit = "V" if self._shunt.function == "VOLT:DC" else "A"
        shunt = self._checked(self.shunt_meter, self.shunt_meter.measure(), shunt_unit)
        ts = self._clock()
        current_a = None if shunt.value is None else battery_current_a(shunt.value, self._shunt)
        power_w = None if voltage.value is None or current_a is None else voltage.value * current_a
        totals = self._integrator.add(ts, power_w=power_w, current_a=current_a)
        sample = BatterySample(ts=ts, voltage_v=voltage.value, current_a=current_a, power_w=power_w,
                               energy=totals, shunt_value=shunt.value)
        self.last_sample = sample
        return sample

    def diagnostics(self) -> dict[str, int]:
        """Link counters of both meters, prefixed ``voltage_``/``shunt_``, plus skipped gaps."""
        out = {f"voltage_{k}": v for k, v in self.voltage_meter.stats.as_dict().items()}
        out.update({f"shunt_{k}": v for k, v in self.shunt_meter.stats.as_dict().items()})
        out["skipped_gaps"] = self._integrator.skipped_gaps
        return out

    @staticmethod
    def _checked(meter: Xdm1041Client, reading: Reading, unit: str) -> Reading:
        if reading.unit and reading.unit not in (unit, "?"):
            # someone turned the knob: reconfigure on the next read
            meter.configured = False
            raise DeviceError(f"{meter.name}: reading {reading.raw!r} is in {reading.unit}, expected {unit}")
        return reading
