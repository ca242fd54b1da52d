"""A demo/test OpenADR 2.0b VTN: openleadr's ``OpenADRServer`` plus a small JSON control surface.

The OpenADR side (default ``http://127.0.0.1:8080/OpenADR2/Simple/2.0b``) accepts any VEN name
(auto-registration; a VEN keeps its ven_id across re-registrations), asks for a 1 s poll, requests
every TELEMETRY_USAGE report a VEN offers and records the values, and records every opt answer
(with its modification number, response code and description) per VEN.

The control surface (default ``http://127.0.0.1:8081``, a second aiohttp app on the same loop):

- ``POST /events`` — create an event: exactly one of ``shed_kw`` (LOAD_DISPATCH delta),
  ``setpoint_kw`` (LOAD_DISPATCH setpoint) or ``level`` (SIMPLE 0–3), each a number or a list
  (one value per interval, the duration split evenly), or ``intervals`` ``[{"duration_s", "value"}]``
  with ``signal`` ``shed_kw|setpoint_kw|level``; plus ``duration_s`` (300), ``start_in_s`` (0),
  ``priority``, ``test_event``, ``response_required`` (always|never), ``ramp_up_s``,
  ``wire_unit`` (W|kW|MW: the powerReal unit put on the wire) and ``ven_ids`` (default: every VEN,
  including those that register later). Answers ``201 {"event_id", "modification_number"}``.
- ``POST /events/{id}`` — modify: the same body; the modification number goes up by one.
- ``POST /events/{id}/cancel`` — cancel.
- ``GET /state`` — registered VENs, events with their opt responses, received reports.

Errors answer ``{"error": text}`` with 400 (bad request) or 404 (unknown event).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gridedge.errors import ConfigError

__all__ = ["DemoVtn", "EventRequest", "IntervalSpec", "VtnConfig", "VtnThread", "serve"]

_log = logging.getLogger(__name__)

_SIGNALS: dict[str, tuple[str, str]] = {
    "shed_kw": ("LOAD_DISPATCH", "delta"),
    "setpoint_kw": ("LOAD_DISPATCH", "setpoint"),
    "level": ("SIMPLE", "level"),
}
_WIRE_SCALE = {"W": ("none", 1000.0), "kW": ("k", 1.0), "MW": ("M", 0.001)}


class VtnConfig(BaseModel):
    """Where the demo VTN listens and what it asks of its VENs (ports 0 pick free ports)."""

    model_config = ConfigDict(extra="forbid")

    vtn_id: str = Field("GRIDEDGE-VTN", min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    control_host: str = "127.0.0.1"
    control_port: int = Field(8081, ge=0, le=65535)
    path_prefix: str = "/OpenADR2/Simple/2.0b"
    poll_interval_s: float = Field(1.0, gt=0)
    report_sampling_s: int = Field(2, ge=1, le=3600)
    max_report_values: int = Field(1000, ge=1)
    market_context: str = "oadr://gridedge.demo"


class IntervalSpec(BaseModel):
    """One interval of a multi-interval event: how long, and the value of the event's signal."""

    model_config = ConfigDict(extra="forbid")

    duration_s: float = Field(gt=0)
    value: float


