"""Register points of a Modbus meter: how a value sits in 16-bit registers, and how to read many at once.

A :class:`RegisterPoint` says where a value lives (function, address), how its registers form a
number (type, word order) and its *value weight* (``scale``): the meter sends ``value × scale``,
as Carlo Gavazzi documents it ("Value weight: Volt*10"), so ``value = raw / scale``.

Word order: Modbus itself only fixes the byte order inside a register (big-endian). For 32-bit
values some meters send the most significant word first ("msw", SunSpec), others the least
significant word first ("lsw", Carlo Gavazzi). The conversion itself is pymodbus's
``convert_from_registers`` / ``convert_to_registers``.

:func:`plan_reads` turns the registers wanted in one scrape into as few block reads as the
device allows (at most 125 registers per read; gaps are only bridged when the device answers
for the registers in between).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pymodbus.client.mixin import ModbusClientMixin

from gridedge.errors import ConfigError, FrameError

__all__ = [
    "MAX_READ_REGISTERS",
    "Function",
    "ReadBlock",
    "ReadPlan",
    "ReadSpan",
    "RegisterPoint",
    "RegisterType",
    "WordOrder",
    "decode_registers",
    "encode_registers",
    "plan_reads",
]

#: Modbus application protocol limit for one read of holding or input registers.
MAX_READ_REGISTERS = 125

_DT = ModbusClientMixin.DATATYPE


class RegisterType(str, enum.Enum):
    """How the registers of a point form a number."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def count(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return _DATATYPES[self].value[1]

    @property
    def is_integer(self) -> bool:
        """True for the integer types (whose raw value is exact)."""
        return self is not RegisterType.FLOAT32


_DATATYPES: dict[RegisterType, _DT] = {
    RegisterType.INT16: _DT.INT16,
    RegisterType.UINT16: _DT.UINT16,
    RegisterType.INT32: _DT.INT32,
    RegisterType.UINT32: _DT.UINT32,
    RegisterType.FLOAT32: _DT.FLOAT32,
}

_INT_RANGES: dict[RegisterType, tuple[int, int]] = {
    RegisterType.INT16: (-0x8000, 0x7FFF),
    RegisterType.UINT16: (0, 0xFFFF),
    RegisterType.INT32: (-0x80000000, 0x7FFFFFFF),
    RegisterType.UINT32: (0, 0xFFFFFFFF),
}


class WordOrder(str, enum.Enum):
    """Order of the 16-bit words of a multi-register value."""

    #: most significant word first (big-endian words; SunSpec, most meters)
    MSW_FIRST = "msw"
    #: least significant word first (Carlo Gavazzi INT32)
    LSW_FIRST = "lsw"

    @classmethod
    def parse(cls, text: str) -> WordOrder:
        """Accept "msw"/"big"/"msw-first" or "lsw"/"little"/"lsw-first" (any case)."""
        key = text.strip().lower().replace("_", "-")
        if key in ("msw", "big", "msw-first", "high-low", ""):
            return cls.MSW_FIRST
        if key in ("lsw", "little", "lsw-first", "low-high"):
            return cls.LSW_FIRST
        raise ConfigError(f"unknown word order {text!r}; use 'msw' or 'lsw'")

    @property
    def pymodbus(self) -> str:
        """The word_order argument pymodbus expects."""
        return "big" if self is WordOrder.MSW_FIRST else "little"


class Function(str, enum.Enum):
    """Which register table a point is read from."""

    HOLDING = "holding"  # function code 3
    INPUT = "input"  # function code 4

    @classmethod
    def parse(cls, text: str) -> Function:
        """Accept "holding"/"3" or "input"/"4" (any case; empty = holding)."""
        key = text.strip().lower()
        if key in ("holding", "3", "fc3", ""):
            return cls.HOLDING
        if key in ("input", "4", "fc4"):
            return cls.INPUT
        raise ConfigError(f"unknown register function {text!r}; use 'holding' or 'input'")


def decode_registers(words: Sequence[int], *, reg_type: RegisterType, word_order: WordOrder) -> int | float:
    """The raw number held by ``words`` (exactly ``reg_type.count`` register values 0..65535)."""
    if len(words) != reg_type.count:
        raise FrameError(f"{reg_type.value} needs {reg_type.count} registers, got {len(words)}")
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise FrameError(f"register value {w} is not a 16-bit word")
    value = ModbusClientMixin.convert_from_registers(list(words), _DATATYPES[reg_type], word_order.pymodbus)
    return value  # type: ignore[return-value]


