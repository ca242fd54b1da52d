"""Decode one framed P1 telegram with dsmr-parser: CRC first, then the right specification.

dsmr-parser ships one specification per meter family. The telegram itself says which family it
is (the ``/FLU`` header and ``0-0:96.1.4`` line of the Belgian e-MUCS meters, the ``1-3:0.2.8``
DSMR version line of Dutch meters, Wh units of the Sagemcom T210-D-r), so
:func:`select_specification` picks it per telegram unless a caller forces one.

Every telegram that carries a CRC is checked, whatever the specification says (dsmr-parser's
``ISKRA_IE`` spec skips the check although the meter sends one). A mismatch raises
:class:`~gridedge.errors.CrcError`; a telegram that cannot be parsed raises
:class:`~gridedge.errors.FrameError`. Neither ever yields values.
"""

from __future__ import annotations

import copy
import decimal
import re
import threading
from dataclasses import dataclass
from typing import Any

from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import ParseError
from dsmr_parser.objects import Telegram
from dsmr_parser.parsers import ProfileGenericParser, TelegramParser

from gridedge.errors import CrcError, FrameError

__all__ = [
    "SPECIFICATIONS",
    "DecodedTelegram",
    "TelegramDecoder",
    "crc16",
    "decode",
    "select_specification",
]

#: Our names for the dsmr-parser specifications we accept (plain-text telegrams only).
SPECIFICATIONS: dict[str, dict[str, Any]] = {
    "fluvius": specs.BELGIUM_FLUVIUS,
    "v4": specs.V4,
    "v5": specs.V5,
    "sagemcom_t210_d_r": specs.SAGEMCOM_T210_D_R,
    "iskra_ie": specs.ISKRA_IE,
}

_FLUVIUS = re.compile(r"\A/FLU|^0-0:96\.1\.4\(", re.MULTILINE)
_WH_REGISTERS = re.compile(r"^\d-\d:[12]\.8\.\d\([0-9.]+\*Wh\)", re.MULTILINE)
_DSMR_VERSION = re.compile(r"^1-3:0\.2\.8\((\d)", re.MULTILINE)
_LOGICAL_NAME = re.compile(r"^1-0:0\.0\.0\(", re.MULTILINE)
_CRC_DIGITS = re.compile(r"!([0-9A-F]{1,4})\0?\r\n\Z")


def _crc16_arc_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_TABLE = _crc16_arc_table()


def crc16(text: str) -> int:
    """CRC-16/ARC of ``text`` as DSMR computes it (from ``/`` through ``!``).

    The same sum as dsmr-parser's ``TelegramParser.crc16`` (the tests compare them), three times
    faster: dsmr-parser keeps its table as hex strings and parses one per byte, and the CRC runs
    on every telegram a reader receives.
    """
    crc = 0
    table = _CRC16_TABLE
    for byte in text.encode("latin-1"):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def select_specification(text: str) -> str:
    """Name (a key of :data:`SPECIFICATIONS`) of the dsmr-parser specification for ``text``.

    Belgian e-MUCS first (its tariff indicator means the opposite of the Dutch one), then meters
    that count in Wh, then the DSMR version line (4.x or 5.x), then the Irish Iskra layout;
    DSMR 5 is the fallback, as it is the superset most meters follow.
    """
    if _FLUVIUS.search(text):
        return "fluvius"
    if _WH_REGISTERS.search(text):
        return "sagemcom_t210_d_r"
    version = _DSMR_VERSION.search(text)
    if version:
        return "v4" if version.group(1) == "4" else "v5"
    if _LOGICAL_NAME.search(text):
        return "iskra_ie"
    return "v5"


@dataclass(frozen=True)
class DecodedTelegram:
    """A CRC-checked, parsed telegram and where it came from."""

    #: dsmr-parser's result; attributes are its object names (``ELECTRICITY_USED_TARIFF_1`` ...)
    telegram: Telegram
    #: key of :data:`SPECIFICATIONS` used to parse it
    specification: str
    #: the telegram text, ``/`` through the CRLF after the CRC
    text: str

    def __post_init__(self) -> None:
        if self.specification not in SPECIFICATIONS:
            raise ValueError(f"unknown specification {self.specification!r}")


