"""The EMS's curtailment state, without the bus: DR request in, circuit levels out.

:class:`CurtailmentController` keeps what the EMS knows (the request in force, the latest site
power, each circuit's last known level) and answers what to command next. The agent feeds it bus
messages and set_point results and sends the commands it returns; no volttron, no gevent, no
clock of its own (``now`` is passed in), so every rule here is unit-tested directly.

Rules:

- A DR request is identified by ``(event_id, modification_number, interval_index, shed_kw,
  setpoint_kw)``; a new key is planned, the same key again is ignored.
- ``shed_kw`` is curtailed as such; ``setpoint_kw`` caps the site's *baseline* power (measured
  power plus what the EMS is shedding now) at that limit.
- A request that goes away (``active`` null: cancelled, expired) restores every circuit the EMS
  switched or dimmed; so does ``until`` passing without word from the VEN.
- :meth:`restore` restores now and ignores the request in force until a new or modified one comes.
- Only circuits the EMS changes are commanded: critical circuits and circuits a plan leaves
  alone are never written. A failed write stays pending and is returned again next time.
- A circuit whose point the relay device does not have (:meth:`set_point_status`) is planned as
  unswitchable until it shows up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from gridedge.domain.curtailment import CurtailmentPlan, cap, curtail, sheddable_kw
from gridedge_ems.config import EmsConfig

__all__ = ["MANUAL_EVENT_ID", "ActiveRequest", "CurtailmentController"]

#: ``event_id`` of a shed asked for through the ``shed`` RPC.
MANUAL_EVENT_ID = "manual"

#: Levels closer than this are the same (PWM duty read back through a pin is a float).
_LEVEL_TOLERANCE = 1e-3


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number or null, got {value!r}")
    return float(value)


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ActiveRequest:
    """The ``active`` member of a ``gridedge/dr/events`` message: what the VEN asks for now."""

    event_id: str | None
    modification_number: int | None = None
    interval_index: int | None = None
    shed_kw: float | None = None
    setpoint_kw: float | None = None
    level: Any = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.shed_kw is not None and self.shed_kw < 0:
            raise ValueError(f"shed_kw must be >= 0, got {self.shed_kw}")

    @classmethod
    def from_bus(cls, data: Mapping[str, Any]) -> ActiveRequest:
        """Parse the bus form; ValueError if a field is malformed."""
        if not isinstance(data, Mapping):
            # ValueError like every other malformed message: the agent logs and ignores those
            raise ValueError(f"active must be an object or null, got {type(data).__name__}")  # noqa: TRY004
        try:
            mod = data.get("modification_number")
            idx = data.get("interval_index")
            return cls(
                event_id=None if data.get("event_id") is None else str(data["event_id"]),
                modification_number=None if mod is None else int(mod),
                interval_index=None if idx is None else int(idx),
                shed_kw=_opt_float(data, "shed_kw"),
                setpoint_kw=_opt_float(data, "setpoint_kw"),
                level=data.get("level"),
                until=_parse_time(data.get("until")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed active request {dict(data)!r}: {exc}") from exc

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two requests the same request."""
        return (self.event_id, self.modification_number, self.interval_index, self.shed_kw,
                self.setpoint_kw)


