"""STPM32/33/34 register map (DS10272): row addresses, reset values and the bit fields we use.

Addresses are half-word (16-bit) addresses: a 32-bit row at even address ``A`` has its low half
(LSW) at ``A`` and its high half (MSW) at ``A + 1``. Reads return whole rows; writes set one
half-word. Configuration rows are 0x00..0x28; measurement rows from 0x2A on are latched copies
of the DSP results (refreshed by a software latch, the SYN pin, or the auto-latch bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "BAUD_RATE",
    "CAL",
    "CONFIG_ROWS",
    "CRC_EN",
    "C_RMS",
    "DATA_ROWS",
    "GAIN",
    "GAIN_CODES",
    "PERIOD1",
    "PERIOD2",
    "REF_FREQ_60HZ",
    "RESET_VALUES",
    "SW_AUTO_LATCH",
    "SW_LATCH1",
    "SW_LATCH2",
    "SW_RESET",
    "UART_CLOCK_HZ",
    "UART_CRC_ERROR",
    "V_RMS",
    "BitField",
    "Reg",
    "field_get",
    "field_set",
    "sign_extend",
]


class Reg(IntEnum):
    """Row (even half-word) addresses."""

    DSP_CR1 = 0x00
    DSP_CR2 = 0x02
    DSP_CR3 = 0x04
    DSP_CR4 = 0x06
    DSP_CR5 = 0x08  #: CHV1 calibration, voltage channel 1
    DSP_CR6 = 0x0A  #: CHC1 calibration, current channel 1
    DSP_CR7 = 0x0C  #: CHV2
    DSP_CR8 = 0x0E  #: CHC2
    DSP_CR9 = 0x10
    DSP_CR10 = 0x12
    DSP_CR11 = 0x14
    DSP_CR12 = 0x16
    DFE_CR1 = 0x18  #: front end channel 1: current gain
    DFE_CR2 = 0x1A  #: front end channel 2
    DSP_IRQ1 = 0x1C
    DSP_IRQ2 = 0x1E
    DSP_SR1 = 0x20
    DSP_SR2 = 0x22
    US_REG1 = 0x24  #: UART/SPI control: CRC polynomial, CRC enable, timeout
    US_REG2 = 0x26  #: UART baud rate, frame delay
    US_REG3 = 0x28  #: UART/SPI status and interrupt flags
    DSP_EV1 = 0x2A
    DSP_EV2 = 0x2C
    DSP_REG1 = 0x2E  #: line periods, channel 1 [11:0] and channel 2 [27:16]
    DSP_REG2 = 0x30  #: V1 instantaneous
    DSP_REG3 = 0x32  #: C1 instantaneous
    DSP_REG4 = 0x34  #: V2 instantaneous
    DSP_REG5 = 0x36  #: C2 instantaneous
    DSP_REG6 = 0x38  #: V1 fundamental
    DSP_REG7 = 0x3A  #: C1 fundamental
    DSP_REG8 = 0x3C  #: V2 fundamental
    DSP_REG9 = 0x3E  #: C2 fundamental
    DSP_REG14 = 0x48  #: V1 RMS [14:0], C1 RMS [31:15]
    DSP_REG15 = 0x4A  #: V2 RMS [14:0], C2 RMS [31:15]
    DSP_REG16 = 0x4C
    DSP_REG17 = 0x4E
    DSP_REG18 = 0x50
    DSP_REG19 = 0x52
    PH1_ACTIVE_ENERGY = 0x54
    PH1_FUNDAMENTAL_ENERGY = 0x56
    PH1_REACTIVE_ENERGY = 0x58
    PH1_APPARENT_ENERGY = 0x5A
    PH1_ACTIVE_POWER = 0x5C
    PH1_FUNDAMENTAL_POWER = 0x5E
    PH1_REACTIVE_POWER = 0x60
    PH1_APPARENT_RMS_POWER = 0x62
    PH1_APPARENT_VECTORIAL_POWER = 0x64
    PH1_MOMENTARY_ACTIVE_POWER = 0x66
    PH1_MOMENTARY_FUNDAMENTAL_POWER = 0x68
    PH1_AH_ACC = 0x6A
    PH2_ACTIVE_ENERGY = 0x6C
    PH2_FUNDAMENTAL_ENERGY = 0x6E
    PH2_REACTIVE_ENERGY = 0x70
    PH2_APPARENT_ENERGY = 0x72
    PH2_ACTIVE_POWER = 0x74
    PH2_FUNDAMENTAL_POWER = 0x76
    PH2_REACTIVE_POWER = 0x78
    PH2_APPARENT_RMS_POWER = 0x7A
    PH2_APPARENT_VECTORIAL_POWER = 0x7C
    PH2_MOMENTARY_ACTIVE_POWER = 0x7E
    PH2_MOMENTARY_FUNDAMENTAL_POWER = 0x80
    PH2_AH_ACC = 0x82
    TOT_ACTIVE_ENERGY = 0x84
    TOT_FUNDAMENTAL_ENERGY = 0x86
    TOT_REACTIVE_ENERGY = 0x88
    TOT_APPARENT_ENERGY = 0x8A


#: every configuration row (read/write)
CONFIG_ROWS: tuple[Reg, ...] = tuple(r for r in Reg if r <= Reg.US_REG3)
#: every measurement row (read only, latched)
DATA_ROWS: tuple[Reg, ...] = tuple(r for r in Reg if r > Reg.US_REG3)

#: values after power-up / software reset (rows not listed reset to 0)
RESET_VALUES: dict[Reg, int] = {
    Reg.DSP_CR1: 0x040000A0,
    Reg.DSP_CR2: 0x240000A0,
    Reg.DSP_CR3: 0x000004E0,
    Reg.DSP_CR5: 0x003FF800,
    Reg.DSP_CR6: 0x003FF800,
    Reg.DSP_CR7: 0x003FF800,
    Reg.DSP_CR8: 0x003FF800,
    Reg.DSP_CR9: 0x00000FFF,
    Reg.DSP_CR10: 0x00000FFF,
    Reg.DSP_CR11: 0x00000FFF,
    Reg.DSP_CR12: 0x00000FFF,
    Reg.DFE_CR1: 0x0F270327,
    Reg.DFE_CR2: 0x0F270327,
    Reg.US_REG1: 0x00004007,
    Reg.US_REG2: 0x00000683,
}


@dataclass(frozen=True)
class BitField:
    """``width`` bits starting at bit ``shift`` of a 32-bit row."""

    shift: int
    width: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.shift < 32 and 1 <= self.width <= 32 - self.shift):
            raise ValueError(f"bit field [{self.shift}+{self.width}] does not fit 32 bits")

    @property
    def mask(self) -> int:
        """The field's bits in place."""
        return ((1 << self.width) - 1) << self.shift


