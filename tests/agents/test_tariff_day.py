"""A simulated day through the real chain minus the platform: P1 telegrams -> driver -> tariff agent.

Every minute of Wednesday 2026-11-18 (Europe/Brussels) a Fluvius meter model integrates a known
site profile into its counters and sends a telegram built by the project's synthesiser. The P1
interface (its own P1Reader: framing, CRC, dsmr-parser decode, normalize; its registry mapping
from ``p1_meter.csv``) turns each telegram into the point values the platform driver publishes on
``devices/site/main/p1/all`` as ``[values, meta]``. The tariff agent takes them from
volttron-testing's TestServer, with an injected clock. Its figures are then checked against
numbers worked out by hand from the profile.

Profile (site load minus PV, per local time; integer Wh per minute so the meter's 3-decimal kWh
registers carry it exactly):

=============  ====================  ============  =============
local time     load                  PV            tariff
=============  ====================  ============  =============
00:00-07:00    1.8 kW                -             2 (night)
07:00-10:00    4.2 kW                -             1 (day)
10:00-11:00    4.2 kW                3.0 kW        1
11:00-14:00    4.2 kW                6.0 kW        1 (1.8 kW export)
14:00-15:00    4.2 kW                3.0 kW        1
15:00-22:00    4.2 kW (+3 kW oven 18:05-18:28)  -  1
22:00-24:00    1.2 kW                -             2
=============  ====================  ============  =============

Gas (m³/h): 0.3 until 06:00, 1.2 until 09:00, 0.6 until 17:00, 0.9 until 23:00, 0.3 until 24:00;
the meter relays it with the 5-minute capture time, as e-MUCS meters do. The meter's own month
peak (1-0:1.6.0) starts the day at 3.2 kW (set on 5 November) and follows its quarter averages.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from volttron.client import decorators
from volttron.types.auth.auth_credentials import Credentials
from volttron.utils import format_timestamp
from volttrontesting.mock_core_builder import MockCoreBuilder
from volttrontesting.server_mock import PubSubWrapper, TestServer

decorators.__core_builder__ = MockCoreBuilder()  # the mock core, before any Agent is built

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents" / "drivers" / "p1"))

from gridedge_tariff.agent import TariffAgent
from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.p1.p1 import P1, P1PointConfig

from gridedge.protocols.dsmr import FluviusValues, P1Reader, build_fluvius_telegram

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Europe/Brussels")
DAY = datetime(2026, 11, 18, tzinfo=TZ)  # a Wednesday, CET (UTC+1) all day
START_UTC = DAY.astimezone(timezone.utc)
MINUTES = 24 * 60
DEVICE = "devices/site/main/p1"
TOPIC = f"{DEVICE}/all"
REGISTRY = REPO / "driver_configs" / "registries" / "p1_meter.csv"
RATES = json.loads((REPO / "platform_config" / "rates.json").read_text())
RESTART_MINUTE = 15 * 60
#: telegrams sent while the agent is restarting, which it never sees
MISSED_MINUTES = range(RESTART_MINUTE + 1, RESTART_MINUTE + 4)


def _m(hh: int, mm: int = 0) -> int:
    return hh * 60 + mm


# -- the site and its meter -------------------------------------------------------------------


def net_w(minute: int) -> int:
    """Import minus export power (W) during local minute ``minute`` of the day."""
    if minute < _m(7):
        load = 1800
    elif minute < _m(22):
        load = 4200 + (3000 if _m(18, 5) <= minute < _m(18, 28) else 0)
    else:
        load = 1200
    pv = 6000 if _m(11) <= minute < _m(14) else 3000 if _m(10) <= minute < _m(15) else 0
    return load - pv


def tariff(minute: int) -> int:
    """Belgian tariff indicator during local minute ``minute``: 1 = day (07-22), 2 = night."""
    return 1 if _m(7) <= minute < _m(22) else 2


def gas_l_per_5min(slot_start: int) -> int:
    """Gas litres used in the 5 minutes starting at local minute ``slot_start``."""
    m3_per_h = (
        0.3
        if slot_start < _m(6)
        else 1.2
        if slot_start < _m(9)
        else 0.6
        if slot_start < _m(17)
        else 0.9
        if slot_start < _m(23)
        else 0.3
    )
    return round(m3_per_h * 1000 / 12)


class FluviusMeter:
    """Counters in Wh and litres, advanced minute by minute; a telegram on demand."""

    def __init__(self) -> None:
        self.import_wh = {1: 12_345_678, 2: 9_876_543}
        self.export_wh = {1: 2_345_678, 2: 123_456}
        self.gas_l = 4_321_000
        self.gas_at_minute = 0
        self.minute = 0
        self.quarter_start_wh = self._import_total()
        self.peak_w = 3200  # a 3.2 kW quarter on 5 November, ended 18:45
        self.peak_end = datetime(2026, 11, 5, 18, 45, tzinfo=TZ)

    def _import_total(self) -> int:
        return self.import_wh[1] + self.import_wh[2]

    def advance(self) -> None:
        """Integrate the current minute; close the meter's quarter and move the gas reading."""
        p = net_w(self.minute)
        t = tariff(self.minute)
        if p >= 0:
            self.import_wh[t] += p // 60
        else:
            self.export_wh[t] += -p // 60
        self.minute += 1
        if self.minute % 5 == 0:  # the gas meter's 5-minute capture
            self.gas_l += gas_l_per_5min(self.minute - 5)
            self.gas_at_minute = self.minute
        if self.minute % 15 == 0:
            quarter_w = (self._import_total() - self.quarter_start_wh) * 4
            if quarter_w > self.peak_w:
                self.peak_w, self.peak_end = quarter_w, self.at()
            self.quarter_start_wh = self._import_total()

    def at(self, minute: int | None = None) -> datetime:
        return START_UTC + timedelta(minutes=self.minute if minute is None else minute)

    def telegram(self) -> bytes:
        p = net_w(self.minute) if self.minute < MINUTES else net_w(0)
        elapsed_min = self.minute % 15
        avg_w = (self._import_total() - self.quarter_start_wh) * 60 / elapsed_min if elapsed_min else 0
        return build_fluvius_telegram(
            FluviusValues(
                meter_time=self.at(),
                energy_import_t1_kwh=self.import_wh[1] / 1000,
                energy_import_t2_kwh=self.import_wh[2] / 1000,
                energy_export_t1_kwh=self.export_wh[1] / 1000,
                energy_export_t2_kwh=self.export_wh[2] / 1000,
                tariff=tariff(self.minute % MINUTES),
                power_l1_w=p / 3,
                power_l2_w=p / 3,
                power_l3_w=p / 3,
                avg_demand_kw=avg_w / 1000,
                month_peak_kw=self.peak_w / 1000,
                month_peak_time=self.peak_end,
                gas_m3=self.gas_l / 1000,
                gas_time=self.at(self.gas_at_minute),
            )
        )


