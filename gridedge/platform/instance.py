"""One VOLTTRON 2.x platform instance: prepare its home, start and stop it, drive ``vctl``.

Used by ``gridedge up/down`` and by the integration tests, so that the tests exercise exactly the
path a user runs. Facts this code relies on (measured, see the project's VOLTTRON notes):

- ``volttron`` and ``vctl`` refuse to run as root: when we are root, every platform command runs
  as the unprivileged platform user through ``runuser``, keeping the environment.
- The first start runs ``poetry add`` of the whole venv unless ``$VOLTTRON_HOME/pyproject.toml``
  already exists: we write a dependency-free one first.
- The platform must run in its own process group (``start_new_session``), otherwise it and every
  agent ignore SIGINT and each stop takes 60 s.
- ``vctl`` writes ``myapp.log`` into its working directory and often fails silently (exit 20):
  we run it from the instance's home and surface the platform log's last error on failure.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridedge.errors import GridEdgeError
from gridedge.platform.processes import daemon_pid, tail

__all__ = ["PlatformError", "PlatformInstance", "platform_user_prefix"]

_INSTANCE_PYPROJECT = """\
[project]
name = "gridedge-instance"
version = "0.1.0"
description = "GridEdge VOLTTRON instance (agents are installed by gridedge up)"
requires-python = ">={major}.{minor},<{major}.{next_minor}"
dependencies = []

[tool.poetry]
package-mode = false
"""


class PlatformError(GridEdgeError):
    """The platform or a vctl command failed; the message carries the platform log's reason."""


