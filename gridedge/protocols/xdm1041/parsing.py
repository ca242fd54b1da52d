"""Pure parsing of what an OWON XDM1041 says on its serial line.

The meter speaks a flat SCPI dialect at 115200 8N1 and ends each reply with CRLF. What real units
send, and what this module therefore copes with:

- ``*IDN?`` -> ``OWON,XDM1041,22511040,V4.0.0,3`` (firmware 4.x adds a fifth, hardware field);
- ``MEAS1?`` / ``MEAS?`` -> ``-3.803741E-05``; some firmware appends the display unit, and
  ``MEAS1:SHOW?`` answers in display form (``-00.107mVDC``). Units outside ASCII (``Ω``, ``℃``)
  arrive GBK-encoded, so every line is decoded with the ``gbk`` codec and bytes that are not
  valid GBK are replaced rather than raised on;
- overload is reported as ``1E+9`` (sigrok's scpi-dmm driver treats any OWON XDM reading at or
  above 1e9 as infinity); other firmware shows ``OVERLOAD``/``OL`` words. Both become a reading
  with no value;
- ``MEAS2?``/``FUNC2?`` answer ``NONe`` when the second display is off;
- ``FUNC1?`` -> ``"VOLT"``, ``"CURR"``, ``"VOLT AC"``, ``"RES"``: quoted, AC spelled with a space;
- firmware from 2021 on answers every non-query with ``OK`` (or ``nOK`` when refused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from gridedge.errors import FrameError

__all__ = [
    "OVERLOAD_LIMIT",
    "Identity",
    "Reading",
    "ReadingStatus",
    "decode_line",
    "format_range",
    "is_ack_line",
    "is_nack_line",
    "looks_like_function",
    "looks_like_idn",
    "looks_like_measurement",
    "parse_function",
    "parse_idn",
    "parse_measurement",
]

#: Magnitude at and above which a reading means "overload" (sigrok scpi-dmm: OWON XDM, 1e9).
OVERLOAD_LIMIT = 1e9

ReadingStatus = Literal["ok", "overload", "none"]

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)$")
_OVERLOAD_WORDS = frozenset({"OVERLOAD", "OVLD", "OVER", "OL", "+OL", "-OL", "0L", "INF", "+INF", "-INF"})
_NONE_WORDS = frozenset({"NONE"})
_FUNCTION = re.compile(r"^[A-Z]{3,5}(?:[ :][A-Z]{2,5})?$")

#: display unit (upper-cased) -> base unit name
_UNITS: dict[str, str] = {
    "V": "V", "VDC": "V", "VAC": "V", "DCV": "V", "ACV": "V",
    "A": "A", "ADC": "A", "AAC": "A", "DCA": "A", "ACA": "A",
    "Ω": "Ω", "OHM": "Ω", "OHMS": "Ω",
    "HZ": "Hz", "F": "F", "S": "s",
    "℃": "°C", "°C": "°C", "C": "°C", "℉": "°F", "°F": "°F",
}
#: SI prefixes the display uses (case-sensitive: m = milli, M = mega)
_PREFIXES: dict[str, float] = {
    "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3,
    "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9,
}


def decode_line(raw: bytes) -> tuple[str, bool]:
    """Decode one line from the meter: GBK, line ending and control bytes stripped.

    Returns ``(text, clean)``; ``clean`` is False when some bytes were not valid GBK and were
    replaced by U+FFFD (the line is still returned, never raised on, so one noisy byte cannot
    wedge the link).
    """
    try:
        text = raw.decode("gbk")
        clean = True
    except UnicodeDecodeError:
        text = raw.decode("gbk", errors="replace")
        clean = False
    return _CONTROL_CHARS.sub("", text).strip(), clean


def is_ack_line(text: str) -> bool:
    """True for the ``OK`` line newer firmware sends after every command."""
    return text.strip().upper() == "OK"


def is_nack_line(text: str) -> bool:
    """True for the ``nOK`` line newer firmware sends when it refuses a command."""
    return text.strip().upper() == "NOK"


@dataclass(frozen=True)
class Identity:
    """What ``*IDN?`` said: manufacturer, model, serial number, firmware (and hardware) version."""

    manufacturer: str
    model: str
    serial: str
    firmware: str
    hardware: str = ""

    def __post_init__(self) -> None:
        if not self.manufacturer or not self.model:
            raise FrameError(f"IDN without manufacturer or model: {self!r}")

    @property
    def is_owon_xdm(self) -> bool:
        """True for an OWON XDM-series bench meter (XDM1041, XDM1241, XDM2041 share the dialect)."""
        return self.manufacturer.upper() == "OWON" and self.model.upper().startswith("XDM")


def parse_idn(text: str) -> Identity:
    """Parse an ``*IDN?`` reply (4 or 5 comma-separated fields); FrameError otherwise."""
    fields = [f.strip() for f in text.strip().split(",")]
    if len(fields) not in (4, 5) or not all(fields[:2]):
        raise FrameError(f"not an *IDN? reply: {text!r}")
    return Identity(*fields)


def looks_like_idn(text: str) -> bool:
    """Reply matcher for ``*IDN?``."""
    try:
        parse_idn(text)
    except FrameError:
        return False
    return True


def parse_function(text: str) -> str:
    """Parse a ``FUNC1?`` reply into its bare upper-case name (``"VOLT"``, ``"CURR AC"``).

    ``NONe`` (second display off) is returned as ``"NONE"``. FrameError for anything else, so a
    stray measurement line is never mistaken for a function name.
    """
    name = text.strip().strip('"').strip().upper()
    if not _FUNCTION.match(name):
        raise FrameError(f"not a FUNC? reply: {text!r}")
    return name


def looks_like_function(text: str) -> bool:
    """Reply matcher for ``FUNC1?``."""
    if is_ack_line(text) or is_nack_line(text):
        return False
    try:
        parse_function(text)
    except FrameError:
        return False
    return True


@dataclass(frozen=True)
class Reading:
    """One measurement as the meter reported it.

    ``value`` is in the base unit (V, A, Ω, °C ...), already scaled by any display prefix; it is
    None when the meter reported overload or nothing (``NONe``). ``unit`` is the base unit the
    line carried, "" for a bare number.
    """

    value: float | None
    unit: str
    status: ReadingStatus
    raw: str

    def __post_init__(self) -> None:
        if self.status == "ok":
            if self.value is None or not math.isfinite(self.value):
                raise ValueError(f"an ok reading needs a finite value, got {self.value!r}")
        elif self.value is not None:
            raise ValueError(f"a {self.status} reading carries no value, got {self.value!r}")


def parse_measurement(text: str) -> Reading:
    """Parse a ``MEAS1?``/``MEAS?``/``MEAS1:SHOW?`` reply.

    Accepts engineering notation with an optional unit, with or without an SI prefix and a DC/AC
    suffix (``1.234567E+01``, ``12.3 V``, ``-00.107mVDC``, ``1.0E+02Ω``). Overload words and
    magnitudes at or above :data:`OVERLOAD_LIMIT` give an ``overload`` reading, ``NONe`` a
    ``none`` reading. Anything else raises FrameError.
    """
    stripped = text.strip()
    word = stripped.strip('"').upper()
    if word in _OVERLOAD_WORDS:
        return Reading(value=None, unit="", status="overload", raw=text)
    if word in _NONE_WORDS:
        return Reading(value=None, unit="", status="none", raw=text)
    match = _NUMBER.match(stripped)
    if not match:
        raise FrameError(f"not a measurement: {text!r}")
    number, suffix = match.group(1), match.group(2).strip()
    scale, unit = _parse_unit(suffix, text)
    value = float(number) * scale
    if not math.isfinite(value) or abs(value) >= OVERLOAD_LIMIT:
        return Reading(value=None, unit=unit, status="overload", raw=text)
    return Reading(value=value, unit=unit, status="ok", raw=text)


def looks_like_measurement(text: str) -> bool:
    """Reply matcher for ``MEAS1?``: a number (with unit), an overload or ``NONe``."""
    try:
        parse_measurement(text)
    except FrameError:
        return False
    return True


def _parse_unit(suffix: str, text: str) -> tuple[float, str]:
    if not suffix:
        return 1.0, ""
    if "\ufffd" in suffix:
        # an undecodable unit byte: the number is still good, the unit is unknown
        return 1.0, "?"
    unit = _UNITS.get(suffix.upper())
    if unit is not None:
        return 1.0, unit
    prefix, rest = suffix[0], suffix[1:].strip()
    if prefix in _PREFIXES and rest:
        unit = _UNITS.get(rest.upper())
        if unit is not None:
            return _PREFIXES[prefix], unit
    raise FrameError(f"unknown unit {suffix!r} in {text!r}")


def format_range(range_value: float | str | None) -> str:
    """A range argument as the XDM1041 takes it after ``CONF:<function>``: ``AUTO`` or ``50E-3``."""
    if range_value is None:
        return ""
    if isinstance(range_value, str):
        word = range_value.strip().upper()
        if word == "AUTO":
            return "AUTO"
        try:
            range_value = float(word)
        except ValueError as exc:
            raise FrameError(f"range must be AUTO or a number, got {range_value!r}") from exc
    if not math.isfinite(range_value) or range_value <= 0:
        raise FrameError(f"range must be positive, got {range_value!r}")
    if range_value >= 1:
        return f"{range_value:.6g}"
    # engineering form the manual uses below one unit: 500E-3, 50E-3, 500E-6
    exp = math.floor(math.log10(range_value))
    eng = exp - (exp % 3)
    return f"{range_value / 10**eng:.6g}E{eng}"
