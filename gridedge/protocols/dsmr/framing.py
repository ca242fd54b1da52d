"""Telegram framing: cut whole P1 telegrams out of a byte stream.

A P1 port delivers ``/header ... !CRC\\r\\n`` telegrams in arbitrary read chunks; a reader that
opens the port mid-telegram, a noisy line or a meter reboot leave garbage and half telegrams in
between. dsmr-parser's :class:`~dsmr_parser.clients.telegram_buffer.TelegramBuffer` finds the
complete telegrams; :class:`TelegramReassembler` adds what a long-running reader needs on top:
bytes in, a bounded buffer, and a count of what was skipped.

Bytes are decoded as Latin-1, which maps every byte to the code point of the same value, so the
CRC computed over the text equals the CRC over the wire bytes, and garbage never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsmr_parser.clients.telegram_buffer import TelegramBuffer

from gridedge.errors import FrameError

__all__ = ["WIRE_ENCODING", "ReassemblyStats", "TelegramReassembler", "extract_telegram"]

#: Encoding between wire bytes and the str dsmr-parser works on (lossless, one byte per char).
WIRE_ENCODING = "latin-1"

#: A plain telegram is ~1 kB; anything this long without a complete telegram is noise.
DEFAULT_MAX_BUFFER_CHARS = 16_384

_CRC_FIELD = re.compile(r"!([0-9A-F]{0,4})(\r\n|\r|\n)?")


@dataclass
class ReassemblyStats:
    """What the reassembler has seen since it was created."""

    #: complete telegrams handed out (not yet CRC-checked)
    telegrams: int = 0
    #: telegram starts ("/") that were dropped before their end arrived
    truncated: int = 0
    #: characters skipped that were not part of any telegram
    garbage_chars: int = 0
    #: times the buffer overflowed and was cut back
    overflows: int = 0


class _CountingTelegramBuffer(TelegramBuffer):
    """dsmr-parser's buffer, reporting the text it skips in front of each telegram."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []

    def _remove(self, telegram: str) -> None:
        # dsmr-parser drops everything in front of a telegram in _remove; we only look at it first.
        index = self._buffer.index(telegram)
        if index:
            self.skipped.append(self._buffer[:index])
        super()._remove(telegram)

    @property
    def pending(self) -> str:
        return self._buffer

    def cut_to(self, start: int) -> str:
        dropped = self._buffer[:start]
        self._buffer = self._buffer[start:]
        return dropped


class TelegramReassembler:
    """Feed bytes as they come off the port; get complete telegram texts back.

    ``feed()`` returns every telegram completed by the new bytes, in order, as text from ``/`` to
    the CRLF after the CRC. Garbage between telegrams and telegrams cut short (a new ``/`` before
    the ``!``) are skipped and counted in :attr:`stats`. The buffer is bounded by
    ``max_buffer_chars`` so a line that never ends a telegram cannot grow memory.
    """

    def __init__(self, *, max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS) -> None:
        if max_buffer_chars < 2048:
            raise ValueError("max_buffer_chars must hold at least one telegram (>= 2048)")
        self._buffer = _CountingTelegramBuffer()
        self._max = max_buffer_chars
        self.stats = ReassemblyStats()

    def feed(self, data: bytes) -> list[str]:
        """Add ``data`` and return the telegrams it completed."""
        self._buffer.append(data.decode(WIRE_ENCODING))
        telegrams = list(self._buffer.get_all())
        for skipped in self._buffer.skipped:
            self._account_skipped(skipped)
        self._buffer.skipped.clear()
        self.stats.telegrams += len(telegrams)
        self._bound()
        return telegrams

    def reset(self) -> None:
        """Forget buffered bytes (after a reconnect the old tail belongs to nothing)."""
        pending = self._buffer.cut_to(len(self._buffer.pending))
        self._account_skipped(pending)

    @property
    def buffered_chars(self) -> int:
        """Characters waiting for the rest of their telegram."""
        return len(self._buffer.pending)

    def _account_skipped(self, text: str) -> None:
        if not text:
            return
        starts = text.count("/")
        self.stats.truncated += starts
        first = text.find("/")
        self.stats.garbage_chars += len(text) if first < 0 else first

    def _bound(self) -> None:
        pending = self._buffer.pending
        if len(pending) <= self._max:
            return
        self.stats.overflows += 1
        # Keep the last telegram start if it is recent enough to still complete; else keep nothing.
        last_start = pending.rfind("/")
        keep_from = (
            last_start if last_start >= 0 and len(pending) - last_start <= self._max // 2 else len(pending)
        )
        self._account_skipped(self._buffer.cut_to(keep_from))


def extract_telegram(data: bytes | str) -> str:
    """Return the single telegram in ``data`` (a file's or a read's content), framing checked.

    Leading garbage is skipped. The telegram must start with ``/`` and end with ``!`` followed by
    its CRC: 1–4 upper-case hex digits (some meters do not zero-pad) and CR LF; four digits at the
    very end of the input are accepted without the line end. Raises :class:`FrameError` naming
    what is missing when the telegram is truncated or malformed. The CRC itself is checked by the
    decoder, not here.
    """
    text = data.decode(WIRE_ENCODING) if isinstance(data, bytes) else data
    start = text.find("/")
    if start < 0:
        raise FrameError("no telegram: missing the '/' that starts a P1 telegram")
    end_mark = text.find("!", start)
    if end_mark < 0:
        raise FrameError("truncated telegram: missing the '!' end marker and the CRC")
    match = _CRC_FIELD.match(text, end_mark)
    assert match is not None  # the pattern accepts "!" alone
    digits, line_end = match.group(1), match.group(2)
    if not digits:
        raise FrameError("truncated telegram: missing the CRC after '!'")
    rest = text[match.end(2) if line_end else match.end(1) :]
    if line_end == "\r\n":
        return text[start : match.end()]
    if len(digits) == 4 and line_end in (None, "\r") and not rest:
        # A file saved without its last line end: four digits are the whole CRC.
        return text[start : match.end(1)] + "\r\n"
    if not line_end and not rest:
        raise FrameError(f"truncated telegram: CRC '{digits}' incomplete (missing CR LF after it)")
    raise FrameError(f"malformed telegram: CRC '!{digits}' not followed by CR LF")
