"""The walking skeleton on a real VOLTTRON platform: VTN event -> VEN -> EMS -> platform driver ->
relay -> simulated meter power drops -> the VTN's reports show it; cancel restores; the historian
keeps every device's ``all`` publishes; ``gridedge status --json`` shows it all."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest
from conftest import cli_json, gridedge_cli, wait_for

pytestmark = pytest.mark.integration

BASE_W = 10_000.0


def vtn(site, *args: str) -> Any:
    return cli_json("vtn", *args, "--url", site.vtn_control_url)


def test_site_comes_up_with_every_agent_running_and_the_meter_measuring(demo_site) -> None:
    """After up: platform running, the five agents running, the STPM34 meter measuring the 10 kW
    site through the platform driver, every circuit on."""
    status = wait_for(lambda: (s := demo_site.status())["site_power_w"] and s, timeout_s=60,
                      what="the EMS to report site power from the meter")
    assert status["platform"] == "running"
    states = {a["identity"]: a["state"] for a in status["agents"]}
    for identity in ("platform.driver", "platform.historian", "gridedge.ems", "gridedge.ven", "gridedge.tariff"):
        assert states.get(identity) == "running", states
    assert status["site_power_w"] == pytest.approx(BASE_W, rel=0.01)
    circuits = {c["id"]: c for c in status["circuits"]}
    assert set(circuits) == {"heater", "lights", "house", "hvac", "fridge"}
    assert all(c["enabled"] for c in circuits.values())
    assert circuits["hvac"]["critical"] and circuits["fridge"]["critical"]


def test_dr_event_sheds_the_circuits_the_meter_drops_the_vtn_sees_it_and_cancel_restores(demo_site) -> None:
    """2 kW asked of the 10 kW site: heater 1.5 -> 0, lights 0.4 -> 0.12, house 1.0 -> 0.78 kW,
    critical circuits untouched; the simulated meter measures 8 kW through the platform driver,
    the VEN opted in and its TELEMETRY_USAGE reports at the VTN show the drop; cancel restores."""
    wait_for(lambda: (demo_site.status()["site_power_w"] or 0) > BASE_W * 0.99, timeout_s=60,
             what="the meter to measure the full site")
    wait_for(lambda: vtn(demo_site, "state").get("vens"), timeout_s=30, what="the VEN to register")
    created = vtn(demo_site, "event", "--shed-kw", "2", "--duration", "300")
    event_id = created["event_id"]

    status = wait_for(lambda: (s := demo_site.status())["site_power_w"]
                      and s["site_power_w"] < BASE_W - 1900 and s, timeout_s=30,
                      what="the meter to measure the shed")
    assert status["site_power_w"] == pytest.approx(BASE_W - 2000, abs=30)
    power = {c["id"]: c["power_w"] for c in status["circuits"]}
    assert power["heater"] == pytest.approx(0.0, abs=1)
    assert power["lights"] == pytest.approx(120.0, abs=1)
    assert power["house"] == pytest.approx(780.0, abs=1)
    assert power["hvac"] == pytest.approx(6000.0, abs=1) and power["fridge"] == pytest.approx(1100.0, abs=1)
    events = {e["event_id"]: e for e in status["dr_events"]}
    assert events[event_id]["status"] in ("active", "near", "far")
    assert events[event_id]["shed_kw"] == pytest.approx(2.0)
    assert events[event_id]["opt"] == "optIn"

    def vtn_saw_it() -> Any:
        state = vtn(demo_site, "state")
        event = next(e for e in state["events"] if e["event_id"] == event_id)
        opted = "optIn" in event["opt"].values()
        reports = [r for rs in state["reports"].values() for r in rs]
        low = [r for r in reports if r["value"] < BASE_W - 1900]
        return opted and low and (event, reports)

    _event, reports = wait_for(vtn_saw_it, timeout_s=30, what="the VTN to get the opt-in and a low report")
    assert any(r["value"] > BASE_W * 0.99 for r in reports), "reports before the event show the full site"

    vtn(demo_site, "cancel", event_id)
    status = wait_for(lambda: (s := demo_site.status())["site_power_w"]
                      and s["site_power_w"] > BASE_W * 0.99 and s, timeout_s=30,
                      what="the circuits to be restored")
    assert all(c["enabled"] and c["level"] == pytest.approx(1.0) for c in status["circuits"])
    assert {e["event_id"]: e["status"] for e in status["dr_events"]}[event_id] == "cancelled"


def test_status_json_command_prints_the_site(demo_site) -> None:
    """``gridedge status --json`` (the CLI, in its own process) prints platform, agents,
    site_power_w, circuits and dr_events with the documented keys."""
    res = gridedge_cli("status", "--json", env={
        "GRIDEDGE_SITE_DIR": str(demo_site.site_dir), "GRIDEDGE_CONFIG_DIR": str(demo_site.config_dir),
        "GRIDEDGE_WHEELS": str(demo_site.wheels_dir), "GRIDEDGE_VENV": str(demo_site.venv)})
    assert res.returncode == 0, res.stderr
    import json

    status = json.loads(res.stdout)
    assert status["platform"] == "running"
    assert {"identity", "state"} <= set(status["agents"][0])
    assert isinstance(status["site_power_w"], float)
    assert {"id", "name", "enabled", "power_w", "critical", "priority"} <= set(status["circuits"][0])
    assert isinstance(status["dr_events"], list)


def test_historian_stores_every_device_all_publish(demo_site) -> None:
    """platform.historian (sqlite) stores the points of every device's ``all`` publish."""
    db_path = demo_site.data_dir / "historian.sqlite"

    def devices_stored() -> set[str]:
        if not db_path.exists():
            return set()
        with sqlite3.connect(db_path) as db:
            topics = [t for (t,) in db.execute("SELECT topic_name FROM topics")]
        return {"/".join(t.split("/")[:3]) for t in topics}

    want = {"site/main/meter", "site/main/relays", "site/main/p1", "site/main/em24",
            "site/main/sunspec_meter", "site/main/battery"}
    got = wait_for(lambda: want <= (d := devices_stored()) and d, timeout_s=60,
                   what=f"historian topics of {sorted(want)}")
    assert want <= got
    with sqlite3.connect(db_path) as db:
        (power,) = db.execute(
            "SELECT d.value_string FROM data d JOIN topics t ON d.topic_id = t.topic_id "
            "WHERE t.topic_name = 'site/main/meter/power_w' ORDER BY d.ts DESC LIMIT 1").fetchone()
    assert float(power) > 0


