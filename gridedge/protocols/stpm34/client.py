"""A transport-agnostic STPM34 client: configure, latch, pipelined reads, decode.

Works on anything with ``write(bytes)``, ``read(n) -> bytes`` and a ``timeout`` attribute in
seconds (a pyserial ``Serial``, a socket wrapper, a test double). Exchanges are lock-step, as in
ST's metrology firmware: send one 5-byte frame, wait for its 5-byte reply, send the next.

Pipelining: the reply to frame N carries the row asked for in frame N-1, so a read of rows
``a, b, c`` is the frames ``[a] [b] [c] [FF]`` whose replies are ``junk, a, b, c``.

Integrity: a reply with a bad CRC is counted in :attr:`Stpm34Client.crc_errors`, never decoded;
the input is drained (which also resynchronises after garbage bytes) and the lost row is asked
again, without a new latch, so the sample stays coherent. No reply at all raises
:class:`~gridedge.errors.ProtocolTimeout`; the next read re-configures the chip, which may have
been power-cycled meanwhile.

Temperature: the STPM34 has no temperature register (the TMP bits of DSP_CR3 are tamper
detection; TC1/TC2 only select the reference's temperature coefficient). ``temperature_c`` comes
from an optional ``temperature_source`` callable, e.g. :func:`thermal_zone_reader` on the host's
board sensor; without one it is ``None``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from gridedge.errors import CrcError, DeviceError, ProtocolTimeout
from gridedge.protocols.stpm34.calibration import PERIOD_LSB_S, ChannelScale, Stpm34Calibration
from gridedge.protocols.stpm34.frame import FRAME_LEN, NO_ADDRESS, Frame, decode_reply
from gridedge.protocols.stpm34.registers import (
    C_RMS,
    CAL,
    GAIN,
    GAIN_CODES,
    PERIOD1,
    PERIOD2,
    SW_AUTO_LATCH,
    SW_LATCH1,
    SW_LATCH2,
    SW_RESET,
    V_RMS,
    Reg,
    field_get,
    field_set,
    sign_extend,
)

__all__ = [
    "SAMPLE_ROWS",
    "ChannelSample",
    "PortLike",
    "Stpm34Client",
    "Stpm34Sample",
    "decode_power",
    "decode_rms",
    "frequency_from_period",
    "thermal_zone_reader",
]

_log = logging.getLogger(__name__)

#: rows one sample reads (15 rows -> 17 frames with the latch and the trailing clock-out frame)
SAMPLE_ROWS: tuple[Reg, ...] = (
    Reg.DSP_REG1,
    Reg.DSP_REG14,
    Reg.DSP_REG15,
    Reg.PH1_ACTIVE_ENERGY,
    Reg.PH1_REACTIVE_ENERGY,
    Reg.PH1_APPARENT_ENERGY,
    Reg.PH1_ACTIVE_POWER,
    Reg.PH1_REACTIVE_POWER,
    Reg.PH1_APPARENT_RMS_POWER,
    Reg.PH2_ACTIVE_ENERGY,
    Reg.PH2_REACTIVE_ENERGY,
    Reg.PH2_APPARENT_ENERGY,
    Reg.PH2_ACTIVE_POWER,
    Reg.PH2_REACTIVE_POWER,
    Reg.PH2_APPARENT_RMS_POWER,
)

_CHANNEL_ROWS = {
    1: (Reg.DSP_REG14, Reg.PH1_ACTIVE_POWER, Reg.PH1_REACTIVE_POWER, Reg.PH1_APPARENT_RMS_POWER,
        Reg.PH1_ACTIVE_ENERGY, Reg.PH1_REACTIVE_ENERGY, Reg.PH1_APPARENT_ENERGY),
    2: (Reg.DSP_REG15, Reg.PH2_ACTIVE_POWER, Reg.PH2_REACTIVE_POWER, Reg.PH2_APPARENT_RMS_POWER,
        Reg.PH2_ACTIVE_ENERGY, Reg.PH2_REACTIVE_ENERGY, Reg.PH2_APPARENT_ENERGY),
}
_CAL_ROWS = ((Reg.DSP_CR5, 1, "chv"), (Reg.DSP_CR6, 1, "chc"), (Reg.DSP_CR7, 2, "chv"),
             (Reg.DSP_CR8, 2, "chc"))
_GAIN_ROWS = ((Reg.DFE_CR1, 1), (Reg.DFE_CR2, 2))


class PortLike(Protocol):
    """The part of a pyserial ``Serial`` the client uses."""

    timeout: float | None

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...


def decode_rms(row: int) -> tuple[int, int]:
    """(voltage counts, current counts) of DSP_REG14/15."""
    return field_get(row, V_RMS), field_get(row, C_RMS)


def decode_power(row: int) -> int:
    """Signed counts of a 29-bit power row."""
    return sign_extend(row, 29)


def frequency_from_period(counts: int) -> float:
    """Line frequency, Hz, of a 12-bit period count (0 when there is no signal)."""
    return 1.0 / (counts * PERIOD_LSB_S) if counts > 0 else 0.0


def thermal_zone_reader(path: str | Path) -> Callable[[], float | None]:
    """A temperature source reading a Linux thermal-zone style file (integer millidegrees C)."""
    target = Path(path)

    def read() -> float | None:
        try:
            return int(target.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            return None

    return read


@dataclass(frozen=True)
class ChannelSample:
    """One channel's measurements at the latch instant. Positive power = import."""

    v_rms_v: float
    i_rms_a: float
    active_w: float
    reactive_var: float
    apparent_va: float
    #: P / S, signed (negative when exporting); 1.0 when nothing flows
    power_factor: float
    active_energy_kwh: float
    reactive_energy_kvarh: float
    apparent_energy_kvah: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise ValueError(f"{name} is not finite: {value}")
        if self.v_rms_v < 0 or self.i_rms_a < 0 or self.apparent_va < 0:
            raise ValueError("RMS values and apparent power cannot be negative")
        if not -1.0 <= self.power_factor <= 1.0:
            raise ValueError(f"power_factor {self.power_factor} outside -1..1")


