"""STPM3x UART frames.

Every exchange is one 5-byte request from the host and one 5-byte reply from the chip:

- request ``[read address][write address][data LSB][data MSB][CRC]``: the chip returns (in the
  reply to the *next* request) the 32-bit row at ``read address``, and writes the 16-bit data to
  the half-word at ``write address``. ``0xFF`` as read address asks for no new row (the chip's
  read pointer moves on to the following row); ``0xFF`` as write address writes nothing.
- reply ``[b0][b1][b2][b3][CRC]``: a 32-bit little-endian register value.

The CRC is :func:`~gridedge.protocols.stpm34.crc.crc8_stpm` over the first four bytes. A frame
whose CRC does not match raises :class:`~gridedge.errors.CrcError` and must never be used.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gridedge.errors import CrcError, FrameError
from gridedge.protocols.stpm34.crc import crc8_stpm

__all__ = ["FRAME_LEN", "NO_ADDRESS", "Frame", "decode_reply", "encode_reply"]

#: bytes in a request and in a reply
FRAME_LEN = 5
#: read/write address meaning "none"
NO_ADDRESS = 0xFF


@dataclass(frozen=True)
class Frame:
    """One host-to-chip request frame."""

    read_address: int = NO_ADDRESS
    write_address: int = NO_ADDRESS
    #: 16-bit data for the write address (0xFFFF when nothing is written)
    data: int = 0xFFFF

    def __post_init__(self) -> None:
        for name in ("read_address", "write_address"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {value!r}")
        if not 0 <= self.data <= 0xFFFF:
            raise ValueError(f"data must be 16 bits, got {self.data!r}")

    @classmethod
    def read(cls, address: int) -> Frame:
        """A pure read request for the row at ``address``."""
        return cls(read_address=address)

    @classmethod
    def write(cls, address: int, data: int, *, read_address: int = NO_ADDRESS) -> Frame:
        """A write of 16-bit ``data`` to half-word ``address`` (optionally also a read)."""
        return cls(read_address=read_address, write_address=address, data=data)

    @property
    def is_write(self) -> bool:
        """Whether this frame writes a half-word."""
        return self.write_address != NO_ADDRESS

    def body(self) -> bytes:
        """The four bytes the CRC covers."""
        return bytes((self.read_address, self.write_address, self.data & 0xFF, self.data >> 8))

    def encode(self) -> bytes:
        """The five bytes on the wire."""
        body = self.body()
        return body + bytes((crc8_stpm(body),))

    @classmethod
    def decode(cls, raw: bytes) -> Frame:
        """Parse five request bytes; CrcError on a bad CRC, FrameError on a bad length."""
        if len(raw) != FRAME_LEN:
            raise FrameError(f"an STPM3x frame is {FRAME_LEN} bytes, got {len(raw)}")
        expected = crc8_stpm(raw[:4])
        if raw[4] != expected:
            raise CrcError(f"request CRC {raw[4]:#04x} != computed {expected:#04x} ({raw.hex(' ')})")
        return cls(read_address=raw[0], write_address=raw[1], data=raw[2] | (raw[3] << 8))


def encode_reply(value: int) -> bytes:
    """The five bytes the chip sends for a 32-bit register value."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"register value must be 32 bits unsigned, got {value!r}")
    body = struct.pack("<I", value)
    return body + bytes((crc8_stpm(body),))


def decode_reply(raw: bytes) -> int:
    """The 32-bit register value in a reply; CrcError on a bad CRC, FrameError on a bad length."""
    if len(raw) != FRAME_LEN:
        raise FrameError(f"an STPM3x reply is {FRAME_LEN} bytes, got {len(raw)}")
    expected = crc8_stpm(raw[:4])
    if raw[4] != expected:
        raise CrcError(f"reply CRC {raw[4]:#04x} != computed {expected:#04x} ({raw.hex(' ')})")
    return struct.unpack("<I", raw[:4])[0]
