"""The EMS agent on a mocked bus (volttron-testing TestServer): DR messages in, set_point calls
out to a platform driver faked by the real gpio_relay interface on gpiozero's MockFactory."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from volttron.client import decorators
from volttrontesting.mock_core_builder import MockCoreBuilder

decorators.__core_builder__ = MockCoreBuilder()

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "agents" / "drivers" / "gpio_relay"))

from gridedge_ems.agent import (
    CURTAILMENT_TOPIC,
    DR_EVENTS_TOPIC,
    SITE_POWER_TOPIC,
    EmsAgent,
)
from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.gpio_relay.gpio_relay import GpioRelay, GpioRelayPointConfig
from volttron.types.auth.auth_credentials import Credentials
from volttrontesting.server_mock import PubSubWrapper, TestServer

CONFIG = json.loads((ROOT / "platform_config" / "agents" / "ems.json").read_text())
DEVICE = "site/main/relays"
T0 = datetime(2024, 6, 10, 12, 0, tzinfo=timezone.utc)


class RelayBoardDriver:
    """platform.driver's get_point/set_point over a real gpio_relay interface; records every
    set_point and can be told to fail for a point (a driver error)."""

    def __init__(self, *, without: tuple[str, ...] = ()) -> None:
        self.iface = GpioRelay(RemoteConfig(driver_type="gpio_relay", pin_factory="mock"))
        with (ROOT / "driver_configs" / "registries" / "relays.csv").open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["Volttron Point Name"] not in without]
        for row in self.iface.prepare_registry_config(rows):
            self.iface.insert_register(self.iface.create_register(GpioRelayPointConfig(**row)),
                                       f"devices/{DEVICE}")
        self.calls: list[tuple[str, str, Any]] = []
        self.failing: set[str] = set()

    def get_point(self, path: str, point: str) -> Any:
        return self.iface.get_point(f"devices/{path}/{point}")

    def set_point(self, path: str, point: str, value: Any) -> Any:
        self.calls.append((path, point, value))
        if point in self.failing:
            raise TimeoutError(f"platform.driver did not answer for {point}")
        return self.iface.set_point(f"devices/{path}/{point}", value)

    def levels(self) -> dict[str, float]:
        return {p: self.get_point(DEVICE, p) for p in ("heater", "lights", "house", "hvac", "fridge")}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


_STARTED: list[EmsAgent] = []


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()
    while _STARTED:  # stop every agent so that no status ticker outlives its test
        _STARTED.pop().onstop(None)


def start(driver: RelayBoardDriver, clock: Clock, config: dict | None = None) -> tuple[EmsAgent, TestServer]:
    agent = EmsAgent(None, driver=driver, clock=clock, credentials=Credentials(identity="gridedge.ems"))
    agent.configure("config", "NEW", config or CONFIG)
    # volttron-testing keeps the first TestServer's pub/sub in a class attribute: reset it so that
    # this test's agent publishes into this test's server.
    PubSubWrapper.__wrapper__ = None
    server = TestServer()
    server.connect_agent(agent, logging.getLogger("test.ems.server"))
    server.trigger_start_event(agent)
    _STARTED.append(agent)
    return agent, server


def dr_message(active: dict | None) -> dict:
    return {"events": [], "active": active, "ts": T0.isoformat()}


def shed_request(kw: float, *, mod: int = 0, until: datetime | None = None) -> dict:
    return {"event_id": "ev-1", "modification_number": mod, "interval_index": 0, "shed_kw": kw,
            "setpoint_kw": None, "level": 2, "until": (until or T0 + timedelta(hours=1)).isoformat(),
            "received_at": T0.timestamp()}


def sets(driver: RelayBoardDriver) -> dict[str, Any]:
    return {point: value for _, point, value in driver.calls}


def published(server: TestServer, topic: str) -> list[Any]:
    return [m.message for m in server.get_published_messages() if m.topic == topic]


def test_dr_shed_sets_planned_points(clock: Clock) -> None:
    """A 2 kW shed switches the heater off and dims lights and house; critical circuits untouched."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    calls = sets(driver)
    assert set(calls) == {"heater", "lights", "house"}
    assert calls["heater"] == 0
    assert calls["lights"] == pytest.approx(0.3)
    assert calls["house"] == pytest.approx(0.78)
    assert driver.levels()["hvac"] == 1
    status = published(server, CURTAILMENT_TOPIC)[-1]
    assert status["active"] is True
    assert status["event_id"] == "ev-1"
    assert status["requested_kw"] == 2.0
    assert status["planned_kw"] == pytest.approx(2.0)
    assert status["feasible"] is True
    circuits = {c["id"]: c for c in status["circuits"]}
    assert circuits["heater"]["enabled"] is False
    assert circuits["lights"]["power_w"] == pytest.approx(120.0)
    assert set(circuits["hvac"]) == {"id", "name", "enabled", "level", "power_w", "critical", "priority"}
    agent.onstop(None)


