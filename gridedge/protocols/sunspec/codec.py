"""SunSpec point values: raw words -> number or "no value", and back.

Rules (SunSpec Information Model Specification):

- "not implemented" is a reserved raw value, never a number: int16 0x8000, uint16/enum16/
  bitfield16/count 0xFFFF, acc16/acc32/acc64 0, int32 0x80000000, uint32/enum32/bitfield32
  0xFFFFFFFF, float32 NaN, an all-NUL string; a scale factor of 0x8000 makes its points "no
  value" too. pysunspec2's ``unimpl_value`` table is the reference used.
- a scale factor is an int16 within -10..10; anything else is refused, naming the point.
- value = raw × 10^sf.
- multi-register values are big-endian, most significant word first.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from sunspec2 import mb as ss_mb
from sunspec2 import mdef as ss_mdef

from gridedge.errors import ConfigError, FrameError, ProtocolError
from gridedge.protocols.sunspec.models import PointDef

__all__ = [
    "SF_MAX",
    "SF_MIN",
    "ScaleFactorError",
    "apply_scale",
    "check_scale_factor",
    "decode_raw",
    "encode_raw",
    "not_implemented_words",
    "unscale",
]

SF_MIN = -10
SF_MAX = 10

_SIGNED = {ss_mdef.TYPE_INT16, ss_mdef.TYPE_SUNSSF, ss_mdef.TYPE_INT32, ss_mdef.TYPE_INT64}
_FLOATS = {ss_mdef.TYPE_FLOAT32: ">f", ss_mdef.TYPE_FLOAT64: ">d"}


class ScaleFactorError(ProtocolError):
    """A scale factor outside -10..10: the device's data cannot be trusted (not retryable)."""


def _to_bytes(words: Sequence[int]) -> bytes:
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise FrameError(f"register value {w} is not a 16-bit word")
    return b"".join(w.to_bytes(2, "big") for w in words)


def decode_raw(point: PointDef, words: Sequence[int]) -> int | float | str | None:
    """The raw value of ``point`` from its words; None when it carries "not implemented"."""
    if len(words) != point.size:
        raise FrameError(f"point {point.name} needs {point.size} registers, got {len(words)}")
    data = _to_bytes(words)
    ptype = point.sunspec_type
    if ptype == ss_mdef.TYPE_STRING:
        text = data.rstrip(b"\0")
        return text.decode("utf-8", errors="replace") if text else None
    if ptype in _FLOATS:
        value = struct.unpack(_FLOATS[ptype], data)[0]
        return None if math.isnan(value) else value
    if ptype not in ss_mb.unimpl_value or ptype == ss_mdef.TYPE_PAD:
        raise ConfigError(f"point {point.name}: SunSpec type {ptype!r} is not a number")
    raw = int.from_bytes(data, "big", signed=ptype in _SIGNED)
    return None if raw == ss_mb.unimpl_value[ptype] else raw


def not_implemented_words(point: PointDef) -> list[int]:
    """The words a device sends for ``point`` when it does not implement it."""
    ptype = point.sunspec_type
    if ptype == ss_mdef.TYPE_STRING:
        return [0] * point.size
    data = ss_mb.create_unimpl_value(ptype, point.size * 2)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, point.size * 2, 2)]


def encode_raw(point: PointDef, raw: float | str | None) -> list[int]:
    """The words carrying the raw value ``raw`` (None = not implemented); ValueError if it does
    not fit or collides with the "not implemented" marker."""
    if raw is None:
        return not_implemented_words(point)
    ptype = point.sunspec_type
    nbytes = point.size * 2
    if ptype == ss_mdef.TYPE_STRING:
        data = str(raw).encode("utf-8")
        if len(data) > nbytes:
            raise ValueError(f"point {point.name}: {raw!r} is longer than {nbytes} bytes")
        data = data.ljust(nbytes, b"\0")
    elif ptype in _FLOATS:
        data = struct.pack(_FLOATS[ptype], float(raw))
    else:
        if ptype not in ss_mb.unimpl_value or ptype == ss_mdef.TYPE_PAD:
            raise ValueError(f"point {point.name}: SunSpec type {ptype!r} is not a number")
        value = int(raw)
        if value == ss_mb.unimpl_value[ptype]:
            raise ValueError(f"point {point.name}: {value} is the 'not implemented' marker of {ptype}")
        try:
            data = value.to_bytes(nbytes, "big", signed=ptype in _SIGNED)
        except OverflowError as exc:
            raise ValueError(f"point {point.name}: {value} does not fit {ptype}") from exc
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, nbytes, 2)]


def check_scale_factor(sf: int | None, *, point_name: str) -> int | None:
    """``sf`` if it is a valid scale factor (or None = not implemented); ScaleFactorError otherwise."""
    if sf is None:
        return None
    if not SF_MIN <= sf <= SF_MAX:
        raise ScaleFactorError(
            f"scale factor {point_name} = {sf} is outside {SF_MIN}..{SF_MAX}; refusing its points"
        )
    return sf


def apply_scale(raw: float | None, sf: int | None) -> int | float | None:
    """raw × 10^sf; None when the value or its scale factor is "not implemented".

    Exact for integers: a non-negative sf keeps an int, a negative one divides (so 2301 with
    sf -1 is 230.1, not 230.10000000000002).
    """
    if raw is None or sf is None:
        return None
    if sf >= 0:
        return raw * 10**sf
    return raw / 10 ** (-sf)


def unscale(value: float, sf: int) -> int:
    """The raw integer a device sends for ``value`` with scale factor ``sf`` (rounded)."""
    if sf >= 0:
        return round(value / 10**sf)
    return round(value * 10 ** (-sf))
