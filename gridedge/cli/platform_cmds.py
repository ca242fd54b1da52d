"""``gridedge up``, ``gridedge down`` and ``gridedge status``: the demo site as a whole.

The ``scripts/gridedge`` wrapper has already installed what is needed and, when started as root,
runs these as the unprivileged platform user.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def _log(msg: str) -> None:
    print(f"[gridedge] {msg}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from gridedge.platform.site_runtime import runtime_from_env

    site = runtime_from_env()
    site.up(log=_log)
    _log(f"demo site is up: VTN {site.effective_vtn_url}")
    if site.local_vtn:
        _log("try: scripts/gridedge vtn event --shed-kw 2 --duration 300 ; scripts/gridedge status")
    return 0


def _down(args: argparse.Namespace) -> int:
    from gridedge.platform.site_runtime import runtime_from_env

    runtime_from_env().down(log=_log)
    _log("demo site is down")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gridedge.platform.site_runtime import runtime_from_env

    status = runtime_from_env().status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"platform: [bold]{status['platform']}[/]   simulators: {status['simulators']}   "
                  f"VTN: {status['vtn']}")
    if status["site_power_w"] is not None:
        console.print(f"site power: [bold]{status['site_power_w']:.0f} W[/]")
    agents = Table("identity", "state", title="agents")
    for a in status["agents"]:
        agents.add_row(a["identity"], a["state"])
    console.print(agents)
    circuits = Table("id", "name", "enabled", "power W", "critical", "priority", title="circuits")
    for c in status["circuits"]:
        circuits.add_row(str(c["id"]), str(c["name"]), str(c["enabled"]),
                         f"{c['power_w']:.0f}" if c.get("power_w") is not None else "-",
                         str(c["critical"]), str(c["priority"]))
    console.print(circuits)
    events = Table("event id", "status", "shed kW", "start", "end", "opt", title="DR events")
    for e in status["dr_events"]:
        events.add_row(str(e["event_id"]), str(e["status"]), str(e["shed_kw"]), str(e["start"]),
                       str(e["end"]), str(e.get("opt")))
    console.print(events)
    for err in status.get("errors", []):
        console.print(f"[red]{err}[/]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add up, down and status."""
    p = sub.add_parser("up", help="set up and start the demo site (idempotent)")
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="stop the demo site cleanly")
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="show the site: platform, agents, power, circuits, DR events")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)
