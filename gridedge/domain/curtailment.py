"""Demand-response curtailment planner: which circuits to switch off or dim to shed a given power.

``plan = curtail(circuits, shed_kw)`` turns the site's switchable circuits and a shed request into a
target level (0..1) per circuit. ``cap(circuits, limit_kw)`` does the same for a site power limit.
Pure: no I/O, no clock; the EMS agent maps the plan onto relay and PWM set points.

Rules (the decisions a DR shed needs, written down once):

- **What can be shed.** A critical circuit never. A ``continuous`` circuit (PWM, dimmer) down to
  ``1 - sheddable_fraction`` of its current power, at any level in between. A ``binary`` circuit
  (relay: all or nothing) only if its ``sheddable_fraction`` is 1, since a relay cannot shed part
  of a load; then its whole current power.
- **Order.** Lower ``priority`` numbers are shed first; equal priorities are taken in order of
  circuit id, so a plan is reproducible.
- **Exactness.** The plan reaches the requested kW exactly (within :data:`TOLERANCE_KW`) whenever
  some choice of relays plus dimming can. A relay whose power would overshoot what is still to be
  shed is skipped in favour of later circuits. If the request can be met but not exactly, the plan
  overshoots by as little as it can: a DR shed must not fall short when it can be met.
- **Infeasible requests** (more than the site can shed): everything sheddable is shed,
  ``feasible`` is False and ``shortfall_kw`` says by how much.
- **Zero requests** shed nothing. **Negative or non-finite requests** raise :class:`ValueError`:
  curtailment cannot add load, and a negative shed is the caller's mistake.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "TOLERANCE_KW",
    "Circuit",
    "CircuitTarget",
    "CurtailmentPlan",
    "cap",
    "curtail",
    "sheddable_kw",
]

Modulation = Literal["binary", "continuous"]

#: Two powers closer than this (kW, i.e. 1 mW) are equal: float sums of kW figures are never exact.
TOLERANCE_KW = 1e-6

#: Above this many sheddable relays the exact search over relay combinations (2**n) is replaced by
#: a greedy choice plus one extra relay: a site with more relays than this is rare.
_EXHAUSTIVE_MAX_RELAYS = 14


@dataclass(frozen=True)
class Circuit:
    """One switchable circuit as the planner sees it.

    ``power_kw`` is the circuit's current, un-curtailed power (what it would draw at level 1).
    ``priority``: lower numbers are shed first. ``sheddable_fraction``: the share of its power a DR
    event may shed (0..1).
    """

    id: str
    power_kw: float
    priority: int = 10
    sheddable_fraction: float = 1.0
    critical: bool = False
    modulation: Modulation = "binary"

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("circuit id must not be empty")
        if not math.isfinite(self.power_kw) or self.power_kw < 0:
            raise ValueError(f"circuit {self.id}: power_kw must be finite and >= 0, got {self.power_kw}")
        if not 0.0 <= self.sheddable_fraction <= 1.0:
            raise ValueError(f"circuit {self.id}: sheddable_fraction must be within 0..1, "
                             f"got {self.sheddable_fraction}")
        if self.modulation not in ("binary", "continuous"):
            raise ValueError(f"circuit {self.id}: modulation must be 'binary' or 'continuous', "
                             f"got {self.modulation!r}")

    @property
    def sheddable_kw(self) -> float:
        """The most this circuit can shed now, kW (0 for critical circuits)."""
        if self.critical or self.power_kw <= 0:
            return 0.0
        if self.modulation == "binary":
            return self.power_kw if self.sheddable_fraction >= 1.0 - 1e-12 else 0.0
        return self.power_kw * self.sheddable_fraction


@dataclass(frozen=True)
class CircuitTarget:
    """The plan for one circuit: its actuator level (0 = off .. 1 = as it is) and what it then draws."""

    id: str
    #: actuator level: relay 0/1, PWM duty 0..1
    level: float
    #: the circuit's power at that level, kW
    power_kw: float
    #: power shed on this circuit, kW
    shed_kw: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.level <= 1.0:
            raise ValueError(f"circuit {self.id}: level must be within 0..1, got {self.level}")
        if self.power_kw < 0 or self.shed_kw < 0:
            raise ValueError(f"circuit {self.id}: power_kw and shed_kw must be >= 0")


@dataclass(frozen=True)
class CurtailmentPlan:
    """What to do with every circuit to shed ``requested_kw``, and what that achieves."""

    targets: tuple[CircuitTarget, ...]
    requested_kw: float
    achieved_kw: float
    feasible: bool
    #: how much of the request cannot be shed (0 when feasible), kW
    shortfall_kw: float

    def __post_init__(self) -> None:
        if self.requested_kw < 0 or self.achieved_kw < 0 or self.shortfall_kw < 0:
            raise ValueError("requested_kw, achieved_kw and shortfall_kw must be >= 0")
        if self.feasible and self.shortfall_kw > TOLERANCE_KW:
            raise ValueError("a feasible plan has no shortfall")
        ids = [t.id for t in self.targets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate circuit ids in plan: {ids}")

    @property
    def overshoot_kw(self) -> float:
        """How much more than requested the plan sheds (a relay could not be split), kW."""
        return max(0.0, self.achieved_kw - self.requested_kw)

    @property
    def levels(self) -> dict[str, float]:
        """Circuit id -> actuator level."""
        return {t.id: t.level for t in self.targets}

    def target(self, circuit_id: str) -> CircuitTarget:
        """The target of one circuit; KeyError if the plan has none."""
        for t in self.targets:
            if t.id == circuit_id:
                return t
        raise KeyError(circuit_id)


def sheddable_kw(circuits: Iterable[Circuit]) -> float:
    """The total power the circuits can shed now, kW."""
    return math.fsum(c.sheddable_kw for c in circuits)


def curtail(circuits: Sequence[Circuit], shed_kw: float) -> CurtailmentPlan:
    """Plan the shedding of ``shed_kw`` over ``circuits`` (see the module docstring for the rules)."""
    if not math.isfinite(shed_kw):
        raise ValueError(f"shed_kw must be finite, got {shed_kw}")
    if shed_kw < 0:
        raise ValueError(f"shed_kw must be >= 0 (curtailment cannot add load), got {shed_kw}")
    _check_unique(circuits)
    order = sorted((c for c in circuits if c.sheddable_kw > 0), key=lambda c: (c.priority, c.id))
    total = math.fsum(c.sheddable_kw for c in order)

    if shed_kw <= TOLERANCE_KW:
        shed: dict[str, float] = {}
    elif shed_kw >= total - TOLERANCE_KW:
        shed = {c.id: c.sheddable_kw for c in order}
    else:
        shed = _greedy(order, shed_kw)
        if shed_kw - math.fsum(shed.values()) > TOLERANCE_KW:
            shed = _best_relay_set(order, shed_kw, greedy=shed)
    return _build(circuits, shed, shed_kw)


def cap(circuits: Sequence[Circuit], limit_kw: float) -> CurtailmentPlan:
    """Plan the shedding needed to keep the circuits' total power at or under ``limit_kw``.

    ``requested_kw`` of the plan is the excess over the limit (0 when already under it).
    """
    if not math.isfinite(limit_kw):
        raise ValueError(f"limit_kw must be finite, got {limit_kw}")
    excess = math.fsum(c.power_kw for c in circuits) - limit_kw
    return curtail(circuits, max(0.0, excess))


def _check_unique(circuits: Sequence[Circuit]) -> None:
    seen: set[str] = set()
    for c in circuits:
        if c.id in seen:
            raise ValueError(f"duplicate circuit id {c.id!r}")
        seen.add(c.id)


def _dim(circuit: Circuit, remaining_kw: float, shed: dict[str, float]) -> float:
    """Shed what a continuous circuit can of ``remaining_kw`` into ``shed``; return that amount."""
    take = min(circuit.sheddable_kw, remaining_kw)
    shed[circuit.id] = take
    return take


def _greedy(order: Sequence[Circuit], shed_kw: float) -> dict[str, float]:
    """Walk in priority order: dim as needed, switch a relay off only if it does not overshoot."""
    remaining = shed_kw
    shed: dict[str, float] = {}
    for c in order:
        if remaining <= TOLERANCE_KW:
            break
        if c.modulation == "continuous":
            remaining -= _dim(c, remaining, shed)
        elif c.sheddable_kw <= remaining + TOLERANCE_KW:
            shed[c.id] = c.sheddable_kw
            remaining -= c.sheddable_kw
    return shed


def _best_relay_set(order: Sequence[Circuit], shed_kw: float,
                    greedy: dict[str, float]) -> dict[str, float]:
    """The greedy walk fell short: choose the set of relays to open so that dimming makes up the
    rest exactly, or else the set that overshoots least.

    Exact sets are ranked by the priorities of the relays they open (lower first); overshooting
    sets by their overshoot, then the same way.
    """
    relays = [c for c in order if c.modulation == "binary"]
    dimmable_kw = math.fsum(c.sheddable_kw for c in order if c.modulation == "continuous")
    if len(relays) <= _EXHAUSTIVE_MAX_RELAYS:
        candidates: Iterable[tuple[Circuit, ...]] = itertools.chain.from_iterable(
            itertools.combinations(relays, n) for n in range(len(relays) + 1))
    else:
        chosen = tuple(c for c in relays if c.id in greedy)
        candidates = [chosen + (c,) for c in relays if c.id not in greedy]

    def rank(relay_set: tuple[Circuit, ...]) -> tuple[tuple[int, str], ...]:
        return tuple(sorted((c.priority, c.id) for c in relay_set))

    best_exact: tuple[Circuit, ...] | None = None
    best_over: tuple[Circuit, ...] | None = None
    best_over_kw = math.inf
    for relay_set in candidates:
        relay_kw = math.fsum(c.sheddable_kw for c in relay_set)
        if relay_kw <= shed_kw + TOLERANCE_KW and relay_kw + dimmable_kw >= shed_kw - TOLERANCE_KW:
            if best_exact is None or rank(relay_set) < rank(best_exact):
                best_exact = relay_set
        elif relay_kw > shed_kw:
            over = relay_kw - shed_kw
            if (over < best_over_kw - TOLERANCE_KW
                    or (abs(over - best_over_kw) <= TOLERANCE_KW and best_over is not None
                        and rank(relay_set) < rank(best_over))):
                best_over, best_over_kw = relay_set, over

    if best_exact is not None:
        shed = {c.id: c.sheddable_kw for c in best_exact}
        remaining = shed_kw - math.fsum(shed.values())
        for c in order:
            if remaining <= TOLERANCE_KW:
                break
            if c.modulation == "continuous":
                remaining -= _dim(c, remaining, shed)
        return shed
    if best_over is None:  # cannot happen for a feasible request; keep the greedy plan
        return greedy
    return {c.id: c.sheddable_kw for c in best_over}


def _build(circuits: Sequence[Circuit], shed: dict[str, float], requested_kw: float) -> CurtailmentPlan:
    targets = []
    for c in circuits:
        s = shed.get(c.id, 0.0)
        if s <= 0 or c.power_kw <= 0:
            targets.append(CircuitTarget(id=c.id, level=1.0, power_kw=c.power_kw, shed_kw=0.0))
        elif c.modulation == "binary":
            targets.append(CircuitTarget(id=c.id, level=0.0, power_kw=0.0, shed_kw=c.power_kw))
        else:
            if s >= c.sheddable_kw - TOLERANCE_KW * 1e-3:
                level = 1.0 - c.sheddable_fraction
            else:
                level = min(1.0, max(0.0, 1.0 - s / c.power_kw))
            targets.append(CircuitTarget(id=c.id, level=level, power_kw=c.power_kw * level,
                                         shed_kw=min(c.power_kw, max(0.0, s))))
    achieved = math.fsum(t.shed_kw for t in targets)
    shortfall = max(0.0, requested_kw - achieved)
    feasible = shortfall <= TOLERANCE_KW
    return CurtailmentPlan(targets=tuple(targets), requested_kw=requested_kw, achieved_kw=achieved,
                           feasible=feasible, shortfall_kw=0.0 if feasible else shortfall)
