"""XDM1041 simulators on real paced ptys: the client in each quirk mode, the platform-driver
interface scraping a meter pair, and the CLI reading it."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
import serial

from gridedge.cli.main import main as cli_main
from gridedge.protocols.xdm1041 import MeterSetup, Xdm1041Client
from gridedge.sim.xdm1041 import Xdm1041Quirks, Xdm1041Simulator, make_battery_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agents" / "drivers" / "xdm1041"))

from volttron.driver.base.interfaces import DriverInterfaceError
from volttron.driver.interfaces.xdm1041.xdm1041 import (
    Xdm1041,
    Xdm1041PointConfig,
    Xdm1041RemoteConfig,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("quirks", "counter", "at_least"),
    [
        (Xdm1041Quirks(), "queries", 5),
        (Xdm1041Quirks(ok_lines=True), "ok_lines", 3),
        (Xdm1041Quirks(double_replies=True), "duplicate_lines", 3),
        (Xdm1041Quirks(gbk_units=True), "queries", 5),
        (Xdm1041Quirks(ok_lines=True, double_replies=True, gbk_units=True), "ok_lines", 3),
    ],
    ids=["plain", "ok_lines", "double_replies", "gbk_units", "all"],
)
def test_client_on_a_paced_pty_in_each_quirk_mode(quirks: Xdm1041Quirks, counter: str, at_least: int) -> None:
    """Over a real pty at 115200 baud the client configures the meter and reads the right value
    whatever quirks the firmware has."""
    with Xdm1041Simulator(value_fn=lambda: 13.21, quirks=quirks) as sim:
        port = serial.Serial(sim.port_path, 115200, timeout=0.02)
        try:
            client = Xdm1041Client(port=port, name="meter", timeout_s=1.0, command_gap_s=0.0)
            client.configure(MeterSetup(range=50.0, rate="F"))
            readings = [client.measure() for _ in range(3)]
        finally:
            port.close()
    assert [r.value for r in readings] == [pytest.approx(13.21)] * 3
    assert {r.unit for r in readings} == ({"V"} if quirks.gbk_units else {""})
    assert getattr(client.stats, counter) >= at_least
    assert client.stats.timeouts == 0


def test_client_times_out_and_recovers_on_a_pty() -> None:
    """An unanswered query times out; the next one, on the same port, is answered."""
    with Xdm1041Simulator(value_fn=lambda: 1.5, quirks=Xdm1041Quirks(timeout_every_n=2)) as sim:
        port = serial.Serial(sim.port_path, 115200, timeout=0.02)
        try:
            client = Xdm1041Client(port=port, name="meter", timeout_s=0.4, command_gap_s=0.0)
            values = []
            for _ in range(4):
                try:
                    values.append(client.measure().value)
                except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
                    values.append(type(exc).__name__)
        finally:
            port.close()
    assert values == [pytest.approx(1.5), "ProtocolTimeout", pytest.approx(1.5), "ProtocolTimeout"]


class _Battery:
    """A battery at a fixed operating point (thread-safe by immutability of its reads)."""

    def __init__(self, volts: float, amps: float) -> None:
        self.volts = volts
        self.amps = amps
        self.lock = threading.Lock()

    def __call__(self) -> tuple[float, float]:
        with self.lock:
            return self.volts, self.amps


def _interface(link_dir: Path, monkeypatch: pytest.MonkeyPatch, **extra: object) -> tuple[Xdm1041, list[str]]:
    monkeypatch.setattr(Xdm1041, "default_config", {})
    cfg = Xdm1041RemoteConfig(driver_type="xdm1041", voltage_port=str(link_dir / "xdm_voltage"),
                              shunt_port=str(link_dir / "xdm_shunt"), shunt_ohm=0.00075, polarity=1,
                              voltage_range=50, shunt_range="AUTO", rate="F", timeout=0.6, **extra)
    iface = Xdm1041(cfg, None)
    rows = [("voltage_v", "V"), ("current_a", "A"), ("power_w", "W"), ("discharge_wh", "Wh"),
            ("charge_wh", "Wh"), ("shunt_timeouts", "count"), ("scrape_errors", "count"),
            ("shunt_ok_lines", "count")]
    topics = []
    for quantity, units in rows:
        reg = iface.create_register(Xdm1041PointConfig(**{"Volttron Point Name": quantity, "Quantity": quantity,
                                                          "Units": units}))
        iface.insert_register(reg, "devices/site/battery")
        topics.append(f"devices/site/battery/{quantity}")
    return iface, topics


def test_interface_scrapes_two_simulated_meters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape reads both meters: V, I = V_shunt/R (positive = discharge), P, and energy that
    grows between scrapes."""
    battery = _Battery(13.2, 40.0)
    with make_battery_pair(battery=battery, shunt_ohm=0.00075, link_dir=tmp_path,
                           quirks=Xdm1041Quirks(ok_lines=True)):
        iface, topics = _interface(tmp_path, monkeypatch)
        try:
            first, errors = iface.get_multiple_points(topics)
            assert errors == {}
            second, _ = iface.get_multiple_points(topics)
        finally:
            iface.close()
    t = "devices/site/battery/"
    assert first[t + "voltage_v"] == pytest.approx(13.2)
    assert first[t + "current_a"] == pytest.approx(40.0, abs=0.02)  # 1 µV steps on 50 mV / 0.75 mΩ
    assert first[t + "power_w"] == pytest.approx(528.0, rel=1e-3)
    assert second[t + "discharge_wh"] > 0.0
    assert second[t + "charge_wh"] == 0.0
    assert second[t + "shunt_ok_lines"] >= 3