def test_null_active_restores_every_circuit(clock: Clock) -> None:
    """When active becomes null the circuits the EMS changed go back to level 1."""
    driver = RelayBoardDriver()
    _agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    driver.calls.clear()
    server.publish(DR_EVENTS_TOPIC, message=dr_message(None))
    assert sets(driver) == {"heater": 1, "lights": 1.0, "house": 1.0}
    assert driver.levels() == {"heater": 1, "lights": 1.0, "house": 1.0, "hvac": 1, "fridge": 1}
    assert published(server, CURTAILMENT_TOPIC)[-1]["active"] is False


def test_repeated_message_writes_nothing(clock: Clock) -> None:
    """The VEN repeats its message as a heartbeat: an unchanged request is not written again."""
    driver = RelayBoardDriver()
    _agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(1.5)))
    assert sets(driver) == {"heater": 0}
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(1.5)))
    assert len(driver.calls) == 1


def test_meter_scrape_publishes_site_power(clock: Clock) -> None:
    """Every meter scrape is republished as gridedge/site/power (positive = import)."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish("devices/site/main/meter/all", headers={"TimeStamp": "2024-06-10T12:00:05+00:00"},
                   message=[{"power_w": 8220.5, "voltage_v": 230.1}, {"power_w": {"units": "W"}}])
    assert published(server, SITE_POWER_TOPIC) == [{"power_w": 8220.5, "ts": "2024-06-10T12:00:05+00:00"}]
    server.publish("devices/site/main/meter/all", message=[{"voltage_v": 230.1}, {}])
    assert len(published(server, SITE_POWER_TOPIC)) == 1
    assert agent.get_status()["site_power_w"] == 8220.5


def test_setpoint_caps_baseline_site_power(clock: Clock) -> None:
    """A setpoint of 8 kW with the site at 10 kW sheds 2 kW; measured power that already reflects
    the shed does not make the EMS shed again."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish("devices/site/main/meter/all", message=[{"power_w": 10_000.0}, {}])
    request = {**shed_request(0.0), "shed_kw": None, "setpoint_kw": 8.0}
    server.publish(DR_EVENTS_TOPIC, message=dr_message(request))
    calls = sets(driver)
    assert calls["heater"] == 0
    assert calls["house"] == pytest.approx(0.78)
    driver.calls.clear()
    server.publish("devices/site/main/meter/all", message=[{"power_w": 8_000.0}, {}])
    agent.tick()
    assert driver.calls == []


