"""Telegram framing from a byte stream and from a single file's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridedge.errors import FrameError
from gridedge.protocols.dsmr import TelegramReassembler, extract_telegram

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
FLUVIUS = (DATA / "fluvius_v171.txt").read_bytes()
V5 = (DATA / "dsmr_v5.txt").read_bytes()


def test_split_reads_at_every_position_reassemble() -> None:
    """A telegram split into two reads at any byte comes out whole, exactly once."""
    for cut in range(1, len(FLUVIUS)):
        reassembler = TelegramReassembler()
        out = reassembler.feed(FLUVIUS[:cut]) + reassembler.feed(FLUVIUS[cut:])
        assert out == [FLUVIUS.decode("latin-1")], cut


def test_byte_by_byte_stream_of_several_telegrams() -> None:
    """Telegrams delivered one byte per read come out in order."""
    reassembler = TelegramReassembler()
    out: list[str] = []
    for byte in FLUVIUS + V5 + FLUVIUS:
        out += reassembler.feed(bytes([byte]))
    assert out == [t.decode("latin-1") for t in (FLUVIUS, V5, FLUVIUS)]
    assert reassembler.buffered_chars == 0


def test_garbage_between_telegrams_is_skipped_and_counted() -> None:
    """Noise before and between telegrams is dropped and counted in garbage_chars."""
    reassembler = TelegramReassembler()
    out = reassembler.feed(b"\x00\xff noise!\r\n" + FLUVIUS + b"\x13\x37" + V5)
    assert out == [FLUVIUS.decode("latin-1"), V5.decode("latin-1")]
    assert reassembler.stats.garbage_chars == len(b"\x00\xff noise!\r\n") + 2
    assert reassembler.stats.truncated == 0


def test_truncated_telegram_followed_by_complete_one() -> None:
    """A telegram cut short by the next '/' is dropped and counted; the next one survives."""
    reassembler = TelegramReassembler()
    out = reassembler.feed(FLUVIUS[:400] + V5)
    assert out == [V5.decode("latin-1")]
    assert reassembler.stats.truncated == 1


def test_reader_attaching_mid_telegram_skips_the_tail() -> None:
    """Starting to read in the middle of a telegram loses that one, not the next."""
    reassembler = TelegramReassembler()
    assert reassembler.feed(FLUVIUS[500:]) == []
    assert reassembler.feed(V5) == [V5.decode("latin-1")]


def test_buffer_is_bounded() -> None:
    """A line that never completes a telegram cannot grow the buffer without bound."""
    reassembler = TelegramReassembler(max_buffer_chars=4096)
    for _ in range(100):
        reassembler.feed(b"x" * 1000)
    assert reassembler.buffered_chars <= 4096
    assert reassembler.stats.overflows > 0
    assert reassembler.feed(FLUVIUS) == [FLUVIUS.decode("latin-1")]


def test_reassembler_refuses_a_buffer_smaller_than_a_telegram() -> None:
    """The bound must hold at least one telegram."""
    with pytest.raises(ValueError):
        TelegramReassembler(max_buffer_chars=100)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing the '/'"),
        (b"garbage only\r\n", "missing the '/'"),
        (FLUVIUS[:300], "missing the '!' end marker"),
        (FLUVIUS[: FLUVIUS.rindex(b"!") + 1], "missing the CRC"),
        (FLUVIUS[: FLUVIUS.rindex(b"!") + 3], "CRC '3A' incomplete"),
        (FLUVIUS[: FLUVIUS.rindex(b"!") + 4], "CRC '3AD' incomplete"),
        (FLUVIUS[:-2] + b"X\r\n", "not followed by CR LF"),
    ],
    ids=["empty", "no-start", "no-end", "no-crc", "crc-2-digits", "crc-3-digits", "crc-junk"],
)
def test_truncated_telegram_is_a_frame_error_naming_what_is_missing(data: bytes, message: str) -> None:
    """Truncated input raises FrameError that says which part is missing."""
    with pytest.raises(FrameError, match=message.replace("(", r"\(")):
        extract_telegram(data)


@pytest.mark.parametrize(
    "data",
    [FLUVIUS, FLUVIUS[:-2], FLUVIUS[:-1], b"junk\r\n" + FLUVIUS, FLUVIUS + b"/next telegram start"],
    ids=["exact", "no-line-end", "cr-only", "leading-junk", "trailing-start"],
)
def test_complete_telegram_is_extracted(data: bytes) -> None:
    """A complete telegram is found; a lost final line end after four CRC digits is tolerated."""
    assert extract_telegram(data) == FLUVIUS.decode("latin-1")
