"""The serial driver interfaces never stall the platform driver's event loop.

The platform driver runs every device interface as greenlets of ONE gevent process, so an
interface that blocks the hub during its serial I/O delays every other device's pushes and the
set_point RPCs of demand response. In that process pyserial waits in ``select.select`` (patched
by ``gevent.monkey.patch_all()``, which the driver gets from ``volttron.client.commands``), and
``time.sleep``/``time.monotonic`` are the patched ones, so the waits of an STPM34 scrape
(~17 frames at 9600 baud, ~0.14 s) and of the XDM1041 SCPI queries yield to the hub.

Each check runs in a fresh subprocess patched exactly as the driver is (it imports
``platform_driver.agent``), scrapes an stpm34 and an xdm1041 interface against their
simulators — separate ``gridedge ... simulate`` processes on ptys — in a loop, and records the
largest gap seen by a greenlet ticking every millisecond. Two greenlets scrape each interface
at once, as a periodic scrape and a get_point RPC may: since the waits yield, each interface must
serialise its own port with a gevent lock. A control run without patching proves the probe sees
a blocking scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: far above scheduling noise on a loaded 2-core box, far below one blocking 9600-baud STPM34
#: scrape (~140 ms): a stall this long means a whole serial transaction held the hub
MAX_GAP_MS = 60.0
SCRAPE_SECONDS = 1.2

PROBE = r"""
import json, sys
patched = sys.argv[1] == "patched"
if patched:
    import platform_driver.agent  # noqa: F401  the driver's own imports: gevent.monkey.patch_all()
import csv, time
import gevent
args = json.loads(sys.argv[2])
for path in args["sys_path"]:
    sys.path.insert(0, path)
from volttron.driver.base.config import RemoteConfig
from volttron.driver.interfaces.stpm34.stpm34 import Stpm34Interface, Stpm34PointConfig
from volttron.driver.interfaces.xdm1041.xdm1041 import Xdm1041, Xdm1041PointConfig, Xdm1041RemoteConfig

interfaces = {}
stpm34 = Stpm34Interface(RemoteConfig(driver_type="stpm34", port=args["stpm34_port"], baudrate=9600,
                                      temperature_file=args["temperature_file"]), None)
with open(args["stpm34_registry"], newline="") as f:
    for row in csv.DictReader(f):
        stpm34.insert_register(stpm34.create_register(Stpm34PointConfig.model_validate(row)), "dev")
interfaces["stpm34"] = stpm34
if patched:
    Xdm1041.default_config = {}
    xdm = Xdm1041(Xdm1041RemoteConfig(driver_type="xdm1041", voltage_port=args["voltage_port"],
                                      shunt_port=args["shunt_port"], rate="F"), None)
    for quantity in ("voltage_v", "current_a", "power_w", "discharge_wh"):
        xdm.insert_register(xdm.create_register(Xdm1041PointConfig(
            **{"Volttron Point Name": quantity, "Quantity": quantity, "Units": "x"})), "dev")
    interfaces["xdm1041"] = xdm

gaps = []
scrapes = {name: 0 for name in interfaces}
errors = []
running = True

def tick():
    last = time.perf_counter()
    while running:
        gevent.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

def scrape(name, interface):
    deadline = time.monotonic() + args["seconds"]
    while time.monotonic() < deadline:
        results, failed = interface.get_multiple_points(list(interface.point_map))
        if failed or not results:
            errors.append(f"{name}: {failed}")
        scrapes[name] += 1
        gevent.sleep(0)

ticker = gevent.spawn(tick)
gevent.sleep(0.05)
# two greenlets per device, as a scrape and a get_point RPC may be: each interface must serialise
gevent.joinall([gevent.spawn(scrape, n, i) for n, i in interfaces.items() for _ in range(2)],
               raise_error=True)
running = False
ticker.join()
print(json.dumps({"max_gap_ms": max(gaps) * 1e3, "ticks": len(gaps), "scrapes": scrapes,
                  "errors": errors}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The two simulators in their own processes, so their work does not pollute the probe."""
    tmp = tmp_path_factory.mktemp("sims")
    cli = [sys.executable, "-m", "gridedge.cli"]
    temperature_file = tmp / "board.temperature"
    procs = [
        subprocess.Popen([*cli, "stpm34", "simulate", "--baud", "9600", "--temperature-file",
                          str(temperature_file)], stdout=subprocess.PIPE, text=True, env=_env()),
        subprocess.Popen([*cli, "xdm1041", "simulate", "--json"], stdout=subprocess.PIPE, text=True,
                         env=_env()),
    ]
    try:
        stpm34_port = procs[0].stdout.readline().split()[0]
        xdm = json.loads(procs[1].stdout.readline())
        yield {"stpm34_port": stpm34_port, "voltage_port": xdm["voltage_port"],
               "shunt_port": xdm["shunt_port"], "temperature_file": str(temperature_file)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _probe(simulators: dict, *, patched: bool) -> dict:
    args = {**simulators, "seconds": SCRAPE_SECONDS,
            "stpm34_registry": str(REPO / "driver_configs" / "registries" / "site_meter.csv"),
            "sys_path": [str(REPO / "agents" / "drivers" / name) for name in ("stpm34", "xdm1041")]}
    done = subprocess.run([sys.executable, "-c", PROBE, "patched" if patched else "unpatched",
                           json.dumps(args)], check=False, capture_output=True, text=True, timeout=60,
                          env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_scrapes_never_block_the_event_loop_for_a_serial_transaction(simulators: dict) -> None:
    """While an stpm34 and an xdm1041 interface scrape their simulators back to back, each from
    two greenlets at once, in the driver's patched process, every scrape succeeds (the interface
    serialises its own port) and a 1 ms ticker greenlet is never held up longer than MAX_GAP_MS."""
    seen = _probe(simulators, patched=True)
    assert seen["errors"] == []
    assert seen["scrapes"]["stpm34"] >= 3 and seen["scrapes"]["xdm1041"] >= 3, seen
    assert seen["ticks"] >= SCRAPE_SECONDS * 1000 / 10, seen  # the ticker ran all along
    assert seen["max_gap_ms"] < MAX_GAP_MS, seen


def test_the_probe_sees_a_scrape_that_blocks(simulators: dict) -> None:
    """Control: without monkey-patching, pyserial's select blocks the hub, and the ticker sees a
    gap as long as a whole 9600-baud STPM34 scrape."""
    seen = _probe(simulators, patched=False)
    assert seen["scrapes"]["stpm34"] >= 3, seen
    assert seen["max_gap_ms"] > 2 * MAX_GAP_MS, seen