class EventRequest(BaseModel):
    """A create/modify request of the control surface (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    shed_kw: float | list[float] | None = None
    setpoint_kw: float | list[float] | None = None
    level: int | list[int] | None = None
    signal: Literal["shed_kw", "setpoint_kw", "level"] | None = None
    intervals: list[IntervalSpec] | None = None
    duration_s: float = Field(300.0, gt=0)
    start_in_s: float = Field(0.0, ge=0)
    priority: int = Field(0, ge=0)
    test_event: bool = False
    response_required: Literal["always", "never"] = "always"
    ramp_up_s: float | None = Field(None, gt=0)
    wire_unit: Literal["W", "kW", "MW"] = "kW"
    ven_ids: list[str] | None = None

    @model_validator(mode="after")
    def _one_signal(self) -> EventRequest:
        given = [name for name in _SIGNALS if getattr(self, name) is not None]
        if self.intervals is not None:
            if given or self.signal is None:
                raise ValueError("with 'intervals', give 'signal' and none of shed_kw/setpoint_kw/level")
            if not self.intervals:
                raise ValueError("'intervals' must not be empty")
        elif len(given) != 1:
            raise ValueError("give exactly one of shed_kw, setpoint_kw, level (or intervals + signal)")
        key = self.signal_key()
        for _, value in self.interval_list():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} values must be finite and >= 0, got {value}")
            if key == "level" and (value != int(value) or value > 3):
                raise ValueError(f"SIMPLE level must be 0..3, got {value}")
        return self

    def signal_key(self) -> str:
        """Which of shed_kw / setpoint_kw / level this event carries."""
        if self.signal is not None and self.intervals is not None:
            return self.signal
        return next(name for name in _SIGNALS if getattr(self, name) is not None)

    def interval_list(self) -> list[tuple[float, float]]:
        """``[(duration_s, value)]`` with the values in the request's own units (kW or level)."""
        if self.intervals is not None:
            return [(i.duration_s, i.value) for i in self.intervals]
        raw = getattr(self, self.signal_key())
        values = list(raw) if isinstance(raw, list) else [raw]
        if not values:
            raise ValueError("no interval values")
        each = self.duration_s / len(values)
        return [(each, float(v)) for v in values]


