"""The VEN's OpenADR side: an openleadr client on its own asyncio loop in its own thread.

:class:`VenClient` registers with the VTN, polls it, answers every event through the pure rules of
:mod:`gridedge.openadr.policy` (not through openleadr's own ``on_event`` bookkeeping, which hands
finished events on, has no overlap rule and answers stale modifications), offers a
TELEMETRY_USAGE report of the site's real power and sends it at the rate the VTN asks for.

Threading: the client runs ``asyncio`` in a dedicated :class:`threading.Thread` (never inside a
greenlet). Everything it needs from its owner comes through thread-safe callables
(``site_power_w``, ``sheddable_kw``); everything it tells its owner goes through ``on_change``,
called **on the client thread** with the new immutable :class:`~gridedge.openadr.models.EventStore`
— the owner hands it over to its own world (the VEN agent does so into gevent).

The decision for each event is logged at INFO with its rule; a malformed event is logged at ERROR
with the reason, opted out, and the client keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridedge.errors import ConfigError
from gridedge.openadr.models import EventStore
from gridedge.openadr.policy import PolicyConfig, handle_event, prune

__all__ = ["DEFAULT_VTN_URL", "VTN_URL_ENV", "VenClient", "VenClientConfig"]

_log = logging.getLogger(__name__)

#: the demo VTN (``gridedge vtn serve``) on this machine
DEFAULT_VTN_URL = "http://127.0.0.1:8080/OpenADR2/Simple/2.0b"
#: environment variable that overrides the configured ``vtn_url``
VTN_URL_ENV = "GRIDEDGE_VTN_URL"
#: the report's resource id at the VTN
REPORT_RESOURCE_ID = "site"


class VenClientConfig(BaseModel):
    """How the VEN reaches its VTN and turns signals into kW.

    ``poll_interval_s`` overrides the VTN's requested poll frequency (``None`` keeps the VTN's);
    ``report_sampling_s`` is the shortest sampling period offered for the TELEMETRY_USAGE report
    (the VTN picks within it and 10 s); ``report_unit`` is the unit of the reported power;
    ``vtn_id``, when set, is the only VTN id whose events are accepted (others get error 452).
    """

    model_config = ConfigDict(extra="forbid")

    vtn_url: str = DEFAULT_VTN_URL
    ven_name: str = Field("gridedge-demo", min_length=1)
    ven_id: str | None = None
    vtn_id: str | None = None
    poll_interval_s: float | None = Field(1.0, gt=0, le=86400)
    report_sampling_s: int = Field(2, ge=1, le=10)
    report_unit: Literal["W", "kW"] = "W"
    simple_levels_kw: dict[str, float] = Field(default_factory=lambda: {"0": 0.0, "1": 1.0, "2": 2.0, "3": 3.0})
    register_retry_s: float = Field(5.0, gt=0, le=3600)
    retention_s: float = Field(3600.0, ge=0)
    cert: str | None = None
    key: str | None = None
    passphrase: str | None = None
    vtn_fingerprint: str | None = None
    ca_file: str | None = None

    @field_validator("vtn_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"vtn_url must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("simple_levels_kw")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        PolicyConfig(simple_levels_kw=value)  # raises ValueError with the reason
        return value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> VenClientConfig:
        """Validate ``data``, letting ``GRIDEDGE_VTN_URL`` override ``vtn_url``; raise ConfigError."""
        env = os.environ if environ is None else environ
        merged = dict(data)
        if env.get(VTN_URL_ENV):
            merged["vtn_url"] = env[VTN_URL_ENV]
        try:
            return cls.model_validate(merged)
        except ValueError as exc:
            raise ConfigError(f"invalid VEN configuration: {exc}") from exc

    def policy(self) -> PolicyConfig:
        """The policy configuration these settings imply."""
        return PolicyConfig(simple_levels_kw=self.simple_levels_kw, retention_s=self.retention_s)


def _openleadr() -> Any:
    """Import openleadr lazily: the policy and the agent's tests must not need it."""
    import openleadr

    return openleadr


