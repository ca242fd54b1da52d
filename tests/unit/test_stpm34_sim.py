"""The simulated STPM34 chip: frame handling rules, latching, registers, site adapter."""

from __future__ import annotations

import math

import pytest

from gridedge.errors import ConfigError
from gridedge.protocols.stpm34 import Frame, Reg, decode_reply
from gridedge.protocols.stpm34.registers import SW_AUTO_LATCH, UART_CRC_ERROR, field_get
from gridedge.sim.site import CircuitSpec, SiteModel, SiteSpec
from gridedge.sim.stpm34 import (
    ChannelInputs,
    Stpm34Chip,
    Stpm34Inputs,
    inputs_from_site,
    inputs_from_snapshot,
)


def inputs(p1: float = 1000.0) -> Stpm34Inputs:
    return Stpm34Inputs(
        channel1=ChannelInputs(v_rms_v=230.0, i_rms_a=p1 / 230.0, active_w=p1, reactive_var=0.0),
        channel2=ChannelInputs.idle(230.0), frequency_hz=50.0, temperature_c=25.0)


def make(state: dict | None = None, clock=None):
    state = state if state is not None else {"in": inputs()}
    return Stpm34Chip(source=lambda: state["in"], clock=clock or (lambda: 0.0)), state


def ask(chip: Stpm34Chip, frame: Frame) -> int:
    reply = chip.process(frame.encode())
    assert reply is not None
    return decode_reply(reply)


def test_bad_crc_request_gets_no_reply_and_sets_the_crc_error_flag() -> None:
    """Rule: a request with a bad CRC is not executed and not answered; US_REG3 flags it."""
    chip, _ = make()
    raw = bytearray(Frame.write(Reg.DSP_CR5, 0x0123).encode())
    raw[4] ^= 0xFF
    assert chip.process(bytes(raw)) is None
    assert field_get(chip.register(Reg.US_REG3), UART_CRC_ERROR) == 1
    assert chip.register(Reg.DSP_CR5) == 0x003FF800  # the write was not executed


def test_reply_carries_the_row_of_the_previous_request() -> None:
    """Rule: pipelining — reply N is the row asked for in request N-1."""
    chip, _ = make()
    ask(chip, Frame.read(Reg.US_REG2))
    assert ask(chip, Frame.read(Reg.US_REG1)) == 0x683
    assert ask(chip, Frame()) == 0x4007


def test_read_address_ff_advances_to_the_next_row() -> None:
    """Rule: 0xFF as read address continues with the following row (ST block reads)."""
    chip, _ = make()
    ask(chip, Frame.read(Reg.DSP_CR5))
    rows = [ask(chip, Frame()) for _ in range(4)]
    assert rows == [0x003FF800] * 4  # DSP_CR5, CR6, CR7, CR8
    assert ask(chip, Frame()) == 0x00000FFF  # DSP_CR9


def test_odd_read_address_reads_its_row() -> None:
    chip, _ = make()
    ask(chip, Frame.read(Reg.US_REG2 + 1))
    assert ask(chip, Frame()) == 0x683


def test_half_word_writes() -> None:
    """Rule: a write sets the 16-bit half at its address; the other half is kept."""
    chip, _ = make()
    ask(chip, Frame.write(Reg.DSP_CR5, 0x0ABC))
    ask(chip, Frame.write(Reg.DSP_CR5 + 1, 0x1234))
    assert chip.register(Reg.DSP_CR5) == 0x12340ABC


def test_measurement_rows_are_read_only() -> None:
    chip, _ = make()
    chip.latch()
    before = chip.register(Reg.PH1_ACTIVE_POWER)
    ask(chip, Frame.write(Reg.PH1_ACTIVE_POWER, 0))
    assert chip.register(Reg.PH1_ACTIVE_POWER) == before != 0


def test_measurements_hold_until_the_next_latch() -> None:
    """Rule: measurement rows are latched copies; they change only on a latch."""
    chip, state = make()
    chip.latch()
    held = chip.register(Reg.PH1_ACTIVE_POWER)
    state["in"] = inputs(2000.0)
    ask(chip, Frame.read(Reg.PH1_ACTIVE_POWER))
    assert ask(chip, Frame()) == held
    ask(chip, Frame.write(Reg.DSP_CR3 + 1, 0x0060))  # SW_Latch1 | SW_Latch2
    assert chip.register(Reg.PH1_ACTIVE_POWER) == pytest.approx(2 * held, rel=1e-6)
    assert chip.register(Reg.DSP_CR3) & (0b11 << 21) == 0  # latch bits clear themselves