def platform_user_prefix(user: str, home: Path) -> list[str]:
    """The command prefix that runs a command as ``user`` when we are root (empty otherwise)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--", "env", f"HOME={home}", f"USER={user}", f"LOGNAME={user}"]


@dataclass
class PlatformInstance:
    """A platform living in ``home`` (its VOLTTRON_HOME), run from ``venv`` as ``user``."""

    home: Path
    venv: Path
    user: str = field(default_factory=lambda: os.environ.get("GRIDEDGE_USER", "gridedge"))
    user_home: Path = field(default_factory=lambda: Path(os.environ.get("GRIDEDGE_STATE", "/var/lib/gridedge")))
    instance_name: str = "gridedge"

    @property
    def log_path(self) -> Path:
        """The platform's log file."""
        return self.home / "volttron.log"

    @property
    def pid_path(self) -> Path:
        """The platform's pid file (written by the platform itself)."""
        return self.home / "VOLTTRON_PID"

    @property
    def address(self) -> str:
        """The local VIP address (abstract unix socket, one per home)."""
        return f"ipc://@{self.home}/run/vip.socket"

    def env(self) -> dict[str, str]:
        """Environment for platform processes: ours (CA bundles, pip settings) plus the home."""
        env = dict(os.environ)
        env["VOLTTRON_HOME"] = str(self.home)
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        # Poetry inside the platform must install agents into this venv, not into a virtualenv
        # of its own (see also poetry.toml in the home)
        env["VIRTUAL_ENV"] = str(self.venv)
        return env

    def _prefix(self) -> list[str]:
        return platform_user_prefix(self.user, self.user_home)

    def prepare(self) -> None:
        """Create the home with the instance config and a dependency-free instance pyproject."""
        self.home.mkdir(parents=True, exist_ok=True)
        pyproject = self.home / "pyproject.toml"
        if not pyproject.exists():
            out = subprocess.run([str(self.venv / "bin" / "python"), "-c",
                                  "import sys; print(sys.version_info[0], sys.version_info[1])"],
                                 capture_output=True, text=True, check=True).stdout.split()
            major, minor = int(out[0]), int(out[1])
            pyproject.write_text(_INSTANCE_PYPROJECT.format(major=major, minor=minor,
                                                            next_minor=minor + 1))
        poetry_toml = self.home / "poetry.toml"
        if not poetry_toml.exists():
            poetry_toml.write_text("[virtualenvs]\ncreate = false\n")
        config = self.home / "config"
        if not config.exists():
            config.write_text(
                "[volttron]\n"
                f"instance-name = {self.instance_name}\n"
                "messagebus = zmq\n"
                "agent-monitor-frequency = 30\n"
            )
        if os.geteuid() == 0:
            uid = pwd.getpwnam(self.user).pw_uid
            for p in [self.home, *self.home.rglob("*")]:
                try:
                    os.chown(p, uid, -1)
                except FileNotFoundError:
                    pass

    def pid(self) -> int | None:
        """The platform's pid if it is running."""
        return daemon_pid(self.pid_path)

    def is_running(self) -> bool:
        """Whether the platform process is alive."""
        return self.pid() is not None

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the platform in its own process group and wait until vctl answers."""
        if self.is_running():
            return
        self.prepare()
        log = open(self.home / "volttron.stdout", "ab")
        cmd = [*self._prefix(), str(self.venv / "bin" / "volttron"), "-v", "-l", str(self.log_path)]
        subprocess.Popen(cmd, cwd=self.home, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is not None:
                res = self.vctl("status", check=False, timeout_s=30)
                if res.returncode == 0:
                    return
            time.sleep(0.5)
        raise PlatformError(f"the platform did not come up within {timeout_s:.0f} s; "
                            f"last log lines:\n{self.log_tail()}")

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Shut the platform and all its agents down; kill what is left after ``timeout_s``."""
        pid = self.pid()
        if pid is None:
            return
        self.vctl("shutdown", "--platform", check=False, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            time.sleep(2)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.pid_path.unlink()
        except OSError:
            pass

    def vctl(self, *args: str, check: bool = True, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``vctl ARGS`` as the platform user from the home; raise PlatformError with the
        platform log's reason when it fails and ``check`` is set."""
        cmd = [*self._prefix(), str(self.venv / "bin" / "vctl"), *args]
        try:
            res = subprocess.run(cmd, cwd=self.home, env=self.env(), capture_output=True, text=True,
                                 timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(f"vctl {' '.join(args)} timed out after {timeout_s:.0f} s") from exc
        if check and res.returncode != 0:
            raise PlatformError(
                f"vctl {' '.join(args)} failed (exit {res.returncode}): "
                f"{(res.stderr or res.stdout).strip()[-800:]}\nplatform log:\n{self.log_errors()}")
        return res

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the platform log."""
        return tail(self.log_path, lines)

    def log_errors(self, lines: int = 12) -> str:
        """The last ERROR lines of the platform log (with the lines that follow each)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no platform log)"
        idx = [i for i, ln in enumerate(text) if " ERROR" in ln or "Stderr" in ln]
        if not idx:
            return self.log_tail(lines)
        start = idx[-1]
        return "\n".join(text[max(0, start - 2):start + lines])

    # -- installation -------------------------------------------------------------------------

    def install_lib(self, wheel: Path) -> None:
        """``vctl install-lib`` a library wheel (driver interfaces), replacing an older build.

        ``--force`` fails when the library is not installed yet, and a plain install fails when
        it is: try the plain one first."""
        res = self.vctl("install-lib", str(wheel), check=False)
        if res.returncode != 0:
            self.vctl("install-lib", "--force", str(wheel))

    def install_agent(self, wheel: Path, *, identity: str, config: Path | None = None,
                      tag: str | None = None, start: bool = True, priority: int = 50) -> None:
        """``vctl install`` an agent wheel (replacing an installed one of the same identity),
        enabled so that it starts with the platform."""
        existing = self.agents().get(identity)
        if existing is not None:
            self.vctl("remove", "--force", existing["uuid"], timeout_s=120)
        args = ["install", str(wheel), "--vip-identity", identity, "--enable", "--priority",
                str(priority), "-st", "1"]
        if config is not None:
            args += ["--agent-config", str(config)]
        if tag:
            args += ["--tag", tag]
        if start:
            args.append("--start")
        self.vctl(*args, timeout_s=180)

    def agents(self) -> dict[str, dict[str, str]]:
        """Installed agents by identity: uuid, name, tag (may be empty), status text."""
        res = self.vctl("status", check=False)
        out: dict[str, dict[str, str]] = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[0] == "UUID":
                continue
            status = " ".join(parts[4:]) if len(parts) > 4 else ""
            tag = ""
            # TAG is optional: it is there when the 4th column is not a priority number
            if len(parts) > 4 and not parts[3].isdigit():
                tag = parts[3]
                status = " ".join(parts[5:])
            out[parts[2]] = {"uuid": parts[0], "name": parts[1], "tag": tag, "status": status}
        return out

    def store_config(self, identity: str, name: str, path: Path, *, kind: str = "json") -> None:
        """Store a file in an agent's config store (``kind``: json | csv | raw)."""
        args = ["config", "store", identity, name, str(path)]
        if kind == "csv":
            args.append("--csv")
        elif kind == "raw":
            args.append("--raw")
        self.vctl(*args)

    def delete_config(self, identity: str, name: str) -> None:
        """Delete one config from an agent's store (absent is fine)."""
        self.vctl("config", "delete", identity, name, check=False)

    def list_configs(self, identity: str) -> list[str]:
        """The names in an agent's config store."""
        res = self.vctl("config", "list", identity, check=False)
        return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