class CurtailmentController:
    """Curtailment state of one site (see the module docstring for the rules)."""

    def __init__(self, *, config: EmsConfig) -> None:
        self._config = config
        self._request: ActiveRequest | None = None
        self._last_dr_key: tuple[Any, ...] | None = None
        self._ignored_key: tuple[Any, ...] | None = None
        self._plan: CurtailmentPlan | None = None
        self._target: dict[str, float] = {}
        self._level: dict[str, float] = {}
        self._touched: set[str] = set()
        self._usable: dict[str, bool] = {}
        self._errors: dict[str, str] = {}
        self._site_power_w: float | None = None

    # -- inputs ----------------------------------------------------------------------------------

    @property
    def config(self) -> EmsConfig:
        """The configuration in use."""
        return self._config

    def reconfigure(self, config: EmsConfig) -> None:
        """Take a new configuration; forget circuits that are gone (their state is no longer ours)
        and re-plan the request in force."""
        ids = {c.id for c in config.circuits}
        self._config = config
        for table in (self._target, self._level, self._usable, self._errors):
            for cid in [k for k in table if k not in ids]:
                del table[cid]
        self._touched &= ids
        self._replan()

    def set_point_status(self, circuit_id: str, *, level: float | None = None,
                         error: str | None = None) -> bool:
        """Record whether the relay device has this circuit's point (``error`` if not) and its
        level as read; return True if the circuit became usable or unusable."""
        usable = error is None
        changed = self._usable.get(circuit_id) != usable
        self._usable[circuit_id] = usable
        if usable:
            if level is not None and circuit_id not in self._level:
                self._level[circuit_id] = float(level)
            self._errors.pop(circuit_id, None)
        else:
            self._errors[circuit_id] = error or "point missing"
        if changed:
            self._replan()
        return changed

    def unverified(self) -> list[str]:
        """Circuits whose point has not been confirmed on the relay device yet."""
        return [c.id for c in self._config.circuits if not self._usable.get(c.id)]

    def on_dr_message(self, message: Mapping[str, Any]) -> bool:
        """Take a ``gridedge/dr/events`` message; True if the curtailment changed. ValueError if
        the message is malformed (the state is then unchanged)."""
        if not isinstance(message, Mapping) or "active" not in message:
            raise ValueError("a gridedge/dr/events message needs an 'active' member")
        raw = message["active"]
        active = None if raw is None else ActiveRequest.from_bus(raw)
        key = None if active is None else active.key
        if key == self._last_dr_key:
            return False
        self._last_dr_key = key
        if active is None:
            self._ignored_key = None
            return self._restore_all()
        if key == self._ignored_key:
            return False
        self._ignored_key = None
        self._request = active
        self._replan()
        return True

    def on_site_power(self, power_w: float) -> None:
        """Take the latest measured site power, W (positive = import)."""
        self._site_power_w = float(power_w)

    def shed(self, shed_kw: float) -> None:
        """A manual shed (replaces any request in force until the next DR change); 0 restores."""
        if not math.isfinite(shed_kw) or shed_kw < 0:
            raise ValueError(f"shed_kw must be a finite number >= 0, got {shed_kw}")
        if shed_kw == 0:
            self._restore_all()
            return
        self._request = ActiveRequest(event_id=MANUAL_EVENT_ID, shed_kw=float(shed_kw))
        self._replan()

    def restore(self) -> None:
        """Restore every circuit now and ignore the DR request in force until a new one comes."""
        if self._last_dr_key is not None:
            self._ignored_key = self._last_dr_key
        self._restore_all()

    def tick(self, now: datetime) -> bool:
        """Periodic work: end a request whose ``until`` passed; follow a setpoint as site power
        moves. True if the curtailment changed."""
        request = self._request
        if request is not None and request.until is not None and now >= request.until:
            self._ignored_key = request.key  # the VEN may still repeat it; it is over
            return self._restore_all()
        if request is not None and request.setpoint_kw is not None:
            before = dict(self._target)
            self._replan()
            return before != self._target
        return False

    # -- set_point results -----------------------------------------------------------------------

    def commands(self) -> list[tuple[str, float]]:
        """(circuit id, level) for every circuit whose target differs from its known level."""
        out = []
        for c in self._config.circuits:
            if c.id not in self._target or self._usable.get(c.id) is False:
                continue
            target = self._target[c.id]
            known = self._level.get(c.id)
            if known is None or abs(known - target) > _LEVEL_TOLERANCE:
                out.append((c.id, target))
        return out

    def applied(self, circuit_id: str, level: float) -> None:
        """A set_point went through; ``level`` is what the driver read back."""
        self._level[circuit_id] = float(level)
        self._errors.pop(circuit_id, None)
        if level < 1.0 - _LEVEL_TOLERANCE:
            self._touched.add(circuit_id)
        else:
            self._touched.discard(circuit_id)

    def failed(self, circuit_id: str, error: str) -> None:
        """A set_point failed; the command stays pending."""
        self._errors[circuit_id] = error

    # -- outputs ---------------------------------------------------------------------------------

    @property
    def request(self) -> ActiveRequest | None:
        """The request in force (DR or manual), if any."""
        return self._request

    @property
    def plan(self) -> CurtailmentPlan | None:
        """The plan of the request in force."""
        return self._plan

    def status(self, now: datetime) -> dict[str, Any]:
        """The ``gridedge/ems/curtailment`` message."""
        plan = self._plan
        circuits = []
        for c in self._config.circuits:
            level = self._level.get(c.id)
            circuits.append({
                "id": c.id,
                "name": c.name or c.id,
                "enabled": None if level is None else level > 0.0,
                "level": level,
                "power_w": None if level is None else c.nominal_w * level,
                "critical": c.critical,
                "priority": c.priority,
            })
        return {
            "active": self._request is not None,
            "event_id": None if self._request is None else self._request.event_id,
            "requested_kw": 0.0 if plan is None else plan.requested_kw,
            "planned_kw": 0.0 if plan is None else plan.achieved_kw,
            "feasible": True if plan is None else plan.feasible,
            "shortfall_kw": 0.0 if plan is None else plan.shortfall_kw,
            "sheddable_kw": sheddable_kw(self._planner_circuits()),
            "site_power_w": self._site_power_w,
            "circuits": circuits,
            "ts": now.astimezone(timezone.utc).isoformat(),
        }

    def errors(self) -> dict[str, str]:
        """Circuit id -> the last error writing or finding it."""
        return dict(self._errors)

    # -- internals -------------------------------------------------------------------------------

    def _planner_circuits(self) -> list[Any]:
        return [c.planner_circuit(usable=bool(self._usable.get(c.id))) for c in self._config.circuits]

    def _baseline_site_kw(self) -> float:
        """Site power without the EMS's curtailment: measured power plus what is shed now."""
        nominal_kw = sum(c.nominal_w for c in self._config.circuits) / 1000.0
        if self._site_power_w is None:
            return nominal_kw
        shed_now_kw = sum(c.nominal_w * (1.0 - self._level.get(c.id, 1.0))
                          for c in self._config.circuits) / 1000.0
        return self._site_power_w / 1000.0 + shed_now_kw

    def _replan(self) -> None:
        request = self._request
        if request is None:
            return
        circuits = self._planner_circuits()
        if request.shed_kw is not None:
            plan: CurtailmentPlan | None = curtail(circuits, request.shed_kw)
        elif request.setpoint_kw is not None:
            uncontrolled_kw = self._baseline_site_kw() - sum(c.power_kw for c in circuits)
            plan = cap(circuits, request.setpoint_kw - uncontrolled_kw)
        else:
            plan = None  # a request with no kW (a bare level the VEN could not map) sheds nothing
        self._plan = plan
        levels = {} if plan is None else plan.levels
        self._target = {
            cid: levels.get(cid, 1.0)
            for cid in [c.id for c in self._config.circuits]
            if levels.get(cid, 1.0) < 1.0 - _LEVEL_TOLERANCE or cid in self._touched
            or cid in self._target
        }

    def _restore_all(self) -> bool:
        was_active = self._request is not None or bool(self._touched)
        self._request = None
        self._plan = None
        self._target = {cid: 1.0 for cid in self._touched | set(self._target)}
        return was_active
