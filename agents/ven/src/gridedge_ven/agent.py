"""The VEN agent (identity ``gridedge.ven``): thin glue between the OpenADR client and the bus.

The OpenADR work (registration, polling, event rules, reports) is done by
:class:`gridedge.openadr.ven_client.VenClient` on its own asyncio thread; this agent only maps it
onto the bus. Its callbacks arrive on that thread and are handed into gevent with a hub
``async_`` watcher (:class:`GeventHandOver`, the mechanism of ``Core.spawn_in_thread``/``Core.send``).

Bus contract
------------
Publishes ``gridedge/dr/events`` whenever anything changes (new event, modification, cancel,
interval boundary, event end — scheduled with ``core.schedule``) and as a heartbeat every
``heartbeat_s`` (10 s)::

    {"events": [normalized event, ...], "active": ActiveRequest | null, "ts": ISO 8601}

    normalized event = {"event_id", "modification_number", "status" (far|near|active|completed|
        cancelled), "signal" (SIMPLE|LOAD_DISPATCH; the VTN's raw name for an unsupported event),
        "signal_type" (level|delta|setpoint), "shed_kw" (float|null), "setpoint_kw" (float|null),
        "level" (int|null), "start", "end" (ISO 8601), "intervals": [{"start", "end", "shed_kw",
        "setpoint_kw", "level"}], "opt" (optIn|optOut), "opt_reason", "test_event",
        "received_at" (epoch s, when the VEN's handler got this modification), "vtn_id", "priority"}
    ActiveRequest = {"event_id", "modification_number", "interval_index", "shed_kw", "setpoint_kw",
        "level", "until" (ISO 8601), "received_at", "signal", "signal_type"}

(event-level ``shed_kw``/``setpoint_kw``/``level`` are those of the interval in force now, else of
the first interval before the event and of the last after it). Subscribes to
``gridedge/site/power`` (``{"power_w": float, "ts": iso}``, positive = import: the reported
TELEMETRY_USAGE value and the setpoint capacity check) and ``gridedge/ems/curtailment``
(``"sheddable_kw": float``: the opt-in capacity check).

RPC: ``get_events()`` → the list of normalized events; ``get_status()`` →
``{"registered", "vtn_url", "ven_id", "last_poll" (ISO 8601|null), "events" (count),
"active" (ActiveRequest|null)}``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import gevent
from pydantic import Field
from volttron.client.vip.agent import RPC, Agent, Core
from volttron.utils import load_config, vip_main

from gridedge.errors import ConfigError
from gridedge.openadr.models import EventStore
from gridedge.openadr.policy import effective_request, next_boundary, prune
from gridedge.openadr.ven_client import VenClient, VenClientConfig

__all__ = [
    "CURTAILMENT_TOPIC",
    "EVENTS_TOPIC",
    "SITE_POWER_TOPIC",
    "GeventHandOver",
    "VenAgent",
    "VenAgentConfig",
    "main",
]
__version__ = "0.1.0"

_log = logging.getLogger(__name__)

EVENTS_TOPIC = "gridedge/dr/events"
SITE_POWER_TOPIC = "gridedge/site/power"
CURTAILMENT_TOPIC = "gridedge/ems/curtailment"


class VenAgentConfig(VenClientConfig):
    """The VEN client's settings plus the agent's heartbeat period."""

    heartbeat_s: float = Field(10.0, gt=0, le=3600)


class GeventHandOver:
    """Run callables submitted from any thread as greenlets of the hub that created this object.

    A libev/libuv ``async_`` watcher is the one thread-safe way into a gevent hub: ``send()``
    from a foreign thread wakes the hub, which drains the queue (what ``Core.send`` does).
    """

    def __init__(self) -> None:
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._drain)

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        """Queue ``func(*args)`` to run in a greenlet; safe from any thread."""
        self._calls.append((func, args))
        self._watcher.send()

    def _drain(self) -> None:
        while self._calls:
            func, args = self._calls.popleft()
            gevent.spawn(func, *args)

    def close(self) -> None:
        """Stop accepting hand-overs."""
        self._watcher.stop()
        self._watcher.close()


class _Timer:
    """A cancellable call at a wall-clock time: ``core.schedule`` where the core has it."""

    def __init__(self, agent: Agent, at_epoch_s: float, func: Callable[[], None]) -> None:
        schedule = getattr(agent.core, "schedule", None)
        if schedule is not None:
            # core.schedule wants a datetime (an epoch float fails in volttron.utils.time)
            when = datetime.fromtimestamp(at_epoch_s, tz=timezone.utc)
            self._handle: Any = schedule(when, func)
        else:  # volttron-testing's MockCore has no scheduler
            self._handle = gevent.spawn_later(max(0.0, at_epoch_s - time.time()), func)

    def cancel(self) -> None:
        if hasattr(self._handle, "cancel"):
            self._handle.cancel()
        else:
            self._handle.kill(block=False)


class VenAgent(Agent):
    """OpenADR 2.0b VEN: events in from the VTN, ``gridedge/dr/events`` out, reports back."""

    def __init__(
        self,
        config_path: str | None,
        client_factory: Callable[..., Any] = VenClient,
        clock: Callable[[], datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        defaults = load_config(config_path) if config_path else {}
        try:
            self._config = VenAgentConfig.from_mapping(defaults)
        except ConfigError:
            _log.exception("default VEN configuration is invalid; using built-in defaults")
            self._config = VenAgentConfig.from_mapping({})
        self._client_factory = client_factory
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._store = EventStore()
        self._power_w: float | None = None
        self._sheddable_kw: float | None = None
        self._client: Any = None
        self._handover: GeventHandOver | None = None
        self._boundary_timer: _Timer | None = None
        self._heartbeat_timer: _Timer | None = None
        self._started = False
        self.vip.config.set_default("config", defaults)
        self.vip.config.subscribe(self._configure, actions=["NEW", "UPDATE"], pattern="config")

    # -- configuration ---------------------------------------------------------------------------

    def _configure(self, config_name: str, action: str, contents: dict[str, Any]) -> None:
        """Config-store callback: validate, keep the last good config on error, restart on change."""
        try:
            config = VenAgentConfig.from_mapping(contents or {})
        except ConfigError as exc:
            _log.error("REJECTED VEN configuration (%s %s), keeping the last good one: %s",
                       action, config_name, exc)
            return
        changed = config != self._config
        self._config = config
        if self._started and changed:
            _log.info("VEN configuration changed: restarting the OpenADR client")
            self._stop_client()
            self._start_client()

    # -- lifecycle -------------------------------------------------------------------------------

    @Core.receiver("onstart")
    def onstart(self, sender: Any, **kwargs: Any) -> None:
        """Subscribe, start the OpenADR client thread, publish, start the heartbeat."""
        self._handover = GeventHandOver()
        self.vip.pubsub.subscribe(peer="pubsub", prefix=SITE_POWER_TOPIC, callback=self._on_site_power)
        self.vip.pubsub.subscribe(peer="pubsub", prefix=CURTAILMENT_TOPIC, callback=self._on_curtailment)
        self._started = True
        self._start_client()
        self._publish("start")
        self._heartbeat()

    @Core.receiver("onstop")
    def onstop(self, sender: Any, **kwargs: Any) -> None:
        """Stop the client thread and every timer."""
        self._started = False
        for timer in (self._boundary_timer, self._heartbeat_timer):
            if timer is not None:
                timer.cancel()
        self._boundary_timer = self._heartbeat_timer = None
        self._stop_client()
        if self._handover is not None:
            self._handover.close()
            self._handover = None

    def _start_client(self) -> None:
        self._client = self._client_factory(
            config=self._config,
            site_power_w=lambda: self._power_w,
            sheddable_kw=lambda: self._sheddable_kw,
            on_change=self._on_client_change,
        )
        self._client.start()

    def _stop_client(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    # -- inputs ----------------------------------------------------------------------------------

    def _on_client_change(self, store: EventStore, reason: str) -> None:
        """Called on the client thread: hand the new store into gevent."""
        handover = self._handover
        if handover is not None:
            handover.submit(self._apply_store, store, reason)

    def _apply_store(self, store: EventStore, reason: str) -> None:
        self._store = store
        self._publish(reason)

    def _on_site_power(self, peer: str, sender: str, bus: str, topic: str, headers: Any, message: Any) -> None:
        value = message.get("power_w") if isinstance(message, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self._power_w = float(value)
        else:
            _log.warning("ignoring %s message without a finite power_w: %r", topic, message)

    def _on_curtailment(self, peer: str, sender: str, bus: str, topic: str, headers: Any, message: Any) -> None:
        value = message.get("sheddable_kw") if isinstance(message, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self._sheddable_kw = float(value)
        else:
            _log.warning("ignoring %s message without a finite sheddable_kw: %r", topic, message)

    # -- outputs ---------------------------------------------------------------------------------

    def _message(self, now: datetime) -> dict[str, Any]:
        site_kw = None if self._power_w is None else self._power_w / 1000.0
        active = effective_request(self._store, now, site_power_kw=site_kw)
        return {
            "events": self._store.to_bus(now),
            "active": None if active is None else active.to_bus(),
            "ts": now.isoformat(),
        }

    def _publish(self, reason: str) -> None:
        now = self._clock()
        self._store = prune(self._store, now, self._config.policy())
        message = self._message(now)
        self.vip.pubsub.publish("pubsub", EVENTS_TOPIC, headers={"reason": reason}, message=message)
        _log.debug("published %s (%s): %d events, active=%s", EVENTS_TOPIC, reason,
                   len(message["events"]), message["active"])
        self._schedule_boundary(now)

    def _schedule_boundary(self, now: datetime) -> None:
        if self._boundary_timer is not None:
            self._boundary_timer.cancel()
            self._boundary_timer = None
        if not self._started:
            return
        boundary = next_boundary(self._store, now)
        if boundary is not None:
            # a hair after the boundary so that the new interval is the one in force
            self._boundary_timer = _Timer(self, boundary.timestamp() + 0.001, lambda: self._publish("boundary"))

    def _heartbeat(self) -> None:
        if not self._started:
            return
        self._heartbeat_timer = _Timer(self, time.time() + self._config.heartbeat_s, self._beat)

    def _beat(self) -> None:
        self._publish("heartbeat")
        self._heartbeat()

    # -- RPC -------------------------------------------------------------------------------------

    @RPC.export
    def get_events(self) -> list[dict[str, Any]]:
        """Every known event, normalized (the ``events`` member of ``gridedge/dr/events``)."""
        return self._store.to_bus(self._clock())

    @RPC.export
    def get_status(self) -> dict[str, Any]:
        """Registration and polling state of the VEN, the number of events and the active request."""
        status = dict(self._client.status()) if self._client is not None else {
            "registered": False, "vtn_url": self._config.vtn_url, "ven_id": None, "last_poll": None}
        last_poll = status.get("last_poll")
        if isinstance(last_poll, (int, float)):
            status["last_poll"] = datetime.fromtimestamp(last_poll, timezone.utc).isoformat()
        now = self._clock()
        status["events"] = len(self._store)
        status["active"] = self._message(now)["active"]
        return status


def main() -> None:
    """Entry point of the installed agent."""
    # openleadr (which resets its level to INFO on import) and APScheduler log every poll at INFO
    import openleadr  # noqa: F401

    logging.getLogger("openleadr").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    vip_main(VenAgent, version=__version__)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
