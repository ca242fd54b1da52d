"""Fixtures for integration tests: a real demo site (simulators, VTN, VOLTTRON platform with our
agents) in a temporary folder with free ports, brought up by the same code as ``gridedge up``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("GRIDEDGE_STATE", "/var/lib/gridedge"))


def _need_platform() -> None:
    """The site runs the installed wheels: rebuild them if the checkout changed (a no-op when it
    did not), so that a plain ``pytest`` run never tests stale code."""
    res = subprocess.run(["bash", "-c", "source scripts/lib/setup.sh && ensure_all"], cwd=REPO,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(f"setting up the platform venv and wheels failed:\n{res.stderr[-2000:]}")


@pytest.fixture(scope="session")
def demo_site() -> Iterator[object]:
    """A running demo site; torn down (platform, VTN, simulators) after the session."""
    _need_platform()
    from gridedge.platform.site_runtime import Ports, SiteRuntime

    # short path: VOLTTRON's ipc socket name must stay under the unix socket length limit
    site_dir = Path(tempfile.mkdtemp(prefix="ge-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(site_dir, pwd.getpwnam(os.environ.get("GRIDEDGE_USER", "gridedge")).pw_uid, -1)
    site = SiteRuntime(site_dir=site_dir, config_dir=REPO, wheels_dir=STATE / "wheels",
                       venv=STATE / "venv", ports=Ports.free(), user_home=STATE)
    try:
        site.up(log=lambda m: print(f"[site] {m}", file=sys.stderr))
        yield site
    finally:
        site.down(log=lambda m: print(f"[site] {m}", file=sys.stderr))
        if os.environ.get("GRIDEDGE_KEEP_TEST_SITE") != "1":
            shutil.rmtree(site_dir, ignore_errors=True)


def wait_for(predicate, *, timeout_s: float, what: str, interval_s: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def gridedge_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m gridedge.cli ARGS`` from the checkout in a fresh process."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run([str(STATE / "venv" / "bin" / "python"), "-m", "gridedge.cli", *args],
                          capture_output=True, text=True, timeout=timeout_s, env=full_env, cwd=REPO,
                          check=False)


def cli_json(*args: str, env: dict[str, str] | None = None) -> object:
    """Run the CLI and parse its JSON output; fail with its stderr when it fails."""
    res = gridedge_cli(*args, env=env)
    assert res.returncode == 0, f"gridedge {' '.join(args)} failed: {res.stderr}"
    return json.loads(res.stdout)
