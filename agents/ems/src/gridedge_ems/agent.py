"""The EMS agent (identity ``gridedge.ems``): DR requests in, relay and PWM set points out.

Thin glue: :class:`~gridedge_ems.controller.CurtailmentController` (over the pure planner
:mod:`gridedge.domain.curtailment`) decides; this agent maps the bus and the platform driver onto it.

Bus contract
------------
Subscribes:

- ``gridedge/dr/events``: ``{"events": [...], "active": {"event_id", "modification_number",
  "interval_index", "shed_kw" (float|null), "setpoint_kw" (float|null), "level", "until",
  "received_at"} | null, "ts"}``. A changed ``active`` is planned and applied; ``null`` restores.
- the meter scrape (``meter_topic``, default ``devices/site/main/meter/all``, point ``power_w``).

Publishes:

- ``gridedge/site/power`` ``{"power_w": float, "ts": iso}`` on every meter scrape (positive = import).
- ``gridedge/ems/curtailment`` on every change and every ``status_interval_s`` (5 s):
  ``{"active", "event_id", "requested_kw", "planned_kw", "feasible", "shortfall_kw",
  "sheddable_kw", "site_power_w", "circuits": [{"id", "name", "enabled", "level", "power_w",
  "critical", "priority"}], "ts"}`` (circuit ``power_w`` is the estimate nominal x level).

RPC: ``get_status()`` (the curtailment message), ``restore()`` (restore all now and ignore the
request in force until a new or modified one comes), ``shed(kw)`` (a manual shed).

Actuation: ``set_point(relay_device, circuit_id, value)`` on ``platform.driver`` (relay 0/1, pwm
level 0..1) for each circuit whose level changes. A failed write is logged with the circuit and
retried every tick; the agent keeps serving. On stop it restores every circuit it changed.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

import gevent
from gevent.lock import RLock
from volttron.client.vip.agent import RPC, Agent, Core
from volttron.utils import load_config, vip_main
from volttron.utils.scheduling import periodic

from gridedge.errors import ConfigError
from gridedge_ems.config import EmsConfig
from gridedge_ems.controller import CurtailmentController

__all__ = [
    "CURTAILMENT_TOPIC",
    "DR_EVENTS_TOPIC",
    "SITE_POWER_TOPIC",
    "DriverPort",
    "EmsAgent",
    "VipDriver",
    "main",
]
__version__ = "0.1.0"

_log = logging.getLogger(__name__)

DR_EVENTS_TOPIC = "gridedge/dr/events"
SITE_POWER_TOPIC = "gridedge/site/power"
CURTAILMENT_TOPIC = "gridedge/ems/curtailment"


class DriverPort(Protocol):
    """What the EMS needs of the platform driver."""

    def get_point(self, path: str, point: str) -> Any:
        """Read one point."""

    def set_point(self, path: str, point: str, value: Any) -> Any:
        """Write one point; returns the value read back."""


class VipDriver:
    """:class:`DriverPort` over RPC to the platform driver."""

    def __init__(self, *, agent: Agent, identity: Callable[[], str], timeout_s: Callable[[], float]) -> None:
        self._agent = agent
        self._identity = identity
        self._timeout_s = timeout_s

    def get_point(self, path: str, point: str) -> Any:
        """``platform.driver.get_point(path, point)``."""
        return self._agent.vip.rpc.call(self._identity(), "get_point", path, point).get(
            timeout=self._timeout_s())

    def set_point(self, path: str, point: str, value: Any) -> Any:
        """``platform.driver.set_point(path, point, value)``."""
        return self._agent.vip.rpc.call(self._identity(), "set_point", path, point, value).get(
            timeout=self._timeout_s())


class _Ticker:
    """Calls ``func`` every ``period_s``: ``core.schedule`` where the core has it (MockCore has not)."""

    def __init__(self, agent: Agent, period_s: float, func: Callable[[], None]) -> None:
        schedule = getattr(agent.core, "schedule", None)
        if schedule is not None:
            self._handle: Any = schedule(periodic(period_s), func)
        else:
            def loop() -> None:
                while True:
                    gevent.sleep(period_s)
                    func()
            self._handle = gevent.spawn(loop)

    def cancel(self) -> None:
        if hasattr(self._handle, "cancel"):
            self._handle.cancel()
        else:
            self._handle.kill(block=False)


class EmsAgent(Agent):
    """DR curtailment onto the site's relays and PWM outputs through the platform driver."""

    def __init__(self, config_path: str | None = None, *, driver: DriverPort | None = None,
                 clock: Callable[[], datetime] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        defaults = load_config(config_path) if config_path else {}
        config: EmsConfig | None = None
        if defaults:
            try:
                config = EmsConfig.from_mapping(defaults)
            except ConfigError as exc:
                _log.error("EMS configuration %s is invalid: the EMS controls no circuit until a "
                           "valid one is stored: %s", config_path, exc)
        self._controller: CurtailmentController | None = (
            CurtailmentController(config=config) if config is not None else None)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._driver: DriverPort = driver or VipDriver(
            agent=self,
            identity=lambda: self._cfg().driver_identity if self._controller else "platform.driver",
            timeout_s=lambda: self._cfg().rpc_timeout_s if self._controller else 5.0)
        self._lock = RLock()
        self._ticker: _Ticker | None = None
        self._meter_topic: str | None = None
        self._started = False
        self.vip.config.set_default("config", defaults)
        self.vip.config.subscribe(self.configure, actions=["NEW", "UPDATE"], pattern="config")

    def _cfg(self) -> EmsConfig:
        assert self._controller is not None
        return self._controller.config

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, config_name: str, action: str, contents: dict[str, Any]) -> None:
        """Config-store callback: validate, keep the last good config on error."""
        try:
            config = EmsConfig.from_mapping(contents or {})
        except ConfigError as exc:
            _log.error("REJECTED EMS configuration (%s %s), keeping the last good one: %s",
                       action, config_name, exc)
            return
        with self._lock:
            if self._controller is None:
                self._controller = CurtailmentController(config=config)
            elif config != self._controller.config:
                self._controller.reconfigure(config)
            else:
                return
            _log.info("EMS configuration %s: %d circuits on %s", action, len(config.circuits),
                      config.relay_device)
            if self._started:
                self._subscribe_meter()
                self._restart_ticker()
                self._check_points(self._controller.unverified())
                self._apply("reconfigured")

    # -- lifecycle -------------------------------------------------------------------------------

    @Core.receiver("onstart")
    def onstart(self, sender: Any, **kwargs: Any) -> None:
        """Subscribe, check the circuits' points on the relay device, start the status tick."""
        self._started = True
        self.vip.pubsub.subscribe(peer="pubsub", prefix=DR_EVENTS_TOPIC, callback=self._on_dr_events)
        if self._controller is None:
            _log.error("EMS has no valid configuration: not controlling anything")
            return
        self._subscribe_meter()
        self._check_points(self._controller.unverified())
        self._restart_ticker()
        self._publish_status()

    @Core.receiver("onstop")
    def onstop(self, sender: Any, **kwargs: Any) -> None:
        """Restore every circuit the EMS changed, then stop ticking."""
        self._started = False
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._controller is not None:
            with self._lock:
                self._controller.restore()
                self._apply("stopping")
            left = self._controller.commands()
            if left:
                _log.error("EMS stopping with circuits NOT restored: %s", [cid for cid, _ in left])

    def _subscribe_meter(self) -> None:
        topic = self._cfg().meter_topic
        if topic != self._meter_topic:
            # A topic dropped by a reconfiguration is filtered in _on_meter (the callback checks).
            self.vip.pubsub.subscribe(peer="pubsub", prefix=topic, callback=self._on_meter)
            self._meter_topic = topic

    def _restart_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self._ticker = _Ticker(self, self._cfg().status_interval_s, self.tick)

    # -- periodic ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Every ``status_interval_s``: expiry and setpoint follow-up, retries, status publish."""
        if self._controller is None:
            return
        with self._lock:
            missing = self._controller.unverified()
            if missing:
                self._check_points(missing)
            if self._controller.tick(self._clock()):
                _log.info("EMS curtailment changed on tick")
            self._apply("tick", publish=False)
            self._publish_status()

    # -- bus callbacks -----------------------------------------------------------------------------

    def _on_dr_events(self, peer: str, sender: str, bus: str, topic: str, headers: Any,
                      message: Any) -> None:
        if self._controller is None:
            return
        with self._lock:
            try:
                changed = self._controller.on_dr_message(message)
            except ValueError as exc:
                _log.error("ignoring malformed %s message from %s: %s", topic, sender, exc)
                return
            if changed:
                request = self._controller.request
                _log.info("DR request changed: %s", "none (restore)" if request is None else request)
                self._apply("dr event")

    def _on_meter(self, peer: str, sender: str, bus: str, topic: str, headers: Any,
                  message: Any) -> None:
        if self._controller is None or topic != self._cfg().meter_topic:
            return
        point = self._cfg().meter_point
        values = message[0] if isinstance(message, (list, tuple)) and message else message
        power = values.get(point) if isinstance(values, dict) else None
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power):
            _log.warning("meter message on %s has no numeric %r: %r", topic, point, values)
            return
        self._controller.on_site_power(float(power))
        ts = None
        if isinstance(headers, dict):
            ts = headers.get("TimeStamp") or headers.get("Date")
        self.vip.pubsub.publish("pubsub", SITE_POWER_TOPIC, headers={},
                                message={"power_w": float(power),
                                         "ts": ts if isinstance(ts, str) else self._now_iso()})

    # -- RPC ---------------------------------------------------------------------------------------

    @RPC.export
    def get_status(self) -> dict[str, Any]:
        """The ``gridedge/ems/curtailment`` message as of now."""
        if self._controller is None:
            return {"active": False, "error": "no valid configuration", "ts": self._now_iso()}
        return self._controller.status(self._clock())

    @RPC.export
    def restore(self) -> dict[str, Any]:
        """Restore every circuit now; ignore the DR request in force until a new one arrives."""
        if self._controller is None:
            raise ConfigError("the EMS has no valid configuration")
        with self._lock:
            self._controller.restore()
            _log.info("restore requested over RPC")
            self._apply("restore rpc")
        return self.get_status()

    @RPC.export
    def shed(self, kw: float) -> dict[str, Any]:
        """Shed ``kw`` now (manual; until the next DR change, ``restore()`` or ``shed(0)``)."""
        if self._controller is None:
            raise ConfigError("the EMS has no valid configuration")
        with self._lock:
            self._controller.shed(float(kw))
            _log.info("manual shed of %s kW requested over RPC", kw)
            self._apply("shed rpc")
        return self.get_status()

    # -- actuation ---------------------------------------------------------------------------------

    def _check_points(self, circuit_ids: list[str]) -> None:
        """Ask the platform driver for each circuit's point: the EMS only switches points it has."""
        controller = self._controller
        assert controller is not None
        device = controller.config.relay_device
        for cid in circuit_ids:
            try:
                value = self._driver.get_point(device, cid)
                level = float(value)
            except Exception as exc:  # noqa: BLE001 - RPC errors arrive as any type; keep serving
                if controller.set_point_status(cid, error=f"{type(exc).__name__}: {exc}"):
                    _log.error("circuit %r: no point %s/%s on the platform driver (%s); it is not "
                               "switched until it shows up", cid, device, cid, exc)
                continue
            if controller.set_point_status(cid, level=level):
                _log.info("circuit %r found on %s (level %s)", cid, device, level)

    def _apply(self, reason: str, *, publish: bool = True) -> None:
        """Send the controller's pending commands to the platform driver."""
        controller = self._controller
        assert controller is not None
        config = controller.config
        modulation = {c.id: c.modulation for c in config.circuits}
        for cid, level in controller.commands():
            value: int | float = round(level) if modulation[cid] == "binary" else float(level)
            try:
                result = self._driver.set_point(config.relay_device, cid, value)
            except Exception as exc:  # noqa: BLE001 - RPC errors arrive as any type; retried next tick
                controller.failed(cid, f"{type(exc).__name__}: {exc}")
                _log.error("set_point %s/%s = %s FAILED (%s): %s; retrying every %.0f s",
                           config.relay_device, cid, value, reason, exc, config.status_interval_s)
                continue
            try:
                applied = float(result) if result is not None else float(value)
            except (TypeError, ValueError):
                applied = float(value)
            controller.applied(cid, applied)
            _log.info("set_point %s/%s = %s (%s)", config.relay_device, cid, value, reason)
        if publish:
            self._publish_status()

    def _publish_status(self) -> None:
        if self._controller is None:
            return
        self.vip.pubsub.publish("pubsub", CURTAILMENT_TOPIC, headers={},
                                message=self._controller.status(self._clock()))

    def _now_iso(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat()


def main() -> None:
    """Entry point of the installed agent."""
    vip_main(EmsAgent, version=__version__)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
