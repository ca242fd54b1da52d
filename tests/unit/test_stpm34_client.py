"""Stpm34Client against the simulated chip through an in-memory port (real frames, no pty)."""

from __future__ import annotations

import math

import pytest

from gridedge.errors import CrcError, ProtocolTimeout
from gridedge.protocols.stpm34 import (
    ChannelCalibration,
    Frame,
    Reg,
    Stpm34Calibration,
    Stpm34Client,
    thermal_zone_reader,
)
from gridedge.sim.stpm34 import ChannelInputs, Stpm34Chip, Stpm34Inputs


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ChipPort:
    """A port wired straight to a chip: every complete 5-byte frame written is answered at once.

    ``corrupt_replies`` holds 1-based reply numbers whose CRC byte is flipped; ``garbage_before``
    reply numbers preceded by stray bytes; ``silent`` drops everything.
    """

    def __init__(self, chip: Stpm34Chip) -> None:
        self.chip = chip
        self.timeout: float | None = 0.1
        self.silent = False
        self.corrupt_replies: set[int] = set()
        self.garbage_before: set[int] = set()
        self.replies = 0
        self.frames: list[bytes] = []
        self._in = bytearray()
        self._out = bytearray()

    def write(self, data: bytes) -> int:
        self._in += data
        while len(self._in) >= 5:
            raw, self._in = bytes(self._in[:5]), self._in[5:]
            if self.silent:
                continue
            self.frames.append(raw)
            reply = self.chip.process(raw)
            if reply is None:
                continue
            self.replies += 1
            if self.replies in self.garbage_before:
                self._out += b"\x00\x13\x37"
            if self.replies in self.corrupt_replies:
                reply = reply[:4] + bytes((reply[4] ^ 0xA5,))
            self._out += reply
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._out[:size])
        del self._out[:size]
        return out


TRUTH = Stpm34Inputs(
    channel1=ChannelInputs(v_rms_v=231.4, i_rms_a=21.7, active_w=4650.0, reactive_var=1530.0),
    channel2=ChannelInputs(v_rms_v=231.4, i_rms_a=4.9, active_w=-1080.0, reactive_var=-210.0),
    frequency_hz=50.0,
    temperature_c=27.5,
)


def make(cal: Stpm34Calibration | None = None, inputs: Stpm34Inputs = TRUTH, board=None):
    clock = Clock()
    state = {"inputs": inputs}
    chip = Stpm34Chip(source=lambda: state["inputs"], board=board or cal, clock=clock)
    port = ChipPort(chip)
    client = Stpm34Client(port, calibration=cal, clock=clock)
    return client, port, chip, clock, state


def assert_channel_matches(sample_ch, truth: ChannelInputs, *, rel: float = 2e-3) -> None:
    assert sample_ch.v_rms_v == pytest.approx(truth.v_rms_v, rel=rel)
    assert sample_ch.i_rms_a == pytest.approx(truth.i_rms_a, rel=rel)
    assert sample_ch.active_w == pytest.approx(truth.active_w, rel=rel)
    assert sample_ch.reactive_var == pytest.approx(truth.reactive_var, rel=rel)
    assert sample_ch.apparent_va == pytest.approx(truth.v_rms_v * truth.i_rms_a, rel=rel)
    assert sample_ch.power_factor == pytest.approx(truth.active_w / (truth.v_rms_v * truth.i_rms_a),
                                                   rel=rel)


CALIBRATIONS = [
    Stpm34Calibration(),
    Stpm34Calibration(
        divider_r1_ohm=810_000,
        channel1=ChannelCalibration(current_sensor="ct", ct_ratio=2000, ct_burden_ohm=4.7,
                                    current_gain=4, chv=0x7A0, chc=0x8C4),
        channel2=ChannelCalibration(current_sensor="shunt", shunt_uohm=350, current_gain=8,
                                    chv=0x812, chc=0x6F0),
    ),
]


@pytest.mark.parametrize("cal", CALIBRATIONS)
def test_calibration_round_trip_decodes_the_truth(cal: Stpm34Calibration) -> None:
    """Rule: what the simulator encodes through a calibration, the client decodes back."""
    client, _, chip, _, _ = make(cal)
    sample = client.read_sample()
    assert_channel_matches(sample.channel1, TRUTH.channel1)
    assert_channel_matches(sample.channel2, TRUTH.channel2)
    assert sample.frequency_hz == pytest.approx(50.0)
    assert sample.crc_errors == 0
    # the client wrote its calibration into the chip's registers
    assert chip.scale(1) == cal.scale(1)
    assert chip.scale(2) == cal.scale(2)