def encode_registers(raw: float, *, reg_type: RegisterType, word_order: WordOrder) -> list[int]:
    """The register words carrying the raw number ``raw``; ValueError if it does not fit."""
    if reg_type.is_integer:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"{reg_type.value} cannot carry the fraction {raw}")
        lo, hi = _INT_RANGES[reg_type]
        raw = int(raw)
        if not lo <= raw <= hi:
            raise ValueError(f"{raw} does not fit {reg_type.value} ({lo}..{hi})")
    else:
        raw = float(raw)
    return ModbusClientMixin.convert_to_registers(raw, _DATATYPES[reg_type], word_order.pymodbus)


@dataclass(frozen=True)
class RegisterPoint:
    """One value of a meter's register map."""

    name: str
    address: int
    reg_type: RegisterType
    word_order: WordOrder = WordOrder.MSW_FIRST
    #: value weight: the meter sends value × scale (CG "Volt*10" → 10); value = raw / scale
    scale: float = 1.0
    function: Function = Function.HOLDING
    units: str = ""
    description: str = ""
    #: read with a request of its own (registers the device only serves "a word at a time")
    read_alone: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a register point needs a name")
        if not isinstance(self.reg_type, RegisterType):
            raise ConfigError(f"point {self.name}: reg_type must be a RegisterType")
        if not 0 <= self.address or self.address + self.reg_type.count - 1 > 0xFFFF:
            raise ConfigError(f"point {self.name}: address {self.address} outside 0..65535")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ConfigError(f"point {self.name}: scale must be a finite non-zero number, got {self.scale}")

    @classmethod
    def parse(
        cls,
        *,
        name: str,
        address: int | str,
        reg_type: str,
        word_order: str = "",
        scale: float | str = 1.0,
        function: str = "",
        units: str = "",
        description: str = "",
        read_alone: bool = False,
    ) -> RegisterPoint:
        """Build a point from registry-CSV text (addresses may be decimal or 0x-hex)."""
        try:
            if isinstance(address, str):
                text = address.strip().lower()
                addr = int(text, 0) if text.startswith("0x") else int(text, 10)
            else:
                addr = int(address)
        except ValueError as exc:
            raise ConfigError(f"point {name}: address {address!r} is not a number") from exc
        try:
            rtype = RegisterType(reg_type.strip().lower())
        except ValueError as exc:
            known = ", ".join(t.value for t in RegisterType)
            raise ConfigError(f"point {name}: unknown type {reg_type!r}; known: {known}") from exc
        try:
            scale_value = float(scale) if str(scale).strip() else 1.0
        except ValueError as exc:
            raise ConfigError(f"point {name}: scale {scale!r} is not a number") from exc
        try:
            order, fn = WordOrder.parse(word_order), Function.parse(function)
        except ConfigError as exc:
            raise ConfigError(f"point {name}: {exc}") from exc
        return cls(
            name=name,
            address=addr,
            reg_type=rtype,
            word_order=order,
            scale=scale_value,
            function=fn,
            units=units,
            description=description,
            read_alone=read_alone,
        )

    @property
    def count(self) -> int:
        """Number of registers the point occupies."""
        return self.reg_type.count

    @property
    def span(self) -> ReadSpan:
        """The registers to read for this point."""
        return ReadSpan(function=self.function, address=self.address, count=self.count, alone=self.read_alone)

    def decode(self, words: Sequence[int]) -> int | float:
        """The point's value in its units from its register words.

        Integer points with scale 1 stay ``int`` (identification codes, counters); everything
        else becomes ``raw / scale``.
        """
        raw = decode_registers(words, reg_type=self.reg_type, word_order=self.word_order)
        if self.scale == 1 and self.reg_type.is_integer:
            return int(raw)
        return raw / self.scale

    def encode(self, value: float) -> list[int]:
        """The register words a meter sends for ``value`` (rounded to the register's resolution)."""
        raw: int | float = value * self.scale
        if self.reg_type.is_integer:
            raw = round(raw)
        return encode_registers(raw, reg_type=self.reg_type, word_order=self.word_order)


