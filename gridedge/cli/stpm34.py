"""``gridedge stpm34``: the installer's bench tool for an STPM34 (EVALSTPM34) board.

- ``gridedge stpm34 read --port PORT [--baud 9600] [--once] [--json] [--config FILE]``: a live
  two-channel table refreshed every second, or one JSON sample with ``--once --json``.
- ``gridedge stpm34 simulate [--link PATH] [--site FILE] [--channel2-circuit ID]``: a simulated
  board on a pty for bench tests; prints the pty path and serves until interrupted.

``--config`` takes the driver's device config (``{"remote_config": {"calibration": ...}}``), its
``remote_config`` alone, or a bare calibration object; without it, EVALSTPM34-like defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gridedge.errors import ConfigError, GridEdgeError, ProtocolError

__all__ = ["load_calibration", "register", "run_read", "run_simulate"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stpm34`` command and its ``read`` / ``simulate`` sub-commands."""
    parser = subparsers.add_parser("stpm34", help="STPM34 metering board: read or simulate")
    sub = parser.add_subparsers(dest="stpm34_command", metavar="ACTION")
    sub.required = True

    read = sub.add_parser("read", help="read a board: live table, or one JSON sample")
    read.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    read.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    read.add_argument("--once", action="store_true", help="one sample, then exit")
    read.add_argument("--json", action="store_true", help="JSON output (one object per sample)")
    read.add_argument("--config", type=Path, help="device config or calibration JSON")
    read.add_argument("--timeout", type=float, default=0.5, help="reply timeout, s (default 0.5)")
    read.add_argument("--temperature-file", type=Path,
                      help="thermal-zone file with the board temperature (millidegrees C)")
    read.set_defaults(func=run_read)

    sim = sub.add_parser("simulate", help="run a simulated board on a pty")
    sim.add_argument("--link", type=Path, help="also make this symlink to the pty")
    sim.add_argument("--baud", type=int, default=9600, help="line rate (default 9600)")
    sim.add_argument("--site", type=Path, help="site spec JSON to measure (default: fixed load)")
    sim.add_argument("--channel2-circuit", help="circuit id measured by channel 2")
    sim.add_argument("--temperature-file", type=Path, help="write the board temperature here")
    sim.add_argument("--corrupt-every", type=int, default=0, help="corrupt every Nth reply CRC")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.set_defaults(func=run_simulate)


def load_calibration(path: Path | None) -> tuple[Any, str | None]:
    """(Stpm34Calibration, temperature_file or None) from a config file, or the defaults."""
    from pydantic import ValidationError

    from gridedge.protocols.stpm34 import Stpm34Calibration

    if path is None:
        return Stpm34Calibration(), None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("remote_config"), dict):
        data = data["remote_config"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    temperature = data.get("temperature_file")
    if not isinstance(temperature, str) or "{" in temperature:
        temperature = None  # an unsubstituted template path is no sensor
    cal = data.get("calibration", data if "driver_type" not in data else {})
    try:
        return Stpm34Calibration(**cal), temperature
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: invalid calibration: {exc}") from exc


def run_read(args: argparse.Namespace) -> int:
    """``stpm34 read``."""
    import serial

    from gridedge.protocols.stpm34 import Stpm34Client, thermal_zone_reader

    calibration, temperature_file = load_calibration(args.config)
    if args.temperature_file is not None:
        temperature_file = str(args.temperature_file)
    try:
        port = serial.Serial(args.port, args.baud, timeout=args.timeout)
    except (serial.SerialException, OSError) as exc:
        raise ConfigError(f"cannot open {args.port}: {exc}") from exc
    try:
        client = Stpm34Client(
            port, calibration=calibration,
            temperature_source=thermal_zone_reader(temperature_file) if temperature_file else None)
        if args.once:
            sample = client.read_sample()
            if args.json:
                print(json.dumps(sample.to_dict()))
            else:
                from rich.console import Console

                Console().print(_table(sample, args.port, None))
            return 0
        if args.json:
            return _stream_json(client)
        return _live(client, args.port)
    finally:
        port.close()


def _stream_json(client: Any) -> int:
    while True:
        started = time.monotonic()
        try:
            print(json.dumps(client.read_sample().to_dict()), flush=True)
        except ProtocolError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def _live(client: Any, port_name: str) -> int:
    from rich.live import Live

    sample = None
    error: str | None = None
    with Live(_table(sample, port_name, "connecting..."), refresh_per_second=4) as live:
        while True:
            started = time.monotonic()
            try:
                sample, error = client.read_sample(), None
            except GridEdgeError as exc:
                error = str(exc)
            live.update(_table(sample, port_name, error))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def _table(sample: Any, port_name: str, error: str | None) -> Any:
    from rich.table import Table

    table = Table(title=f"STPM34 on {port_name}", caption=error or "",
                  caption_style="bold red" if error else "")
    table.add_column("quantity")
    table.add_column("channel 1", justify="right")
    table.add_column("channel 2", justify="right")
    rows = (("voltage", "v_rms_v", "V", 1), ("current", "i_rms_a", "A", 3),
            ("active power", "active_w", "W", 1), ("reactive power", "reactive_var", "var", 1),
            ("apparent power", "apparent_va", "VA", 1), ("power factor", "power_factor", "", 3),
            ("active energy", "active_energy_kwh", "kWh", 4),
            ("reactive energy", "reactive_energy_kvarh", "kvarh", 4),
            ("apparent energy", "apparent_energy_kvah", "kVAh", 4))
    for label, attr, unit, digits in rows:
        if sample is None:
            table.add_row(label, "-", "-")
            continue
        cells = [f"{getattr(sample.channel(ch), attr):.{digits}f} {unit}".strip() for ch in (1, 2)]
        table.add_row(label, *cells)
    if sample is not None:
        table.add_section()
        table.add_row("frequency", f"{sample.frequency_hz:.2f} Hz", "")
        temp = "n/a" if sample.temperature_c is None else f"{sample.temperature_c:.1f} °C"
        table.add_row("temperature", temp, "")
        table.add_row("CRC errors", str(sample.crc_errors), "")
    return table


def run_simulate(args: argparse.Namespace) -> int:
    """``stpm34 simulate``."""
    from gridedge.sim.site import SiteModel, load_site_spec
    from gridedge.sim.stpm34 import ChannelInputs, Stpm34Inputs, Stpm34Simulator, inputs_from_site

    model = None
    if args.site is not None:
        model = SiteModel(spec=load_site_spec(args.site))
        source = inputs_from_site(model, channel2_circuit=args.channel2_circuit)
    else:
        if args.channel2_circuit:
            raise ConfigError("--channel2-circuit needs --site")
        fixed = Stpm34Inputs(
            channel1=ChannelInputs(v_rms_v=230.0, i_rms_a=10.0, active_w=2185.0, reactive_var=718.0),
            channel2=ChannelInputs(v_rms_v=230.0, i_rms_a=2.0, active_w=437.0, reactive_var=144.0),
            frequency_hz=50.0, temperature_c=25.0)

        def source() -> Stpm34Inputs:
            return fixed

    sim = Stpm34Simulator(source=source, baudrate=args.baud, link_path=args.link,
                          temperature_file=args.temperature_file, corrupt_every=args.corrupt_every)
    sim.start()
    print(sim.port_path if args.link is None else f"{sim.port_path} (link {args.link})", flush=True)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while deadline is None or time.monotonic() < deadline:
            if model is not None:
                model.advance()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gridedge.cli.main import main

    sys.exit(main(["stpm34", *sys.argv[1:]]))