class TelegramDecoder:
    """Reusable decoder; owns private copies of dsmr-parser's parsers.

    dsmr-parser's parser objects keep state between calls (``ProfileGenericParser`` appends to
    its own list of value parsers on every power-failure log it reads), so each decoder works on
    deep copies, resets that list after each parse and serialises parses with a lock. One
    decoder may be shared between threads.
    """

    def __init__(self, *, specification: str = "auto", require_crc: bool = True) -> None:
        if specification != "auto" and specification not in SPECIFICATIONS:
            raise ValueError(
                f"unknown specification {specification!r}; use 'auto' or one of {sorted(SPECIFICATIONS)}"
            )
        self._forced = None if specification == "auto" else specification
        self._require_crc = require_crc
        self._parsers: dict[str, TelegramParser] = {}
        self._lock = threading.Lock()

    def decode(self, text: str) -> DecodedTelegram:
        """Check the CRC of one framed telegram and parse it.

        Raises :class:`CrcError` when the CRC does not match and :class:`FrameError` when the
        telegram has no CRC (and one is required) or a line cannot be parsed.
        """
        self._check_crc(text)
        name = self._forced or select_specification(text)
        with self._lock:
            parser = self._parser(name)
            try:
                telegram = parser.parse(text, throw_ex=True)
            except ParseError as exc:
                raise FrameError(
                    f"malformed telegram line ({name} specification): {_first_arg(exc)}"
                ) from exc
            except (ValueError, IndexError, TypeError, decimal.InvalidOperation) as exc:
                raise FrameError(f"malformed telegram ({name} specification): {exc!r}") from exc
            finally:
                _reset_profile_parsers(parser)
        return DecodedTelegram(telegram=telegram, specification=name, text=text)

    def _check_crc(self, text: str) -> None:
        match = _CRC_DIGITS.search(text)
        if not match:
            if self._require_crc or "!" not in text:
                raise FrameError("telegram has no CRC after '!' (DSMR 4 and later always send one)")
            return
        start = text.find("/")
        if start < 0:
            raise FrameError("cannot check CRC: no '/' starts the telegram")
        try:
            computed = crc16(text[start : match.start() + 1])
        except UnicodeEncodeError as exc:  # text that did not come off the wire as Latin-1
            raise FrameError(f"cannot check CRC: {exc}") from exc
        if computed != int(match.group(1), 16):
            raise CrcError(f"CRC mismatch: telegram says {match.group(1)}, content gives {computed:04X}")

    def _parser(self, name: str) -> TelegramParser:
        parser = self._parsers.get(name)
        if parser is None:
            spec = copy.deepcopy(SPECIFICATIONS[name])
            # We only ever see the plain-text telegram; a spec that expects the encrypted
            # DLMS frame (SAGEMCOM_T210_D_R) is used for its object list only.
            spec["general_global_cipher"] = False
            parser = TelegramParser(spec, apply_checksum_validation=False)
            self._parsers[name] = parser
        return parser


_PROFILE_HEAD_LENGTH = 2  # buffer length + buffer type: the parsers a ProfileGenericParser starts with


def _reset_profile_parsers(parser: TelegramParser) -> None:
    for obj in parser.telegram_specification["objects"]:
        value_parser = obj["value_parser"]
        if isinstance(value_parser, ProfileGenericParser):
            del value_parser.value_formats[_PROFILE_HEAD_LENGTH:]


def _first_arg(exc: Exception) -> str:
    args = exc.args
    if len(args) >= 2 and isinstance(args[0], str) and "%s" in args[0]:
        try:
            return args[0] % tuple(str(a).strip() for a in args[1 : args[0].count("%s") + 1])
        except TypeError:
            pass
    return str(exc)


_DEFAULT_DECODER = TelegramDecoder()


def decode(text: str) -> DecodedTelegram:
    """Decode one framed telegram with a shared auto-detecting decoder (see :class:`TelegramDecoder`)."""
    return _DEFAULT_DECODER.decode(text)