@dataclass(frozen=True, order=True)
class ReadSpan:
    """A run of registers some point needs: ``count`` registers from ``address``."""

    function: Function
    address: int
    count: int
    #: never merged with other spans
    alone: bool = False

    def __post_init__(self) -> None:
        if self.count < 1 or self.address < 0 or self.address + self.count - 1 > 0xFFFF:
            raise ConfigError(f"invalid register span {self.address}+{self.count}")

    @property
    def end(self) -> int:
        """First address after the span."""
        return self.address + self.count

    def overlaps(self, other: ReadSpan) -> bool:
        """True when both spans share at least one register of the same table."""
        return self.function == other.function and self.address < other.end and other.address < self.end


@dataclass(frozen=True)
class ReadBlock:
    """One Modbus read request: ``count`` registers of ``function`` from ``address``."""

    function: Function
    address: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_READ_REGISTERS:
            raise ConfigError(f"a read covers 1..{MAX_READ_REGISTERS} registers, not {self.count}")

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.address + self.count

    def contains(self, span: ReadSpan) -> bool:
        """True when the block returns every register of ``span``."""
        return span.function == self.function and self.address <= span.address and span.end <= self.end

    def slice(self, words: Sequence[int], span: ReadSpan) -> list[int]:
        """The words of ``span`` out of the words this block returned."""
        if len(words) != self.count:
            raise FrameError(f"read of {self.count} registers at {self.address} returned {len(words)}")
        start = span.address - self.address
        return list(words[start : start + span.count])


@dataclass(frozen=True)
class ReadPlan:
    """The reads of one scrape and, for every span wanted, the read that serves it."""

    blocks: tuple[ReadBlock, ...]
    served_by: Mapping[ReadSpan, ReadBlock]

    def block_for(self, span: ReadSpan) -> ReadBlock:
        """The read whose answer carries ``span``."""
        try:
            return self.served_by[span]
        except KeyError:
            raise KeyError(f"span {span} is not part of this plan") from None


def plan_reads(
    spans: Iterable[ReadSpan], *, max_count: int = MAX_READ_REGISTERS, max_gap: int = 0
) -> ReadPlan:
    """As few reads as cover ``spans``.

    Rules: a read never exceeds ``max_count`` registers; neighbouring spans of the same
    table join one read when at most ``max_gap`` unwanted registers lie between them (0 =
    only contiguous spans, for devices that answer "illegal address" for unmapped
    registers); identical spans are read once; a span that overlaps another without being
    identical, and a span marked ``alone``, is read on its own: such registers are
    multiplexed (Carlo Gavazzi answers its identification code only to a single-word read of
    0x000B, which lies inside the INT32 "V L3-L1" at 0x000A).
    """
    if not 1 <= max_count <= MAX_READ_REGISTERS:
        raise ConfigError(f"max_count must be within 1..{MAX_READ_REGISTERS}, got {max_count}")
    if max_gap < 0:
        raise ConfigError(f"max_gap must be >= 0, got {max_gap}")
    unique = sorted(set(spans), key=lambda s: (s.function.value, s.address, -s.count, s.alone))
    mergeable: list[ReadSpan] = []
    alone: list[ReadSpan] = []
    for span in unique:
        if span.count > max_count:
            raise ConfigError(f"span {span.address}+{span.count} exceeds {max_count} registers per read")
        if span.alone or any(span.overlaps(prev) for prev in mergeable):
            alone.append(span)
        else:
            mergeable.append(span)
    served_by: dict[ReadSpan, ReadBlock] = {}
    blocks: list[ReadBlock] = []
    group: list[ReadSpan] = []

    def close_group() -> None:
        if group:
            end = max(s.end for s in group)
            block = ReadBlock(function=group[0].function, address=group[0].address, count=end - group[0].address)
            blocks.append(block)
            served_by.update((s, block) for s in group)
            group.clear()

    for span in mergeable:
        if group and not (
            span.function == group[0].function
            and span.address - max(s.end for s in group) <= max_gap
            and span.end - group[0].address <= max_count
        ):
            close_group()
        group.append(span)
    close_group()
    for span in alone:
        block = ReadBlock(function=span.function, address=span.address, count=span.count)
        blocks.append(block)
        served_by[span] = block
    return ReadPlan(blocks=tuple(blocks), served_by=served_by)
