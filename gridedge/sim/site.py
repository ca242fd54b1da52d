"""The simulated physical site: circuits whose load follows their relays, and the grid they hang on.

Every simulated meter reads its values from one :class:`SiteModel`, and every simulated actuator
(the GPIO pins behind the relay driver) writes into it, so a relay switched through the platform
driver really changes what the simulated meters measure.

Sign convention: power is positive when the site imports from the grid.

The model is advanced by :meth:`SiteModel.advance` with an explicit timestamp (injected clock);
energy counters integrate power between two calls. It is thread-safe: simulators run in their own
threads and read :meth:`snapshot`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from gridedge.domain.tariffs import belgian_tariff
from gridedge.errors import ConfigError

__all__ = [
    "CircuitSpec",
    "CircuitState",
    "PhaseSample",
    "SiteModel",
    "SiteSnapshot",
    "SiteSpec",
    "daily_profile",
    "load_site_spec",
]

Modulation = Literal["binary", "continuous"]

#: A typical household day: multiplier of a circuit's nominal load per hour of day (local time).
_HOUSE_PROFILE: tuple[float, ...] = (
    0.55, 0.5, 0.5, 0.5, 0.5, 0.55, 0.75, 0.95, 0.9, 0.8, 0.75, 0.75,
    0.8, 0.8, 0.75, 0.75, 0.85, 1.0, 1.0, 1.0, 0.95, 0.85, 0.7, 0.6,
)


def daily_profile(hour: float) -> float:
    """Base-load multiplier for a fractional local hour, linearly interpolated between hours."""
    h0 = math.floor(hour) % 24
    h1 = (h0 + 1) % 24
    frac = hour - math.floor(hour)
    return _HOUSE_PROFILE[h0] * (1.0 - frac) + _HOUSE_PROFILE[h1] * frac


@dataclass(frozen=True)
class CircuitSpec:
    """One switchable circuit of the site, as wired.

    ``pin`` is the BCM GPIO number of its relay (binary) or PWM output (continuous).
    ``priority``: lower numbers are shed first. ``sheddable_fraction``: how much of its load
    may be shed in a DR event (1.0 = all of it). ``profile``: "flat" (constant) or "house"
    (follows a household daily profile).
    """

    id: str
    name: str
    nominal_w: float
    pin: int
    phase: int = 1
    critical: bool = False
    priority: int = 10
    sheddable_fraction: float = 1.0
    modulation: Modulation = "binary"
    profile: Literal["flat", "house"] = "flat"
    power_factor: float = 0.95

    def __post_init__(self) -> None:
        if not self.id or not self.id.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"circuit id {self.id!r} must be a non-empty identifier")
        if self.nominal_w < 0:
            raise ConfigError(f"circuit {self.id}: nominal_w must be >= 0, got {self.nominal_w}")
        if not 0.0 <= self.sheddable_fraction <= 1.0:
            raise ConfigError(f"circuit {self.id}: sheddable_fraction must be within 0..1")
        if self.phase not in (1, 2, 3):
            raise ConfigError(f"circuit {self.id}: phase must be 1, 2 or 3, got {self.phase}")
        if self.modulation not in ("binary", "continuous"):
            raise ConfigError(f"circuit {self.id}: modulation must be 'binary' or 'continuous'")
        if not 0.1 <= self.power_factor <= 1.0:
            raise ConfigError(f"circuit {self.id}: power_factor must be within 0.1..1")


@dataclass(frozen=True)
class SiteSpec:
    """The whole simulated site: circuits plus the grid connection."""

    circuits: tuple[CircuitSpec, ...]
    voltage_v: float = 230.0
    frequency_hz: float = 50.0
    #: unswitched load (not on any relay), W
    base_load_w: float = 0.0
    phases: int = 3
    timezone: str = "Europe/Brussels"

    def __post_init__(self) -> None:
        ids = [c.id for c in self.circuits]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ConfigError(f"duplicate circuit ids: {sorted(dupes)}")
        pins = [c.pin for c in self.circuits]
        dupe_pins = {p for p in pins if pins.count(p) > 1}
        if dupe_pins:
            raise ConfigError(f"GPIO pins used by more than one circuit: {sorted(dupe_pins)}")
        if self.phases not in (1, 3):
            raise ConfigError(f"phases must be 1 or 3, got {self.phases}")

    def circuit(self, circuit_id: str) -> CircuitSpec:
        """The circuit named ``circuit_id``; ConfigError naming it if there is none."""
        for c in self.circuits:
            if c.id == circuit_id:
                return c
        raise ConfigError(f"unknown circuit {circuit_id!r}; known: {[c.id for c in self.circuits]}")


def load_site_spec(source: Path | str | Mapping) -> SiteSpec:
    """Build a :class:`SiteSpec` from a JSON file path or an already-parsed mapping."""
    if isinstance(source, (str, Path)):
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read site spec {source}: {exc}") from exc
    else:
        data = dict(source)
    try:
        circuits = tuple(CircuitSpec(**c) for c in data.get("circuits", []))
        rest = {k: v for k, v in data.items() if k != "circuits" and not k.startswith("_")}
        return SiteSpec(circuits=circuits, **rest)
    except TypeError as exc:
        raise ConfigError(f"invalid site spec: {exc}") from exc


@dataclass(frozen=True)
class CircuitState:
    """A circuit's state at one instant: its actuator level (0..1) and the power it draws."""

    id: str
    level: float
    power_w: float
    reactive_var: float


