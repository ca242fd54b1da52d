"""An STPM34 metering chip (as on an EVALSTPM34 board) answering its UART protocol on a pty.

:class:`Stpm34Chip` is the chip as a pure state machine: 5-byte request in, 5-byte reply out
(or nothing), with the chip's behaviour:

- a request with a bad CRC is ignored: no reply, nothing written, and the UART CRC error flag
  (US_REG3 bit 17) set;
- pipelined replies: the reply to a request carries the row the *previous* request asked for; a
  read address of 0xFF moves the read pointer on to the next row (ST's block reads use this);
- latching: measurement rows hold the values of the last latch (DSP_CR3 SW_Latch1/2, which
  clear themselves) or follow the inputs on every frame when SW_Auto_Latch is set; SW_Reset
  restores every register's reset value;
- configuration rows are stored as written; the conversion uses the CHV/CHC calibration fields
  and current gains the registers hold, so a host that writes its calibration decodes the truth;
- energy accumulators integrate power over (injected) time and wrap at 32 bits.

:class:`Stpm34Simulator` puts a chip on a :class:`~gridedge.sim.serial_pacing.PacedPty` with
fault injection: corrupt the CRC of every Nth reply, send garbage bytes before every Nth reply,
or stop answering altogether (:attr:`Stpm34Simulator.silent`).

The chip has no temperature sensor; the simulated *board* writes the input temperature to an
optional thermal-zone style file (integer millidegrees), which the host reads as it would a real
board sensor.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing_extensions import Self

from gridedge.errors import ConfigError, CrcError, GridEdgeError
from gridedge.protocols.stpm34.calibration import (
    PERIOD_LSB_S,
    ChannelScale,
    Stpm34Calibration,
    channel_scale,
)
from gridedge.protocols.stpm34.frame import FRAME_LEN, NO_ADDRESS, Frame, encode_reply
from gridedge.protocols.stpm34.registers import (
    BAUD_RATE,
    C_RMS,
    CAL,
    GAIN,
    GAIN_CODES,
    PERIOD1,
    PERIOD2,
    RESET_VALUES,
    SW_AUTO_LATCH,
    SW_LATCH1,
    SW_LATCH2,
    SW_RESET,
    UART_CLOCK_HZ,
    UART_CRC_ERROR,
    V_RMS,
    Reg,
    field_get,
    field_set,
)
from gridedge.sim.serial_pacing import PacedPty
from gridedge.sim.site import SiteModel, SiteSnapshot

__all__ = [
    "ChannelInputs",
    "Stpm34Chip",
    "Stpm34Inputs",
    "Stpm34Simulator",
    "inputs_from_site",
    "inputs_from_snapshot",
]

_log = logging.getLogger(__name__)
_LAST_ROW = max(Reg)
_GAIN_BY_CODE = {code: gain for gain, code in GAIN_CODES.items()}


@dataclass(frozen=True)
class ChannelInputs:
    """What one channel's sensors see. Positive power = import."""

    v_rms_v: float
    i_rms_a: float
    active_w: float
    reactive_var: float

    def __post_init__(self) -> None:
        for name in ("v_rms_v", "i_rms_a", "active_w", "reactive_var"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.v_rms_v < 0 or self.i_rms_a < 0:
            raise ValueError("RMS voltage and current cannot be negative")

    @property
    def apparent_va(self) -> float:
        """RMS apparent power V * I, as the chip computes it."""
        return self.v_rms_v * self.i_rms_a

    @classmethod
    def idle(cls, v_rms_v: float = 0.0) -> ChannelInputs:
        """A channel with voltage and nothing flowing."""
        return cls(v_rms_v=v_rms_v, i_rms_a=0.0, active_w=0.0, reactive_var=0.0)


@dataclass(frozen=True)
class Stpm34Inputs:
    """Everything the simulated board measures at one instant."""

    channel1: ChannelInputs
    channel2: ChannelInputs
    frequency_hz: float
    temperature_c: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.frequency_hz) and self.frequency_hz >= 0):
            raise ValueError("frequency_hz must be finite and >= 0")
        if not math.isfinite(self.temperature_c):
            raise ValueError("temperature_c must be finite")