@dataclass
class _EventRecord:
    """The VTN's own view of one event (the openleadr per-VEN copies are built from it)."""

    event_id: str
    request: EventRequest
    start: datetime
    created_at: datetime
    modification_number: int = 0
    cancelled: bool = False
    target_all: bool = True
    ven_ids: list[str] = field(default_factory=list)
    #: ven_id -> every oadrCreatedEvent answer, oldest first
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=sum(d for d, _ in self.request.interval_list()))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class DemoVtn:
    """The demo VTN; every method except :meth:`start`/:meth:`stop` runs on its asyncio loop."""

    def __init__(self, *, config: VtnConfig, clock: Callable[[], datetime] | None = None) -> None:
        from openleadr import OpenADRServer

        self.config = config
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._server = OpenADRServer(
            vtn_id=config.vtn_id,
            http_host=config.host,
            http_port=config.port,
            http_path_prefix=config.path_prefix,
            requested_poll_freq=timedelta(seconds=config.poll_interval_s),
            ven_lookup=self._ven_lookup,
            show_fingerprint=False,
        )
        self._server.add_handler("on_create_party_registration", self._on_create_party_registration)
        self._server.add_handler("on_cancel_party_registration", self._on_cancel_party_registration)
        self._server.add_handler("on_register_report", self._on_register_report)
        event_service = self._server.services["event_service"]
        self._original_created_event = event_service.handlers["oadrCreatedEvent"]
        event_service.handlers["oadrCreatedEvent"] = self._on_created_event
        self._vens: dict[str, dict[str, Any]] = {}  # ven_id -> info
        self._ven_ids_by_name: dict[str, str] = {}
        self._events: dict[str, _EventRecord] = {}
        self._reports: dict[str, deque[dict[str, Any]]] = {}
        self._runners: list[web.AppRunner] = []
        self.port: int | None = None
        self.control_port: int | None = None
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def openadr_url(self) -> str:
        """The URL a VEN is configured with (``vtn_url``)."""
        return f"http://{self.config.host}:{self.port}{self.config.path_prefix}"

    @property
    def control_url(self) -> str:
        """The base URL of the JSON control surface."""
        return f"http://{self.config.control_host}:{self.control_port}"

    async def start(self) -> None:
        """Listen on both ports (on the running loop)."""
        self.port = await self._listen(self._server.app, self.config.host, self.config.port)
        self._server.app_runner = self._runners[-1]
        control = web.Application()
        control.add_routes([
            web.get("/state", self._http_state),
            web.post("/events", self._http_create),
            web.post("/events/{event_id}", self._http_modify),
            web.post("/events/{event_id}/cancel", self._http_cancel),
        ])
        self.control_port = await self._listen(control, self.config.control_host, self.config.control_port)
        _log.info("VTN %s: OpenADR at %s, control at %s", self.config.vtn_id, self.openadr_url, self.control_url)

    async def _listen(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host=host, port=port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # the real port when port 0 was asked

    async def stop(self) -> None:
        """Close both listeners."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    # -- OpenADR handlers ------------------------------------------------------------------------

    def _ven_lookup(self, ven_id: str) -> dict[str, Any] | None:
        info = self._vens.get(ven_id)
        if info is None or not info.get("registration_id"):
            return None
        return {"ven_id": ven_id, "ven_name": info["ven_name"], "fingerprint": None,
                "registration_id": info["registration_id"]}

    def _on_create_party_registration(self, payload: dict[str, Any]) -> tuple[str, str]:
        from openleadr import utils

        ven_name = str(payload.get("ven_name") or payload.get("ven_id") or "unnamed")
        ven_id = self._ven_ids_by_name.get(ven_name) or f"VEN-{utils.generate_id()[:8].upper()}"
        self._ven_ids_by_name[ven_name] = ven_id
        registration_id = utils.generate_id()
        now = self._clock()
        info = self._vens.setdefault(ven_id, {"ven_name": ven_name, "registered_at": None})
        info.update(registration_id=registration_id, registered_at=_iso(now))
        for record in self._events.values():
            if record.target_all and ven_id not in record.ven_ids and not record.cancelled and record.end > now:
                record.ven_ids.append(ven_id)
                self._deliver(record, ven_id, new=True)
        _log.info("VEN %r registered as %s", ven_name, ven_id)
        return ven_id, registration_id

    def _on_cancel_party_registration(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        ven_id = payload.get("ven_id")
        if ven_id in self._vens:
            self._vens[ven_id]["registration_id"] = None
        return "oadrCanceledPartyRegistration", {"registration_id": payload.get("registration_id"),
                                                  "ven_id": ven_id}

    def _on_register_report(
        self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
        min_sampling_interval: timedelta, max_sampling_interval: timedelta,
    ) -> tuple[Callable[[list[tuple[datetime, float]]], None], timedelta]:
        wanted = timedelta(seconds=self.config.report_sampling_s)
        sampling = min(max(wanted, min_sampling_interval), max_sampling_interval)
        store = self._reports.setdefault(ven_id, deque(maxlen=self.config.max_report_values))

        def record(values: list[tuple[datetime, float]]) -> None:
            now = self._clock()
            for moment, value in values:
                store.append({"ts": _iso(moment), "value": value, "received_at": _iso(now),
                              "resource_id": resource_id, "measurement": measurement,
                              "unit": unit, "scale": scale})

        _log.info("VTN requests %s/%s from %s every %s", resource_id, measurement, ven_id, sampling)
        return record, sampling

    async def _on_created_event(self, payload: dict[str, Any]) -> Any:
        ven_id = payload.get("ven_id")
        now = self._clock()
        for answer in payload.get("event_responses") or []:
            record = self._events.get(str(answer.get("event_id")))
            if record is None:
                continue
            record.responses.setdefault(str(ven_id), []).append({
                "opt": answer.get("opt_type"),
                "modification_number": answer.get("modification_number"),
                "response_code": answer.get("response_code"),
                "description": answer.get("response_description"),
                "at": _iso(now),
            })
        return await self._original_created_event(payload)

    # -- events ----------------------------------------------------------------------------------

    def _build(self, record: _EventRecord, ven_id: str, status: str | None = None) -> Any:
        from openleadr import enums, objects, utils

        request = record.request
        key = request.signal_key()
        signal_name, signal_type = _SIGNALS[key]
        scale, factor = _WIRE_SCALE[request.wire_unit]
        intervals = []
        cursor = record.start
        for uid, (duration_s, value) in enumerate(request.interval_list()):
            payload = int(value) if key == "level" else value * factor
            intervals.append(objects.Interval(dtstart=cursor, duration=timedelta(seconds=duration_s),
                                              signal_payload=payload, uid=uid))
            cursor += timedelta(seconds=duration_s)
        measurement = None
        if signal_name == "LOAD_DISPATCH":
            measurement = replace(enums.MEASUREMENTS.POWER_REAL, scale=scale)
        signal = objects.EventSignal(intervals=intervals, signal_name=signal_name, signal_type=signal_type,
                                     signal_id=f"{record.event_id}-s0", measurement=measurement)
        period = objects.ActivePeriod(
            dtstart=record.start, duration=cursor - record.start,
            ramp_up_period=timedelta(seconds=request.ramp_up_s) if request.ramp_up_s else None,
        )
        descriptor = objects.EventDescriptor(
            event_id=record.event_id, modification_number=record.modification_number,
            market_context=self.config.market_context, event_status="far",
            created_date_time=record.created_at, modification_date_time=self._clock(),
            priority=request.priority, test_event=request.test_event,
        )
        event = objects.Event(event_descriptor=descriptor, event_signals=[signal], active_period=period,
                              targets=[objects.Target(ven_id=ven_id)],
                              response_required=request.response_required)
        if status is not None:
            utils.setmember(event, "event_descriptor.event_status", status)
        return event

    def _deliver(self, record: _EventRecord, ven_id: str, *, new: bool) -> None:
        from openleadr import utils

        queue = self._server.events.setdefault(ven_id, [])
        event = self._build(record, ven_id, "cancelled" if record.cancelled else None)
        existing = utils.find_by(queue, "event_descriptor.event_id", record.event_id)
        if existing is not None and not new:
            queue[queue.index(existing)] = event
        else:
            queue.append(event)
        self._server.events_updated[ven_id] = True

    def create_event(self, request: EventRequest) -> dict[str, Any]:
        """Create an event for the requested (or all current and future) VENs."""
        from openleadr import utils

        now = self._clock()
        self._counter += 1
        event_id = f"evt-{self._counter}-{utils.generate_id()[:6]}"
        record = _EventRecord(
            event_id=event_id, request=request, start=now + timedelta(seconds=request.start_in_s),
            created_at=now, target_all=request.ven_ids is None,
            ven_ids=list(request.ven_ids) if request.ven_ids is not None else
            [v for v, info in self._vens.items() if info.get("registration_id")],
        )
        self._events[event_id] = record
        for ven_id in record.ven_ids:
            self._deliver(record, ven_id, new=True)
        _log.info("event %s created for %s", event_id, record.ven_ids or "future VENs")
        return {"event_id": event_id, "modification_number": 0, "ven_ids": record.ven_ids}

    def modify_event(self, event_id: str, request: EventRequest) -> dict[str, Any]:
        """Replace an event's signal and timing; its modification number goes up by one."""
        record = self._record(event_id)
        if record.cancelled:
            raise ValueError(f"event {event_id} is cancelled")
        record.request = request
        record.start = self._clock() + timedelta(seconds=request.start_in_s)
        record.modification_number += 1
        for ven_id in record.ven_ids:
            self._deliver(record, ven_id, new=False)
        return {"event_id": event_id, "modification_number": record.modification_number}

    def cancel_event(self, event_id: str) -> dict[str, Any]:
        """Cancel an event at every VEN it went to."""
        record = self._record(event_id)
        if not record.cancelled:
            record.cancelled = True
            record.modification_number += 1
            for ven_id in record.ven_ids:
                self._deliver(record, ven_id, new=False)
        return {"event_id": event_id, "modification_number": record.modification_number, "cancelled": True}

    def add_raw_event(self, ven_id: str, event: Any) -> None:
        """Queue an openleadr ``objects.Event`` as is (tests use it for malformed events)."""
        self._server.add_raw_event(ven_id=ven_id, event=event, callback=_ignore_opt)

    def _record(self, event_id: str) -> _EventRecord:
        try:
            return self._events[event_id]
        except KeyError:
            raise KeyError(f"unknown event {event_id!r}") from None

    def state(self) -> dict[str, Any]:
        """Registered VENs, events with their opt answers, received reports (JSON-ready)."""
        now = self._clock()
        events = []
        for record in self._events.values():
            status = "cancelled" if record.cancelled else (
                "completed" if now >= record.end else "active" if now >= record.start else "far")
            key = record.request.signal_key()
            signal_name, signal_type = _SIGNALS[key]
            cursor = record.start
            intervals = []
            for duration_s, value in record.request.interval_list():
                end = cursor + timedelta(seconds=duration_s)
                intervals.append({"start": _iso(cursor), "end": _iso(end), key: value})
                cursor = end
            events.append({
                "event_id": record.event_id, "modification_number": record.modification_number,
                "status": status, "signal": signal_name, "signal_type": signal_type,
                "start": _iso(record.start), "end": _iso(record.end), "intervals": intervals,
                "priority": record.request.priority, "test_event": record.request.test_event,
                "ven_ids": record.ven_ids, "responses": record.responses,
                "opt": {ven: answers[-1]["opt"] for ven, answers in record.responses.items() if answers},
            })
        vens = [{"ven_id": ven_id, **info, "registered": bool(info.get("registration_id"))}
                for ven_id, info in self._vens.items()]
        return {"vtn_id": self.config.vtn_id, "openadr_url": self.openadr_url, "ts": _iso(now),
                "vens": vens, "events": events,
                "reports": {ven: list(values) for ven, values in self._reports.items()}}

    # -- control surface -------------------------------------------------------------------------

    async def _http_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _request_body(self, request: web.Request) -> EventRequest:
        try:
            body = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text=_error_text(f"body is not JSON: {exc}"),
                                     content_type="application/json") from exc
        try:
            return EventRequest.model_validate(body)
        except ValidationError as exc:
            raise web.HTTPBadRequest(text=_error_text(str(exc)), content_type="application/json") from exc

    async def _http_create(self, request: web.Request) -> web.Response:
        body = await self._request_body(request)
        return web.json_response(self.create_event(body), status=201)

    async def _http_modify(self, request: web.Request) -> web.Response:
        body = await self._request_body(request)
        try:
            return web.json_response(self.modify_event(request.match_info["event_id"], body))
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _http_cancel(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.cancel_event(request.match_info["event_id"]))
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)