def test_auto_latch_follows_the_inputs() -> None:
    """Rule: with SW_Auto_Latch set, every frame sees fresh measurements."""
    chip, state = make()
    ask(chip, Frame.write(Reg.DSP_CR3 + 1, SW_AUTO_LATCH.mask >> 16))
    ask(chip, Frame.read(Reg.PH1_ACTIVE_POWER))
    first = ask(chip, Frame.read(Reg.PH1_ACTIVE_POWER))
    state["in"] = inputs(3000.0)
    assert ask(chip, Frame()) == pytest.approx(3 * first, rel=1e-6)


def test_software_reset_restores_reset_values() -> None:
    chip, _ = make()
    ask(chip, Frame.write(Reg.DSP_CR5, 0x0123))
    ask(chip, Frame.write(Reg.DSP_CR3 + 1, 0x0010))  # SW_Reset
    assert chip.register(Reg.DSP_CR5) == 0x003FF800
    assert chip.register(Reg.DSP_CR3) == 0x000004E0


def test_baud_rate_register_write_reports_the_new_rate() -> None:
    """Rule: US_REG2 BAUD_RATE is the 16 MHz divider (0x683 = 9600, 0x8B = 115200)."""
    seen = []
    chip = Stpm34Chip(source=inputs, on_baudrate=seen.append)
    ask(chip, Frame.write(Reg.US_REG2, 0x008B))
    assert seen == [16_000_000 // 0x8B]


def test_energy_integrates_over_injected_time() -> None:
    t = {"now": 0.0}
    chip, _ = make(clock=lambda: t["now"])
    chip.latch()
    t["now"] = 10.0
    chip.latch()
    counts = chip.register(Reg.PH1_ACTIVE_ENERGY)
    assert counts * chip.scale(1).energy_ws == pytest.approx(1000.0 * 10.0, rel=1e-6)
    assert chip.register(Reg.TOT_ACTIVE_ENERGY) == counts  # channel 2 idle


def test_period_register_holds_both_channels() -> None:
    chip, _ = make()
    chip.latch()
    row = chip.register(Reg.DSP_REG1)
    assert row & 0xFFF == 2500 and (row >> 16) & 0xFFF == 2500


@pytest.mark.parametrize(
    "kwargs",
    [{"v_rms_v": -1.0, "i_rms_a": 0, "active_w": 0, "reactive_var": 0},
     {"v_rms_v": 230, "i_rms_a": math.nan, "active_w": 0, "reactive_var": 0}],
)
def test_channel_inputs_validate(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ChannelInputs(**kwargs)


SPEC = SiteSpec(
    circuits=(
        CircuitSpec(id="heater", name="Heater", nominal_w=1500, pin=17, power_factor=1.0),
        CircuitSpec(id="hvac", name="HVAC", nominal_w=6000, pin=22, power_factor=0.92),
    ),
    phases=1,
)


def test_inputs_from_site_channel1_is_the_grid_connection_channel2_a_circuit() -> None:
    model = SiteModel(spec=SPEC, clock=lambda: 1_700_000_000.0)
    snap = model.snapshot()
    got = inputs_from_snapshot(snap, channel2_circuit="hvac")
    assert got.channel1.active_w == pytest.approx(snap.power_w)
    assert got.channel1.v_rms_v == pytest.approx(snap.phases[0].voltage_v)
    assert got.channel1.i_rms_a == pytest.approx(snap.phases[0].current_a)
    assert got.channel2.active_w == pytest.approx(snap.circuit("hvac").power_w)
    assert got.frequency_hz == snap.frequency_hz
    assert got.temperature_c == snap.temperature_c


def test_inputs_from_site_follows_relays() -> None:
    model = SiteModel(spec=SPEC, clock=lambda: 1_700_000_000.0)
    source = inputs_from_site(model, channel2_circuit="heater")
    assert source().channel2.active_w == pytest.approx(1500.0)
    model.set_pin(17, 0.0)
    assert source().channel2.active_w == 0.0
    assert source().channel1.active_w == pytest.approx(6000.0)


def test_inputs_from_site_without_channel2_is_idle_and_unknown_circuit_refused() -> None:
    model = SiteModel(spec=SPEC, clock=lambda: 1_700_000_000.0)
    assert inputs_from_site(model)().channel2.i_rms_a == 0.0
    with pytest.raises(ConfigError):
        inputs_from_site(model, channel2_circuit="pool")