def inputs_from_snapshot(snap: SiteSnapshot, *, channel2_circuit: str | None = None) -> Stpm34Inputs:
    """Channel 1 = the grid connection (all phases summed), channel 2 = one circuit or idle."""
    p = sum(ph.power_w for ph in snap.phases)
    q = sum(ph.reactive_var for ph in snap.phases)
    v = sum(ph.voltage_v for ph in snap.phases) / len(snap.phases) if snap.phases else 0.0
    ch1 = ChannelInputs(v_rms_v=v, i_rms_a=math.hypot(p, q) / v if v > 0 else 0.0,
                        active_w=p, reactive_var=q)
    if channel2_circuit is None:
        ch2 = ChannelInputs.idle(v)
    else:
        try:
            circuit = snap.circuit(channel2_circuit)
        except KeyError as exc:
            raise ConfigError(f"no circuit {channel2_circuit!r} on the site") from exc
        ch2 = ChannelInputs(
            v_rms_v=v,
            i_rms_a=math.hypot(circuit.power_w, circuit.reactive_var) / v if v > 0 else 0.0,
            active_w=circuit.power_w,
            reactive_var=circuit.reactive_var,
        )
    return Stpm34Inputs(channel1=ch1, channel2=ch2, frequency_hz=snap.frequency_hz,
                        temperature_c=snap.temperature_c)


def inputs_from_site(model: SiteModel, *, channel2_circuit: str | None = None
                     ) -> Callable[[], Stpm34Inputs]:
    """A source for the simulator reading the site model's latest snapshot."""
    if channel2_circuit is not None:
        model.spec.circuit(channel2_circuit)  # ConfigError now rather than at the first latch

    def source() -> Stpm34Inputs:
        return inputs_from_snapshot(model.snapshot(), channel2_circuit=channel2_circuit)

    return source


def _clamp_round(value: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(value))))


