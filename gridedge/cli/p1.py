"""``gridedge p1``: decode a P1 telegram file, read a live P1 port, or run the P1 simulator.

Exit codes of ``decode``: 0 ok, 2 file unreadable, 3 CRC mismatch, 4 truncated or malformed
telegram. ``read --once`` exits 1 when no good telegram arrives within ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from pathlib import Path
from typing import Any

from gridedge.errors import CrcError, FrameError

__all__ = ["EXIT_CRC", "EXIT_FRAME", "EXIT_NO_TELEGRAM", "EXIT_UNREADABLE", "register"]

EXIT_NO_TELEGRAM = 1
EXIT_UNREADABLE = 2
EXIT_CRC = 3
EXIT_FRAME = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``p1`` and its sub-commands to the ``gridedge`` parser."""
    parser = subparsers.add_parser(
        "p1",
        help="P1 digital meter (DSMR 4/5, Fluvius e-MUCS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="p1_command", metavar="ACTION")
    sub.required = True

    decode = sub.add_parser("decode", help="print a telegram file as JSON")
    decode.add_argument("file", help="telegram file, '-' for stdin")
    decode.add_argument("--normalized", action="store_true", help="print the normalized points instead")
    decode.set_defaults(func=_decode)

    read = sub.add_parser("read", help="read telegrams from a serial port")
    read.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
    read.add_argument("--baud", type=int, default=115200, help="115200 (8N1, default) or 9600 (7E1)")
    read.add_argument("--json", action="store_true", help="one JSON object per telegram")
    read.add_argument("--once", action="store_true", help="exit after the first good telegram")
    read.add_argument("--timeout", type=float, default=15.0, help="seconds to wait with --once")
    read.set_defaults(func=_read)

    sim = sub.add_parser("simulate", help="serve simulated telegrams on a pty")
    sim.add_argument("--link", help="create this symlink to the pty")
    sim.add_argument("--replay", help="folder or file of captured telegrams to cycle through")
    sim.add_argument("--baud", type=int, default=115200)
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between telegrams")
    sim.add_argument("--corrupt-crc-every", type=int, default=0)
    sim.add_argument("--garbage-every", type=int, default=0)
    sim.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = never)")
    sim.set_defaults(func=_simulate)


def _decode(args: argparse.Namespace) -> int:
    from gridedge.protocols.dsmr import decode_telegram_bytes, normalize, to_json

    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"gridedge p1 decode: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        decoded = decode_telegram_bytes(data)
        output: dict[str, Any] = (
            normalize(decoded).as_points() if args.normalized else to_json(decoded.telegram)
        )
    except CrcError as exc:
        print(f"gridedge p1 decode: {args.file}: bad CRC: {exc}", file=sys.stderr)
        return EXIT_CRC
    except FrameError as exc:
        print(f"gridedge p1 decode: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FRAME
    print(json.dumps(output, indent=2))
    return 0


def _summary(received: Any) -> str:
    from gridedge.protocols.dsmr import iso

    r = received.reading
    parts = [
        f"{iso(r.meter_time) or '?'}",
        f"tariff={r.tariff_period or r.tariff}",
        f"import={r.power_import_w}W export={r.power_export_w}W",
        f"E+={r.energy_import_total_kwh}kWh E-={r.energy_export_total_kwh}kWh",
    ]
    if r.avg_demand_kw is not None:
        parts.append(f"demand={r.avg_demand_kw}kW peak={r.month_peak_kw}kW")
    if r.gas_m3 is not None:
        parts.append(f"gas={r.gas_m3}m3")
    return " ".join(parts)


def _read(args: argparse.Namespace) -> int:
    from gridedge.protocols.dsmr import P1Reader, to_json

    inbox: queue.Queue = queue.Queue()
    reader = P1Reader(port=args.port, baudrate=args.baud, on_telegram=inbox.put)
    reader.start()
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            try:
                received = inbox.get(timeout=0.5)
            except queue.Empty:
                if args.once and time.monotonic() > deadline:
                    stats = reader.stats()
                    print(
                        f"gridedge p1 read: no good telegram on {args.port} within {args.timeout:g} s "
                        f"(crc_errors={stats.crc_errors}, frame_errors={stats.frame_errors}, "
                        f"last error: {stats.last_error})",
                        file=sys.stderr,
                    )
                    return EXIT_NO_TELEGRAM
                continue
            if args.json:
                print(json.dumps(to_json(received.decoded.telegram)), flush=True)
            else:
                print(_summary(received), flush=True)
            if args.once:
                return 0
    finally:
        reader.stop()


def _simulate(args: argparse.Namespace) -> int:
    from gridedge.sim.p1 import P1Simulator, ReplaySource, SynthSource

    source = ReplaySource(paths=[args.replay]) if args.replay else SynthSource()
    sim = P1Simulator(
        source=source,
        baudrate=args.baud,
        framing="7E1" if args.baud == 9600 else "8N1",
        interval_s=args.interval,
        corrupt_crc_every=args.corrupt_crc_every,
        garbage_every=args.garbage_every,
        link_path=args.link,
    )
    with sim:
        print(f"P1 simulator on {sim.port_path}" + (f" (link {args.link})" if args.link else ""), flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    return 0
