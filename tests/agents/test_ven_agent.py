"""The VEN agent on volttron-testing's in-memory bus, with a fake VEN client that behaves.

The fake runs the real event rules on a real thread and reports through ``on_change`` from that
thread, so the gevent hand-over is exercised as in production; only the OpenADR transport is
left out (tests/integration/test_openadr_vtn_ven.py covers it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import gevent
import pytest
from volttron.client import decorators
from volttrontesting.mock_core_builder import MockCoreBuilder

decorators.__core_builder__ = MockCoreBuilder()  # the agents below get a MockCore

import gridedge_ven.agent as agent_module
from gridedge_ven.agent import EVENTS_TOPIC, VenAgent, VenAgentConfig
from openleadr import enums, objects
from openleadr.messaging import create_message, parse_message
from volttron.types.auth.auth_credentials import Credentials
from volttrontesting.server_mock import PubSubWrapper, TestServer

from gridedge.openadr.models import EventStore
from gridedge.openadr.policy import PolicyConfig, handle_event

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "platform_config" / "agents" / "ven.json"


def openleadr_event(*, event_id: str, shed_kw: float, start: datetime, interval_s: float = 300.0,
                    n_intervals: int = 1, modification_number: int = 0) -> dict[str, Any]:
    """An event dict exactly as openleadr's client parses it off the wire."""
    intervals = [objects.Interval(dtstart=start + timedelta(seconds=i * interval_s),
                                  duration=timedelta(seconds=interval_s), signal_payload=shed_kw * (i + 1), uid=i)
                 for i in range(n_intervals)]
    signal = objects.EventSignal(intervals=intervals, signal_name="LOAD_DISPATCH", signal_type="delta",
                                 signal_id="s1", measurement=enums.MEASUREMENTS.POWER_REAL)  # W
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(event_id=event_id, modification_number=modification_number,
                                                 market_context="oadr://t", event_status="far"),
        event_signals=[signal], targets=[objects.Target(ven_id="VEN1")])
    _, payload = parse_message(create_message("oadrDistributeEvent", request_id="r", vtn_id="VTN", events=[event]))
    return payload["events"][0]


class FakeVenClient:
    """Behaves like VenClient for its owner: a thread, the real rules, on_change from that thread."""

    instances: ClassVar[list[FakeVenClient]] = []

    def __init__(self, *, config: VenAgentConfig, site_power_w: Callable[[], float | None],
                 sheddable_kw: Callable[[], float | None], on_change: Callable[[EventStore, str], None]) -> None:
        self.config = config
        self.site_power_w = site_power_w
        self.sheddable_kw = sheddable_kw
        self.on_change = on_change
        self.store = EventStore()
        self.started = self.stopped = False
        self.callback_threads: list[str] = []
        FakeVenClient.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def status(self) -> dict[str, Any]:
        return {"registered": self.started and not self.stopped, "vtn_url": self.config.vtn_url,
                "ven_id": "VEN1", "last_poll": 1_700_000_000.0}

    def push(self, event: dict[str, Any], *, now: datetime) -> Any:
        """Decide ``event`` on a client thread, as the real client does, and report the change."""
        result: dict[str, Any] = {}

        def work() -> None:
            power = self.site_power_w()
            decision, self.store = handle_event(
                self.store, event, now=now, config=PolicyConfig(simple_levels_kw=self.config.simple_levels_kw),
                sheddable_kw=self.sheddable_kw(), site_power_kw=None if power is None else power / 1000,
                vtn_id="VTN", received_at=now.timestamp())
            result["decision"] = decision
            self.callback_threads.append(threading.current_thread().name)
            self.on_change(self.store, decision.action)

        thread = threading.Thread(target=work, name="fake-ven-openadr")
        thread.start()
        thread.join()
        return result["decision"]