def test_up_again_is_idempotent_and_fast(demo_site) -> None:
    """A second up with nothing changed installs and stores nothing and leaves everything running
    (how fast that is, is for a benchmark, not a test)."""
    lines: list[str] = []
    demo_site.up(log=lines.append)
    assert not [ln for ln in lines if ln.startswith(("installing", "storing"))], lines
    assert demo_site.status()["platform"] == "running"


def test_ven_follows_an_outside_vtn_and_the_site_then_runs_no_vtn_of_its_own(demo_site) -> None:
    """With an outside VTN configured (GRIDEDGE_VTN_URL), up stops the demo VTN, the VEN registers
    at the outside VTN and sends it its reports; switching back brings the demo VTN back."""
    import subprocess

    from conftest import REPO, STATE

    from gridedge.platform.processes import free_port

    port, control = free_port(), free_port()
    outside = subprocess.Popen(
        [str(STATE / "venv" / "bin" / "python"), "-m", "gridedge.cli", "vtn", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--control-port", str(control), "--vtn-id", "OUTSIDE-VTN"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        demo_site.vtn_url = f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"
        demo_site.up(log=lambda m: None)
        assert demo_site.status()["vtn"] == demo_site.vtn_url
        assert not _listening(demo_site.ports.vtn), "the demo VTN still runs"
        state = wait_for(lambda: (s := cli_json("vtn", "state", "--url", f"http://127.0.0.1:{control}"))
                         ["vens"] and s["reports"] and s, timeout_s=60,
                         what="the VEN to register and report at the outside VTN")
        assert state["vtn_id"] == "OUTSIDE-VTN"
    finally:
        demo_site.vtn_url = None
        demo_site.up(log=lambda m: None)
        outside.terminate()
        outside.wait(timeout=10)
    wait_for(lambda: vtn(demo_site, "state")["vens"], timeout_s=60,
             what="the VEN to register at the demo VTN again")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment names ``text``."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            # agents carry the site only in their environment (VOLTTRON_HOME)
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if (text in cmdline or text in environ) and state != "Z":
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_down_leaves_no_process_pty_or_port_and_up_brings_it_back(demo_site) -> None:
    """down stops the platform and every agent (which revert their devices), the VTN and the
    simulators: no process of the site is left, no pty link, no listening port. A later up
    brings the same site back without reinstalling anything."""
    demo_site.down(log=lambda m: None)
    wait_for(lambda: not _processes_mentioning(str(demo_site.site_dir)), timeout_s=15,
             what="every process of the site to end")
    assert list((demo_site.run_dir / "dev").iterdir()) == []
    for name, port in demo_site.ports.as_dict().items():
        assert not _listening(port), f"port {port} ({name}) still listening after down"
    assert demo_site.status()["platform"] == "stopped"

    lines: list[str] = []
    demo_site.up(log=lines.append)
    assert not [ln for ln in lines if ln.startswith("installing")], lines
    wait_for(lambda: (demo_site.status()["site_power_w"] or 0) > BASE_W * 0.99, timeout_s=60,
             what="the meter to measure the site again after up")
