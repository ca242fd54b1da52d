"""VOLTTRON platform-driver interface for a P1 digital meter (``driver_type: p1``).

Glue only: a :class:`gridedge.protocols.dsmr.P1Reader` thread reads the port and keeps the
latest good telegram; its normalized points (registry column ``Point Key``) map to the
registry's point names. Telegrams with a bad CRC are counted (point key ``crc_errors``) and
never published; when the latest good telegram is older than ``max_age_s`` every data point is
returned as an error (the driver logs it and publishes no value) while the diagnostic points
(``crc_errors``, ``frame_errors``, ``telegrams``, ``telegram_age_s``, ``connected``,
``received_at``) still publish. All points are read-only.

Push: every good telegram is published as soon as its last byte is read, not at the next poll.
The reader thread hands it into the platform driver's gevent hub (a deque and a thread-safe
async watcher, the hand-over ``Core.spawn_in_thread`` uses; the reader thread never touches
gevent or volttron) and a greenlet there calls the DriverAgent's ``publish_push``, which updates
the points' last values and publishes ``devices/<device>/multi`` for points with
``publish_depth_first_multi`` set. Polls keep working and return the latest values; the
``devices/<device>/all`` publish stays on the device's ``all_publish_interval``. The point key
``received_at`` (epoch seconds, when the telegram's last byte was read) lets a subscriber measure
telegram-to-bus latency.

remote_config::

    {"driver_type": "p1", "port": "/dev/ttyUSB0", "baudrate": 115200,
     "max_age_s": 10, "reconnect_delay_s": 2}

``baudrate`` 9600 implies 7E1 (DSMR 2.2/3); ``bytesize``/``parity`` override.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import gevent
from pydantic import Field, field_validator
from volttron.driver.base.config import PointConfig, RemoteConfig
from volttron.driver.base.interfaces import BaseInterface, BaseRegister, BasicRevert, DriverInterfaceError

from gridedge.errors import ProtocolTimeout
from gridedge.protocols.dsmr import (
    DIAGNOSTIC_POINT_TYPES,
    POINT_TYPES,
    SPECIFICATIONS,
    P1Reader,
    ReceivedTelegram,
)

_log = logging.getLogger(__name__)

#: every point key a registry may use
ALL_POINT_TYPES: dict[str, type] = {**POINT_TYPES, **DIAGNOSTIC_POINT_TYPES}


class P1RemoteConfig(RemoteConfig):
    """The ``remote_config`` of a P1 device."""

    port: str
    baudrate: int = Field(default=115200, gt=0)
    bytesize: int | None = None
    parity: str | None = None
    max_age_s: float = Field(default=10.0, gt=0)
    reconnect_delay_s: float = Field(default=2.0, gt=0)
    specification: str = "auto"

    @field_validator("specification")
    @classmethod
    def _known_specification(cls, value: str) -> str:
        if value != "auto" and value not in SPECIFICATIONS:
            raise ValueError(f"specification must be 'auto' or one of {sorted(SPECIFICATIONS)}")
        return value

    @field_validator("parity")
    @classmethod
    def _parity(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ("N", "E", "O"):
            raise ValueError("parity must be N, E or O")
        return value


class P1PointConfig(PointConfig):
    """A registry row: ``Volttron Point Name``, ``Point Key``, ``Units``, ``Writable``, ``Notes``."""

    point_key: str = Field(alias="Point Key")

    @field_validator("point_key")
    @classmethod
    def _known_key(cls, value: str) -> str:
        value = value.strip()
        if value not in ALL_POINT_TYPES:
            raise ValueError(f"unknown P1 point key {value!r}; known: {sorted(ALL_POINT_TYPES)}")
        return value


class P1Register(BaseRegister):
    """A read-only point backed by one normalized P1 value."""

    def __init__(self, *, point_name: str, point_key: str, units: str, description: str = "") -> None:
        super().__init__("byte", True, point_name, units, description=description)
        self.point_key = point_key
        python_type = ALL_POINT_TYPES[point_key]
        self.python_type = python_type if python_type in (int, float, str, bool) else str


_readers: dict[str, P1Reader] = {}
_readers_lock = threading.Lock()


def _reader_for(config: P1RemoteConfig) -> P1Reader:
    """One reader per port: a serial port can be opened once. A changed config replaces it."""
    wanted = {
        "port": config.port,
        "baudrate": config.baudrate,
        "bytesize": config.bytesize,
        "parity": config.parity,
        "max_age_s": config.max_age_s,
        "reconnect_delay_s": config.reconnect_delay_s,
        "specification": config.specification,
    }
    with _readers_lock:
        reader = _readers.get(config.port)
        if reader is not None and getattr(reader, "_gridedge_config", None) == wanted:
            reader.start()
            return reader
        if reader is not None:
            _log.info("P1 %s: configuration changed; restarting the reader", config.port)
            reader.stop()
        reader = P1Reader(**wanted)
        reader._gridedge_config = wanted  # type: ignore[attr-defined]
        _readers[config.port] = reader
        reader.start()
        return reader


class HubHandover:
    """Carries telegrams from the reader thread into the gevent hub that created the handover.

    The reader thread only appends to a deque and wakes the hub through a libev/libuv async
    watcher, the one thread-safe way into a gevent loop (what ``Core.spawn_in_thread`` relies
    on). In the hub, one greenlet at a time drains the deque in arrival order and calls
    ``deliver``, which may block (a publish waits for the bus). If the hub falls behind by
    ``max_pending`` telegrams, the oldest are dropped: a late telegram is worth less than a new one.
    """

    def __init__(self, *, deliver: Callable[[ReceivedTelegram], None], max_pending: int = 64) -> None:
        if max_pending <= 0:
            raise ValueError("max_pending must be positive")
        self._deliver = deliver
        self._pending: deque[ReceivedTelegram] = deque(maxlen=max_pending)
        self._draining = False
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._wake)

    def put(self, received: ReceivedTelegram) -> None:
        """Queue ``received`` for the hub; callable from any thread, never blocks."""
        self._pending.append(received)
        self._watcher.send()

    def close(self) -> None:
        """Stop the watcher; telegrams still queued are dropped. Call from the hub's thread."""
        self._watcher.stop()
        self._pending.clear()

    def _wake(self) -> None:
        # A watcher callback runs in the hub itself, which must not block: spawn the drainer.
        if not self._draining:
            self._draining = True
            gevent.spawn(self._drain)

    def _drain(self) -> None:
        try:
            while self._pending:
                received = self._pending.popleft()
                try:
                    self._deliver(received)
                except Exception:  # noqa: BLE001 - one failed publish must not stop the next ones
                    _log.exception("P1: publishing a pushed telegram failed")
        finally:
            self._draining = False


