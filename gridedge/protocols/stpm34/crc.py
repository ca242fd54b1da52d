"""The STPM3x frame CRC as the chip computes it in UART mode.

The chip's CRC engine is CRC-8 with polynomial 0x07 (x^8 + x^2 + x + 1), initial value 0, fed most
significant bit first. A UART puts each byte on the wire least significant bit first, so in UART
mode the CRC is computed over the bit-reversed bytes and the resulting CRC byte is bit-reversed
too (ST's metrology HAL does exactly this; in SPI mode neither reversal applies). Check value: the
read request ``48 FF FF FF`` carries CRC ``0x22``.
"""

from __future__ import annotations

__all__ = ["bit_reverse", "crc8_msb", "crc8_stpm"]

_POLY = 0x07


def bit_reverse(byte: int) -> int:
    """The byte with its bit order reversed (bit 0 <-> bit 7)."""
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"not a byte: {byte!r}")
    return int(f"{byte:08b}"[::-1], 2)


def _table() -> tuple[int, ...]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = ((crc << 1) ^ _POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _table()
_REVERSED = tuple(bit_reverse(b) for b in range(256))


def crc8_msb(data: bytes) -> int:
    """Plain CRC-8/0x07, init 0, MSB first (the chip's SPI-mode CRC)."""
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def crc8_stpm(frame4: bytes) -> int:
    """CRC byte of a 4-byte STPM3x frame body in UART mode (bit-reversed in and out)."""
    if len(frame4) != 4:
        raise ValueError(f"an STPM3x frame body is 4 bytes, got {len(frame4)}")
    crc = 0
    for byte in frame4:
        crc = _CRC_TABLE[crc ^ _REVERSED[byte]]
    return _REVERSED[crc]