# -- the P1 driver, minus the platform ----------------------------------------------------------


class P1Scraper:
    """The P1 interface on its own reader, scraped the way the platform driver's all-publish does."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.iface = P1(RemoteConfig(driver_type="p1", port="/dev/null-p1-day", max_age_s=10), None)
        with REGISTRY.open(newline="") as f:
            for row in csv.DictReader(f):
                self.iface.insert_register(self.iface.create_register(P1PointConfig(**row)), DEVICE)
        # the simulated time is the reader's monotonic and wall clock alike
        self.iface._reader = P1Reader(
            port="/dev/null-p1-day", max_age_s=10, clock=self._now, wall_clock=self._now
        )
        self.topics = self.iface.get_register_names()

    def _now(self) -> float:
        return self.now_s

    def scrape(self, telegram: bytes, at: datetime) -> list:
        """``[values, meta]`` of ``devices/site/main/p1/all`` once ``telegram`` has been read at ``at``."""
        self.now_s = at.timestamp()
        assert self.iface.reader.feed(telegram), "the synthesised telegram was refused"
        results, errors = self.iface.get_multiple_points(self.topics)
        assert not errors
        values, meta = {}, {}
        for topic, value in results.items():
            register = self.iface.get_register_by_name(topic)
            kind = {bool: "boolean", int: "integer", float: "float", str: "string"}[register.python_type]
            name = topic.rsplit("/", 1)[-1]
            values[name] = value
            meta[name] = {"units": register.get_units(), "type": kind, "tz": "UTC"}
        return [values, meta]


# -- the agent on the mocked bus ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = START_UTC

    def __call__(self) -> datetime:
        return self.now


def agent_config(data_dir: Path) -> dict:
    config = json.loads((REPO / "platform_config" / "agents" / "tariff.json").read_text())
    del config["rates"]
    config["rates_path"] = str(REPO / "platform_config" / "rates.json")
    config["data_dir"] = str(data_dir)
    return config


def start_agent(data_dir: Path, clock: Clock) -> tuple[TestServer, TariffAgent]:
    # volttron-testing binds agent publishes to the first TestServer of the process: unbind
    PubSubWrapper.__wrapper__ = None
    server = TestServer()
    agent = TariffAgent(None, clock=clock, credentials=Credentials(identity="gridedge.tariff"))
    server.connect_agent(agent)
    assert agent.configure("config", "NEW", agent_config(data_dir))
    return server, agent


def run_day(data_dir: Path, *, restart: bool) -> dict:
    """Send the day's telegrams (00:00 through 00:00 next day); return the agent's figures."""
    meter, scraper, clock = FluviusMeter(), P1Scraper(), Clock()
    server, agent = start_agent(data_dir, clock)
    seen: dict = {}
    for minute in range(MINUTES + 1):
        if minute:
            meter.advance()
        clock.now = meter.at()
        telegram = meter.telegram()
        scrape = scraper.scrape(telegram, clock.now)
        if restart and minute in MISSED_MINUTES:
            continue
        stamp = format_timestamp(clock.now)
        server.publish(TOPIC, headers={"Date": stamp, "TimeStamp": stamp}, message=scrape)
        if minute == 0:
            seen["first_capacity"] = agent.get_capacity()
        if minute == RESTART_MINUTE:
            seen["usage_15h"], seen["capacity_15h"] = agent.get_usage(), agent.get_capacity()
            if restart:
                server.trigger_stop_event(agent, sender="test")
                server, agent = start_agent(data_dir, clock)
        if minute == MINUTES - 1:
            seen["usage_2359"] = agent.get_usage()
    seen["usage"], seen["capacity"] = agent.get_usage(), agent.get_capacity()
    server.trigger_stop_event(agent, sender="test")
    seen["history"] = json.loads((data_dir / "history" / "2026-11-18.json").read_text())
    return seen


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> dict:
    return run_day(tmp_path_factory.mktemp("day") / "tariff", restart=False)


@pytest.fixture(scope="module")
def restarted_day(tmp_path_factory) -> dict:
    return run_day(tmp_path_factory.mktemp("restart") / "tariff", restart=True)


# -- expectations, worked out by hand from the profile ------------------------------------------

#: day import: 07-10 4.2 kW x 3 h + 10-11 1.2 + 14-15 1.2 + 15-22 4.2 x 7 + oven 3 kW x 23 min
DAY_IMPORT_KWH = 4.2 * 3 + 1.2 + 1.2 + 4.2 * 7 + 3.0 * 23 / 60  # 45.55
#: night import: 00-07 1.8 kW x 7 h + 22-24 1.2 kW x 2 h
NIGHT_IMPORT_KWH = 1.8 * 7 + 1.2 * 2  # 15.0
#: export 11-14 (6.0 kW PV - 4.2 kW load), day tariff
DAY_EXPORT_KWH = 1.8 * 3  # 5.4
GAS_M3 = 0.3 * 6 + 1.2 * 3 + 0.6 * 8 + 0.9 * 6 + 0.3 * 1  # 15.9
ELEC = RATES["Electricity"]
#: rates.json prices gas per kWh with the m³ -> kWh factor in "cnv"
GAS_EUR_PER_M3 = RATES["Gas"]["+"]  # EUR per m³ as metered; cnv only converts m³ to kWh
#: the oven: 18:05-18:28 on top of 4.2 kW -> quarters 18:00 (10 min of it) and 18:15 (13 min)
PEAK_KW = 4.2 + 3.0 * 13 / 15  # 6.8, quarter 18:15-18:30
PEAK_QUARTER_START_UTC = "2026-11-18T17:15:00+00:00"


def hand_quarters() -> list[float]:
    """Each local quarter's average import kW: the profile's import energy in it x 4."""
    return [
        sum(max(net_w(m), 0) for m in range(q * 15, q * 15 + 15)) / 15 / 1000 for q in range(MINUTES // 15)
    ]


def assert_day_figures(period: dict) -> None:
    usage, cost = period["usage"], period["cost"]
    tight = {"abs": 1e-9}
    assert usage["import_kwh_t1"] == pytest.approx(DAY_IMPORT_KWH, **tight)
    assert usage["import_kwh_t2"] == pytest.approx(NIGHT_IMPORT_KWH, **tight)
    assert usage["export_kwh_t1"] == pytest.approx(DAY_EXPORT_KWH, **tight)
    assert usage["export_kwh_t2"] == 0
    assert usage["net_kwh"] == pytest.approx(DAY_IMPORT_KWH + NIGHT_IMPORT_KWH - DAY_EXPORT_KWH, **tight)
    assert usage["gas_m3"] == pytest.approx(GAS_M3, **tight)
    assert usage["water_m3"] == 0
    assert cost["import_eur_t1"] == pytest.approx(DAY_IMPORT_KWH * ELEC["+"]["Day"], **tight)
    assert cost["import_eur_t2"] == pytest.approx(NIGHT_IMPORT_KWH * ELEC["+"]["Night"], **tight)
    assert cost["export_eur"] == pytest.approx(DAY_EXPORT_KWH * ELEC["-"]["Day"], **tight)
    electricity = DAY_IMPORT_KWH * 0.4 + NIGHT_IMPORT_KWH * 0.3 - DAY_EXPORT_KWH * 0.1
    assert cost["electricity_eur"] == pytest.approx(electricity, **tight)  # 18.22 + 4.50 - 0.54
    assert cost["gas_eur"] == pytest.approx(GAS_M3 * 1.576, **tight)
    assert cost["total_eur"] == pytest.approx(electricity + GAS_M3 * GAS_EUR_PER_M3, **tight)


# -- the tests ----------------------------------------------------------------------------------


def test_rates_in_force_are_platform_config_rates() -> None:
    """The expectations use the prices of platform_config/rates.json (day 0.4, night 0.3, export 0.1)."""
    assert (ELEC["+"]["Day"], ELEC["+"]["Night"], ELEC["-"]["Day"]) == (0.4, 0.3, 0.1)
    assert GAS_EUR_PER_M3 == pytest.approx(1.576)


def test_today_at_2359_has_the_profiles_usage_and_cost_but_the_last_minute(day) -> None:
    """At 23:59 'today' lacks only the 23:59-24:00 minute (1.2 kW night, 0.3 m³/h gas of the last slot)."""
    today = day["usage_2359"]["today"]
    assert today["first"] == today["last"] == "2026-11-18"
    usage = today["usage"]
    assert usage["import_kwh_t1"] == pytest.approx(DAY_IMPORT_KWH, abs=1e-9)
    assert usage["import_kwh_t2"] == pytest.approx(NIGHT_IMPORT_KWH - 1.2 / 60, abs=1e-9)
    assert usage["gas_m3"] == pytest.approx(GAS_M3 - 0.3 / 12, abs=1e-9)  # 23:55-24:00 not yet read
    assert day["usage_2359"]["tariff"] == 2


def test_day_figures_after_midnight(day) -> None:
    """After the 00:00 telegram the whole day (intervals (00:00, 24:00]) is booked on 18 November."""
    usage = day["usage"]
    assert datetime.fromisoformat(usage["at"]) == DAY + timedelta(days=1)
    assert usage["today"]["first"] == "2026-11-19"
    assert usage["today"]["usage"]["import_kwh"] == 0 and usage["today"]["usage"]["gas_m3"] == 0
    yesterday = usage["past_days"][0]
    assert yesterday["label"] == "2026-11-18"
    assert_day_figures(yesterday)
    # nothing else was booked this week, month or year
    for period in ("week", "month", "year"):
        assert_day_figures(usage[period])


def test_figures_at_15h_before_the_restart(day, restarted_day) -> None:
    """At 15:00 (before the restart): day 12.6+1.2+1.2, night 12.6, export 5.4 kWh, gas 9.0 m³."""
    for run in (day, restarted_day):
        usage = run["usage_15h"]["today"]["usage"]
        assert usage["import_kwh_t1"] == pytest.approx(4.2 * 3 + 1.2 + 1.2, abs=1e-9)
        assert usage["import_kwh_t2"] == pytest.approx(1.8 * 7, abs=1e-9)
        assert usage["export_kwh_t1"] == pytest.approx(1.8 * 3, abs=1e-9)
        assert usage["gas_m3"] == pytest.approx(0.3 * 6 + 1.2 * 3 + 0.6 * 6, abs=1e-9)
        assert run["capacity_15h"]["month_peaks"][0]["peak_kw"] == pytest.approx(4.2, abs=1e-9)


def test_meter_month_peak_seeds_the_month(day) -> None:
    """The first telegram carries the meter's 3.2 kW peak of 5 November: the month starts there."""
    peaks = day["first_capacity"]["month_peaks"]
    assert [(p["month"], p["peak_kw"]) for p in peaks] == [("2026-11", pytest.approx(3.2, abs=1e-9))]
    assert day["first_capacity"]["capacity_kw"] == pytest.approx(3.2, abs=1e-9)