_pushers: dict[str, tuple[P1Reader, Callable[[ReceivedTelegram], None], HubHandover]] = {}


def _attach_pusher(port: str, reader: P1Reader, handover: HubHandover) -> None:
    """Make ``handover`` the one push target of ``port``: a reconfigured device replaces the old."""
    with _readers_lock:
        previous = _pushers.pop(port, None)
        _pushers[port] = (reader, handover.put, handover)
    if previous is not None:
        old_reader, old_listener, old_handover = previous
        old_reader.remove_listener(old_listener)
        old_handover.close()
    reader.add_listener(handover.put)


class P1(BasicRevert, BaseInterface):
    """Platform-driver interface over :class:`~gridedge.protocols.dsmr.P1Reader`."""

    REGISTER_CONFIG_CLASS = P1PointConfig
    INTERFACE_CONFIG_CLASS = P1RemoteConfig
    default_config: ClassVar[dict] = {}  # BaseInterface merges it with remote_config (None would fail)

    def __init__(self, config: RemoteConfig, *args, **kwargs) -> None:
        BasicRevert.__init__(self, **kwargs)
        BaseInterface.__init__(self, config, *args, **kwargs)
        self._reader: P1Reader | None = None
        self._handover: HubHandover | None = None

    @property
    def reader(self) -> P1Reader:
        """The port reader, started on first use."""
        if self._reader is None:
            self._reader = _reader_for(self.config)
        return self._reader

    def finalize_setup(self, initial_setup: bool = False) -> None:
        """Open the port once the registers are known and push its telegrams to the bus.

        The platform driver calls this in its gevent hub's thread, where the handover must live.
        Without a DriverAgent (a bare interface in a test) there is nothing to push to.
        """
        reader = self.reader
        if self.driver_agent is not None and self._handover is None:
            self._handover = HubHandover(deliver=self._publish_telegram)
            _attach_pusher(self.config.port, reader, self._handover)

    def _publish_telegram(self, received: ReceivedTelegram) -> None:
        """In the hub: publish one fresh telegram's points through the DriverAgent's push path."""
        diagnostics = {**self.reader.diagnostics(), "received_at": received.received_wall_s}
        results, _ = self._map_points(
            self.get_register_names(), received.reading.as_points(), None, diagnostics
        )
        if results:
            self.driver_agent.publish_push(results)

    def create_register(self, register_definition: P1PointConfig) -> P1Register:
        """A read-only :class:`P1Register`; a row marked writable is logged and made read-only."""
        if register_definition.writable:
            _log.error(
                "P1 point %s is marked Writable; a P1 port is read-only, treating it as read-only",
                register_definition.volttron_point_name,
            )
        return P1Register(
            point_name=register_definition.volttron_point_name,
            point_key=register_definition.point_key,
            units=register_definition.units,
            description=register_definition.notes,
        )

    def get_point(self, topic: str, **kwargs) -> object:
        """The current value of one point; raises when the data is stale."""
        results, errors = self._get_multiple_points([topic])
        if topic in errors:
            raise DriverInterfaceError(errors[topic])
        return results[topic]

    def _get_multiple_points(self, topics: Iterable[str], **kwargs) -> tuple[dict, dict]:
        reader = self.reader
        diagnostics = reader.diagnostics()
        try:
            points = reader.latest().reading.as_points()
            stale = None
        except ProtocolTimeout as exc:
            points, stale = {}, str(exc)
        return self._map_points(topics, points, stale, diagnostics)

    def _map_points(
        self, topics: Iterable[str], points: dict[str, Any], stale: str | None, diagnostics: dict[str, Any]
    ) -> tuple[dict, dict]:
        """Registry topics -> values: diagnostics always, data points unless ``stale`` says why not."""
        results: dict = {}
        errors: dict = {}
        for topic in topics:
            register = self.get_register_by_name(topic)
            key = register.point_key
            if key in diagnostics:
                results[topic] = diagnostics[key]
            elif stale is not None:
                errors[topic] = stale
            elif points.get(key) is not None:
                results[topic] = points[key]
            # a value this meter does not send (no water meter, no per-phase voltage) is left out
        return results, errors

    def _set_point(self, topic: str, value: object) -> object:
        raise DriverInterfaceError(f"P1 points are read-only: {topic}")

    @classmethod
    def unique_remote_id(cls, config_name: str, config: P1RemoteConfig) -> tuple:
        """One remote per serial port."""
        return ("p1", getattr(config, "port", config_name))
