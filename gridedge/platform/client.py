"""A short-lived bus client for the CLI, benchmarks and integration tests.

VOLTTRON 2.x has no ready-made way for an outside program to join the bus. We connect once with
the platform's own ``control.connection`` credentials (what vctl uses), ask ``platform.auth`` to
create credentials for a fresh identity of ours, and connect as that identity; the credentials are
removed again on close, so nothing accumulates in the store.

Importing this module imports ``volttron.client``, which monkey-patches the process for gevent:
import it only in programs that talk to the bus.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from volttron.client.known_identities import AUTH
from volttron.client.vip.agent import Agent
from volttron.types.agent_context import AgentOptions
from volttron.types.auth import VolttronCredentials

from gridedge.errors import GridEdgeError

__all__ = ["BusClient", "BusError"]


class BusError(GridEdgeError):
    """The bus could not be reached or an RPC failed."""

    retryable = True


@contextlib.contextmanager
def _real_core() -> Iterator[None]:
    """Build agents on the real ZMQ core even where a test harness has installed volttron-testing's
    MockCoreBuilder as the process-wide core builder (it has no VIP connection)."""
    from volttron.client import decorators
    from volttron.messagebus.zmq.zmq_core import ZmqCoreBuilder

    saved = decorators.__core_builder__
    if saved is not None and not isinstance(saved, ZmqCoreBuilder):
        decorators.__core_builder__ = ZmqCoreBuilder()
    try:
        yield
    finally:
        decorators.__core_builder__ = saved


def _connect(home: Path, address: str, credentials_file: Path) -> tuple[Agent, gevent.Greenlet]:
    creds = VolttronCredentials(**json.loads(credentials_file.read_text()))
    options = AgentOptions(heartbeat_autostart=False, volttron_home=str(home), enable_store=False)
    with _real_core():
        agent = Agent(credentials=creds, options=options, address=address)
    ready = gevent.event.Event()
    greenlet = gevent.spawn(agent.core.run, ready)
    if not ready.wait(timeout=10):
        greenlet.kill()
        raise BusError(f"could not connect to the platform at {address}")
    return agent, greenlet


class BusClient:
    """A connected client identity on the platform in ``home``.

    Use as a context manager. ``call`` makes an RPC, ``subscribe`` collects messages into a list
    (thread-safe view), ``publish`` publishes.
    """

    def __init__(self, *, home: Path, address: str | None = None, identity: str | None = None) -> None:
        self.home = Path(home)
        self.address = address or f"ipc://@{self.home}/run/vip.socket"
        self.identity = identity or f"gridedge.client.{os.getpid()}.{int(time.time() * 1000) % 100000}"
        os.environ["VOLTTRON_HOME"] = str(self.home)
        self._agent: Agent | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._messages: dict[str, list[tuple[float, str, Any]]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> BusClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def agent(self) -> Agent:
        """The connected agent."""
        if self._agent is None:
            raise BusError("not connected")
        return self._agent

    def connect(self) -> None:
        """Create our credentials through the control connection and connect as ourselves."""
        store = self.home / "credentials_store"
        control_file = store / "control.connection.json"
        if not control_file.exists():
            raise BusError(f"no platform credentials in {store}: is the platform set up?")
        control, g = _connect(self.home, self.address, control_file)
        try:
            ok = control.vip.rpc.call(AUTH, "create_credentials", identity=self.identity).get(timeout=15)
            if not ok:
                raise BusError(f"platform.auth refused to create credentials for {self.identity}")
        finally:
            control.core.stop(timeout=2)
            g.kill(block=False)
        creds_file = store / f"{self.identity}.json"
        deadline = time.monotonic() + 5
        while not creds_file.exists() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self._agent, self._greenlet = _connect(self.home, self.address, creds_file)

    def close(self) -> None:
        """Disconnect and remove our credentials."""
        if self._agent is None:
            return
        try:
            self._agent.vip.rpc.call(AUTH, "remove_credentials", identity=self.identity).get(timeout=5)
        except Exception:  # noqa: BLE001 - best effort cleanup on the way out
            pass
        try:
            self._agent.core.stop(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._agent = None

    def call(self, peer: str, method: str, *args: Any, timeout_s: float = 20.0, **kwargs: Any) -> Any:
        """RPC ``peer.method(*args, **kwargs)`` and return the result; BusError on failure."""
        try:
            return self.agent.vip.rpc.call(peer, method, *args, **kwargs).get(timeout=timeout_s)
        except gevent.Timeout as exc:
            raise BusError(f"{peer}.{method} did not answer within {timeout_s} s") from exc
        except Exception as exc:
            raise BusError(f"{peer}.{method} failed: {type(exc).__name__}: {exc}") from exc

    def peers(self) -> list[str]:
        """Identities connected to the platform."""
        return list(self.agent.vip.peerlist().get(timeout=10))

    def subscribe(self, prefix: str, callback: Callable[[str, Any], None] | None = None) -> None:
        """Collect every message under ``prefix`` (see :meth:`messages`)."""

        def on_message(peer, sender, bus, topic, headers, message):
            with self._lock:
                self._messages.setdefault(prefix, []).append((time.time(), topic, message))
            if callback is not None:
                callback(topic, message)

        self.agent.vip.pubsub.subscribe("pubsub", prefix, on_message).get(timeout=10)

    def messages(self, prefix: str) -> list[tuple[float, str, Any]]:
        """(receive time, topic, message) collected so far under ``prefix``."""
        with self._lock:
            return list(self._messages.get(prefix, []))

    def publish(self, topic: str, message: Any, headers: dict | None = None) -> None:
        """Publish ``message`` on ``topic``."""
        self.agent.vip.pubsub.publish("pubsub", topic, headers=headers or {}, message=message).get(timeout=10)

    def wait_for(self, predicate: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.2,
                 what: str = "condition") -> Any:
        """Poll ``predicate`` (cooperatively) until it returns something truthy."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            gevent.sleep(interval_s)
        raise BusError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")