def _build_client_class() -> type:
    """An OpenADRClient whose event answers, poll bookkeeping and reports go through the VenClient."""
    openleadr = _openleadr()
    from openleadr import enums

    class _GridEdgeOpenADRClient(openleadr.OpenADRClient):
        def __init__(self, *, owner: VenClient, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._gridedge = owner

        async def create_party_registration(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().create_party_registration(*args, **kwargs)
            if self.registration_id and self._gridedge.config.poll_interval_s:
                self.poll_frequency = timedelta(seconds=self._gridedge.config.poll_interval_s)
            return result

        async def poll(self) -> tuple[str | None, dict[str, Any]]:
            answer = await super().poll()
            if not answer:  # openleadr returns a bare None for an empty HTTP body
                return None, {}
            if answer[0] is not None:
                self._gridedge._last_poll = time.time()
            return answer

        async def update_report(self, report_request_id: str) -> None:
            if self._gridedge._read_power() is None:
                _log.debug("no site power yet: report %s skipped this time", report_request_id)
                return
            await super().update_report(report_request_id)

        async def _on_event(self, message: dict[str, Any]) -> None:
            await self._gridedge._on_distribute_event(self, message, enums)

    return _GridEdgeOpenADRClient


class VenClient:
    """An OpenADR 2.0b VEN running in its own thread; start it once, stop it once.

    ``site_power_w`` returns the site's import in W (positive = import) or ``None`` when unknown;
    ``sheddable_kw`` what the EMS can shed now or ``None``; both are called from the client
    thread and must be thread-safe. ``on_change(store, reason)`` is called on the client thread
    whenever the event store changes. ``clock`` gives the current aware UTC time (injectable).
    """

    def __init__(
        self,
        *,
        config: VenClientConfig,
        site_power_w: Callable[[], float | None],
        sheddable_kw: Callable[[], float | None],
        on_change: Callable[[EventStore, str], None],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self._policy = config.policy()
        self._site_power_w = site_power_w
        self._sheddable_kw = sheddable_kw
        self._on_change = on_change
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._store = EventStore()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._client: Any = None
        self._last_poll: float | None = None
        self._registered = False
        self._ven_id: str | None = config.ven_id

    # -- owner side (any thread) ---------------------------------------------------------------

    def start(self) -> None:
        """Start the client thread; it registers (retrying until it succeeds) and polls."""
        if self._thread is not None:
            raise RuntimeError("VenClient.start() called twice")
        self._thread = threading.Thread(target=self._run, name="gridedge-ven-openadr", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling and reporting, close the HTTP session, end the loop and join the thread."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.error("VEN client thread did not stop within %.1f s", timeout_s)

    @property
    def running(self) -> bool:
        """True while the client thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def events(self) -> EventStore:
        """The current event store (immutable; safe to read from any thread)."""
        with self._lock:
            return self._store

    def status(self) -> dict[str, Any]:
        """``{registered, vtn_url, ven_id, last_poll}``; ``last_poll`` is epoch seconds or None."""
        client = self._client
        return {
            "registered": self._registered,
            "vtn_url": self.config.vtn_url,
            "ven_id": getattr(client, "ven_id", None) or self._ven_id,
            "last_poll": self._last_poll,
        }

    # -- client thread -------------------------------------------------------------------------

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _read_power(self) -> float | None:
        try:
            value = self._site_power_w()
        except Exception:  # noqa: BLE001 - the owner's callable must never kill a report job
            _log.exception("site_power_w callable failed")
            return None
        if value is None:
            return None
        return float(value) / (1000.0 if self.config.report_unit == "kW" else 1.0)

    def _read_sheddable(self) -> float | None:
        try:
            return self._sheddable_kw()
        except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
            _log.exception("sheddable_kw callable failed")
            return None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
            _log.exception("VEN client loop ended with an error")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self._registered = False
                loop.close()

    def _new_client(self) -> Any:
        cls = _build_client_class()
        from openleadr import enums, objects

        cfg = self.config
        client = cls(
            owner=self,
            ven_name=cfg.ven_name,
            vtn_url=cfg.vtn_url,
            ven_id=self._ven_id,
            cert=cfg.cert,
            key=cfg.key,
            passphrase=cfg.passphrase,
            vtn_fingerprint=cfg.vtn_fingerprint,
            ca_file=cfg.ca_file,
            show_fingerprint=False,
            disable_signature=not (cfg.cert and cfg.key),
        )
        sampling = objects.SamplingRate(
            min_period=timedelta(seconds=cfg.report_sampling_s),
            max_period=timedelta(seconds=max(10, cfg.report_sampling_s)),
            on_change=False,
        )
        client.add_report(
            callback=self._report_value,
            resource_id=REPORT_RESOURCE_ID,
            measurement="power_real",
            unit="W",
            scale="none",
            report_name=enums.REPORT_NAME.TELEMETRY_USAGE,
            sampling_rate=sampling,
            report_duration=timedelta(hours=1),
        )
        if cfg.report_unit == "kW":
            # openleadr's add_report would mutate its shared POWER_REAL enum to set a scale;
            # give this report its own measurement instead.
            for report in client.reports:
                for description in report.report_descriptions:
                    description.measurement = replace(description.measurement, scale="k")
        return client

    def _report_value(self) -> list[tuple[datetime, float]]:
        value = self._read_power()
        return [] if value is None else [(self._clock(), value)]

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        while not self._stop_requested.is_set():
            client = self._new_client()
            self._client = client
            try:
                await client.run()
            except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
                _log.exception("VEN registration with %s failed", self.config.vtn_url)
            if client.registration_id:
                self._registered = True
                self._ven_id = client.ven_id
                _log.info("VEN %r registered at %s as %s", self.config.ven_name, self.config.vtn_url, client.ven_id)
                await self._wake.wait()
                await self._close(client)
                return
            await self._close(client)
            if self._stop_requested.is_set():
                return
            _log.warning(
                "VEN not registered at %s; retrying in %.0f s", self.config.vtn_url, self.config.register_retry_s
            )
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.register_retry_s)
            except asyncio.TimeoutError:
                pass

    async def _close(self, client: Any) -> None:
        self._registered = False
        try:
            if client.scheduler.running:
                client.scheduler.shutdown(wait=False)
            if client.report_queue_task is not None:
                client.report_queue_task.cancel()
            if client.client_session is not None and not client.client_session.closed:
                await client.client_session.close()
        except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
            _log.exception("error while closing the openleadr client")

    async def _on_distribute_event(self, client: Any, message: Mapping[str, Any], enums: Any) -> None:
        """Decide every event of one oadrDistributeEvent and send one oadrCreatedEvent."""
        now = self._clock()
        received = time.time()
        request_id = message.get("request_id")
        vtn_id = message.get("vtn_id")
        events = message.get("events") or []
        responses: list[dict[str, Any]] = []
        if self.config.vtn_id is not None and vtn_id != self.config.vtn_id:
            _log.error("oadrDistributeEvent from VTN %r refused: expected VTN %r", vtn_id, self.config.vtn_id)
            for event in events:
                descriptor = event.get("event_descriptor") or {} if isinstance(event, Mapping) else {}
                if descriptor.get("event_id") is not None and event.get("response_required") != "never":
                    responses.append(self._event_response(
                        request_id, descriptor["event_id"], descriptor.get("modification_number", 0),
                        "optOut", enums.STATUS_CODES.INVALID_ID, f"unexpected vtnID {vtn_id!r}",
                    ))
            await self._send_created_event(client, request_id, responses)
            return

        site_power = self._read_power_kw()
        sheddable = self._read_sheddable()
        changed_reasons: list[str] = []
        with self._lock:
            store = self._store
        for event in events:
            try:
                decision, store = handle_event(
                    store, event, now=now, config=self._policy, sheddable_kw=sheddable,
                    site_power_kw=site_power, vtn_id=vtn_id, ven_id=client.ven_id, received_at=received,
                )
            except Exception:  # noqa: BLE001 - the rules never raise on bad input; a bug must not stop the VEN
                _log.exception("VEN policy failed on an event; ignoring it")
                continue
            level = logging.ERROR if decision.action == "malformed" else logging.INFO
            _log.log(level, "event %s mod %s: %s %s (%s)", decision.event_id, decision.modification_number,
                     decision.action, decision.opt, decision.reason)
            if decision.changed:
                changed_reasons.append(f"{decision.action}:{decision.event_id}")
            if decision.send_response:
                responses.append(self._event_response(
                    request_id, decision.event_id, decision.modification_number, decision.opt,
                    decision.response_code, decision.reason,
                ))
        store = prune(store, now, self._policy)
        with self._lock:
            before = self._store
            self._store = store
        if store is not before:
            self._notify(store, ", ".join(changed_reasons) or "pruned")
        await self._send_created_event(client, request_id, responses)

    def _read_power_kw(self) -> float | None:
        try:
            value = self._site_power_w()
        except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
            _log.exception("site_power_w callable failed")
            return None
        return None if value is None else float(value) / 1000.0

    @staticmethod
    def _event_response(
        request_id: Any, event_id: Any, modification_number: Any, opt: str, code: int, reason: str
    ) -> dict[str, Any]:
        return {
            "response_code": int(code),
            "response_description": "OK" if code == 200 and opt == "optIn" else reason[:200],
            "request_id": request_id,
            "event_id": event_id,
            "modification_number": modification_number,
            "opt_type": opt,
        }

    async def _send_created_event(self, client: Any, request_id: Any, responses: list[dict[str, Any]]) -> None:
        if not responses:
            return
        message = client._create_message(
            "oadrCreatedEvent",
            response={"response_code": 200, "response_description": "OK", "request_id": request_id},
            event_responses=responses,
            ven_id=client.ven_id,
        )
        await client._perform_request("EiEvent", message)

    def _notify(self, store: EventStore, reason: str) -> None:
        try:
            self._on_change(store, reason)
        except Exception:  # noqa: BLE001 - a thread boundary: log and keep serving
            _log.exception("VEN on_change callback failed")
