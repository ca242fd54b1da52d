"""STPM34 codec: CRC, frames, register fields and unit conversion, with real bytes."""

from __future__ import annotations

import pytest

from gridedge.errors import CrcError, FrameError
from gridedge.protocols.stpm34 import (
    ChannelCalibration,
    Frame,
    Reg,
    Stpm34Calibration,
    bit_reverse,
    cal_factor,
    channel_scale,
    crc8_msb,
    crc8_stpm,
    decode_power,
    decode_reply,
    decode_rms,
    encode_reply,
    frequency_from_period,
)
from gridedge.protocols.stpm34.registers import GAIN, SW_LATCH1, field_get, field_set, sign_extend


def _crc_reflected_reference(data: bytes) -> int:
    """Independent model: LSB-first (reflected) CRC-8 with the reflected polynomial 0xE0.

    Feeding bytes LSB first through a reflected register is the same as bit-reversing every
    byte, running the MSB-first CRC and bit-reversing the result.
    """
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xE0 if crc & 1 else crc >> 1
    return crc


def test_crc_uart_mode_reference_vector() -> None:
    """Rule: in UART mode the read request 48 FF FF FF carries CRC 0x22."""
    assert crc8_stpm(bytes.fromhex("48ffffff")) == 0x22


@pytest.mark.parametrize(
    "body",
    [
        "48ffffff", "4affffff", "ffffffff", "00000000", "ff052000", "ff056000", "2effffff",
        "5cffffff", "ff080008", "ff19270f", "01020304",
    ],
)
def test_crc_uart_mode_matches_bit_reflected_crc(body: str) -> None:
    """Rule: the UART CRC is CRC-8/0x07 over bit-reversed bytes, itself bit-reversed."""
    data = bytes.fromhex(body)
    assert crc8_stpm(data) == _crc_reflected_reference(data)
    assert crc8_stpm(data) == bit_reverse(crc8_msb(bytes(bit_reverse(b) for b in data)))


def test_crc_spi_mode_differs_from_uart_mode() -> None:
    """Rule: the SPI CRC has no bit reversal (0x24 for the same request, not 0x22)."""
    assert crc8_msb(bytes.fromhex("48ffffff")) == 0x24


def test_crc_check_value_of_plain_crc8() -> None:
    """The plain engine is standard CRC-8 (poly 0x07): check value 0xF4 for '123456789'."""
    assert crc8_msb(b"123456789") == 0xF4


@pytest.mark.parametrize("bad", [b"", b"\x48\xff\xff", b"\x48\xff\xff\xff\x22"])
def test_crc_rejects_wrong_length(bad: bytes) -> None:
    with pytest.raises(ValueError):
        crc8_stpm(bad)


@pytest.mark.parametrize("value,expected", [(0x00, 0x00), (0x01, 0x80), (0x48, 0x12), (0xF0, 0x0F)])
def test_bit_reverse(value: int, expected: int) -> None:
    assert bit_reverse(value) == expected


def test_frame_encode_read_request() -> None:
    """Rule: a read request is [addr][FF][FF][FF][CRC]."""
    assert Frame.read(0x48).encode() == bytes.fromhex("48ffffff22")


def test_frame_encode_write_is_little_endian_data() -> None:
    """Rule: write data goes LSB first after the write address."""
    raw = Frame.write(0x05, 0x0060).encode()
    assert raw[:4] == bytes.fromhex("ff056000")
    assert raw[4] == crc8_stpm(raw[:4])


@pytest.mark.parametrize("frame", [Frame.read(0x2E), Frame.write(0x19, 0x0F27),
                                   Frame(read_address=0x48, write_address=0x05, data=0x60), Frame()])
def test_frame_round_trip(frame: Frame) -> None:
    assert Frame.decode(frame.encode()) == frame


def test_frame_decode_bad_crc_raises() -> None:
    """Rule: a frame with a wrong CRC is refused, never decoded."""
    with pytest.raises(CrcError):
        Frame.decode(bytes.fromhex("48ffffff23"))


@pytest.mark.parametrize("raw", [b"", bytes.fromhex("48ffff22"), bytes.fromhex("48ffffff2200")])
def test_frame_decode_bad_length_raises(raw: bytes) -> None:
    with pytest.raises(FrameError):
        Frame.decode(raw)


