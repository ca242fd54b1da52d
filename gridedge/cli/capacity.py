"""``gridedge capacity --peaks-kw A,B,...``: the billed capacity of up to 12 monthly peaks.

Prints ``{"capacity_kw": X}`` (each month floored at 2.5 kW, mean of the months given). More than
12 peaks or a value that is not a non-negative number exits non-zero naming the bad value.
"""

from __future__ import annotations

import argparse
import json
import sys

from gridedge.domain.capacity import MONTHS_BILLED, capacity_kw

__all__ = ["parse_peaks", "register", "run"]


def parse_peaks(text: str) -> list[float]:
    """Split ``A,B,...`` into floats; ValueError naming the first bad item."""
    items = [item.strip() for item in text.split(",")]
    peaks = []
    for index, item in enumerate(items, start=1):
        try:
            peaks.append(float(item))
        except ValueError:
            raise ValueError(f"peak #{index} is not a number: {item!r}") from None
    return peaks


def run(args: argparse.Namespace) -> int:
    """Compute and print the capacity; 0 on success, 2 on bad input."""
    try:
        peaks = parse_peaks(args.peaks_kw)
        result = capacity_kw(peaks)
    except ValueError as exc:
        print(f"gridedge capacity: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"capacity_kw": round(result, 6)}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``capacity`` sub-command."""
    parser = subparsers.add_parser(
        "capacity",
        help="billed capacity (kW) from monthly peaks",
        description=f"Mean of up to {MONTHS_BILLED} monthly quarter-hour peaks, each floored at 2.5 kW "
        "(Belgian capacity tariff).",
    )
    parser.add_argument(
        "--peaks-kw",
        required=True,
        metavar="A,B,...",
        help=f"comma-separated monthly peaks in kW (1..{MONTHS_BILLED})",
    )
    parser.set_defaults(func=run)
