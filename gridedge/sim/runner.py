"""The simulator process of the demo site: one site model, its control socket, and every
simulated device on the wire (ptys for serial devices, loopback TCP for Modbus).

``gridedge sim run`` runs :func:`run_site` in the foreground until SIGTERM/SIGINT; ``gridedge up``
starts it as a daemon. Each device's port is linked at ``<run_dir>/dev/<name>``, the names the
device configs in ``driver_configs/`` use, and ``<run_dir>/sim.ready`` appears once all are up.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gridedge.sim.site import SiteModel, load_site_spec
from gridedge.sim.site_server import SiteServer

__all__ = ["SimPorts", "SiteSimulators", "run_site"]

_log = logging.getLogger("gridedge.sim")


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass(frozen=True)
class SimPorts:
    """TCP ports of the simulators (0 = do not start that simulator)."""

    site: int = 8082
    em24: int = 5021
    sunspec: int = 5022


@dataclass
class SiteSimulators:
    """All simulators of one site, started and stopped together."""

    model: SiteModel
    run_dir: Path
    ports: SimPorts
    started: list[tuple[str, _Stoppable]] = field(default_factory=list)
    tick_s: float = 0.2

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def dev_dir(self) -> Path:
        """Folder of the pty links."""
        return self.run_dir / "dev"

    def _start(self, name: str, factory: Callable[[], _Stoppable]) -> None:
        try:
            sim = factory()
        except Exception:
            _log.exception("simulator %s failed to start", name)
            raise
        self.started.append((name, sim))
        _log.info("simulator %s started", name)

    def start(self) -> None:
        """Start the site server, the physics ticker and every device simulator."""
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        server = SiteServer(model=self.model, port=self.ports.site)
        server.start()
        self.started.append(("site", server))
        self._ticker = threading.Thread(target=self._tick, name="site-physics", daemon=True)
        self._ticker.start()
        for name, factory in device_factories(self).items():
            self._start(name, factory)
        for name, sim in self.started:
            if name == "stpm34":
                server.add_fault_handler(name, _stpm34_fault(sim))
        (self.run_dir / "sim.ready").write_text(str(time.time()))

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.model.advance()

    def stop(self) -> None:
        """Stop everything in reverse order; remove the pty links."""
        self._stop.set()
        (self.run_dir / "sim.ready").unlink(missing_ok=True)
        for name, sim in reversed(self.started):
            try:
                sim.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                _log.exception("stopping simulator %s failed", name)
        self.started.clear()
        if self.dev_dir.exists():
            for link in self.dev_dir.iterdir():
                if link.is_symlink():
                    link.unlink(missing_ok=True)


def p1_values_from_site(model: SiteModel) -> Callable[[], dict[str, float]]:
    """The P1 simulator's live values from the site: per-phase power, voltage and current, the
    Belgian tariff, and the site's energy counters (so P1 and the other meters agree)."""

    def values() -> dict[str, float]:
        snap = model.snapshot()
        out: dict[str, float] = {"tariff": snap.tariff,
                                 "energy_import_t1_kwh": snap.import_kwh[0],
                                 "energy_import_t2_kwh": snap.import_kwh[1],
                                 "energy_export_t1_kwh": snap.export_kwh[0],
                                 "energy_export_t2_kwh": snap.export_kwh[1],
                                 "gas_flow_m3_h": 0.35}
        for i, phase in enumerate(snap.phases[:3], start=1):
            out[f"power_l{i}_w"] = phase.power_w
            out[f"voltage_l{i}_v"] = phase.voltage_v
            out[f"current_l{i}_a"] = phase.current_a
        return out

    return values


def device_factories(sims: SiteSimulators) -> dict[str, Callable[[], Any]]:
    """Factories of the device simulators of the demo site, by link name under ``run/dev``.

    The names and ports are the ones the device configs in ``driver_configs/devices`` use.
    """
    from gridedge.sim.modbus_meters import Em24Simulator, SunSpecMeterSimulator
    from gridedge.sim.p1 import P1Simulator, SynthSource
    from gridedge.sim.stpm34 import Stpm34Simulator, inputs_from_site
    from gridedge.sim.xdm1041 import SimpleBattery, make_battery_pair

    model, dev = sims.model, sims.dev_dir
    sunspec_model = 201 if model.spec.phases == 1 else 203
    factories: dict[str, Callable[[], Any]] = {
        # the main meter: channel 1 = the grid connection, channel 2 = the heater's circuit
        "stpm34": lambda: Stpm34Simulator(
            source=inputs_from_site(model, channel2_circuit="heater"), link_path=dev / "stpm34",
            temperature_file=dev / "stpm34.temperature").start(),
        "p1": lambda: P1Simulator(source=SynthSource(values_fn=p1_values_from_site(model)),
                                  link_path=dev / "p1").start(),
        # the battery bank's power monitor: two XDM1041 meters (terminal voltage, shunt);
        # the battery cycles gently between charge and discharge
        "xdm1041": lambda: make_battery_pair(
            battery=SimpleBattery(capacity_ah=100.0, soc=0.7,
                                  current_fn=lambda t: 20.0 * math.sin(t / 300.0)),
            shunt_ohm=0.00075, link_dir=dev).start(),
    }
    if sims.ports.em24:
        factories["em24"] = lambda: _started(Em24Simulator(snapshot_source=model.snapshot,
                                                           host="127.0.0.1", port=sims.ports.em24))
    if sims.ports.sunspec:
        factories["sunspec"] = lambda: _started(SunSpecMeterSimulator(
            snapshot_source=model.snapshot, host="127.0.0.1", port=sims.ports.sunspec,
            model_id=sunspec_model))
    return factories


def _stpm34_fault(sim: Any) -> Callable[[dict[str, Any]], None]:
    """Fault settings of the STPM34 board: ``silent`` (stops answering), ``corrupt_every`` (CRC
    noise on every Nth reply), ``garbage_every`` (stray bytes)."""

    def apply(settings: dict[str, Any]) -> None:
        unknown = set(settings) - {"silent", "corrupt_every", "garbage_every"}
        if unknown:
            raise ValueError(f"unknown stpm34 fault settings {sorted(unknown)}")
        if "silent" in settings:
            sim.silent = bool(settings["silent"])
        for key in ("corrupt_every", "garbage_every"):
            if key in settings:
                value = int(settings[key])
                if value < 0:
                    raise ValueError(f"{key} must be >= 0")
                setattr(sim, key, value)

    return apply


def _started(sim: Any) -> Any:
    sim.start()
    return sim


def run_site(*, site_config: Path, run_dir: Path, ports: SimPorts) -> int:
    """Run the site's simulators until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    model = SiteModel(spec=load_site_spec(site_config))
    sims = SiteSimulators(model=model, run_dir=run_dir, ports=ports)
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sims.start()
        _log.info("site simulators ready (site server on port %d)", ports.site)
        while not done.wait(1.0):
            pass
    finally:
        sims.stop()
        _log.info("site simulators stopped")
    return 0
