"""STPM34 end to end on real ptys: simulator <-> client, the driver interface, the CLI."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import pytest
import serial

from gridedge.cli.main import main as gridedge_main
from gridedge.errors import ProtocolTimeout
from gridedge.protocols.stpm34 import (
    ChannelCalibration,
    Stpm34Calibration,
    Stpm34Client,
    thermal_zone_reader,
)
from gridedge.sim.site import CircuitSpec, SiteModel, SiteSpec
from gridedge.sim.stpm34 import Stpm34Simulator, inputs_from_site

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents" / "drivers" / "stpm34"))

pytestmark = pytest.mark.integration

FAST_BAUD = 115200
SPEC = SiteSpec(
    circuits=(
        CircuitSpec(id="heater", name="Heater", nominal_w=1500, pin=17, power_factor=1.0),
        CircuitSpec(id="hvac", name="HVAC", nominal_w=6000, pin=22, power_factor=0.92),
        CircuitSpec(id="fridge", name="Fridge", nominal_w=1100, pin=23, power_factor=0.85),
    ),
    phases=1,
)
CAL = Stpm34Calibration(
    channel1=ChannelCalibration(current_sensor="ct", ct_ratio=2500, ct_burden_ohm=10,
                                current_gain=2, chv=0x7C0, chc=0x830),
    channel2=ChannelCalibration(current_sensor="shunt", shunt_uohm=1000, current_gain=8),
)


@pytest.fixture
def site() -> SiteModel:
    return SiteModel(spec=SPEC, clock=lambda: 1_700_000_000.0)


@pytest.fixture
def make_sim(site, tmp_path):
    sims: list[Stpm34Simulator] = []

    def make(**kwargs) -> Stpm34Simulator:
        kwargs.setdefault("baudrate", FAST_BAUD)
        sim = Stpm34Simulator(source=inputs_from_site(site, channel2_circuit="hvac"), board=CAL,
                              temperature_file=tmp_path / "board.temperature", seed=7, **kwargs)
        sims.append(sim.start())
        return sim

    yield make
    for sim in sims:
        sim.stop()


def open_client(sim: Stpm34Simulator, *, timeout: float = 0.2, **kwargs) -> Stpm34Client:
    port = serial.Serial(sim.port_path, sim.baudrate, timeout=timeout)
    return Stpm34Client(port, calibration=CAL, **kwargs)


def check_against_site(sample, site: SiteModel, *, rel: float = 3e-3) -> None:
    snap = site.snapshot()
    hvac = snap.circuit("hvac")
    assert sample.channel1.active_w == pytest.approx(snap.power_w, rel=rel)
    assert sample.channel1.reactive_var == pytest.approx(snap.reactive_var, rel=rel)
    assert sample.channel1.v_rms_v == pytest.approx(snap.phases[0].voltage_v, rel=rel)
    assert sample.channel1.i_rms_a == pytest.approx(snap.phases[0].current_a, rel=rel)
    assert sample.channel2.active_w == pytest.approx(hvac.power_w, rel=rel)
    assert sample.frequency_hz == pytest.approx(snap.frequency_hz, abs=0.03)


def test_client_reads_the_site_through_a_9600_baud_pty(make_sim, site) -> None:
    """Rule: at 9600 baud a sample (17 frames of 5+5 bytes) costs real line time, < 1 s."""
    sim = make_sim(baudrate=9600)
    client = open_client(sim, timeout=0.3)
    client.configure()
    start = time.monotonic()
    sample = client.read_sample()
    elapsed = time.monotonic() - start
    check_against_site(sample, site)
    assert 17 * 5 * 10 / 9600 <= elapsed < 1.0
    assert sample.crc_errors == 0


def test_relay_change_reaches_the_next_sample(make_sim, site) -> None:
    sim = make_sim()
    client = open_client(sim)
    before = client.read_sample()
    site.set_pin(22, 0.0)  # hvac off
    after = client.read_sample()
    assert after.channel2.active_w == 0.0
    assert before.channel1.active_w - after.channel1.active_w == pytest.approx(6000.0, rel=3e-3)
    check_against_site(after, site)


def test_crc_noise_is_counted_and_never_decoded(make_sim, site) -> None:
    """Rule: corrupted replies are dropped, counted, re-read; the sample stays right."""
    sim = make_sim(corrupt_every=4)
    client = open_client(sim)
    samples = [client.read_sample() for _ in range(3)]
    for sample in samples:
        check_against_site(sample, site)
    assert samples[-1].crc_errors >= 10
    assert samples[-1].crc_errors == client.crc_errors


def test_garbage_on_the_line_is_survived(make_sim, site) -> None:
    sim = make_sim(garbage_every=6)
    client = open_client(sim)
    for _ in range(2):
        check_against_site(client.read_sample(), site)
    assert client.crc_errors > 0


def test_silent_board_times_out_then_recovers(make_sim, site) -> None:
    """Rule: a board that stops answering -> ProtocolTimeout; it is read again once it answers."""
    sim = make_sim()
    client = open_client(sim, timeout=0.1)
    client.read_sample()
    sim.silent = True
    with pytest.raises(ProtocolTimeout):
        client.read_sample()
    sim.silent = False
    check_against_site(client.read_sample(), site)


def test_board_temperature_file_reaches_the_sample(make_sim, site, tmp_path) -> None:
    sim = make_sim()
    client = open_client(sim, temperature_source=thermal_zone_reader(tmp_path / "board.temperature"))
    assert client.read_sample().temperature_c == pytest.approx(site.snapshot().temperature_c, abs=1e-3)


# -- the platform driver interface ---------------------------------------------------------------


def build_interface(port: str, *, temperature_file: str | None = None):
    from volttron.driver.base.config import RemoteConfig
    from volttron.driver.interfaces.stpm34.stpm34 import Stpm34Interface, Stpm34PointConfig

    remote = RemoteConfig(driver_type="stpm34", port=port, baudrate=FAST_BAUD, read_timeout_s=0.1,
                          calibration=CAL.model_dump(), temperature_file=temperature_file)
    interface = Stpm34Interface(remote, None)
    with open(REPO / "driver_configs" / "registries" / "site_meter.csv", newline="") as f:
        for row in csv.DictReader(f):
            point = Stpm34PointConfig.model_validate(row)
            interface.insert_register(interface.create_register(point), "devices/site/main/meter")
    return interface


def test_interface_scrapes_one_coherent_sample(make_sim, site, tmp_path) -> None:
    """Rule: a scrape publishes power_w (site net power, W) and every registry point."""
    sim = make_sim()
    interface = build_interface(sim.port_path, temperature_file=str(tmp_path / "board.temperature"))
    topics = interface.get_register_names()
    results, errors = interface.get_multiple_points(topics)
    assert errors == {}
    snap = site.snapshot()
    base = "devices/site/main/meter/"
    assert results[base + "power_w"] == pytest.approx(snap.power_w, rel=3e-3)
    assert results[base + "ch2_power_w"] == pytest.approx(snap.circuit("hvac").power_w, rel=3e-3)
    assert results[base + "frequency_hz"] == pytest.approx(snap.frequency_hz, abs=0.03)
    assert results[base + "temperature_c"] == pytest.approx(snap.temperature_c, abs=1e-3)
    assert results[base + "crc_errors"] == 0
    assert len(results) == len(topics) == 17


def test_interface_scrape_raises_when_the_board_is_silent_then_recovers(make_sim, site) -> None:
    sim = make_sim(corrupt_every=9)
    interface = build_interface(sim.port_path)
    topics = interface.get_register_names()
    interface.get_multiple_points(topics)
    sim.silent = True
    with pytest.raises(ProtocolTimeout, match="did not answer"):
        interface.get_multiple_points(topics)
    sim.silent = False
    results, errors = interface.get_multiple_points(topics)
    assert results["devices/site/main/meter/power_w"] == pytest.approx(site.snapshot().power_w,
                                                                      rel=3e-3)
    assert results["devices/site/main/meter/crc_errors"] > 0  # counted across the reopen
    assert set(errors) == {"devices/site/main/meter/temperature_c"}  # no temperature file set


def test_interface_refuses_writes_and_bad_registry_rows(make_sim) -> None:
    from volttron.driver.interfaces.stpm34.stpm34 import Stpm34PointConfig

    from gridedge.errors import ConfigError

    sim = make_sim()
    interface = build_interface(sim.port_path)
    with pytest.raises(RuntimeError):
        interface.set_point("devices/site/main/meter/power_w", 5.0)
    for row in ({"Volttron Point Name": "x", "Channel": "", "Quantity": "active_power"},
                {"Volttron Point Name": "x", "Channel": "1", "Quantity": "frequency"},
                {"Volttron Point Name": "x", "Channel": "1", "Quantity": "v_rms", "Writable": "TRUE"}):
        with pytest.raises(ConfigError):
            interface.create_register(Stpm34PointConfig.model_validate(row))


def test_example_device_config_validates() -> None:
    from volttron.driver.interfaces.stpm34.stpm34 import Stpm34RemoteConfig

    data = json.loads((REPO / "driver_configs" / "devices" / "site" / "main" / "meter.json").read_text())
    assert data["registry_config"] == "config://site_meter.csv"
    remote = Stpm34RemoteConfig.model_validate(data["remote_config"])
    assert remote.port == "{run_dir}/dev/stpm34" and remote.baudrate == 9600


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_read_once_json(make_sim, site, tmp_path, capsys) -> None:
    """``gridedge stpm34 read --once --json`` prints one sample and exits 0."""
    sim = make_sim()
    config = tmp_path / "meter.json"
    config.write_text(json.dumps({"remote_config": {"driver_type": "stpm34", "port": "x",
                                                    "calibration": CAL.model_dump()}}))
    code = gridedge_main(["stpm34", "read", "--port", sim.port_path, "--baud", str(FAST_BAUD),
                          "--once", "--json", "--config", str(config)])
    assert code == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["channel1"]["active_w"] == pytest.approx(site.snapshot().power_w, rel=3e-3)
    assert sample["channel2"]["active_w"] == pytest.approx(site.snapshot().circuit("hvac").power_w,
                                                           rel=3e-3)


def test_cli_read_reports_a_silent_board(make_sim, capsys) -> None:
    sim = make_sim()
    sim.silent = True
    code = gridedge_main(["stpm34", "read", "--port", sim.port_path, "--baud", str(FAST_BAUD),
                          "--once", "--json", "--timeout", "0.1"])
    assert code == 2
    assert "no reply" in capsys.readouterr().err
