"""Value objects of the VEN's event rules: normalized events, the event store, opt decisions.

Everything here is plain data (frozen dataclasses that validate in ``__post_init__``), free of
asyncio, openleadr and volttron, so the policy in :mod:`gridedge.openadr.policy` can be tested with
an injected clock and the VEN agent can put :meth:`StoredEvent.to_bus` straight on the bus.

Units: every power is in kW (``shed_kw``, ``setpoint_kw``); times are timezone-aware UTC
``datetime``; ``received_at`` is epoch seconds (float), as the latency benchmark wants it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = [
    "OPT_IN",
    "OPT_OUT",
    "SIGNAL_LOAD_DISPATCH",
    "SIGNAL_SIMPLE",
    "SIGNAL_TYPES",
    "STATUSES",
    "ActiveRequest",
    "Decision",
    "EventStore",
    "SignalInterval",
    "StoredEvent",
    "iso",
]

OPT_IN = "optIn"
OPT_OUT = "optOut"
SIGNAL_SIMPLE = "SIMPLE"
SIGNAL_LOAD_DISPATCH = "LOAD_DISPATCH"
#: signal types the VEN applies: SIMPLE ``level``, LOAD_DISPATCH ``delta`` / ``setpoint``
SIGNAL_TYPES = ("level", "delta", "setpoint")
#: statuses of a normalized event, as published on ``gridedge/dr/events``
STATUSES = ("far", "near", "active", "completed", "cancelled")

#: what a decision did with an incoming event (``Decision.action``)
ACTIONS = ("new", "modified", "duplicate", "stale", "cancelled", "dropped", "test", "malformed")


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 text of an aware datetime (``None`` stays ``None``)."""
    return None if moment is None else moment.isoformat()


def _require_aware(name: str, moment: datetime) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")


def _require_finite(name: str, value: float | None, *, minimum: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class SignalInterval:
    """One interval of an event's signal, already converted to what the site must do.

    Exactly one of ``shed_kw`` (SIMPLE levels and LOAD_DISPATCH ``delta``: kW to take off the
    site's import) and ``setpoint_kw`` (LOAD_DISPATCH ``setpoint``: kW the import must stay under)
    is set; ``level`` is the SIMPLE level (0–3) or ``None``.
    """

    start: datetime
    end: datetime
    shed_kw: float | None = None
    setpoint_kw: float | None = None
    level: int | None = None

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        if self.end <= self.start:
            raise ValueError(f"interval end {self.end} is not after its start {self.start}")
        if (self.shed_kw is None) == (self.setpoint_kw is None):
            raise ValueError("exactly one of shed_kw and setpoint_kw must be set")
        _require_finite("shed_kw", self.shed_kw, minimum=0.0)
        _require_finite("setpoint_kw", self.setpoint_kw, minimum=0.0)
        if self.level is not None and not 0 <= self.level <= 3:
            raise ValueError(f"SIMPLE level must be 0..3, got {self.level}")

    def covers(self, now: datetime) -> bool:
        """True when ``now`` lies in ``[start, end)``."""
        return self.start <= now < self.end

    def to_bus(self) -> dict[str, Any]:
        """The interval as it appears in a normalized event's ``intervals`` list."""
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "shed_kw": self.shed_kw,
            "setpoint_kw": self.setpoint_kw,
            "level": self.level,
        }