@pytest.mark.parametrize("kwargs", [{"read_address": 256}, {"write_address": -1}, {"data": 0x10000}])
def test_frame_rejects_out_of_range_fields(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Frame(**kwargs)


def test_reply_decode_real_bytes() -> None:
    """Rule: a reply is a little-endian 32-bit value plus CRC."""
    body = bytes.fromhex("c4090000")  # 0x000009C4 = 2500 period counts = 50 Hz
    raw = body + bytes((crc8_stpm(body),))
    assert decode_reply(raw) == 2500
    assert encode_reply(2500) == raw


def test_reply_decode_bad_crc_raises() -> None:
    raw = bytearray(encode_reply(0x12345678))
    raw[4] ^= 0x01
    with pytest.raises(CrcError):
        decode_reply(bytes(raw))


def test_decode_rms_splits_voltage_and_current_fields() -> None:
    """Rule: DSP_REG14 holds V1 RMS in bits 14:0 and C1 RMS in bits 31:15."""
    raw = bytes.fromhex("3e8c4c00")  # little endian 0x004C8C3E
    row = decode_reply(raw + bytes((crc8_stpm(raw),)))
    v, i = decode_rms(row)
    assert v == 0x0C3E  # 3134 counts
    assert i == 0x004C8C3E >> 15 == 153


@pytest.mark.parametrize(
    "row,expected",
    [(0x00000001, 1), (0x0FFFFFFF, (1 << 28) - 1), (0x1FFFFFFF, -1), (0x10000000, -(1 << 28)),
     (0xE0000005, 5)],  # bits 31:29 are not part of the 29-bit field
)
def test_decode_power_is_signed_29_bits(row: int, expected: int) -> None:
    assert decode_power(row) == expected


def test_sign_extend() -> None:
    assert sign_extend(0xFFFFFFFF, 32) == -1
    assert sign_extend(0x7FFFFFFF, 32) == 0x7FFFFFFF


@pytest.mark.parametrize("counts,hz", [(2500, 50.0), (2083, 60.00960154), (0, 0.0)])
def test_period_register_gives_line_frequency(counts: int, hz: float) -> None:
    """Rule: one period count is 8 us."""
    assert frequency_from_period(counts) == pytest.approx(hz)


def test_field_helpers() -> None:
    row = 0x0F270327
    assert field_get(row, GAIN) == 3
    assert field_set(row, GAIN, 0) == 0x03270327
    assert field_set(0, SW_LATCH1, 1) == 1 << 21
    with pytest.raises(ValueError):
        field_set(row, GAIN, 4)


def test_register_map_addresses() -> None:
    """Rule: V1/C1 RMS at 0x48, V2/C2 RMS at 0x4A, PH1 active power 0x5C, PH2 0x74."""
    assert (Reg.DSP_REG14, Reg.DSP_REG15) == (0x48, 0x4A)
    assert (Reg.PH1_ACTIVE_POWER, Reg.PH2_ACTIVE_POWER) == (0x5C, 0x74)
    assert (Reg.DSP_REG1, Reg.US_REG1, Reg.US_REG2) == (0x2E, 0x24, 0x26)


def test_lsb_values_match_st_calibration_guideline() -> None:
    """Rule: LSBs follow ST's formulas; for R1 810k, R2 470, shunt 3 mOhm, Ai 16, cal 0.875:
    power 1.217e-4 W, Vrms 0.03548 V, Irms 2.143e-4 A, energy 8.8616e-9 Wh (the constants an
    independent public STPM3x driver derived from the same guideline)."""
    cal = Stpm34Calibration(
        divider_r1_ohm=810_000, divider_r2_ohm=470,
        channel1=ChannelCalibration(current_sensor="shunt", shunt_uohm=3000, current_gain=16),
    )
    scale = channel_scale(calibration=cal, channel=1)
    assert scale.power_w == pytest.approx(1.217e-4, rel=1e-3)
    assert scale.v_rms_v == pytest.approx(0.0354840440, rel=1e-4)
    assert scale.i_rms_a == pytest.approx(2.143e-4, rel=1e-3)
    assert scale.energy_wh == pytest.approx(8.86162e-9, rel=1e-4)


@pytest.mark.parametrize("reg,factor", [(0x000, 0.75), (0x800, 0.875), (0xFFF, 0.75 + 4095 / 16384)])
def test_calibration_register_factor(reg: int, factor: float) -> None:
    assert cal_factor(reg) == pytest.approx(factor)


def test_ct_sensitivity_is_burden_over_ratio() -> None:
    ch = ChannelCalibration(current_sensor="ct", ct_ratio=2000, ct_burden_ohm=8)
    assert ch.ks_v_per_a == pytest.approx(0.004)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"current_sensor": "shunt"},  # no shunt value
        {"current_sensor": "ct", "ct_ratio": None},
        {"current_gain": 3},
        {"chv": 4096},
        {"chc": -1},
        {"ct_burden_ohm": 0},
        {"current_sensor": "rogowski"},
        {"unknown": 1},
    ],
)
def test_channel_calibration_rejects_invalid(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ChannelCalibration(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"current_sensor": "shunt", "shunt_uohm": 350}, {"current_gain": 16, "chv": 0, "chc": 4095}],
)
def test_channel_calibration_accepts_valid(kwargs: dict) -> None:
    assert ChannelCalibration(**kwargs).ks_v_per_a > 0
