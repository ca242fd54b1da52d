"""``gridedge xdm1041``: read a battery-monitor meter pair, or simulate one.

- ``gridedge xdm1041 read --voltage-port P --shunt-port P [--shunt-ohm R] [--once] [--json]``
  configures both meters and prints voltage, current, power and energy (positive current and
  power = discharge) every ``--interval`` seconds, or once.
- ``gridedge xdm1041 simulate`` starts two simulated meters on one battery model, prints their
  pty paths and serves until interrupted (or ``--duration`` s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from gridedge.errors import ConfigError, GridEdgeError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``xdm1041`` command and its ``read``/``simulate`` sub-commands."""
    parser = subparsers.add_parser("xdm1041", help="OWON XDM1041 battery monitor (meter pair): read or simulate")
    sub = parser.add_subparsers(dest="xdm_command", metavar="ACTION")
    sub.required = True

    read = sub.add_parser("read", help="read voltage, current, power and energy from two meters")
    read.add_argument("--voltage-port", required=True, help="meter A (battery voltage): device path or pyserial URL")
    read.add_argument("--shunt-port", required=True, help="meter B (across the shunt): device path or pyserial URL")
    read.add_argument("--shunt-ohm", type=float, default=0.00075, help="shunt resistance, ohm (default 75 mV/100 A)")
    read.add_argument("--polarity", type=int, choices=(1, -1), default=1,
                      help="+1 if meter B reads positive while discharging (default), -1 if swapped")
    read.add_argument("--baud", type=int, default=115200)
    read.add_argument("--rate", choices=("S", "M", "F"), default="M", help="sampling rate: slow/medium/fast")
    read.add_argument("--timeout", type=float, default=1.0, help="reply timeout per query, s")
    read.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    read.add_argument("--once", action="store_true", help="read once and exit")
    read.add_argument("--json", action="store_true", help="one JSON object per reading")
    read.set_defaults(func=_read)

    sim = sub.add_parser("simulate", help="run two simulated meters on a battery model; print their ptys")
    sim.add_argument("--link-dir", help="also expose the ptys as LINK_DIR/xdm_voltage and LINK_DIR/xdm_shunt")
    sim.add_argument("--shunt-ohm", type=float, default=0.00075)
    sim.add_argument("--polarity", type=int, choices=(1, -1), default=1)
    sim.add_argument("--baud", type=int, default=115200)
    sim.add_argument("--ok-lines", action="store_true", help="answer every command with OK (newer firmware)")
    sim.add_argument("--double-replies", action="store_true", help="send every line twice")
    sim.add_argument("--timeout-every-n", type=int, default=0, metavar="N", help="leave every N-th query unanswered")
    sim.add_argument("--gbk-units", action="store_true", help="append GBK-encoded units to readings")
    sim.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    sim.add_argument("--json", action="store_true", help="print the pty paths as JSON")
    sim.set_defaults(func=_simulate)


def _read(args: argparse.Namespace) -> int:
    from gridedge.protocols.xdm1041 import (
        BatteryMonitor,
        MeterSetup,
        PortUnavailable,
        ShuntSpec,
        Xdm1041Client,
        open_port,
    )

    if args.interval <= 0:
        raise ConfigError("--interval must be > 0")
    ports = [open_port(args.voltage_port, baudrate=args.baud)]
    try:
        ports.append(open_port(args.shunt_port, baudrate=args.baud))
        monitor = BatteryMonitor(
            voltage_meter=Xdm1041Client(port=ports[0], name=f"voltage meter {args.voltage_port}",
                                        timeout_s=args.timeout),
            shunt_meter=Xdm1041Client(port=ports[1], name=f"shunt meter {args.shunt_port}",
                                      timeout_s=args.timeout),
            shunt=ShuntSpec(shunt_ohm=args.shunt_ohm, polarity=args.polarity),
            voltage_setup=MeterSetup(function="VOLT:DC", range="AUTO", rate=args.rate),
            shunt_setup=MeterSetup(function="VOLT:DC", range="AUTO", rate=args.rate),
        )
        ident_v, ident_s = monitor.configure()
        if not args.json:
            print(f"meter A: {ident_v.model} {ident_v.serial} {ident_v.firmware} on {args.voltage_port}")
            print(f"meter B: {ident_s.model} {ident_s.serial} {ident_s.firmware} on {args.shunt_port}")
        while True:
            started = time.monotonic()
            try:
                sample = monitor.read()
            except GridEdgeError as exc:
                if args.once or not exc.retryable or isinstance(exc, PortUnavailable):
                    raise
                print(f"gridedge xdm1041: {exc}", file=sys.stderr)
            else:
                _print_sample(sample, monitor, as_json=args.json)
            if args.once:
                return 0
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        for port in ports:
            port.close()


def _fmt(value: float | None, unit: str, digits: int) -> str:
    return "overload" if value is None else f"{value:.{digits}f} {unit}"


def _print_sample(sample: Any, monitor: Any, *, as_json: bool) -> None:
    data = sample.as_dict()
    if as_json:
        data["diagnostics"] = monitor.diagnostics()
        print(json.dumps(data), flush=True)
        return
    e = sample.energy
    print(f"{_fmt(sample.voltage_v, 'V', 3)}  {_fmt(sample.current_a, 'A', 3)}  {_fmt(sample.power_w, 'W', 1)}"
          f"  discharge {e.discharge_wh:.3f} Wh / {e.discharge_ah:.4f} Ah"
          f"  charge {e.charge_wh:.3f} Wh / {e.charge_ah:.4f} Ah", flush=True)


def _simulate(args: argparse.Namespace) -> int:
    from gridedge.sim.xdm1041 import SimpleBattery, Xdm1041Quirks, make_battery_pair

    quirks = Xdm1041Quirks(ok_lines=args.ok_lines, double_replies=args.double_replies,
                           timeout_every_n=args.timeout_every_n, gbk_units=args.gbk_units)
    pair = make_battery_pair(battery=SimpleBattery(), shunt_ohm=args.shunt_ohm, polarity=args.polarity,
                             quirks=quirks, link_dir=args.link_dir, baudrate=args.baud)
    with pair:
        paths = {"voltage_port": pair.voltage.port_path, "shunt_port": pair.shunt.port_path}
        if args.json:
            print(json.dumps(paths), flush=True)
        else:
            print(f"voltage meter: {paths['voltage_port']}")
            print(f"shunt meter:   {paths['shunt_port']}  (shunt {args.shunt_ohm} ohm, polarity {args.polarity:+d})",
                  flush=True)
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    return 0