class RecordingTimer:
    """Stands in for the agent's scheduler: records (when, func) instead of waiting."""

    scheduled: ClassVar[list[RecordingTimer]] = []

    def __init__(self, agent: Any, at_epoch_s: float, func: Callable[[], None]) -> None:
        self.at_epoch_s = at_epoch_s
        self.func = func
        self.cancelled = False
        RecordingTimer.scheduled.append(self)

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(timezone.utc).replace(microsecond=0))


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch, clock: Clock):
    """A started VEN agent on a fresh in-memory bus; yields (server, agent)."""
    FakeVenClient.instances.clear()
    RecordingTimer.scheduled.clear()
    monkeypatch.setattr(agent_module, "_Timer", RecordingTimer)
    PubSubWrapper.__wrapper__ = None  # volttron-testing keeps the first server's bus otherwise
    server = TestServer()
    agent = VenAgent(str(DEFAULT_CONFIG), client_factory=FakeVenClient, clock=clock,
                     credentials=Credentials(identity="gridedge.ven"))
    server.connect_agent(agent, logging.getLogger("test_ven_agent"))
    server.trigger_start_event(agent)
    yield server, agent
    agent.onstop(None)


def events_messages(server: TestServer) -> list[Any]:
    return [m for m in server.get_published_messages() if m.topic == EVENTS_TOPIC]


def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Yield to the gevent hub until the hand-over from the client thread has run."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        gevent.sleep(0.005)


def test_default_config_file_is_valid() -> None:
    """platform_config/agents/ven.json, rendered as ``gridedge up`` renders it, validates, takes
    the VTN URL from the site (demo VTN or GRIDEDGE_VTN_URL) and accepts any VTN id."""
    import json

    rendered = DEFAULT_CONFIG.read_text().replace("{vtn_url}", "http://127.0.0.1:8080/OpenADR2/Simple/2.0b")
    config = VenAgentConfig.model_validate(json.loads(rendered))
    assert config.vtn_url == "http://127.0.0.1:8080/OpenADR2/Simple/2.0b"
    assert config.vtn_id is None
    assert (config.ven_name, config.poll_interval_s, config.heartbeat_s) == ("gridedge-demo", 1.0, 10.0)


def test_starts_the_client_and_publishes_an_empty_state(bus) -> None:
    """onstart starts the OpenADR client and publishes gridedge/dr/events with no events."""
    server, _ = bus
    assert FakeVenClient.instances[0].started
    first = events_messages(server)[0].message
    assert first["events"] == [] and first["active"] is None and "ts" in first


def test_event_from_the_client_thread_is_published_normalized(bus, clock: Clock) -> None:
    """An event decided on the client thread is handed into gevent and published normalized."""
    server, _ = bus
    server.publish("gridedge/site/power", message={"power_w": 4200.0, "ts": clock.now.isoformat()})
    server.publish("gridedge/ems/curtailment", message={"sheddable_kw": 5.0})
    client = FakeVenClient.instances[0]
    assert (client.site_power_w(), client.sheddable_kw()) == (4200.0, 5.0)

    decision = client.push(openleadr_event(event_id="e1", shed_kw=2000.0, start=clock.now), now=clock.now)
    assert decision.opt == "optIn"
    wait_for(lambda: len(events_messages(server)) >= 2)
    message = events_messages(server)[-1].message
    assert client.callback_threads == ["fake-ven-openadr"]
    (event,) = message["events"]
    assert (event["event_id"], event["status"], event["signal"], event["signal_type"]) == (
        "e1", "active", "LOAD_DISPATCH", "delta")
    assert (event["shed_kw"], event["opt"], event["vtn_id"]) == (2.0, "optIn", "VTN")
    assert event["received_at"] == clock.now.timestamp()
    assert message["active"]["event_id"] == "e1"
    assert message["active"]["shed_kw"] == 2.0
    assert message["active"]["received_at"] == event["received_at"]


def test_opt_out_when_the_ems_cannot_shed_enough(bus, clock: Clock) -> None:
    """The sheddable_kw from gridedge/ems/curtailment reaches the opt decision."""
    server, _ = bus
    server.publish("gridedge/ems/curtailment", message={"sheddable_kw": 0.5})
    decision = FakeVenClient.instances[0].push(
        openleadr_event(event_id="big", shed_kw=3000.0, start=clock.now), now=clock.now)
    assert decision.opt == "optOut"
    wait_for(lambda: len(events_messages(server)) >= 2)
    message = events_messages(server)[-1].message
    assert message["events"][0]["opt"] == "optOut" and message["active"] is None


