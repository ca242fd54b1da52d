"""The demo site as a running whole: simulators, a VTN, a VOLTTRON platform with our agents,
driver interfaces and device configs — brought up idempotently and taken down cleanly.

``gridedge up`` / ``down`` / ``status`` are thin wrappers around :class:`SiteRuntime`, and the
integration tests drive the same class in a temporary site folder with free ports, so the tests
run exactly what a user runs.

Folder of a site (``site_dir``)::

    home/     VOLTTRON_HOME of the site's platform (+ gridedge-installed.json: what is installed,
              by content hash, so that a re-run skips it)
    run/      pid files, ports.json, dev/ (pty links)
    log/      simulator and VTN logs
    config/   device and agent configs rendered for this site (placeholders filled in)
    data/     historian database, tariff data

The deployment (which libraries, agents and device configs) is ``platform_config/deployment.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridedge.errors import ConfigError, GridEdgeError
from gridedge.platform.instance import PlatformError, PlatformInstance, platform_user_prefix
from gridedge.platform.processes import daemon_pid, free_port, start_daemon, stop_daemon, tail

__all__ = ["Ports", "SiteRuntime", "runtime_from_env"]

PORT_NAMES = ("vtn", "vtn_control", "site", "em24", "sunspec")


@dataclass(frozen=True)
class Ports:
    """Loopback TCP ports of the site's services."""

    vtn: int = 8080
    vtn_control: int = 8081
    site: int = 8082
    em24: int = 5021
    sunspec: int = 5022

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """Consecutive ports from ``base`` (GRIDEDGE_PORT_BASE)."""
        return cls(**{name: base + i for i, name in enumerate(PORT_NAMES)})

    @classmethod
    def free(cls) -> Ports:
        """Free ports (for tests)."""
        return cls(**{name: free_port() for name in PORT_NAMES})

    def as_dict(self) -> dict[str, int]:
        """Name -> port."""
        return {name: getattr(self, name) for name in PORT_NAMES}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class SiteRuntime:
    """A demo site rooted at ``site_dir``."""

    site_dir: Path
    config_dir: Path
    wheels_dir: Path
    venv: Path
    ports: Ports = field(default_factory=Ports)
    user: str = field(default_factory=lambda: os.environ.get("GRIDEDGE_USER", "gridedge"))
    user_home: Path = field(default_factory=lambda: Path(os.environ.get("GRIDEDGE_STATE", "/var/lib/gridedge")))
    vtn_url: str | None = None  #: an outside VTN; when set the site starts no VTN of its own

    def __post_init__(self) -> None:
        self.site_dir = Path(self.site_dir)
        self.config_dir = Path(self.config_dir)
        self.wheels_dir = Path(self.wheels_dir)
        self.venv = Path(self.venv)
        self.platform = PlatformInstance(home=self.home, venv=self.venv, user=self.user,
                                         user_home=self.user_home)

    # -- folders ------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """VOLTTRON_HOME."""
        return self.site_dir / "home"

    @property
    def run_dir(self) -> Path:
        """Pid files, ports, pty links."""
        return self.site_dir / "run"

    @property
    def log_dir(self) -> Path:
        """Simulator and VTN logs."""
        return self.site_dir / "log"

    @property
    def data_dir(self) -> Path:
        """Historian and tariff data (kept across down/up)."""
        return self.site_dir / "data"

    @property
    def rendered_dir(self) -> Path:
        """Configs with placeholders filled in."""
        return self.site_dir / "config"

    @property
    def local_vtn(self) -> bool:
        """Whether this site runs its own VTN."""
        return not self.vtn_url

    @property
    def effective_vtn_url(self) -> str:
        """The VTN the VEN talks to."""
        return self.vtn_url or f"http://127.0.0.1:{self.ports.vtn}/OpenADR2/Simple/2.0b"

    @property
    def vtn_control_url(self) -> str:
        """The local VTN's control surface."""
        return f"http://127.0.0.1:{self.ports.vtn_control}"

    def _own(self, *paths: Path) -> None:
        """Hand folders to the platform user when we are root (its processes write there)."""
        if os.geteuid() != 0:
            return
        import pwd

        uid = pwd.getpwnam(self.user).pw_uid
        for p in paths:
            os.chown(p, uid, -1)

    def deployment(self) -> dict[str, Any]:
        """The deployment manifest."""
        path = self.config_dir / "platform_config" / "deployment.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the deployment manifest {path}: {exc}") from exc

    # -- rendering ----------------------------------------------------------------------------

    def placeholders(self) -> dict[str, str]:
        """Values substituted into configs: ``{run_dir}``, ``{data_dir}``, ports, the VTN URL."""
        values = {
            "{run_dir}": str(self.run_dir),
            "{data_dir}": str(self.data_dir),
            "{site_dir}": str(self.site_dir),
            "{vtn_url}": self.effective_vtn_url,
        }
        for name, port in self.ports.as_dict().items():
            values[f"{{{name}_port}}"] = str(port)
        return values

    def render(self, source: Path) -> Path:
        """Copy ``source`` into the rendered folder with placeholders filled; return the copy."""
        rel = source.relative_to(self.config_dir)
        target = self.rendered_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text()
        for key, value in self.placeholders().items():
            text = text.replace(key, value)
        if source.suffix == ".json":
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{rel}: not valid JSON after rendering: {exc}") from exc
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        return target

    # -- processes ----------------------------------------------------------------------------

    def _python_cmd(self, *args: str) -> list[str]:
        return [*platform_user_prefix(self.user, self.user_home), str(self.venv / "bin" / "python"),
                "-m", "gridedge.cli", *args]

    def _daemon_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _library_digest(self) -> str:
        """Content hash of the installed shared library: processes running older code restart."""
        return _sha(self._wheel("gridedge"))

    def _restart_if_changed(self, name: str, digest: str) -> None:
        """Stop daemon ``name`` if it runs code or config other than ``digest``."""
        stamp = self.run_dir / f"{name}.digest"
        pid_file = self.run_dir / f"{name}.pid"
        if daemon_pid(pid_file) is not None and (not stamp.exists() or stamp.read_text() != digest):
            stop_daemon(pid_file)
        stamp.write_text(digest)

    def start_simulators(self) -> None:
        """Start the simulator process (site model, pty devices, Modbus servers)."""
        site_config = self.render(self.config_dir / "platform_config" / "site.json")
        self._restart_if_changed("sim", self._library_digest() + _sha(site_config)
                                 + json.dumps(self.ports.as_dict(), sort_keys=True))
        start_daemon(
            self._python_cmd("sim", "run", "--site-config", str(site_config),
                             "--run-dir", str(self.run_dir), "--site-port", str(self.ports.site),
                             "--em24-port", str(self.ports.em24), "--sunspec-port", str(self.ports.sunspec)),
            pid_file=self.run_dir / "sim.pid", log_file=self.log_dir / "sim.log",
            env=self._daemon_env(), cwd=self.site_dir)
        self._wait_port(self.ports.site, "the simulators' site server", self.log_dir / "sim.log")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (self.run_dir / "sim.ready").exists():
            time.sleep(0.1)
        if not (self.run_dir / "sim.ready").exists():
            raise GridEdgeError(f"the simulators did not become ready; see {self.log_dir / 'sim.log'}:\n"
                                f"{tail(self.log_dir / 'sim.log')}")

    def start_vtn(self) -> None:
        """Start the demo VTN (unless an outside VTN is configured)."""
        if not self.local_vtn:
            return
        self._restart_if_changed("vtn", self._library_digest() + json.dumps(self.ports.as_dict(), sort_keys=True))
        start_daemon(
            self._python_cmd("vtn", "serve", "--host", "127.0.0.1", "--port", str(self.ports.vtn),
                             "--control-port", str(self.ports.vtn_control)),
            pid_file=self.run_dir / "vtn.pid", log_file=self.log_dir / "vtn.log",
            env=self._daemon_env(), cwd=self.site_dir)
        self._wait_port(self.ports.vtn_control, "the VTN's control surface", self.log_dir / "vtn.log")

    def _wait_port(self, port: int, what: str, log: Path, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise GridEdgeError(f"{what} did not open port {port} within {timeout_s:.0f} s; "
                            f"see {log}:\n{tail(log)}")

    # -- up / down ----------------------------------------------------------------------------

    def _installed(self) -> dict[str, str]:
        try:
            return json.loads((self.home / "gridedge-installed.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _save_installed(self, installed: dict[str, str]) -> None:
        (self.home / "gridedge-installed.json").write_text(json.dumps(installed, indent=1, sort_keys=True))

    def _wheel(self, prefix: str) -> Path:
        norm = prefix.replace("-", "_")
        matches = sorted(self.wheels_dir.glob(f"{norm}-*.whl"))
        if not matches:
            raise ConfigError(f"no wheel {norm}-*.whl in {self.wheels_dir}: run the setup first")
        return matches[-1]

    def up(self, *, log: Any = print) -> None:
        """Bring the whole site up; steps whose inputs did not change are skipped."""
        for d in (self.site_dir, self.run_dir, self.log_dir, self.data_dir, self.rendered_dir,
                  self.run_dir / "dev"):
            d.mkdir(parents=True, exist_ok=True)
        self._own(self.site_dir, self.run_dir, self.log_dir, self.data_dir, self.rendered_dir,
                  self.run_dir / "dev")
        (self.run_dir / "ports.json").write_text(json.dumps(
            {**self.ports.as_dict(), "vtn_url": self.effective_vtn_url,
             "vtn_control_url": self.vtn_control_url if self.local_vtn else None}, indent=1))
        manifest = self.deployment()
        log("starting simulators")
        self.start_simulators()
        if self.local_vtn:
            log(f"starting the demo VTN on port {self.ports.vtn}")
            self.start_vtn()
        else:
            if stop_daemon(self.run_dir / "vtn.pid"):
                log("stopped the demo VTN: the VEN now talks to an outside VTN")
            log(f"using the outside VTN {self.vtn_url}")
        if not self.platform.is_running():
            log("starting the VOLTTRON platform")
            self.platform.start()
        installed = self._installed()
        for lib in manifest.get("libraries", []):
            wheel = self._wheel(lib)
            key = f"lib:{lib}"
            if installed.get(key) != _sha(wheel):
                log(f"installing driver interface {wheel.name}")
                self.platform.install_lib(wheel)
                installed[key] = _sha(wheel)
                self._save_installed(installed)
        present = self.platform.agents()
        if self._store_driver_configs(manifest, installed, log) and "running" in present.get(
                "platform.driver", {}).get("status", ""):
            # platform-driver rc9 adds a second poller per device for a re-stored config and
            # never cancels the first: a restart leaves exactly one
            log("restarting platform.driver for its new configs")
            self.platform.vctl("restart", present["platform.driver"]["uuid"])
        for agent in manifest.get("agents", []):
            identity = agent["identity"]
            wheel = self._wheel(agent["wheel"])
            config = self.render(self.config_dir / "platform_config" / agent["config"]) if agent.get("config") else None
            digest = _sha(wheel) + (_sha(config) if config else "")
            if identity.startswith("gridedge."):
                # our agents run the shared library: a new library means a restart with it
                digest += self._library_digest()
            key = f"agent:{identity}"
            if installed.get(key) == digest and identity in present:
                if "running" not in present[identity]["status"]:
                    log(f"starting {identity}")
                    self.platform.vctl("start", present[identity]["uuid"])
                continue
            log(f"installing {identity} from {wheel.name}")
            self.platform.install_agent(wheel, identity=identity, config=config, tag=agent.get("tag"),
                                        priority=int(agent.get("priority", 50)))
            installed[key] = digest
            self._save_installed(installed)
        self._save_installed(installed)
        self.wait_agents_running([a["identity"] for a in manifest.get("agents", [])])

    def _store_driver_configs(self, manifest: dict[str, Any], installed: dict[str, str], log: Any) -> bool:
        """Store changed platform.driver configs; return whether any was stored."""
        driver_dir = self.config_dir / "driver_configs"
        items: list[tuple[str, Path, str]] = []
        main_cfg = driver_dir / "driver.config"
        if main_cfg.exists():
            items.append(("config", self.render(main_cfg), "json"))
        for csv in sorted((driver_dir / "registries").glob("*.csv")):
            items.append((csv.name, self.render(csv), "csv"))
        for device in manifest.get("devices", []):
            src = driver_dir / "devices" / f"{device}.json"
            if not src.exists():
                raise ConfigError(f"deployment names device {device!r} but {src} does not exist")
            items.append((f"devices/{device}", self.render(src), "json"))
        stored = False
        for name, path, kind in items:
            key = f"config:platform.driver:{name}"
            if installed.get(key) == _sha(path):
                continue
            log(f"storing platform.driver config {name}")
            self.platform.store_config("platform.driver", name, path, kind=kind)
            installed[key] = _sha(path)
            self._save_installed(installed)
            stored = True
        return stored

    def wait_agents_running(self, identities: list[str], timeout_s: float = 60.0) -> None:
        """Wait until every agent in ``identities`` reports running; name those that do not."""
        deadline = time.monotonic() + timeout_s
        missing: list[str] = identities
        while time.monotonic() < deadline:
            agents = self.platform.agents()
            missing = [i for i in identities if "running" not in agents.get(i, {}).get("status", "")]
            if not missing:
                return
            time.sleep(1)
        raise PlatformError(f"agents not running after {timeout_s:.0f} s: {missing}; platform log:\n"
                            f"{self.platform.log_errors()}")

    def down(self, *, log: Any = print) -> None:
        """Stop the platform (agents revert their devices), the VTN and the simulators."""
        if self.platform.is_running():
            log("stopping the VOLTTRON platform")
            self.platform.stop()
        if stop_daemon(self.run_dir / "vtn.pid"):
            log("stopped the VTN")
        if stop_daemon(self.run_dir / "sim.pid"):
            log("stopped the simulators")
        for stamp in ("sim.digest", "vtn.digest"):
            (self.run_dir / stamp).unlink(missing_ok=True)
        dev = self.run_dir / "dev"
        if dev.exists():
            for link in dev.iterdir():
                link.unlink(missing_ok=True)
        (self.run_dir / "sim.ready").unlink(missing_ok=True)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The site as JSON: platform, agents, site power, circuits, DR events (see ``gridedge status``)."""
        running = self.platform.is_running()
        result: dict[str, Any] = {
            "platform": "running" if running else "stopped",
            "agents": [],
            "site_power_w": None,
            "circuits": [],
            "dr_events": [],
            "simulators": "running" if daemon_pid(self.run_dir / "sim.pid") else "stopped",
            "vtn": ("running" if daemon_pid(self.run_dir / "vtn.pid") else "stopped")
            if self.local_vtn else self.vtn_url,
            "errors": [],
        }
        if not running:
            return result
        agents = self.platform.agents()
        result["agents"] = [
            {"identity": ident, "name": a["name"], "state": a["status"].split(" ")[0] or "unknown"}
            for ident, a in sorted(agents.items())
        ]
        try:
            from gridedge.platform.client import BusClient

            with BusClient(home=self.home) as bus:
                try:
                    ems = bus.call("gridedge.ems", "get_status", timeout_s=10)
                    result["site_power_w"] = ems.get("site_power_w")
                    result["circuits"] = [
                        {k: c.get(k) for k in ("id", "name", "enabled", "power_w", "critical", "priority",
                                               "level")}
                        for c in ems.get("circuits", [])
                    ]
                    result["curtailment"] = {k: ems.get(k) for k in ("active", "event_id", "requested_kw",
                                                                      "planned_kw", "feasible", "shortfall_kw",
                                                                      "sheddable_kw")}
                except GridEdgeError as exc:
                    result["errors"].append(str(exc))
                try:
                    events = bus.call("gridedge.ven", "get_events", timeout_s=10)
                    result["dr_events"] = [
                        {"event_id": e.get("event_id"), "status": e.get("status"), "shed_kw": e.get("shed_kw"),
                         "setpoint_kw": e.get("setpoint_kw"), "start": e.get("start"), "end": e.get("end"),
                         "opt": e.get("opt"), "modification_number": e.get("modification_number")}
                        for e in events
                    ]
                except GridEdgeError as exc:
                    result["errors"].append(str(exc))
        except GridEdgeError as exc:
            result["errors"].append(str(exc))
        return result


def runtime_from_env(*, site_dir: Path | None = None) -> SiteRuntime:
    """The site described by the environment the ``scripts/gridedge`` wrapper sets up."""
    state = Path(os.environ.get("GRIDEDGE_STATE", "/var/lib/gridedge"))
    base = os.environ.get("GRIDEDGE_PORT_BASE")
    ports = Ports.from_base(int(base)) if base else Ports()
    return SiteRuntime(
        site_dir=site_dir or Path(os.environ.get("GRIDEDGE_SITE_DIR", state / "site")),
        config_dir=Path(os.environ.get("GRIDEDGE_CONFIG_DIR", state / "config")),
        wheels_dir=Path(os.environ.get("GRIDEDGE_WHEELS", state / "wheels")),
        venv=Path(os.environ.get("GRIDEDGE_VENV", sys.prefix)),
        ports=ports,
        user_home=state,
        vtn_url=os.environ.get("GRIDEDGE_VTN_URL") or None,
    )