class Stpm34Chip:
    """The chip's register file and frame handling, without any transport."""

    def __init__(
        self,
        *,
        source: Callable[[], Stpm34Inputs],
        board: Stpm34Calibration | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_baudrate: Callable[[int], None] | None = None,
    ) -> None:
        self._source = source
        self._board = board or Stpm34Calibration()
        self._clock = clock
        self._on_baudrate = on_baudrate
        self._lock = threading.Lock()
        self._regs: dict[int, int] = {}
        self._pointer = 0
        self._energy: dict[tuple[int, int], float] = {}
        self._last_integration = clock()
        self.latches = 0
        self._reset()

    def _reset(self) -> None:
        self._regs = {int(r): RESET_VALUES.get(r, 0) for r in Reg}
        self._energy = {(ch, kind): 0.0 for ch in (1, 2) for kind in range(4)}
        self._pointer = 0

    def register(self, row: int) -> int:
        """Current content of a row (0 for an unmapped one)."""
        with self._lock:
            return self._regs.get(row & ~1, 0)

    def scale(self, channel: int) -> ChannelScale:
        """LSB values of ``channel`` with the calibration fields the registers hold now."""
        with self._lock:
            return self._scale(channel)

    def _scale(self, channel: int) -> ChannelScale:
        cv, cc, dfe = ((Reg.DSP_CR5, Reg.DSP_CR6, Reg.DFE_CR1) if channel == 1
                       else (Reg.DSP_CR7, Reg.DSP_CR8, Reg.DFE_CR2))
        return channel_scale(
            calibration=self._board,
            channel=channel,
            chv=field_get(self._regs[cv], CAL),
            chc=field_get(self._regs[cc], CAL),
            current_gain=_GAIN_BY_CODE[field_get(self._regs[dfe], GAIN)],
        )

    def process(self, raw: bytes) -> bytes | None:
        """Handle one 5-byte request; the reply bytes, or None when the chip stays silent."""
        with self._lock:
            try:
                frame = Frame.decode(raw)
            except CrcError:
                self._regs[Reg.US_REG3] = field_set(self._regs[Reg.US_REG3], UART_CRC_ERROR, 1)
                return None
            if self._regs[Reg.DSP_CR3] & SW_AUTO_LATCH.mask:
                self._latch()
            reply = encode_reply(self._regs.get(self._pointer, 0))
            new_baud = self._write(frame) if frame.is_write else None
            if frame.read_address != NO_ADDRESS:
                self._pointer = frame.read_address & ~1
            else:
                self._pointer = self._pointer + 2 if self._pointer < _LAST_ROW else 0
        if new_baud is not None and self._on_baudrate is not None:
            self._on_baudrate(new_baud)
        return reply

    def latch(self) -> None:
        """Latch as the SYN pin would."""
        with self._lock:
            self._latch()

    def _write(self, frame: Frame) -> int | None:
        row = frame.write_address & ~1
        if row > Reg.US_REG3 or row not in self._regs:
            return None  # measurement rows are read only
        old = self._regs[row]
        if frame.write_address & 1:
            value = (old & 0x0000FFFF) | (frame.data << 16)
        else:
            value = (old & 0xFFFF0000) | frame.data
        self._regs[row] = value
        if row == Reg.DSP_CR3:
            if value & SW_RESET.mask:
                self._reset()
                return None
            if value & (SW_LATCH1.mask | SW_LATCH2.mask):
                self._latch()
                self._regs[row] = value & ~(SW_LATCH1.mask | SW_LATCH2.mask)
        if row == Reg.US_REG2 and not frame.write_address & 1:
            divisor = field_get(value, BAUD_RATE)
            return UART_CLOCK_HZ // divisor if divisor else None
        return None

    def _latch(self) -> None:
        inputs = self._source()
        now = self._clock()
        dt = max(0.0, now - self._last_integration)
        self._last_integration = now
        self.latches += 1
        period = _clamp_round(1.0 / (inputs.frequency_hz * PERIOD_LSB_S), 0, 0xFFF) \
            if inputs.frequency_hz > 0 else 0
        self._regs[Reg.DSP_REG1] = (period << PERIOD1.shift) | (period << PERIOD2.shift)
        totals = [0, 0, 0, 0]
        for ch, ch_in in ((1, inputs.channel1), (2, inputs.channel2)):
            scale = self._scale(ch)
            v = _clamp_round(ch_in.v_rms_v / scale.v_rms_v, 0, (1 << V_RMS.width) - 1)
            i = _clamp_round(ch_in.i_rms_a / scale.i_rms_a, 0, (1 << C_RMS.width) - 1)
            self._regs[Reg.DSP_REG14 if ch == 1 else Reg.DSP_REG15] = v | (i << C_RMS.shift)
            powers = (ch_in.active_w, ch_in.active_w, ch_in.reactive_var, ch_in.apparent_va)
            base_e = Reg.PH1_ACTIVE_ENERGY if ch == 1 else Reg.PH2_ACTIVE_ENERGY
            base_p = Reg.PH1_ACTIVE_POWER if ch == 1 else Reg.PH2_ACTIVE_POWER
            for kind, watts in enumerate(powers):
                counts = _clamp_round(watts / scale.power_w, -(1 << 28), (1 << 28) - 1)
                self._regs[base_p + 2 * kind] = counts & 0x1FFFFFFF
                self._energy[(ch, kind)] += watts * dt / scale.energy_ws
                acc = int(self._energy[(ch, kind)])
                self._regs[base_e + 2 * kind] = acc & 0xFFFFFFFF
                totals[kind] += acc
            self._regs[base_p + 8] = _clamp_round(
                math.hypot(ch_in.active_w, ch_in.reactive_var) / scale.power_w, 0, (1 << 28) - 1)
            self._regs[base_p + 10] = self._regs[base_p]
            self._regs[base_p + 12] = self._regs[base_p]
        for kind in range(4):
            self._regs[Reg.TOT_ACTIVE_ENERGY + 2 * kind] = totals[kind] & 0xFFFFFFFF