@dataclass(frozen=True)
class StoredEvent:
    """One DR event as the VEN keeps it: what was asked, what the VEN answered, and when.

    ``signal``/``signal_type`` are ``SIMPLE``/``level`` or ``LOAD_DISPATCH``/``delta|setpoint``
    for an event the VEN understood; for an event opted out as unsupported they carry the VTN's
    raw names (and ``intervals`` is empty). ``priority`` follows OpenADR: 1 is the highest,
    larger numbers are lower, 0 means unspecified (lowest).
    """

    event_id: str
    modification_number: int
    signal: str
    signal_type: str
    start: datetime
    end: datetime
    intervals: tuple[SignalInterval, ...]
    opt: str
    opt_reason: str
    received_at: float
    vtn_id: str | None = None
    test_event: bool = False
    cancelled: bool = False
    priority: int = 0
    #: start of the ramp-up ("near") window, or ``None`` when the event has no ramp-up period
    near_from: datetime | None = None
    #: when the cancellation arrived (``None`` while not cancelled)
    cancelled_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.event_id:
            raise ValueError("event_id must not be empty")
        if isinstance(self.modification_number, bool) or not isinstance(self.modification_number, int):
            raise TypeError(f"modification_number must be an int, got {self.modification_number!r}")
        if self.modification_number < 0:
            raise ValueError("modification_number must be >= 0")
        if self.opt not in (OPT_IN, OPT_OUT):
            raise ValueError(f"opt must be optIn or optOut, got {self.opt!r}")
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        if self.end < self.start:
            raise ValueError("event end is before its start")
        _require_finite("received_at", self.received_at, minimum=0.0)
        if self.cancelled and self.cancelled_at is None:
            raise ValueError("a cancelled event needs cancelled_at")

    @property
    def applied(self) -> bool:
        """True when the event may shape the site: opted in, not a test, not cancelled."""
        return self.opt == OPT_IN and not self.test_event and not self.cancelled and bool(self.intervals)

    def status(self, now: datetime) -> str:
        """OpenADR-style status at ``now``: far, near, active, completed or cancelled."""
        if self.cancelled:
            return "cancelled"
        if now >= self.end:
            return "completed"
        if now >= self.start:
            return "active"
        if self.near_from is not None and now >= self.near_from:
            return "near"
        return "far"

    def interval_at(self, now: datetime) -> tuple[int, SignalInterval] | None:
        """The interval in force at ``now`` with its index, or ``None`` outside the event."""
        for index, interval in enumerate(self.intervals):
            if interval.covers(now):
                return index, interval
        return None

    def boundaries(self) -> Iterator[datetime]:
        """Every instant at which this event's status or request changes."""
        if self.near_from is not None:
            yield self.near_from
        yield self.start
        for interval in self.intervals:
            yield interval.start
            yield interval.end
        yield self.end

    def to_bus(self, now: datetime) -> dict[str, Any]:
        """The normalized event of the ``gridedge/dr/events`` contract.

        The event-level ``shed_kw``/``setpoint_kw``/``level`` are those of the interval in force
        at ``now``; before the event, those of its first interval; after it, of its last.
        """
        current: SignalInterval | None = None
        if self.intervals:
            found = self.interval_at(now)
            if found is not None:
                current = found[1]
            elif now < self.intervals[0].start:
                current = self.intervals[0]
            else:
                current = self.intervals[-1]
        return {
            "event_id": self.event_id,
            "modification_number": self.modification_number,
            "status": self.status(now),
            "signal": self.signal,
            "signal_type": self.signal_type,
            "shed_kw": None if current is None else current.shed_kw,
            "setpoint_kw": None if current is None else current.setpoint_kw,
            "level": None if current is None else current.level,
            "start": iso(self.start),
            "end": iso(self.end),
            "intervals": [interval.to_bus() for interval in self.intervals],
            "opt": self.opt,
            "opt_reason": self.opt_reason,
            "test_event": self.test_event,
            "received_at": self.received_at,
            "vtn_id": self.vtn_id,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class EventStore:
    """The VEN's events by ``event_id``; immutable: the policy returns a new store on change."""

    events: Mapping[str, StoredEvent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, event in self.events.items():
            if key != event.event_id:
                raise ValueError(f"store key {key!r} does not match event_id {event.event_id!r}")
        object.__setattr__(self, "events", MappingProxyType(dict(self.events)))

    def get(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or ``None``."""
        return self.events.get(event_id)

    def with_event(self, event: StoredEvent) -> EventStore:
        """A new store with ``event`` added or replacing the one with its id."""
        return EventStore({**self.events, event.event_id: event})

    def without(self, event_id: str) -> EventStore:
        """A new store without ``event_id`` (the same store when it is absent)."""
        if event_id not in self.events:
            return self
        return EventStore({k: v for k, v in self.events.items() if k != event_id})

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[StoredEvent]:
        return iter(sorted(self.events.values(), key=lambda e: (e.start, e.event_id)))

    def to_bus(self, now: datetime) -> list[dict[str, Any]]:
        """Every event normalized for the bus, ordered by start time."""
        return [event.to_bus(now) for event in self]


@dataclass(frozen=True)
class Decision:
    """What the VEN does about one incoming event.

    ``opt`` and ``reason`` go into the oadrCreatedEvent (when ``send_response``); ``changed`` says
    whether the store changed, i.e. whether the bus must hear about it; ``action`` names the rule
    that decided (one of ``new, modified, duplicate, stale, cancelled, dropped, test, malformed``);
    ``response_code`` is the eventResponse code the VTN gets.
    """

    event_id: str | None
    modification_number: int | None
    opt: str
    reason: str
    send_response: bool
    changed: bool
    action: str
    #: OpenADR eventResponse code: 200, 454 invalid data, 460 signal not supported, 462 target mismatch
    response_code: int = 200

    def __post_init__(self) -> None:
        if self.opt not in (OPT_IN, OPT_OUT):
            raise ValueError(f"opt must be optIn or optOut, got {self.opt!r}")
        if not 200 <= self.response_code <= 499:
            raise ValueError(f"response_code {self.response_code} is not an OpenADR code")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if self.send_response and self.event_id is None:
            raise ValueError("cannot respond to an event without an event_id")


@dataclass(frozen=True)
class ActiveRequest:
    """What the grid asks of the site at one instant (the winner among overlapping events).

    ``until`` is the next instant at which the request may change (an interval boundary of any
    applied event); ``received_at`` is when the VEN received the winning event (epoch seconds).
    """

    event_id: str
    modification_number: int
    interval_index: int
    shed_kw: float | None
    setpoint_kw: float | None
    level: int | None
    until: datetime
    received_at: float
    signal: str
    signal_type: str

    def __post_init__(self) -> None:
        if (self.shed_kw is None) == (self.setpoint_kw is None):
            raise ValueError("exactly one of shed_kw and setpoint_kw must be set")
        _require_aware("until", self.until)
        if self.interval_index < 0:
            raise ValueError("interval_index must be >= 0")

    def to_bus(self) -> dict[str, Any]:
        """The ``active`` member of the ``gridedge/dr/events`` message."""
        return {
            "event_id": self.event_id,
            "modification_number": self.modification_number,
            "interval_index": self.interval_index,
            "shed_kw": self.shed_kw,
            "setpoint_kw": self.setpoint_kw,
            "level": self.level,
            "until": iso(self.until),
            "received_at": self.received_at,
            "signal": self.signal,
            "signal_type": self.signal_type,
        }
