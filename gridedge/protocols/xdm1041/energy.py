"""Charge and discharge energy of a battery from timed samples of power and current (pure).

Sign convention: positive power and current mean the battery discharges (delivers energy);
negative means it charges. Totals are kept apart per direction and are never negative.

Integration is trapezoidal between consecutive samples. A segment whose ends have opposite
signs is split at its (linearly interpolated) zero crossing so that each direction gets its
own share. Samples further apart than ``max_gap_s`` are not integrated across (the meter was
away; guessing would invent energy), and a sample without a value (overload, no reading)
breaks the chain in the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gridedge.errors import ConfigError

__all__ = ["EnergyIntegrator", "EnergyTotals", "split_trapezoid"]


@dataclass(frozen=True)
class EnergyTotals:
    """Energy and charge counted since start, per direction (all >= 0)."""

    charge_wh: float = 0.0
    discharge_wh: float = 0.0
    charge_ah: float = 0.0
    discharge_ah: float = 0.0

    def __post_init__(self) -> None:
        for name in ("charge_wh", "discharge_wh", "charge_ah", "discharge_ah"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")

    @property
    def net_discharge_wh(self) -> float:
        """Discharged minus charged energy, Wh (positive = the battery gave more than it took)."""
        return self.discharge_wh - self.charge_wh


def split_trapezoid(y0: float, y1: float, dt: float) -> tuple[float, float]:
    """Trapezoidal area of a straight segment from ``y0`` to ``y1`` over ``dt``, split into
    ``(positive_area, negative_area)``, both >= 0; a sign change is split at the zero crossing."""
    if dt <= 0:
        return 0.0, 0.0
    if y0 >= 0 and y1 >= 0:
        return (y0 + y1) / 2 * dt, 0.0
    if y0 <= 0 and y1 <= 0:
        return 0.0, -(y0 + y1) / 2 * dt
    t_zero = min(dt, max(0.0, dt * y0 / (y0 - y1)))  # clamped against rounding
    first = abs(y0) * t_zero / 2
    second = abs(y1) * (dt - t_zero) / 2
    return (first, second) if y0 > 0 else (second, first)


class EnergyIntegrator:
    """Accumulates :class:`EnergyTotals` from ``add(ts, power_w=..., current_a=...)`` calls.

    Timestamps are seconds from any clock the caller injects; a sample not later than the last
    one is ignored (no time went by, nothing to count).
    """

    def __init__(self, *, max_gap_s: float = 30.0, totals: EnergyTotals | None = None) -> None:
        if not max_gap_s > 0:
            raise ConfigError(f"max_gap_s must be > 0, got {max_gap_s}")
        self._max_gap_s = max_gap_s
        self._totals = totals or EnergyTotals()
        self._last: tuple[float, float, float] | None = None
        self.skipped_gaps = 0

    @property
    def totals(self) -> EnergyTotals:
        """The totals so far."""
        return self._totals

    def reset(self, totals: EnergyTotals | None = None) -> None:
        """Start again from ``totals`` (default zero) with no previous sample."""
        self._totals = totals or EnergyTotals()
        self._last = None

    def add(self, ts: float, *, power_w: float | None, current_a: float | None) -> EnergyTotals:
        """Integrate up to the sample at ``ts``; a None value breaks the chain."""
        if power_w is None or current_a is None or not (math.isfinite(power_w) and math.isfinite(current_a)):
            self._last = None
            return self._totals
        if self._last is not None:
            t0, p0, i0 = self._last
            dt = ts - t0
            if dt <= 0:
                return self._totals
            if dt > self._max_gap_s:
                self.skipped_gaps += 1
            else:
                dis_ws, chg_ws = split_trapezoid(p0, power_w, dt)
                dis_as, chg_as = split_trapezoid(i0, current_a, dt)
                t = self._totals
                self._totals = replace(
                    t,
                    discharge_wh=t.discharge_wh + dis_ws / 3600.0,
                    charge_wh=t.charge_wh + chg_ws / 3600.0,
                    discharge_ah=t.discharge_ah + dis_as / 3600.0,
                    charge_ah=t.charge_ah + chg_as / 3600.0,
                )
        self._last = (ts, power_w, current_a)
        return self._totals
