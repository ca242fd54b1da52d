"""One scrape of a register-mapped meter: plan the block reads, read, decode each point.

The reading itself is a callable ``read(function, address, count) -> words`` so that this
stays free of I/O: the platform driver hands it a pymodbus client, tests an in-memory image.

Errors: a Modbus exception answer (:class:`~gridedge.errors.DeviceError`) fails the points of
that block only and the scrape goes on; a timeout or lost connection (a retryable
:class:`~gridedge.errors.ProtocolError`) fails every point not yet read and ends the scrape,
because the next reads would only wait for the same timeout again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gridedge.errors import DeviceError, GridEdgeError, ProtocolError
from gridedge.protocols.modbus_meters.registers import (
    MAX_READ_REGISTERS,
    Function,
    ReadBlock,
    RegisterPoint,
    plan_reads,
)

__all__ = ["ReadFn", "ScrapeResult", "read_blocks", "scrape_registers"]

#: reads ``count`` registers of a table from ``address``; raises DeviceError / ProtocolError
ReadFn = Callable[[Function, int, int], Sequence[int]]

Value = int | float | str | None


@dataclass
class ScrapeResult:
    """Values by key (``None`` = the device reports "no value") and error texts by key."""

    values: dict[str, Value] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_blocks(
    blocks: Sequence[ReadBlock], read: ReadFn
) -> tuple[dict[ReadBlock, list[int]], dict[ReadBlock, str], str | None]:
    """Read every block: (words by block, error by failed block, fatal error or None).

    A fatal (transport) error stops the reading; the blocks not read are then absent from
    both dictionaries.
    """
    words: dict[ReadBlock, list[int]] = {}
    failed: dict[ReadBlock, str] = {}
    for block in blocks:
        where = f"{block.function.value} registers {block.address}..{block.end - 1}"
        try:
            got = list(read(block.function, block.address, block.count))
        except DeviceError as exc:
            failed[block] = f"{where}: {exc}"
            continue
        except ProtocolError as exc:
            if exc.retryable:
                return words, failed, f"{where}: {exc}"
            failed[block] = f"{where}: {exc}"
            continue
        if len(got) != block.count:
            failed[block] = f"{where}: device returned {len(got)} registers instead of {block.count}"
            continue
        words[block] = got
    return words, failed, None


def scrape_registers(
    points: Mapping[str, RegisterPoint],
    read: ReadFn,
    *,
    max_count: int = MAX_READ_REGISTERS,
    max_gap: int = 0,
) -> ScrapeResult:
    """Read and decode ``points`` (key -> point) in as few reads as :func:`plan_reads` allows."""
    plan = plan_reads((p.span for p in points.values()), max_count=max_count, max_gap=max_gap)
    words, failed, fatal = read_blocks(plan.blocks, read)
    result = ScrapeResult()
    for key, point in points.items():
        span = point.span
        block = plan.block_for(span)
        if block in words:
            try:
                result.values[key] = point.decode(block.slice(words[block], span))
            except GridEdgeError as exc:
                result.errors[key] = f"{point.name}: {exc}"
        elif block in failed:
            result.errors[key] = failed[block]
        else:
            result.errors[key] = fatal or "not read"
    return result