@dataclass(frozen=True)
class Stpm34Sample:
    """A coherent (one latch) reading of both channels."""

    ts: float
    channel1: ChannelSample
    channel2: ChannelSample
    frequency_hz: float
    #: from the configured temperature source; the chip itself has no sensor
    temperature_c: float | None
    #: bad-CRC replies seen by the client so far
    crc_errors: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.frequency_hz) and self.frequency_hz >= 0):
            raise ValueError(f"frequency_hz must be finite and >= 0, got {self.frequency_hz}")
        if self.crc_errors < 0:
            raise ValueError("crc_errors cannot be negative")

    def channel(self, channel: int) -> ChannelSample:
        """Channel 1 or 2."""
        if channel not in (1, 2):
            raise ValueError(f"STPM34 channels are 1 and 2, got {channel}")
        return self.channel1 if channel == 1 else self.channel2

    def to_dict(self) -> dict:
        """A JSON-able view."""
        return asdict(self)


class _EnergyCounter:
    """Unwraps a 32-bit energy accumulator into an unbounded signed count."""

    def __init__(self) -> None:
        self._last: int | None = None
        self.total = 0

    def update(self, raw: int) -> int:
        if self._last is None:
            self.total = sign_extend(raw, 32)
        else:
            self.total += sign_extend((raw - self._last) & 0xFFFFFFFF, 32)
        self._last = raw
        return self.total