def test_month_peak_is_the_highest_quarter_of_the_day(day) -> None:
    """The oven lifts quarter 18:15-18:30 to 4.2 + 3 x 13/15 = 6.8 kW: the month peak and the capacity."""
    capacity = day["capacity"]
    assert capacity["month_peaks"] == [
        {"month": "2026-11", "peak_kw": pytest.approx(PEAK_KW, abs=1e-9), "peak_at": PEAK_QUARTER_START_UTC}
    ]
    assert capacity["capacity_kw"] == pytest.approx(PEAK_KW, abs=1e-9)  # the only month known
    quarter = capacity["quarter"]
    assert quarter["quarter_start"] == "2026-11-18T23:00:00+00:00"  # 00:00 on the 19th, just begun
    assert quarter["month"] == "2026-11"
    assert quarter["month_peak_kw"] == pytest.approx(PEAK_KW, abs=1e-9)


def test_history_file_holds_the_day(day) -> None:
    """history/2026-11-18.json: the day's totals, its 96 quarter averages and their peak."""
    record = day["history"]
    assert record["date"] == "2026-11-18" and record["hours"] == 24
    assert_day_figures(record)
    assert record["usage"] == day["usage"]["past_days"][0]["usage"]
    assert record["cost"] == day["usage"]["past_days"][0]["cost"]
    quarters = record["quarters"]
    assert [q["start"] for q in quarters] == [
        (DAY + timedelta(minutes=15 * i)).isoformat() for i in range(MINUTES // 15)
    ]
    assert all(q["complete"] for q in quarters)
    assert [q["avg_kw"] for q in quarters] == pytest.approx(hand_quarters(), abs=1e-4)
    assert record["peak_kw"] == pytest.approx(PEAK_KW, abs=1e-9)
    assert record["rates"] == RATES


def test_restart_at_15h_gives_the_same_end_of_day_figures(day, restarted_day) -> None:
    """Stopped at 15:00, restarted on the same data dir (missing 15:01-15:03): the same day figures."""
    assert restarted_day["usage"] == day["usage"]
    assert restarted_day["capacity"] == day["capacity"]
    assert restarted_day["history"] == day["history"]
    assert_day_figures(restarted_day["history"])