@dataclass(frozen=True)
class PhaseSample:
    """One phase of the grid connection at one instant (positive power = import)."""

    voltage_v: float
    current_a: float
    power_w: float
    reactive_var: float

    @property
    def apparent_va(self) -> float:
        """Apparent power, VA."""
        return math.hypot(self.power_w, self.reactive_var)

    @property
    def power_factor(self) -> float:
        """Power factor (1.0 when nothing flows)."""
        s = self.apparent_va
        return abs(self.power_w) / s if s > 0 else 1.0


@dataclass(frozen=True)
class SiteSnapshot:
    """Everything a meter could measure at one instant."""

    ts: float
    circuits: tuple[CircuitState, ...]
    phases: tuple[PhaseSample, ...]
    frequency_hz: float
    #: cumulative energy counters, kWh, per Belgian tariff (1 = day, 2 = night)
    import_kwh: tuple[float, float]
    export_kwh: tuple[float, float]
    tariff: int
    temperature_c: float

    @property
    def power_w(self) -> float:
        """Net site power, W (positive = import)."""
        return sum(p.power_w for p in self.phases)

    @property
    def reactive_var(self) -> float:
        """Net reactive power, var."""
        return sum(p.reactive_var for p in self.phases)

    def circuit(self, circuit_id: str) -> CircuitState:
        """State of one circuit."""
        for c in self.circuits:
            if c.id == circuit_id:
                return c
        raise KeyError(circuit_id)


@dataclass
class _Counters:
    import_kwh: list[float] = field(default_factory=lambda: [1234.5, 987.6])
    export_kwh: list[float] = field(default_factory=lambda: [123.4, 45.6])