# DSP_CR3
SW_RESET = BitField(20)
SW_LATCH1 = BitField(21)
SW_LATCH2 = BitField(22)
SW_AUTO_LATCH = BitField(23)
REF_FREQ_60HZ = BitField(27)
# DSP_CR5..8: CHVx / CHCx calibration (gain 0.75 + CAL / 2^14)
CAL = BitField(0, 12)
# DFE_CR1/2: current channel gain code (00 x2, 01 x4, 10 x8, 11 x16)
GAIN = BitField(26, 2)
GAIN_CODES: dict[int, int] = {2: 0, 4: 1, 8: 2, 16: 3}
# US_REG1
CRC_EN = BitField(14)
# US_REG2: baud = UART_CLOCK_HZ / BAUD_RATE
BAUD_RATE = BitField(0, 16)
UART_CLOCK_HZ = 16_000_000
# US_REG3 status
UART_CRC_ERROR = BitField(17)
# DSP_REG14/15
V_RMS = BitField(0, 15)
C_RMS = BitField(15, 17)
# DSP_REG1
PERIOD1 = BitField(0, 12)
PERIOD2 = BitField(16, 12)


def field_get(value: int, field: BitField) -> int:
    """The field's value in a 32-bit row."""
    return (value & field.mask) >> field.shift


def field_set(value: int, field: BitField, field_value: int) -> int:
    """The row with the field replaced; ValueError when ``field_value`` does not fit."""
    if not 0 <= field_value < (1 << field.width):
        raise ValueError(f"{field_value} does not fit a {field.width}-bit field")
    return (value & ~field.mask & 0xFFFFFFFF) | (field_value << field.shift)


def sign_extend(value: int, bits: int) -> int:
    """Two's-complement value of the low ``bits`` bits."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value & (1 << (bits - 1)) else value