class Stpm34Client:
    """Reads coherent two-channel samples from an STPM34 over a UART-like port."""

    def __init__(
        self,
        port: PortLike,
        *,
        calibration: Stpm34Calibration | None = None,
        temperature_source: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.time,
        retries: int = 3,
        drain_timeout_s: float = 0.03,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._port = port
        self._cal = calibration or Stpm34Calibration()
        self._temperature_source = temperature_source
        self._clock = clock
        self._retries = retries
        self._drain_timeout_s = drain_timeout_s
        self._crc_errors = 0
        self._configured = False
        self._dsp_cr3 = 0
        self._scales = {ch: self._cal.scale(ch) for ch in (1, 2)}
        self._energy = {(ch, kind): _EnergyCounter() for ch in (1, 2) for kind in range(3)}

    @property
    def crc_errors(self) -> int:
        """Replies discarded for a bad CRC since this client was made."""
        return self._crc_errors

    @property
    def calibration(self) -> Stpm34Calibration:
        """The board calibration this client decodes (and configures the chip) with."""
        return self._cal

    @property
    def configured(self) -> bool:
        """Whether the chip holds this client's calibration (False after a timeout)."""
        return self._configured

    # -- frame level -------------------------------------------------------------------------

    def exchange(self, frame: Frame) -> int:
        """Send one frame and return the 32-bit value of its reply.

        CrcError (counted, input drained) on a bad reply; ProtocolTimeout on no or a short reply.
        """
        self._port.write(frame.encode())
        raw = self._read_exact(FRAME_LEN)
        try:
            return decode_reply(raw)
        except CrcError:
            self._crc_errors += 1
            self._drain()
            raise

    def _read_exact(self, size: int) -> bytes:
        buf = b""
        while len(buf) < size:
            chunk = self._port.read(size - len(buf))
            if not chunk:
                break
            buf += chunk
        if len(buf) < size:
            self._configured = False
            what = "no reply" if not buf else f"a {len(buf)}-byte partial reply ({buf.hex(' ')})"
            raise ProtocolTimeout(
                f"STPM34 sent {what} within {self._port.timeout} s; is the board powered and "
                f"the baud rate right?"
            )
        return buf

    def _drain(self) -> None:
        """Discard input until the line has been quiet for a moment (resync after garbage)."""
        saved = self._port.timeout
        self._port.timeout = self._drain_timeout_s
        try:
            while self._port.read(256):
                pass
        finally:
            self._port.timeout = saved

    # -- register level ----------------------------------------------------------------------

    def read_registers(self, rows: Iterable[int]) -> dict[int, int]:
        """Read rows with pipelined frames; rows lost to bad CRCs are asked again."""
        pending = list(dict.fromkeys(int(r) for r in rows))
        values: dict[int, int] = {}
        for _ in range(self._retries + 1):
            if not pending:
                break
            pending = self._read_pass(pending, values)
        if pending:
            raise CrcError(
                f"rows {[hex(r) for r in pending]} failed their CRC {self._retries + 1} times"
            )
        return values

    def _read_pass(self, rows: Sequence[int], values: dict[int, int]) -> list[int]:
        failed: list[int] = []
        previous: int | None = None
        for frame in [*(Frame.read(r) for r in rows), Frame()]:
            try:
                value = self.exchange(frame)
            except CrcError:
                if previous is not None:
                    failed.append(previous)
            else:
                if previous is not None:
                    values[previous] = value
            previous = frame.read_address if frame.read_address != NO_ADDRESS else None
        return failed

    def read_register(self, row: int) -> int:
        """Read one row."""
        return self.read_registers([row])[row]

    def write_half(self, address: int, value: int) -> None:
        """Write a 16-bit half-word (its reply is read and dropped; a bad CRC is counted)."""
        try:
            self.exchange(Frame.write(address, value & 0xFFFF))
        except CrcError:
            pass  # the request itself arrived; configure() verifies by reading back

    def write_row(self, row: int, value: int) -> None:
        """Write both halves of a 32-bit row."""
        self.write_half(row, value & 0xFFFF)
        self.write_half(row + 1, (value >> 16) & 0xFFFF)

    # -- device level ------------------------------------------------------------------------

    def configure(self) -> None:
        """Write this client's calibration registers and gains, and verify them by read-back."""
        rows = [Reg.DSP_CR3, *(r for r, _, _ in _CAL_ROWS), *(r for r, _ in _GAIN_ROWS)]
        current = self.read_registers(rows)
        wanted = dict(current)
        for row, ch, attr in _CAL_ROWS:
            wanted[row] = field_set(current[row], CAL, getattr(self._cal.channel(ch), attr))
        for row, ch in _GAIN_ROWS:
            wanted[row] = field_set(current[row], GAIN, GAIN_CODES[self._cal.channel(ch).current_gain])
        for row in rows:
            if wanted[row] == current[row]:
                continue
            if (wanted[row] ^ current[row]) & 0xFFFF:
                self.write_half(row, wanted[row] & 0xFFFF)
            if (wanted[row] ^ current[row]) >> 16:
                self.write_half(row + 1, wanted[row] >> 16)
        readback = self.read_registers(rows) if wanted != current else current
        wrong = [hex(r) for r in rows if readback[r] != wanted[r]]
        if wrong:
            raise DeviceError(f"STPM34 did not keep the calibration written to rows {wrong}")
        self._dsp_cr3 = readback[Reg.DSP_CR3] & ~(SW_RESET.mask | SW_LATCH1.mask | SW_LATCH2.mask)
        self._configured = True

    def latch(self) -> None:
        """Latch both channels' measurements (software latch bits of DSP_CR3)."""
        if self._dsp_cr3 & SW_AUTO_LATCH.mask:
            return
        value = self._dsp_cr3 | SW_LATCH1.mask | SW_LATCH2.mask
        self.write_half(Reg.DSP_CR3 + 1, value >> 16)

    def read_sample(self) -> Stpm34Sample:
        """One coherent sample: (configure if needed), latch, read, decode."""
        if not self._configured:
            self._drain()
            self.configure()
        self._drain()
        self.latch()
        ts = self._clock()
        rows = self.read_registers(SAMPLE_ROWS)
        period = rows[Reg.DSP_REG1]
        frequency = frequency_from_period(field_get(period, PERIOD1)) or frequency_from_period(
            field_get(period, PERIOD2))
        return Stpm34Sample(
            ts=ts,
            channel1=self._decode_channel(1, rows),
            channel2=self._decode_channel(2, rows),
            frequency_hz=frequency,
            temperature_c=self._temperature(),
            crc_errors=self._crc_errors,
        )

    def _decode_channel(self, channel: int, rows: dict[int, int]) -> ChannelSample:
        rms, p_row, q_row, s_row, ea_row, er_row, es_row = _CHANNEL_ROWS[channel]
        scale: ChannelScale = self._scales[channel]
        v_counts, i_counts = decode_rms(rows[rms])
        p = decode_power(rows[p_row]) * scale.power_w
        q = decode_power(rows[q_row]) * scale.power_w
        s = abs(decode_power(rows[s_row])) * scale.power_w
        pf = max(-1.0, min(1.0, p / s)) if s > 0 else 1.0
        kwh = scale.energy_wh / 1000.0
        energies = [self._energy[(channel, k)].update(rows[r]) * kwh
                    for k, r in enumerate((ea_row, er_row, es_row))]
        return ChannelSample(
            v_rms_v=v_counts * scale.v_rms_v,
            i_rms_a=i_counts * scale.i_rms_a,
            active_w=p,
            reactive_var=q,
            apparent_va=s,
            power_factor=pf,
            active_energy_kwh=energies[0],
            reactive_energy_kvarh=energies[1],
            apparent_energy_kvah=energies[2],
        )

    def _temperature(self) -> float | None:
        if self._temperature_source is None:
            return None
        try:
            value = self._temperature_source()
        except (OSError, ValueError, RuntimeError) as exc:  # a broken sensor must not cost the sample
            _log.warning("temperature source failed: %s", exc)
            return None
        return None if value is None or not math.isfinite(value) else float(value)