class SiteModel:
    """The simulated site. Thread-safe; advanced explicitly with :meth:`advance`.

    Pins hold actuator levels: 0.0/1.0 for relays, 0..1 for PWM outputs. A pin not yet written
    is at the level given by ``initial_levels`` (default: on).
    """

    def __init__(
        self,
        *,
        spec: SiteSpec,
        clock: Callable[[], float] = time.time,
        initial_levels: Mapping[str, float] | None = None,
    ) -> None:
        from zoneinfo import ZoneInfo

        self._spec = spec
        self._clock = clock
        self._tz = ZoneInfo(spec.timezone)
        self._lock = threading.Lock()
        self._levels: dict[int, float] = {c.pin: 1.0 for c in spec.circuits}
        for cid, level in (initial_levels or {}).items():
            self._levels[spec.circuit(cid).pin] = _clamp01(level)
        self._counters = _Counters()
        self._last_ts = clock()
        self._snapshot = self._compute(self._last_ts)
        self._listeners: list[Callable[[int, float], None]] = []

    @property
    def spec(self) -> SiteSpec:
        """The site as wired."""
        return self._spec

    def add_pin_listener(self, listener: Callable[[int, float], None]) -> None:
        """Call ``listener(pin, level)`` (from the writer's thread) after every pin change."""
        with self._lock:
            self._listeners.append(listener)

    def set_pin(self, pin: int, level: float) -> None:
        """Set the actuator level of a GPIO pin (relay 0/1, PWM 0..1); unknown pins are ignored
        by the physics but remembered, as on a real board."""
        level = _clamp01(float(level))
        with self._lock:
            self._levels[int(pin)] = level
            listeners = list(self._listeners)
            self._snapshot = self._compute(self._last_ts)
        for listener in listeners:
            listener(int(pin), level)

    def pin_levels(self) -> dict[int, float]:
        """Current level of every known pin."""
        with self._lock:
            return dict(self._levels)

    def advance(self, now: float | None = None) -> SiteSnapshot:
        """Integrate energy up to ``now`` (default: the clock) and return the new snapshot."""
        now = self._clock() if now is None else now
        with self._lock:
            prev = self._snapshot
            dt_h = max(0.0, now - self._last_ts) / 3600.0
            idx = prev.tariff - 1
            p_kw = prev.power_w / 1000.0
            if p_kw >= 0:
                self._counters.import_kwh[idx] += p_kw * dt_h
            else:
                self._counters.export_kwh[idx] += -p_kw * dt_h
            self._last_ts = max(self._last_ts, now)
            self._snapshot = self._compute(now)
            return self._snapshot

    def snapshot(self) -> SiteSnapshot:
        """The latest snapshot (no integration)."""
        with self._lock:
            return self._snapshot

    def _compute(self, ts: float) -> SiteSnapshot:
        local = datetime.fromtimestamp(ts, tz=timezone.utc).astimezone(self._tz)
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        spec = self._spec
        circuits: list[CircuitState] = []
        per_phase_p = [0.0, 0.0, 0.0]
        per_phase_q = [0.0, 0.0, 0.0]
        for c in spec.circuits:
            level = self._levels.get(c.pin, 1.0)
            shape = daily_profile(hour) if c.profile == "house" else 1.0
            p = c.nominal_w * shape * level
            q = p * math.tan(math.acos(c.power_factor))
            circuits.append(CircuitState(id=c.id, level=level, power_w=p, reactive_var=q))
            phase = (c.phase - 1) if spec.phases == 3 else 0
            per_phase_p[phase] += p
            per_phase_q[phase] += q
        n = spec.phases
        for i in range(n):
            per_phase_p[i] += spec.base_load_w * daily_profile(hour) / n
            per_phase_q[i] += spec.base_load_w * daily_profile(hour) / n * 0.2
        # a little physics: voltage sags with load, frequency wanders slowly around nominal
        phases = []
        for i in range(n):
            v = spec.voltage_v * (1.0 - 0.0000012 * per_phase_p[i]) + 0.6 * math.sin(ts / 37.0 + i)
            s = math.hypot(per_phase_p[i], per_phase_q[i])
            phases.append(PhaseSample(voltage_v=v, current_a=s / v if v > 0 else 0.0,
                                      power_w=per_phase_p[i], reactive_var=per_phase_q[i]))
        freq = spec.frequency_hz + 0.02 * math.sin(ts / 53.0)
        return SiteSnapshot(
            ts=ts,
            circuits=tuple(circuits),
            phases=tuple(phases),
            frequency_hz=freq,
            import_kwh=(self._counters.import_kwh[0], self._counters.import_kwh[1]),
            export_kwh=(self._counters.export_kwh[0], self._counters.export_kwh[1]),
            tariff=belgian_tariff(local),
            temperature_c=24.0 + 0.002 * sum(per_phase_p),
        )

    def with_spec(self, spec: SiteSpec) -> SiteModel:
        """A new model on another spec carrying over pin levels (for reconfiguration)."""
        model = SiteModel(spec=spec, clock=self._clock)
        with self._lock:
            model._levels.update(self._levels)
        return model


def _clamp01(x: float) -> float:
    if math.isnan(x):
        raise ValueError("level is NaN")
    return min(1.0, max(0.0, x))


def replace_circuits(spec: SiteSpec, circuits: Sequence[CircuitSpec]) -> SiteSpec:
    """A copy of ``spec`` with other circuits."""
    return replace(spec, circuits=tuple(circuits))
