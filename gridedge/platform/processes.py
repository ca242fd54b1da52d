"""Background processes of the demo site (simulators, the VTN) with pid files.

Each daemon runs in its own session (process group), so stopping it takes its children too and
leaves no stray process, pty or port behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["daemon_pid", "start_daemon", "stop_daemon"]


def daemon_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie or a recycled pid of another program does not count
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if not cmdline or stat.split(")")[-1].split()[0] == "Z":
        return None
    return pid


def start_daemon(cmd: Sequence[str], *, pid_file: Path, log_file: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start ``cmd`` detached unless ``pid_file`` names a live process; return its pid."""
    pid = daemon_pid(pid_file)
    if pid is not None:
        return pid
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_daemon(pid_file: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop the daemon's whole process group (TERM, then KILL); return whether one was running."""
    pid = daemon_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and daemon_pid(pid_file) is not None:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if daemon_pid(pid_file) is None:
            break
    pid_file.unlink(missing_ok=True)
    return True


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (a placeholder if there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