def test_a_timeout_fails_that_scrape_and_the_next_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shunt meter misses a reply: that scrape raises a clear error; the next one succeeds
    and its diagnostics count the timeout and the failed scrape."""
    battery = _Battery(12.6, -15.0)
    pair = make_battery_pair(battery=battery, link_dir=tmp_path, quirks=Xdm1041Quirks(),
                             shunt_quirks=Xdm1041Quirks(timeout_every_n=4))
    with pair:
        iface, topics = _interface(tmp_path, monkeypatch)
        try:
            iface.get_multiple_points(topics)  # shunt queries 1-3: IDN, FUNC1?, MEAS1?
            with pytest.raises(DriverInterfaceError, match="shunt meter.*no reply to 'MEAS1\\?'"):
                iface.get_multiple_points(topics)  # query 4 is lost
            results, _ = iface.get_multiple_points(topics)
        finally:
            iface.close()
    t = "devices/site/battery/"
    assert results[t + "current_a"] == pytest.approx(-15.0, abs=0.02)
    assert results[t + "power_w"] < 0
    assert results[t + "shunt_timeouts"] == 1
    assert results[t + "scrape_errors"] == 1


def test_a_missing_port_is_a_clear_scrape_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Meters not (yet) there: the scrape fails naming the port, and is retried next time."""
    iface, topics = _interface(tmp_path, monkeypatch)
    with pytest.raises(DriverInterfaceError, match="xdm_voltage"):
        iface.get_multiple_points(topics)
    with make_battery_pair(battery=_Battery(12.0, 1.0), link_dir=tmp_path):
        try:
            results, _ = iface.get_multiple_points(topics)
        finally:
            iface.close()
    assert results["devices/site/battery/voltage_v"] == pytest.approx(12.0)


def test_cli_reads_a_simulated_pair_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``gridedge xdm1041 read --once --json`` prints one reading of the pair."""
    with make_battery_pair(battery=_Battery(13.0, 20.0), link_dir=tmp_path,
                           quirks=Xdm1041Quirks(double_replies=True)):
        rc = cli_main(["xdm1041", "read", "--voltage-port", str(tmp_path / "xdm_voltage"),
                       "--shunt-port", str(tmp_path / "xdm_shunt"), "--shunt-ohm", "0.00075",
                       "--once", "--json", "--timeout", "0.5"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["voltage_v"] == pytest.approx(13.0)
    assert data["current_a"] == pytest.approx(20.0, abs=0.02)
    assert data["diagnostics"]["voltage_duplicate_lines"] >= 1