def _ignore_opt(ven_id: str, event_id: str, opt_type: str) -> None:
    """openleadr wants an opt callback per event; the VTN records answers in its own handler."""


def _error_text(message: str) -> str:
    import json

    return json.dumps({"error": message})


class VtnThread:
    """Run a :class:`DemoVtn` on its own asyncio loop in a thread (tests, embedding)."""

    def __init__(self, *, config: VtnConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gridedge-vtn", daemon=True)
        self.vtn: DemoVtn | None = None

    def start(self, timeout_s: float = 10.0) -> DemoVtn:
        """Start the loop thread and the VTN on it; return the VTN once it listens."""
        self._thread.start()

        async def _start() -> DemoVtn:
            vtn = DemoVtn(config=self.config)
            await vtn.start()
            return vtn

        self.vtn = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(timeout_s)
        return self.vtn

    def call(self, func: Callable[..., Any], *args: Any, timeout_s: float = 10.0) -> Any:
        """Run ``func(*args)`` on the VTN's loop and return its result."""

        async def _call() -> Any:
            return func(*args)

        return asyncio.run_coroutine_threadsafe(_call(), self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the VTN, the loop and the thread."""
        if self.vtn is not None:
            asyncio.run_coroutine_threadsafe(self.vtn.stop(), self._loop).result(timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._loop.close()


async def serve(config: VtnConfig, *, ready: Callable[[DemoVtn], None] | None = None) -> None:
    """Run the VTN until cancelled (SIGINT/SIGTERM end it cleanly)."""
    import signal

    vtn = DemoVtn(config=config)
    await vtn.start()
    if ready is not None:
        ready(vtn)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        await stop.wait()
    finally:
        await vtn.stop()