def test_rpcs_answer_events_and_status(bus, clock: Clock) -> None:
    """get_events() lists normalized events; get_status() reports registration, poll and counts."""
    _, agent = bus
    FakeVenClient.instances[0].push(openleadr_event(event_id="e1", shed_kw=1000.0, start=clock.now), now=clock.now)
    wait_for(lambda: len(agent.get_events()) == 1)
    assert agent.get_events()[0]["event_id"] == "e1"
    status = agent.get_status()
    assert status["registered"] is True and status["ven_id"] == "VEN1"
    assert status["vtn_url"] == "http://127.0.0.1:8080/OpenADR2/Simple/2.0b"
    assert status["last_poll"] == datetime.fromtimestamp(1_700_000_000.0, timezone.utc).isoformat()
    assert status["events"] == 1 and status["active"]["event_id"] == "e1"


def test_republishes_at_interval_boundaries(bus, clock: Clock) -> None:
    """A publish is scheduled at the next interval boundary; firing it publishes the new interval."""
    server, agent = bus
    FakeVenClient.instances[0].push(
        openleadr_event(event_id="steps", shed_kw=1000.0, start=clock.now, interval_s=60, n_intervals=2),
        now=clock.now)
    wait_for(lambda: len(agent.get_events()) == 1)
    live = [t for t in RecordingTimer.scheduled if not t.cancelled and t.at_epoch_s < clock.now.timestamp() + 1000]
    (boundary,) = [t for t in live if abs(t.at_epoch_s - (clock.now.timestamp() + 60)) < 0.01]
    clock.now += timedelta(seconds=60.001)
    boundary.func()
    message = events_messages(server)[-1].message
    assert message["active"]["interval_index"] == 1 and message["active"]["shed_kw"] == 2.0
    nxt = [t for t in RecordingTimer.scheduled if not t.cancelled and t is not boundary]
    assert any(abs(t.at_epoch_s - (clock.now.timestamp() + 59.999)) < 0.01 for t in nxt)  # the event end


def test_heartbeat_republishes_and_reschedules(bus) -> None:
    """Every heartbeat_s the state is published again and the next heartbeat scheduled."""
    server, _ = bus
    before = len(events_messages(server))
    (beat,) = [t for t in RecordingTimer.scheduled if not t.cancelled]
    assert beat.at_epoch_s == pytest.approx(time.time() + 10.0, abs=1.0)
    beat.func()
    assert len(events_messages(server)) == before + 1
    assert events_messages(server)[-1].headers.get("reason") == "heartbeat"
    assert len([t for t in RecordingTimer.scheduled if not t.cancelled]) == 2


@pytest.mark.parametrize("contents", [{"poll_interval_s": -1}, {"vtn_url": "ftp://x"}, {"nonsense": 1},
                                      {"simple_levels_kw": {"0": 0}}])
def test_bad_config_is_rejected_and_the_last_good_one_kept(bus, contents: dict[str, Any]) -> None:
    """A config-store update that does not validate is logged and ignored; the client keeps running."""
    _, agent = bus
    before = agent._config
    agent._configure("config", "UPDATE", contents)
    assert agent._config is before
    assert len(FakeVenClient.instances) == 1 and not FakeVenClient.instances[0].stopped


def test_good_config_update_restarts_the_client(bus) -> None:
    """A valid, different configuration stops the client and starts a new one with it."""
    _, agent = bus
    agent._configure("config", "UPDATE", {"vtn_url": "http://127.0.0.1:9999/OpenADR2/Simple/2.0b"})
    old, new = FakeVenClient.instances
    assert old.stopped and new.started
    assert new.config.vtn_url == "http://127.0.0.1:9999/OpenADR2/Simple/2.0b"


def test_site_power_message_without_a_number_is_ignored(bus) -> None:
    """A gridedge/site/power message without a finite power_w leaves the last value in place."""
    server, _ = bus
    server.publish("gridedge/site/power", message={"power_w": 1500.0})
    server.publish("gridedge/site/power", message={"power_w": "high"})
    server.publish("gridedge/site/power", message={"power_w": float("nan")})
    assert FakeVenClient.instances[0].site_power_w() == 1500.0


def test_onstop_stops_the_client_and_the_timers(bus) -> None:
    """onstop stops the OpenADR client and cancels every scheduled publish."""
    _, agent = bus
    agent.onstop(None)
    assert FakeVenClient.instances[0].stopped
    assert all(t.cancelled for t in RecordingTimer.scheduled)