class Stpm34Simulator:
    """An STPM34 board on a paced pty, served from a background thread."""

    def __init__(
        self,
        *,
        source: Callable[[], Stpm34Inputs],
        board: Stpm34Calibration | None = None,
        baudrate: int = 9600,
        link_path: str | Path | None = None,
        temperature_file: str | Path | None = None,
        corrupt_every: int = 0,
        garbage_every: int = 0,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if corrupt_every < 0 or garbage_every < 0:
            raise ValueError("corrupt_every and garbage_every must be >= 0 (0 = never)")
        self._source = source
        self._pty = PacedPty(baudrate=baudrate, link_path=link_path)
        self._pending_baud: int | None = None
        self.chip = Stpm34Chip(source=source, board=board, clock=clock,
                               on_baudrate=self._request_baud)
        self._temperature_file = Path(temperature_file) if temperature_file else None
        self.corrupt_every = corrupt_every
        self.garbage_every = garbage_every
        #: when True the board ignores every request (unpowered, unplugged)
        self.silent = False
        self.replies = 0
        self._rng = random.Random(seed)
        self._frame_gap_s = 0.02
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port_path(self) -> str:
        """The pty the host opens."""
        return self._pty.port_path

    @property
    def link_path(self) -> Path | None:
        """The symlink to :attr:`port_path`, if any."""
        return self._pty.link_path

    @property
    def baudrate(self) -> int:
        """The rate replies are paced at (follows writes of US_REG2)."""
        return self._pty.baudrate

    def start(self) -> Stpm34Simulator:
        """Start serving; returns self."""
        if self._thread is None:
            self._write_temperature()
            self._thread = threading.Thread(target=self._serve, name="stpm34-sim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._pty.close()
        if self._temperature_file is not None:
            with contextlib.suppress(OSError):
                self._temperature_file.unlink()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject_garbage(self, data: bytes) -> None:
        """Send ``data`` on the line now (noise, a half frame from a glitch)."""
        self._pty.write(data)

    def _request_baud(self, baud: int) -> None:
        self._pending_baud = baud

    def _serve(self) -> None:
        buf = bytearray()
        last_rx = 0.0
        last_temp = time.monotonic()
        while not self._stop.is_set():
            data = self._pty.read(256, timeout=0.05)
            now = time.monotonic()
            if self._temperature_file is not None and now - last_temp >= 1.0:
                last_temp = now
                self._write_temperature()
            if buf and now - last_rx > self._frame_gap_s:
                buf.clear()  # the chip's UART timeout drops a frame left half-sent
            if not data:
                continue
            last_rx = now
            if self.silent:
                buf.clear()
                continue
            buf += data
            while len(buf) >= FRAME_LEN:
                raw, buf = bytes(buf[:FRAME_LEN]), buf[FRAME_LEN:]
                self._answer(raw)

    def _answer(self, raw: bytes) -> None:
        try:
            reply = self.chip.process(raw)
        except (GridEdgeError, ValueError, ArithmeticError, LookupError, OSError):
            # a bad source must not kill the board; it just stays silent
            _log.exception("STPM34 simulator could not answer a frame")
            return
        if reply is None:
            return
        self.replies += 1
        if self.garbage_every and self.replies % self.garbage_every == 0:
            self._pty.write(bytes(self._rng.randrange(256) for _ in range(self._rng.randint(1, 7))))
        if self.corrupt_every and self.replies % self.corrupt_every == 0:
            reply = reply[:4] + bytes((reply[4] ^ 0x5A,))
        self._pty.write(reply)
        if self._pending_baud is not None:
            self._pty.drain(timeout=1.0)
            self._pty.baudrate, self._pending_baud = self._pending_baud, None

    def _write_temperature(self) -> None:
        if self._temperature_file is None:
            return
        try:
            millideg = round(self._source().temperature_c * 1000)
            self._temperature_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temperature_file.with_name(f".{self._temperature_file.name}.tmp")
            tmp.write_text(f"{millideg}\n")
            os.replace(tmp, self._temperature_file)
        except (OSError, ValueError) as exc:
            _log.warning("cannot write simulated board temperature: %s", exc)
