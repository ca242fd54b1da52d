"""``python -m gridedge.bench NAME``: run one benchmark (``dr-latency``, ``p1``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the named benchmark."""
    parser = argparse.ArgumentParser(prog="bench", description="GridEdge benchmarks")
    sub = parser.add_subparsers(dest="name", metavar="NAME")
    sub.required = True
    p = sub.add_parser("dr-latency", help="VEN event handler -> relay pin change, vs bare set_point RPC")
    p.add_argument("--events", type=int, default=50, help="DR events to dispatch (>= 50 for the target)")
    p.add_argument("--baseline", type=int, default=50, help="bare set_point calls for the baseline")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p = sub.add_parser("p1", help="P1 telegrams/s via our driver path vs bare dsmr-parser; bus latency")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput run")
    p.add_argument("--latency-samples", type=int, default=50, help="telegrams for the latency figure")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.name == "dr-latency":
        from gridedge.bench.dr_latency import run

        return run(events=args.events, baseline=args.baseline, as_json=args.json)
    from gridedge.bench.p1 import run as run_p1

    return run_p1(seconds=args.seconds, latency_samples=args.latency_samples, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