def test_failed_set_point_is_retried_on_tick(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A set_point that fails is logged with the circuit, the others are applied, and the next
    tick retries it."""
    driver = RelayBoardDriver()
    driver.failing.add("lights")
    agent, server = start(driver, clock)
    with caplog.at_level(logging.ERROR, logger="gridedge_ems.agent"):
        server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    assert any("lights" in r.getMessage() and "FAILED" in r.getMessage() for r in caplog.records)
    assert driver.levels()["heater"] == 0
    assert driver.levels()["lights"] == 1.0
    driver.failing.clear()
    driver.calls.clear()
    agent.tick()
    assert set(sets(driver)) == {"lights"}
    assert driver.levels()["lights"] == pytest.approx(0.3)


def test_restore_rpc_ignores_request_until_modified(clock: Clock) -> None:
    """restore() restores now and ignores the request in force; a modification is planned again."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    status = agent.restore()
    assert status["active"] is False
    assert driver.levels()["heater"] == 1
    driver.calls.clear()
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    assert driver.calls == []
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(1.5, mod=1)))
    assert sets(driver) == {"heater": 0}


def test_circuit_missing_from_registry_is_left_out(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A configured circuit whose point the relay device lacks is logged and never switched; the
    others still serve, and the plan reports the shortfall."""
    driver = RelayBoardDriver(without=("house",))
    with caplog.at_level(logging.ERROR, logger="gridedge_ems.agent"):
        agent, server = start(driver, clock)
    assert any("'house'" in r.getMessage() for r in caplog.records)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(2.0)))
    assert set(sets(driver)) == {"heater", "lights"}
    status = agent.get_status()
    assert status["feasible"] is False
    assert status["shortfall_kw"] == pytest.approx(2.0 - 1.5 - 0.28)


def test_stop_restores(clock: Clock) -> None:
    """On its own shutdown the EMS restores every circuit it changed."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    agent.shed(1.6)
    assert driver.levels()["heater"] == 0
    server.trigger_stop_event(agent, sender="test")
    assert driver.levels() == {"heater": 1, "lights": 1.0, "house": 1.0, "hvac": 1, "fridge": 1}


def test_until_passing_restores_on_tick(clock: Clock) -> None:
    """If the VEN falls silent, the request ends at its 'until' anyway."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message=dr_message(shed_request(1.5, until=T0 + timedelta(minutes=5))))
    assert driver.levels()["heater"] == 0
    clock.now = T0 + timedelta(minutes=4)
    agent.tick()
    assert driver.levels()["heater"] == 0
    clock.now = T0 + timedelta(minutes=5)
    agent.tick()
    assert driver.levels()["heater"] == 1
    assert published(server, CURTAILMENT_TOPIC)[-1]["active"] is False


def test_manual_shed_and_status_rpc(clock: Clock) -> None:
    """shed(kw) plans like a DR shed; get_status() returns the curtailment message."""
    driver = RelayBoardDriver()
    agent, _server = start(driver, clock)
    status = agent.shed(0.2)
    assert status["event_id"] == "manual"
    assert status["planned_kw"] == pytest.approx(0.2)
    assert driver.levels()["lights"] == pytest.approx(0.5)
    assert agent.get_status()["sheddable_kw"] == pytest.approx(2.28)
    agent.shed(0)
    assert driver.levels()["lights"] == 1.0


def test_bad_config_keeps_last_good(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A config with duplicate circuit ids is rejected loudly and the last good one stays."""
    driver = RelayBoardDriver()
    agent, _server = start(driver, clock)
    bad = {**CONFIG, "circuits": CONFIG["circuits"] + [CONFIG["circuits"][0]]}
    with caplog.at_level(logging.ERROR, logger="gridedge_ems.agent"):
        agent.configure("config", "UPDATE", bad)
    assert any("REJECTED" in r.getMessage() and "duplicate circuit id" in r.getMessage()
               for r in caplog.records)
    assert len(agent.get_status()["circuits"]) == 5


def test_malformed_dr_message_is_ignored(clock: Clock) -> None:
    """A message without 'active' or with a non-numeric shed changes nothing."""
    driver = RelayBoardDriver()
    agent, server = start(driver, clock)
    server.publish(DR_EVENTS_TOPIC, message={"events": []})
    server.publish(DR_EVENTS_TOPIC, message=dr_message({**shed_request(1.0), "shed_kw": "lots"}))
    assert driver.calls == []
    assert agent.get_status()["active"] is False
