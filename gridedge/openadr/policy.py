"""The VEN's event rules: what to do with each OpenADR 2.0b event, and what the site must do now.

Pure functions over plain data (no asyncio, no openleadr client, no volttron), driven by an
injected ``now``. Input is the event dict openleadr hands to ``on_event`` (``event_descriptor``,
``active_period``, ``event_signals`` with ``intervals``, ``targets``, ``response_required``);
output is a :class:`~gridedge.openadr.models.Decision` and the updated
:class:`~gridedge.openadr.models.EventStore`.

Rules, in the order :func:`handle_event` applies them (each has a conformance test named after it
in ``tests/unit/test_openadr_policy.py``):

1. **Malformed** — an event without a readable ``event_id``/``modification_number`` or with an
   unreadable active period or intervals is opted out with the reason; it is answered only when it
   has an ``event_id`` and a response is required.
2. **Duplicate** — the same ``event_id`` and ``modification_number`` as stored is handled once:
   nothing changes and the stored opt is answered again (VTNs resend the whole event list).
3. **Stale** — a ``modification_number`` lower than the stored one is never applied; the stored
   opt is answered.
4. **Cancelled** — ``event_status == "cancelled"`` takes the event out of the active set; it stays
   in the store with status ``cancelled`` (the cancellation is acknowledged with optIn).
5. **Finished at receipt** — an event whose active period has already ended is dropped: not
   stored (a stored older modification is removed), not answered.
6. **Test event** — ``test_event`` true: stored for display, never applied; answered optIn
   ("acknowledged, not applied") as the spec requires a response to every event that asks for one.
7. **Signals** — ``SIMPLE``/``level`` 0–3 maps each level to a configured shed (``simple_levels_kw``);
   ``LOAD_DISPATCH``/``delta`` is kW to shed and ``LOAD_DISPATCH``/``setpoint`` kW to stay under,
   both in powerReal converted with the itemBase unit and ``siScaleCode`` (W, kW, MW …). With
   several signals, LOAD_DISPATCH wins over SIMPLE; unknown signals next to a supported one are
   ignored. No supported signal (unknown name or type, no signal, no powerReal itemBase, a
   negative delta, a level outside 0–3) → optOut with the reason.
8. **Capacity** — the largest shed the event asks for (over all intervals) must not exceed
   ``sheddable_kw`` (what the EMS says it can shed now); for a setpoint, the shed needed is
   ``site_power_kw - setpoint_kw``. A capacity that is not known yet (``None``) is not checked.
9. **Not targeted** — when the VEN knows its ``ven_id`` and the event targets only other VEN ids,
   it is opted out.

``response_required == "never"`` suppresses every created-event, whatever the rule.

Intervals: the signal's intervals follow each other from ``active_period.dtstart``, each lasting
its ``duration`` (an interval's own ``dtstart``, which openleadr adds, is ignored: OpenADR places
intervals back to back). The event ends at the end of its last interval. Randomization
(``tolerance.startafter``) is ignored: the VEN starts at ``dtstart``; a ramp-up period only makes
the event ``near`` before its start.

Overlapping events (:func:`effective_request`): among the applied events (opted in, not test,
not cancelled) whose interval covers the instant, the **largest shed wins**. A setpoint counts
as the shed it implies at the site's current import (``site_power_kw - setpoint_kw``), or 0 when
the import is not known. Ties go to the **highest OpenADR priority** (1 highest, 0 = unspecified =
lowest), then the **latest modification number**, then the latest receipt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from gridedge.openadr.models import (
    OPT_IN,
    OPT_OUT,
    SIGNAL_LOAD_DISPATCH,
    SIGNAL_SIMPLE,
    ActiveRequest,
    Decision,
    EventStore,
    SignalInterval,
    StoredEvent,
)

__all__ = [
    "MalformedEvent",
    "PolicyConfig",
    "effective_request",
    "handle_event",
    "next_boundary",
    "power_kw_factor",
    "prune",
]

#: siScaleCode → multiplier (OpenADR / EMIX SI scale codes)
_SI_SCALE = {
    "p": 1e-12,
    "n": 1e-9,
    "micro": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "d": 1e-1,
    "none": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}
#: itemUnits of powerReal → watts per unit (some VTNs put the prefix into the unit)
_POWER_UNITS_W = {"W": 1.0, "kW": 1e3, "MW": 1e6}
_EPSILON_KW = 1e-9
#: OpenADR eventResponse codes used in decisions
CODE_OK = 200
CODE_INVALID_DATA = 454
CODE_SIGNAL_NOT_SUPPORTED = 460
CODE_TARGET_MISMATCH = 462


class MalformedEvent(ValueError):
    """An event dict lacks what the rules need (ids, active period, intervals)."""


@dataclass(frozen=True)
class PolicyConfig:
    """How the VEN turns signals into kW.

    ``simple_levels_kw`` maps each SIMPLE level 0–3 to the kW the site sheds at that level
    (all four levels must be given); ``retention_s`` is how long a completed or cancelled event
    stays in the store (and on the bus) before :func:`prune` removes it.
    """

    simple_levels_kw: Mapping[int, float] = field(
        default_factory=lambda: {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    )
    retention_s: float = 3600.0

    def __post_init__(self) -> None:
        levels: dict[int, float] = {}
        for key, value in dict(self.simple_levels_kw).items():
            try:
                level = int(key)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"SIMPLE level {key!r} is not an integer") from exc
            if not 0 <= level <= 3:
                raise ValueError(f"SIMPLE level must be 0..3, got {level}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"shed for level {level} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"shed for level {level} must be >= 0 kW, got {value}")
            levels[level] = float(value)
        missing = {0, 1, 2, 3} - set(levels)
        if missing:
            raise ValueError(f"simple_levels_kw lacks level(s) {sorted(missing)}")
        object.__setattr__(self, "simple_levels_kw", levels)
        if not math.isfinite(self.retention_s) or self.retention_s < 0:
            raise ValueError("retention_s must be a finite number >= 0")


def power_kw_factor(measurement: Mapping[str, Any] | None) -> float:
    """kW per unit of a LOAD_DISPATCH payload, from its powerReal itemBase.

    ``{"name": "powerReal", "unit": "W", "scale": "k"}`` → 1.0; ``"scale": "none"`` → 0.001;
    ``"M"`` → 1000. Raises :class:`ValueError` for a missing or non-powerReal itemBase or an
    unknown unit/scale: a payload whose unit is unknown must never be guessed.
    """
    if not measurement:
        raise ValueError("LOAD_DISPATCH signal has no powerReal itemBase: its unit is unknown")
    name = measurement.get("name")
    if name != "powerReal":
        raise ValueError(f"LOAD_DISPATCH itemBase is {name!r}, not powerReal")
    unit = measurement.get("unit") or "W"
    if unit not in _POWER_UNITS_W:
        raise ValueError(f"powerReal unit {unit!r} is not one of {sorted(_POWER_UNITS_W)}")
    scale = measurement.get("scale") or "none"
    if scale not in _SI_SCALE:
        raise ValueError(f"siScaleCode {scale!r} is not an SI scale code")
    return _POWER_UNITS_W[unit] * _SI_SCALE[scale] / 1000.0


@dataclass(frozen=True)
class _Parsed:
    """The parts of an openleadr event dict the rules use."""

    event_id: str
    modification_number: int
    status: str
    response_required: bool
    test_event: bool
    priority: int
    start: datetime
    duration: timedelta
    ramp_up: timedelta | None
    signals: list[Mapping[str, Any]]
    target_ven_ids: list[str] | None


def _aware(moment: Any, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise MalformedEvent(f"{what} is not a date-time: {moment!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _identity(event: Mapping[str, Any]) -> tuple[str, int]:
    descriptor = event.get("event_descriptor") if isinstance(event, Mapping) else None
    if not isinstance(descriptor, Mapping):
        raise MalformedEvent("event has no event_descriptor")
    event_id = descriptor.get("event_id")
    if not isinstance(event_id, (str, int)) or isinstance(event_id, bool) or str(event_id) == "":
        raise MalformedEvent("event_descriptor has no event_id")
    number = descriptor.get("modification_number", 0)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise MalformedEvent(f"modification_number {number!r} is not an integer >= 0")
    return str(event_id), number


def _parse(event: Mapping[str, Any]) -> _Parsed:
    event_id, number = _identity(event)
    descriptor = event["event_descriptor"]
    period = event.get("active_period")
    if not isinstance(period, Mapping):
        raise MalformedEvent("event has no active_period")
    start = _aware(period.get("dtstart"), "active_period.dtstart")
    duration = period.get("duration")
    if not isinstance(duration, timedelta):
        raise MalformedEvent(f"active_period.duration is not a duration: {duration!r}")
    ramp_up = period.get("ramp_up", period.get("ramp_up_period"))
    if not isinstance(ramp_up, timedelta) or ramp_up <= timedelta(0):
        ramp_up = None
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):  # openleadr sometimes nests the list one level deeper
        signals = signals.get("event_signals") or []
    if not isinstance(signals, list):
        raise MalformedEvent("event_signals is not a list")
    priority = descriptor.get("priority") or 0
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        priority = 0
    targets = event.get("targets_by_type")
    target_ven_ids: list[str] | None = None
    if isinstance(targets, Mapping) and set(targets) == {"ven_id"}:
        target_ven_ids = [str(v) for v in targets["ven_id"]]
    test_event = descriptor.get("test_event", False)
    return _Parsed(
        event_id=event_id,
        modification_number=number,
        status=str(descriptor.get("event_status") or "").lower(),
        response_required=str(event.get("response_required", "always")).lower() != "never",
        # openleadr turns any testEvent other than "false" into True (conformance rule 006)
        test_event=bool(test_event) and str(test_event).lower() != "false",
        priority=priority,
        start=start,
        duration=duration,
        ramp_up=ramp_up,
        signals=[s for s in signals if isinstance(s, Mapping)],
        target_ven_ids=target_ven_ids,
    )


def _interval_times(start: datetime, intervals: list[Any]) -> list[tuple[datetime, datetime, Any]]:
    """Lay the intervals back to back from ``start``; each must have a positive duration."""
    laid: list[tuple[datetime, datetime, Any]] = []
    cursor = start
    if not intervals:
        raise MalformedEvent("signal has no intervals")
    for index, interval in enumerate(intervals):
        if not isinstance(interval, Mapping):
            raise MalformedEvent(f"interval {index} is not a mapping")
        duration = interval.get("duration")
        if not isinstance(duration, timedelta) or duration <= timedelta(0):
            raise MalformedEvent(
                f"interval {index} has no positive duration ({duration!r}); open-ended events are not supported"
            )
        payload = interval.get("signal_payload")
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            raise MalformedEvent(f"interval {index} has no numeric signal_payload ({payload!r})")
        laid.append((cursor, cursor + duration, payload))
        cursor += duration
    return laid


class _Unsupported(ValueError):
    """A signal the VEN cannot act on; the message is the opt-out reason."""


def _convert_signal(
    signal: Mapping[str, Any], start: datetime, config: PolicyConfig
) -> tuple[str, str, tuple[SignalInterval, ...]]:
    name = str(signal.get("signal_name", "")).upper()
    signal_type = str(signal.get("signal_type", ""))
    laid = _interval_times(start, list(signal.get("intervals") or []))
    out: list[SignalInterval] = []
    if name == SIGNAL_SIMPLE:
        if signal_type != "level":
            raise _Unsupported(f"SIMPLE signal of type {signal_type!r} is not supported (only level)")
        for begin, end, payload in laid:
            if payload != int(payload) or not 0 <= payload <= 3:
                raise _Unsupported(f"SIMPLE level {payload!r} is outside 0..3")
            level = int(payload)
            out.append(SignalInterval(start=begin, end=end, shed_kw=config.simple_levels_kw[level], level=level))
        return SIGNAL_SIMPLE, "level", tuple(out)
    if name == SIGNAL_LOAD_DISPATCH:
        if signal_type not in ("delta", "setpoint"):
            raise _Unsupported(f"LOAD_DISPATCH signal of type {signal_type!r} is not supported (delta, setpoint)")
        try:
            factor = power_kw_factor(signal.get("measurement"))
        except ValueError as exc:
            raise _Unsupported(str(exc)) from exc
        for begin, end, payload in laid:
            value_kw = float(payload) * factor
            if value_kw < 0:
                what = "a load increase" if signal_type == "delta" else "a negative setpoint"
                raise _Unsupported(f"LOAD_DISPATCH {signal_type} {payload!r} asks for {what}: not supported")
            if signal_type == "delta":
                out.append(SignalInterval(start=begin, end=end, shed_kw=value_kw))
            else:
                out.append(SignalInterval(start=begin, end=end, setpoint_kw=value_kw))
        return SIGNAL_LOAD_DISPATCH, signal_type, tuple(out)
    raise _Unsupported(f"signal {signal.get('signal_name')!r}/{signal_type!r} is not supported")


def _choose_signal(
    parsed: _Parsed, config: PolicyConfig
) -> tuple[str, str, tuple[SignalInterval, ...]]:
    """LOAD_DISPATCH before SIMPLE; the first supported one wins; else the first reason."""
    if not parsed.signals:
        raise _Unsupported("event has no signal")
    order = sorted(
        parsed.signals,
        key=lambda s: 0 if str(s.get("signal_name", "")).upper() == SIGNAL_LOAD_DISPATCH else
        1 if str(s.get("signal_name", "")).upper() == SIGNAL_SIMPLE else 2,
    )
    reasons: list[str] = []
    for signal in order:
        try:
            return _convert_signal(signal, parsed.start, config)
        except _Unsupported as exc:
            reasons.append(str(exc))
    raise _Unsupported("; ".join(reasons))


def _capacity_reason(
    intervals: tuple[SignalInterval, ...], sheddable_kw: float | None, site_power_kw: float | None
) -> str | None:
    """Why the site cannot do what the event asks, or ``None`` when it can (or cannot tell)."""
    if sheddable_kw is None:
        return None
    needed = 0.0
    for interval in intervals:
        if interval.shed_kw is not None:
            needed = max(needed, interval.shed_kw)
        elif site_power_kw is not None and interval.setpoint_kw is not None:
            needed = max(needed, site_power_kw - interval.setpoint_kw)
    if needed > sheddable_kw + _EPSILON_KW:
        return f"asked to shed {needed:.3f} kW but only {sheddable_kw:.3f} kW is sheddable"
    return None


def handle_event(
    store: EventStore,
    event: Mapping[str, Any],
    *,
    now: datetime,
    config: PolicyConfig,
    sheddable_kw: float | None = None,
    site_power_kw: float | None = None,
    vtn_id: str | None = None,
    ven_id: str | None = None,
    received_at: float | None = None,
) -> tuple[Decision, EventStore]:
    """Apply the VEN rules (module docstring) to one openleadr event dict at ``now``.

    ``sheddable_kw`` is what the EMS can shed now and ``site_power_kw`` the site's import (both
    ``None`` when unknown); ``received_at`` (epoch seconds) defaults to ``now``. Returns the
    decision and the new store (the same object when nothing changed). Never raises for a bad
    event: a malformed one is opted out with the reason.
    """
    _aware(now, "now")
    received = now.timestamp() if received_at is None else received_at

    try:
        event_id, number = _identity(event)
    except MalformedEvent as exc:
        return Decision(
            None, None, OPT_OUT, f"malformed event: {exc}", False, False, "malformed", CODE_INVALID_DATA
        ), store
    required = str(event.get("response_required", "always")).lower() != "never"
    stored = store.get(event_id)
    status = str(event["event_descriptor"].get("event_status") or "").lower()

    if stored is not None and number < stored.modification_number:
        reason = f"stale modification {number} < stored {stored.modification_number}: not applied"
        return Decision(event_id, number, stored.opt, reason, required, False, "stale"), store
    if stored is not None and number == stored.modification_number and (
        status != "cancelled" or stored.cancelled
    ):
        return Decision(event_id, number, stored.opt, stored.opt_reason, required, False, "duplicate"), store

    try:
        parsed = _parse(event)
    except MalformedEvent as exc:
        reason = f"malformed event: {exc}"
        return Decision(event_id, number, OPT_OUT, reason, required, False, "malformed", CODE_INVALID_DATA), store

    end = parsed.start + parsed.duration
    near_from = parsed.start - parsed.ramp_up if parsed.ramp_up else None

    if parsed.status == "cancelled":
        if stored is not None:
            cancelled = replace(
                stored, modification_number=number, cancelled=True, cancelled_at=now,
                opt_reason="cancelled by the VTN", received_at=received,
            )
        else:
            cancelled = StoredEvent(
                event_id=event_id, modification_number=number, signal="", signal_type="",
                start=parsed.start, end=max(end, parsed.start), intervals=(), opt=OPT_IN,
                opt_reason="cancelled by the VTN", received_at=received, vtn_id=vtn_id,
                test_event=parsed.test_event, cancelled=True, cancelled_at=now,
                priority=parsed.priority, near_from=near_from,
            )
        decision = Decision(
            event_id, number, OPT_IN, "cancellation acknowledged", parsed.response_required, True, "cancelled"
        )
        return decision, store.with_event(cancelled)

    if parsed.duration > timedelta(0) and end <= now:
        decision = Decision(
            event_id, number, OPT_OUT, "event had already finished when it was received", False,
            stored is not None, "dropped",
        )
        return decision, store.without(event_id)

    action = "new" if stored is None else "modified"
    code = CODE_OK
    signal_name = str(parsed.signals[0].get("signal_name", "")) if parsed.signals else ""
    signal_type = str(parsed.signals[0].get("signal_type", "")) if parsed.signals else ""
    intervals: tuple[SignalInterval, ...] = ()
    opt, reason = OPT_IN, "accepted"
    try:
        signal_name, signal_type, intervals = _choose_signal(parsed, config)
    except _Unsupported as exc:
        opt, reason, code = OPT_OUT, f"unsupported: {exc}", CODE_SIGNAL_NOT_SUPPORTED
    except MalformedEvent as exc:
        opt, reason, code, action = OPT_OUT, f"malformed event: {exc}", CODE_INVALID_DATA, "malformed"

    if intervals:
        end = intervals[-1].end
    if opt == OPT_IN and parsed.test_event:
        reason, action = "test event: acknowledged, not applied", "test"
    elif opt == OPT_IN and ven_id is not None and parsed.target_ven_ids is not None \
            and ven_id not in parsed.target_ven_ids:
        opt, code = OPT_OUT, CODE_TARGET_MISMATCH
        reason = f"not targeted: event targets {parsed.target_ven_ids}, this VEN is {ven_id!r}"
    elif opt == OPT_IN:
        capacity = _capacity_reason(intervals, sheddable_kw, site_power_kw)
        if capacity is not None:
            opt, reason = OPT_OUT, f"insufficient capacity: {capacity}"

    new = StoredEvent(
        event_id=event_id, modification_number=number, signal=signal_name, signal_type=signal_type,
        start=parsed.start, end=max(end, parsed.start), intervals=intervals, opt=opt, opt_reason=reason,
        received_at=received, vtn_id=vtn_id, test_event=parsed.test_event, priority=parsed.priority,
        near_from=near_from,
    )
    decision = Decision(event_id, number, opt, reason, parsed.response_required, True, action, code)
    return decision, store.with_event(new)


def _priority_rank(priority: int) -> float:
    """Bigger is more important: OpenADR priority 1 is highest, 0 is unspecified (lowest)."""
    return -float(priority) if priority > 0 else -math.inf


def effective_request(
    store: EventStore, now: datetime, *, site_power_kw: float | None = None
) -> ActiveRequest | None:
    """The request in force at ``now`` (overlap rule in the module docstring), or ``None``."""
    _aware(now, "now")
    candidates: list[tuple[tuple[float, float, int, float], StoredEvent, int, SignalInterval]] = []
    for event in store:
        if not event.applied:
            continue
        found = event.interval_at(now)
        if found is None:
            continue
        index, interval = found
        if interval.shed_kw is not None:
            equivalent = interval.shed_kw
        elif site_power_kw is not None and interval.setpoint_kw is not None:
            equivalent = max(0.0, site_power_kw - interval.setpoint_kw)
        else:
            equivalent = 0.0
        key = (equivalent, _priority_rank(event.priority), event.modification_number, event.received_at)
        candidates.append((key, event, index, interval))
    if not candidates:
        return None
    _, winner, index, interval = max(candidates, key=lambda c: c[0])
    until = next_boundary(store, now, applied_only=True) or interval.end
    return ActiveRequest(
        event_id=winner.event_id,
        modification_number=winner.modification_number,
        interval_index=index,
        shed_kw=interval.shed_kw,
        setpoint_kw=interval.setpoint_kw,
        level=interval.level,
        until=min(until, interval.end),
        received_at=winner.received_at,
        signal=winner.signal,
        signal_type=winner.signal_type,
    )


def next_boundary(store: EventStore, now: datetime, *, applied_only: bool = False) -> datetime | None:
    """The first instant after ``now`` at which an event's status or request changes.

    The VEN agent schedules a re-publish there. With ``applied_only``, only events that shape the
    site count (what :attr:`ActiveRequest.until` needs).
    """
    _aware(now, "now")
    future = [
        moment
        for event in store
        if not event.cancelled and (event.applied or not applied_only)
        for moment in event.boundaries()
        if moment > now
    ]
    return min(future) if future else None


def prune(store: EventStore, now: datetime, config: PolicyConfig) -> EventStore:
    """Forget completed and cancelled events older than ``config.retention_s``."""
    _aware(now, "now")
    horizon = now - timedelta(seconds=config.retention_s)
    keep = {
        event.event_id: event
        for event in store
        if not ((event.cancelled and event.cancelled_at is not None and event.cancelled_at <= horizon)
                or (not event.cancelled and event.end <= horizon))
    }
    if len(keep) == len(store):
        return store
    return EventStore(keep)
