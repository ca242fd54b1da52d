"""The P1 port of Belgian and Dutch digital meters (DSMR 4/5, Fluvius e-MUCS).

dsmr-parser does the parsing; this package adds what a long-running reader needs around it:
framing from arbitrary byte chunks (:mod:`.framing`), CRC-first decoding with the right
specification per telegram (:mod:`.decoder`), JSON output keyed by dsmr-parser's names
(:mod:`.json_export`), one normalized reading in fixed units (:mod:`.points`), a telegram
synthesiser for simulators and tests (:mod:`.synth`) and a serial reader thread (:mod:`.reader`).
"""

from gridedge.protocols.dsmr.decoder import (
    SPECIFICATIONS,
    DecodedTelegram,
    TelegramDecoder,
    crc16,
    decode,
    select_specification,
)
from gridedge.protocols.dsmr.framing import ReassemblyStats, TelegramReassembler, extract_telegram
from gridedge.protocols.dsmr.json_export import METER_TZ, iso, to_json
from gridedge.protocols.dsmr.points import (
    MBUS_GAS,
    MBUS_WATER,
    POINT_KEYS,
    POINT_TYPES,
    TARIFF_PERIODS,
    MBusReading,
    P1Reading,
    PeakRecord,
    normalize,
)
from gridedge.protocols.dsmr.reader import (
    DIAGNOSTIC_POINT_TYPES,
    P1Reader,
    ReaderStats,
    ReceivedTelegram,
    line_settings,
)
from gridedge.protocols.dsmr.synth import FluviusValues, build_fluvius_telegram, dsmr_timestamp

__all__ = [
    "DIAGNOSTIC_POINT_TYPES",
    "MBUS_GAS",
    "MBUS_WATER",
    "METER_TZ",
    "POINT_KEYS",
    "POINT_TYPES",
    "SPECIFICATIONS",
    "TARIFF_PERIODS",
    "DecodedTelegram",
    "FluviusValues",
    "MBusReading",
    "P1Reader",
    "P1Reading",
    "PeakRecord",
    "ReaderStats",
    "ReassemblyStats",
    "ReceivedTelegram",
    "TelegramDecoder",
    "TelegramReassembler",
    "build_fluvius_telegram",
    "crc16",
    "decode",
    "decode_telegram_bytes",
    "dsmr_timestamp",
    "extract_telegram",
    "iso",
    "line_settings",
    "normalize",
    "select_specification",
    "to_json",
]


def decode_telegram_bytes(data: bytes) -> DecodedTelegram:
    """Frame, CRC-check and parse the one telegram in ``data`` (a file's content)."""
    return decode(extract_telegram(data))
