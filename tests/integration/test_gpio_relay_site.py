"""gpio_relay with the site pin factory against a real SiteServer on loopback: a point written on
the driver changes the power the site model (and so every simulated meter) measures.

The site runs in its own process, as in the demo (and because a process that has imported
volttron.client has gevent sockets, which the site server's threads cannot use).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice, PWMOutputDevice

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "agents" / "drivers" / "gpio_relay"))

from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.gpio_relay.gpio_relay import GpioRelay, GpioRelayPointConfig

from gridedge.errors import DeviceError
from gridedge.platform.processes import free_port
from gridedge.sim.pins import SitePinFactory, SiteUnreachableError
from gridedge.sim.site_server import SiteClient

pytestmark = pytest.mark.integration

BASE = "devices/site/main/relays"
SITE_JSON = ROOT / "platform_config" / "site.json"

#: The site process: the demo site with every load off, served until stdin closes.
_SITE_PROCESS = """
import sys
from gridedge.sim.site import SiteModel, load_site_spec
from gridedge.sim.site_server import SiteServer
spec = load_site_spec(sys.argv[1])
model = SiteModel(spec=spec, initial_levels={c.id: 0.0 for c in spec.circuits})
server = SiteServer(model=model, port=int(sys.argv[2]))
server.start()
print(server.address[1], flush=True)
sys.stdin.read()
server.stop()
"""


class SiteProcess:
    """The site model and its control socket in a child process."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _SITE_PROCESS, str(SITE_JSON), str(port)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip():
            self.stop()
            raise RuntimeError("the site process did not start")
        self.port = int(line)
        self.client = SiteClient(port=self.port)

    def snapshot(self) -> dict[str, Any]:
        return self.client.request({"op": "snapshot"})

    def power_w(self) -> float:
        return float(self.snapshot()["power_w"])

    def level(self, circuit_id: str) -> float:
        return next(c["level"] for c in self.snapshot()["circuits"] if c["id"] == circuit_id)

    def stop(self) -> None:
        self.client_close()
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client_close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


@pytest.fixture
def site() -> Iterator[SiteProcess]:
    process = SiteProcess()
    yield process
    process.stop()


def make_interface(port: int) -> GpioRelay:
    iface = GpioRelay(RemoteConfig(driver_type="gpio_relay", pin_factory="site", site_port=port,
                                   site_timeout_s=1.0))
    with (ROOT / "driver_configs" / "registries" / "relays.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in iface.prepare_registry_config(rows):
        iface.insert_register(iface.create_register(GpioRelayPointConfig(**row)), BASE)
    return iface


def test_site_pins_follow_gpiozero_devices(site: SiteProcess) -> None:
    """A plain gpiozero relay and PWM output on SitePinFactory set the site model's pin levels."""
    factory = SitePinFactory(port=site.port)
    relay = DigitalOutputDevice(17, initial_value=True, pin_factory=factory)
    dimmer = PWMOutputDevice(18, initial_value=0.25, pin_factory=factory)
    assert site.level("heater") == 1.0
    assert site.level("lights") == 0.25
    relay.off()
    assert site.level("heater") == 0.0
    relay.close()
    dimmer.close()
    factory.close()
    assert site.level("lights") == 0.25  # releasing a pin does not switch the load


def test_driver_points_change_site_power(site: SiteProcess) -> None:
    """Safe state at start puts every load on; writes shed exactly the circuit's power; stop
    restores the safe state."""
    assert site.power_w() == 0.0
    iface = make_interface(site.port)
    assert site.power_w() == pytest.approx(10_000.0)

    iface.set_point(f"{BASE}/heater", 0)
    assert site.power_w() == pytest.approx(8_500.0)
    assert iface.set_point(f"{BASE}/lights", 0.3) == pytest.approx(0.3)
    assert site.power_w() == pytest.approx(8_500.0 - 280.0)
    assert site.level("lights") == pytest.approx(0.3)

    iface.set_point(f"{BASE}/all_off", 1)
    assert site.power_w() == 0.0

    iface.revert_all()
    assert site.power_w() == pytest.approx(10_000.0)
    iface.set_point(f"{BASE}/house", 0.5)
    iface.stop()
    assert site.power_w() == pytest.approx(10_000.0)


def test_unreachable_site_fails_loudly_then_recovers() -> None:
    """With no site listening a write raises, naming the point, the pin and the site; once the
    site is up, the next write goes through."""
    port = free_port()
    iface = make_interface(port)  # the safe state at start fails: logged, points report it
    with pytest.raises(DeviceError, match="state unknown"):
        iface.get_point(f"{BASE}/heater")
    with pytest.raises(DeviceError, match=r"heater \(GPIO17\).*unreachable") as info:
        iface.set_point(f"{BASE}/heater", 0)
    assert isinstance(info.value.__cause__, SiteUnreachableError)
    assert info.value.__cause__.retryable

    site = SiteProcess(port)
    try:
        iface.revert_all()
        assert site.power_w() == pytest.approx(10_000.0)
        assert iface.set_point(f"{BASE}/heater", 0) == 0
        assert site.power_w() == pytest.approx(8_500.0)
        iface.stop()
    finally:
        site.stop()
