"""``gridedge sim run``: the demo site's simulator process (see :mod:`gridedge.sim.runner`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from gridedge.sim.runner import SimPorts, run_site

    return run_site(site_config=Path(args.site_config), run_dir=Path(args.run_dir),
                    ports=SimPorts(site=args.site_port, em24=args.em24_port, sunspec=args.sunspec_port))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sim``."""
    p = sub.add_parser("sim", help="device simulators of the demo site")
    s = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    s.required = True
    r = s.add_parser("run", help="run the site model and every simulated device until stopped")
    r.add_argument("--site-config", required=True, help="site description (platform_config/site.json)")
    r.add_argument("--run-dir", required=True, help="where pty links (dev/) and sim.ready go")
    r.add_argument("--site-port", type=int, default=8082, help="site model control socket port")
    r.add_argument("--em24-port", type=int, default=5021, help="Carlo Gavazzi EM24 Modbus TCP port (0 = off)")
    r.add_argument("--sunspec-port", type=int, default=5022, help="SunSpec meter Modbus TCP port (0 = off)")
    r.set_defaults(func=_run)