def test_configure_writes_calibration_fields_and_keeps_the_rest() -> None:
    """Rule: CHV/CHC and the gain are set by read-modify-write; other fields keep their values."""
    cal = CALIBRATIONS[1]
    client, _, chip, _, _ = make(cal)
    client.configure()
    assert chip.register(Reg.DSP_CR5) == 0x003FF000 | 0x7A0  # swell threshold bits kept
    assert chip.register(Reg.DSP_CR8) == 0x003FF000 | 0x6F0
    assert chip.register(Reg.DFE_CR1) == 0x07270327  # gain x4 = code 01
    assert chip.register(Reg.DFE_CR2) == 0x0B270327  # gain x8 = code 10
    assert client.configured


def test_without_configure_a_mismatched_chip_decodes_wrong() -> None:
    """The round trip is not vacuous: decoding with gains the chip does not use is off."""
    cal = CALIBRATIONS[1]
    client, _, _, _, _ = make(cal)
    client.configure()
    other = Stpm34Client(client._port, calibration=Stpm34Calibration())  # defaults: x2, 0x800
    other._configured = True
    sample = other.read_sample()
    assert sample.channel1.i_rms_a != pytest.approx(TRUTH.channel1.i_rms_a, rel=0.05)


def test_pipelined_reads_each_reply_carries_the_previous_request() -> None:
    """Rule: the reply to frame N carries the row asked for in frame N-1."""
    client, port, _, _, _ = make()
    client.configure()
    port.frames.clear()
    values = client.read_registers([Reg.DSP_CR5, Reg.US_REG1, Reg.US_REG2])
    assert values == {Reg.DSP_CR5: 0x003FF800, Reg.US_REG1: 0x00004007, Reg.US_REG2: 0x00000683}
    assert [f[0] for f in port.frames] == [0x08, 0x24, 0x26, 0xFF]  # 3 rows -> 4 frames


def test_sample_latches_once_then_reads() -> None:
    """Rule: one sample = one software latch (DSP_CR3 MSW write with SW_Latch1|2) then reads."""
    client, port, chip, _, _ = make()
    client.configure()
    port.frames.clear()
    latches = chip.latches
    client.read_sample()
    assert chip.latches == latches + 1
    latch = Frame.decode(port.frames[0])
    assert latch.write_address == Reg.DSP_CR3 + 1
    assert latch.data & (0b11 << 5) == 0b11 << 5
    assert len(port.frames) == 1 + 15 + 1  # latch, 15 rows, clock-out frame


def test_sample_is_coherent_when_inputs_change_during_the_read() -> None:
    """Rule: values come from one latch even if the inputs change while rows are read."""
    client, port, chip, _, state = make()
    client.configure()
    original_process = chip.process
    count = {"n": 0}

    def process_and_change(raw: bytes) -> bytes | None:
        count["n"] += 1
        if count["n"] == 5:  # mid-sample: the load doubles
            ch1 = TRUTH.channel1
            state["inputs"] = Stpm34Inputs(
                channel1=ChannelInputs(v_rms_v=ch1.v_rms_v, i_rms_a=2 * ch1.i_rms_a,
                                       active_w=2 * ch1.active_w, reactive_var=ch1.reactive_var),
                channel2=TRUTH.channel2, frequency_hz=50.0, temperature_c=20.0)
        return original_process(raw)

    port.chip = type("C", (), {"process": staticmethod(process_and_change)})()
    sample = client.read_sample()
    assert_channel_matches(sample.channel1, TRUTH.channel1)


def test_bad_crc_replies_are_counted_dropped_and_reread() -> None:
    """Rule: a reply with a bad CRC is never decoded; it is counted and its row read again."""
    client, port, _, _, _ = make()
    client.configure()
    first = port.replies
    port.corrupt_replies = {first + 3, first + 7, first + 12}
    sample = client.read_sample()
    assert client.crc_errors == 3
    assert sample.crc_errors == 3
    assert_channel_matches(sample.channel1, TRUTH.channel1)
    assert_channel_matches(sample.channel2, TRUTH.channel2)


