"""The P1 platform-driver interface: registry rows, scrapes, staleness, read-only points."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agents" / "drivers" / "p1"))

from pydantic import ValidationError
from volttron.driver.base.config import RemoteConfig
from volttron.driver.base.interfaces import DriverInterfaceError
from volttron.driver.interfaces.p1.p1 import ALL_POINT_TYPES, P1, P1PointConfig

from gridedge.protocols.dsmr import P1Reader
from gridedge.sim.p1 import corrupt_crc

DATA = REPO.parent / "shared" / "data" / "p1"
FLUVIUS = (DATA / "fluvius_v171.txt").read_bytes()
REGISTRY = REPO / "driver_configs" / "registries" / "p1_meter.csv"
BASE = "devices/site/main/p1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _interface(clock: FakeClock) -> tuple[P1, P1Reader]:
    iface = P1(RemoteConfig(driver_type="p1", port="/dev/null-p1", max_age_s=10), None)
    with REGISTRY.open(newline="") as f:
        for row in csv.DictReader(f):
            iface.insert_register(iface.create_register(P1PointConfig(**row)), BASE)
    reader = P1Reader(port="/dev/null-p1", max_age_s=10, clock=clock)
    iface._reader = reader  # the port thread is replaced by feeding bytes directly
    return iface, reader


def test_registry_csv_uses_only_known_keys_and_is_read_only() -> None:
    """Every row of the shipped registry maps to a point the library produces; none is writable."""
    with REGISTRY.open(newline="") as f:
        rows = [P1PointConfig(**row) for row in csv.DictReader(f)]
    assert {r.point_key for r in rows} <= set(ALL_POINT_TYPES)
    assert not any(r.writable for r in rows)
    assert "crc_errors" in {r.point_key for r in rows}


def test_device_config_keeps_run_dir_placeholder() -> None:
    """The example device config points at the simulator's link under {run_dir}."""
    config = json.loads((REPO / "driver_configs" / "devices" / "site" / "main" / "p1.json").read_text())
    assert config["remote_config"]["driver_type"] == "p1"
    assert config["remote_config"]["port"] == "{run_dir}/dev/p1"
    assert config["registry_config"] == "config://p1_meter.csv"


def test_scrape_maps_points_and_counts_crc_errors() -> None:
    """A scrape returns the latest good telegram's values; a bad-CRC telegram only bumps crc_errors."""
    clock = FakeClock()
    iface, reader = _interface(clock)
    reader.feed(FLUVIUS + corrupt_crc(FLUVIUS.replace(b"02.351", b"09.999")))
    results, errors = iface.get_multiple_points(iface.get_register_names())
    assert errors == {}
    assert results[f"{BASE}/AverageDemand"] == 2.351
    assert results[f"{BASE}/MonthPeakTime"] == "2020-05-09T13:45:58+02:00"
    assert results[f"{BASE}/TariffPeriod"] == "day"
    assert results[f"{BASE}/Water"] == 872.234
    assert results[f"{BASE}/CrcErrors"] == 1
    assert iface.get_point(f"{BASE}/Gas") == 112.384


def test_stale_data_is_an_error_but_diagnostics_still_publish() -> None:
    """Past max_age_s data points are errors (never old values); crc_errors and age still publish."""
    clock = FakeClock()
    iface, reader = _interface(clock)
    reader.feed(FLUVIUS)
    clock.now = 11.0
    results, errors = iface.get_multiple_points(iface.get_register_names())
    assert f"{BASE}/PowerImport" in errors and "11.0 s old" in errors[f"{BASE}/PowerImport"]
    assert f"{BASE}/PowerImport" not in results
    assert results[f"{BASE}/TelegramAge"] == 11.0
    assert results[f"{BASE}/CrcErrors"] == 0
    with pytest.raises(DriverInterfaceError):
        iface.get_point(f"{BASE}/EnergyImportDay")


def test_points_are_read_only() -> None:
    """set_point is refused."""
    iface, _ = _interface(FakeClock())
    with pytest.raises(DriverInterfaceError, match="read-only"):
        iface.set_point(f"{BASE}/Tariff", 2)


@pytest.mark.parametrize(
    "row",
    [
        {"Volttron Point Name": "X", "Point Key": "no_such_point", "Units": "", "Writable": "FALSE"},
    ],
)
def test_unknown_point_key_is_a_config_error(row: dict) -> None:
    """A registry row naming a point the library does not produce is refused."""
    with pytest.raises(ValidationError, match="unknown P1 point key"):
        P1PointConfig(**row)


@pytest.mark.parametrize(
    "changes", [{"baudrate": 0}, {"parity": "Q"}, {"max_age_s": -1}, {"specification": "v9"}]
)
def test_bad_remote_config_is_refused(changes: dict) -> None:
    """Impossible remote_config values fail validation."""
    with pytest.raises(ValidationError):
        P1(RemoteConfig(driver_type="p1", port="/dev/x", **changes), None)
