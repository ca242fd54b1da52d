"""The tariff agent on a mocked bus (volttron-testing TestServer)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from volttron.client import decorators
from volttron.types.auth.auth_credentials import Credentials
from volttrontesting.mock_core_builder import MockCoreBuilder
from volttrontesting.server_mock import PubSubWrapper, TestServer

decorators.__core_builder__ = MockCoreBuilder()  # the mock core, before any Agent is built

from gridedge_tariff.agent import TariffAgent

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 13, 8, 0, tzinfo=timezone.utc)  # 09:00 in Brussels, day tariff


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def base_config(tmp_path) -> dict:
    config = json.loads((REPO / "platform_config" / "agents" / "tariff.json").read_text())
    config["data_dir"] = str(tmp_path / "data")
    return config


def scrape(i: int) -> list:
    """The platform driver's [values, meta] for minute i (p1_meter.csv point names): 2 kW, day tariff.

    No MeterTime (the scrape's Date header stamps it) and a month peak without its time (ignored).
    """
    values = {
        "EnergyImportDay": 500 + 2.0 * i / 60,
        "EnergyImportNight": 300.0,
        "EnergyExportDay": 10.0,
        "EnergyExportNight": 4.0,
        "Tariff": 1,
        "PowerImport": 2000.0,
        "PowerExport": 0.0,
        "AverageDemand": 1.9,
        "MonthPeak": 3.1,
        "Gas": 800.5,
        "Water": 90.0,
        "Connected": True,
    }
    return [values, {k: {"type": "float", "units": ""} for k in values}]


@pytest.fixture
def bus(tmp_path):
    clock = Clock()
    # volttron-testing 0.5.1rc4 binds agent publishes to the *first* TestServer of the process
    # (class attribute set once); unbind it so each test's server sees its agent's messages
    PubSubWrapper.__wrapper__ = None
    server = TestServer()
    agent = TariffAgent(None, clock=clock, credentials=Credentials(identity="gridedge.tariff"))
    server.connect_agent(agent)
    assert agent.configure("config", "NEW", base_config(tmp_path))
    yield server, agent, clock
    agent.onstop(None)


def publish_minutes(server, clock, minutes) -> None:
    for i in minutes:
        clock.now = T0 + timedelta(minutes=i)
        server.publish("devices/site/main/p1/all", headers={"Date": clock.now.isoformat()}, message=scrape(i))


def test_agent_publishes_the_quarter_status(bus):
    """Meter scrapes in, gridedge/capacity/quarter out: the running quarter as a JSON-able dict."""
    server, agent, clock = bus
    publish_minutes(server, clock, range(21))
    agent.tick(clock.now)
    quarters = [m for m in server.get_published_messages() if m.topic == "gridedge/capacity/quarter"]
    assert len(quarters) == 1
    q = quarters[0].message
    json.dumps(q)
    assert q["quarter_start"] == "2026-01-13T08:15:00+00:00"
    assert q["elapsed_s"] == 300
    assert q["avg_kw_so_far"] == pytest.approx(2.0)
    assert q["month_peak_kw"] == pytest.approx(2.0)  # the completed 08:00 quarter
    assert q["forecast_kw"] == pytest.approx(2.0)
    assert q["threshold_kw"] == 2.5 and not q["new_peak_likely"]


def test_agent_publishes_usage_every_interval_and_on_tariff_change(bus):
    """Usage goes out on the first tick, then after usage_interval_s, and at once on a tariff change."""
    server, agent, clock = bus
    publish_minutes(server, clock, range(3))

    def usage_messages():
        return [m.message for m in server.get_published_messages() if m.topic == "gridedge/tariff/usage"]

    agent.tick(clock.now)
    agent.tick(clock.now + timedelta(seconds=5))
    assert len(usage_messages()) == 1
    agent.tick(clock.now + timedelta(seconds=10))
    assert len(usage_messages()) == 2
    today = usage_messages()[-1]["today"]
    assert today["usage"]["import_kwh_t1"] == pytest.approx(2 * 2.0 / 60)
    assert today["cost"]["import_eur"] == pytest.approx(2 * 2.0 / 60 * 0.4)
    night = scrape(3)
    night[0]["Tariff"] = 2
    server.publish("devices/site/main/p1/all", headers={}, message=night)
    agent.tick(clock.now + timedelta(seconds=11))
    assert len(usage_messages()) == 3 and usage_messages()[-1]["tariff"] == 2


def test_agent_rpcs(bus):
    """get_usage, get_capacity, get_rates answer with JSON-able data."""
    server, agent, clock = bus
    publish_minutes(server, clock, range(16))
    assert agent.get_rates()["Electricity"]["+"]["Day"] == 0.4
    capacity = agent.get_capacity()
    assert capacity["month_peaks"][0]["month"] == "2026-01"
    assert capacity["capacity_kw"] == pytest.approx(2.5)
    usage = agent.get_usage()
    assert usage["month"]["usage"]["import_kwh"] == pytest.approx(15 * 2.0 / 60)
    json.dumps([capacity, usage])


@pytest.mark.parametrize(
    ("change", "applied"),
    [
        ({"rates": {"Electricity": {}}}, False),
        ({"rates": None}, False),  # neither rates nor rates_path
        ({"timezone": "Mars/Olympus"}, False),
        ({"key_map": {"nonsense": "x"}}, False),
        ({"usage_interval_s": 0}, False),
        ({"unknown_option": 1}, False),
        ({"rates_path": str(REPO / "platform_config" / "rates.json"), "rates": None}, True),
    ],
)
def test_bad_config_keeps_the_last_good_one(bus, tmp_path, change, applied):
    """A refused config changes nothing (rates, topic); a good one is applied."""
    server, agent, clock = bus
    good_settings = agent.settings
    config = {**base_config(tmp_path), **change}
    config = {k: v for k, v in config.items() if v is not None}
    assert agent.configure("config", "UPDATE", config) is applied
    assert (agent.settings is good_settings) is not applied
    publish_minutes(server, clock, range(2))
    assert agent.recorder.last_reading is not None


def test_bad_rates_in_update_keep_old_rates(bus, tmp_path):
    """A negative price in an update is refused loudly; the old prices stay in force."""
    _, agent, _ = bus
    config = base_config(tmp_path)
    bad = copy.deepcopy(config)
    bad["rates"]["Electricity"]["+"]["Day"] = -1
    assert not agent.configure("config", "UPDATE", bad)
    assert agent.get_rates()["Electricity"]["+"]["Day"] == 0.4
    dearer = copy.deepcopy(config)
    dearer["rates"]["Electricity"]["+"]["Day"] = 0.5
    assert agent.configure("config", "UPDATE", dearer)
    assert agent.get_rates()["Electricity"]["+"]["Day"] == 0.5


def test_scrape_with_bad_values_is_skipped(bus):
    """A scrape lacking a counter is logged and skipped; the next good one is booked."""
    server, agent, clock = bus
    bad = scrape(0)
    del bad[0]["EnergyImportNight"]
    server.publish("devices/site/main/p1/all", headers={}, message=bad)
    assert agent.recorder.last_reading is None
    publish_minutes(server, clock, [1])
    assert agent.recorder.last_reading is not None