def test_crc_errors_beyond_retries_raise_crc_error() -> None:
    client, port, _, _, _ = make()
    client.configure()
    port.corrupt_replies = set(range(port.replies + 1, port.replies + 200))
    with pytest.raises(CrcError):
        client.read_register(Reg.DSP_REG14)


def test_garbage_before_a_reply_resynchronises() -> None:
    """Rule: stray bytes on the line cost one reply (counted), not the sample."""
    client, port, _, _, _ = make()
    client.configure()
    port.garbage_before = {port.replies + 4}
    sample = client.read_sample()
    assert client.crc_errors == 1
    assert_channel_matches(sample.channel1, TRUTH.channel1)


def test_silent_chip_raises_protocol_timeout_then_recovers() -> None:
    """Rule: no reply -> ProtocolTimeout; when the chip answers again the client re-configures."""
    client, port, chip, _, _ = make(CALIBRATIONS[1])
    client.read_sample()
    port.silent = True
    with pytest.raises(ProtocolTimeout):
        client.read_sample()
    assert not client.configured
    # meanwhile the board was power-cycled: its calibration is back to reset values
    chip.process(Frame.write(Reg.DSP_CR3 + 1, 1 << 4).encode())  # SW_Reset
    port.silent = False
    sample = client.read_sample()
    assert client.configured
    assert_channel_matches(sample.channel1, TRUTH.channel1)


def test_energy_counters_integrate_and_unwrap() -> None:
    """Rule: energy registers wrap at 32 bits; the client's counters keep counting."""
    client, _, chip, clock, _ = make()
    client.read_sample()
    e0 = client.read_sample().channel1.active_energy_kwh
    wrap_wh = 2**32 * chip.scale(1).energy_wh
    steps = 6
    for _ in range(steps):  # each step below half a wrap, several wraps in total
        clock.t += 0.45 * wrap_wh * 3600 / TRUTH.channel1.active_w
        client.read_sample()
    e1 = client.read_sample().channel1.active_energy_kwh
    hours = steps * 0.45 * wrap_wh / TRUTH.channel1.active_w
    assert (e1 - e0) * 1000 == pytest.approx(TRUTH.channel1.active_w * hours, rel=1e-3)
    assert e1 * 1000 > 2 * wrap_wh  # really crossed the wrap


def test_exporting_channel_counts_energy_down() -> None:
    client, _, _, clock, _ = make()
    e0 = client.read_sample().channel2.active_energy_kwh
    clock.t += 600.0  # 180 Wh: under half a 32-bit wrap of this board (~228 Wh)
    e1 = client.read_sample().channel2.active_energy_kwh
    assert (e1 - e0) == pytest.approx(TRUTH.channel2.active_w / 1000.0 / 6, rel=1e-3)


def test_no_load_power_factor_is_one() -> None:
    idle = Stpm34Inputs(channel1=ChannelInputs.idle(230.0), channel2=ChannelInputs.idle(230.0),
                        frequency_hz=49.95, temperature_c=20.0)
    client, _, _, _, _ = make(inputs=idle)
    sample = client.read_sample()
    assert sample.channel1.power_factor == 1.0
    assert sample.channel1.active_w == 0.0
    assert sample.frequency_hz == pytest.approx(49.95, abs=0.03)


def test_temperature_comes_from_the_source(tmp_path) -> None:
    """Rule: the chip has no temperature sensor; temperature_c comes from the host's source."""
    path = tmp_path / "temp"
    path.write_text("27500\n")
    clock = Clock()
    chip = Stpm34Chip(source=lambda: TRUTH, clock=clock)
    client = Stpm34Client(ChipPort(chip), temperature_source=thermal_zone_reader(path), clock=clock)
    assert client.read_sample().temperature_c == pytest.approx(27.5)
    path.unlink()
    assert client.read_sample().temperature_c is None
    no_source = Stpm34Client(ChipPort(chip), clock=clock)
    assert no_source.read_sample().temperature_c is None


def test_sample_to_dict_is_json_ready() -> None:
    client, _, _, clock, _ = make()
    d = client.read_sample().to_dict()
    assert d["ts"] == clock.t
    assert set(d["channel1"]) >= {"v_rms_v", "i_rms_a", "active_w", "reactive_var", "apparent_va",
                                  "power_factor", "active_energy_kwh"}
    assert all(math.isfinite(v) for v in d["channel1"].values())
