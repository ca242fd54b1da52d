"""Calibration of an STPM3x board and the conversion of register counts to engineering units.

LSB values follow ST's formulas (DS10272, "STPM3x design and calibration guideline"):

- RMS voltage   ``Vref * (1 + R1/R2) / (calV * Av * 2^15)``
- RMS current   ``Vref / (calI * Ai * 2^17 * ks * kint)``
- power         ``(1 + R1/R2) * Vref^2 / (ks * kint * Av * Ai * calV * calI * 2^28)``
- energy        ``power LSB * 2^28 / (2^17 * Fs)`` with ``Fs = 7812.5 Hz`` (in W*s)
- line period   8 us per count

``Av = 2`` (fixed voltage channel gain), ``Ai`` the programmable current gain (2, 4, 8, 16),
``calV``/``calI`` the calibration factors ``0.75 + CHx / 2^14`` set by the 12-bit CHV/CHC fields
(0x800 -> 0.875), ``ks`` the current sensor sensitivity in V/A (shunt resistance, or burden
resistance / CT ratio) and ``kint`` 1 for shunts and CTs.

The chip keeps no calibration across a power cycle: the host writes CHV/CHC and the gain on every
connect (see :meth:`Stpm34Client.configure`), so decoding with this config is decoding with what
the chip applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DSP_SAMPLE_HZ",
    "PERIOD_LSB_S",
    "VOLTAGE_GAIN",
    "ChannelCalibration",
    "ChannelScale",
    "Stpm34Calibration",
    "cal_factor",
    "channel_scale",
]

#: fixed gain of the voltage channel
VOLTAGE_GAIN = 2.0
#: one count of the period register, s
PERIOD_LSB_S = 8e-6
#: DSP output rate that the energy accumulators integrate at, Hz
DSP_SAMPLE_HZ = 7812.5


def cal_factor(cal_register: int) -> float:
    """Calibration factor applied by the DSP for a 12-bit CHV/CHC value (0.75 .. ~1.0)."""
    if not 0 <= cal_register <= 0xFFF:
        raise ValueError(f"CHV/CHC is a 12-bit field, got {cal_register}")
    return 0.75 + cal_register / 16384.0


class ChannelCalibration(BaseModel):
    """Current sensor and calibration registers of one metering channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    current_sensor: Literal["ct", "shunt"] = "ct"
    #: CT turns ratio (primary / secondary), when current_sensor = "ct"
    ct_ratio: float | None = Field(default=2500.0, gt=0)
    #: CT burden resistor, ohm, when current_sensor = "ct"
    ct_burden_ohm: float | None = Field(default=10.0, gt=0)
    #: shunt resistance, micro-ohm, when current_sensor = "shunt"
    shunt_uohm: float | None = Field(default=None, gt=0)
    #: programmable current channel gain Ai
    current_gain: Literal[2, 4, 8, 16] = 2
    #: CHV calibration register (12 bits, 0x800 = factor 0.875)
    chv: int = Field(default=0x800, ge=0, le=0xFFF)
    #: CHC calibration register (12 bits)
    chc: int = Field(default=0x800, ge=0, le=0xFFF)
    #: integrator constant kint (1 for shunts and CTs)
    kint: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _sensor_complete(self) -> ChannelCalibration:
        if self.current_sensor == "ct" and (self.ct_ratio is None or self.ct_burden_ohm is None):
            raise ValueError("current_sensor 'ct' needs ct_ratio and ct_burden_ohm")
        if self.current_sensor == "shunt" and self.shunt_uohm is None:
            raise ValueError("current_sensor 'shunt' needs shunt_uohm")
        return self

    @property
    def ks_v_per_a(self) -> float:
        """Sensor sensitivity ks, V per A."""
        if self.current_sensor == "shunt":
            assert self.shunt_uohm is not None
            return self.shunt_uohm * 1e-6
        assert self.ct_burden_ohm is not None and self.ct_ratio is not None
        return self.ct_burden_ohm / self.ct_ratio


class Stpm34Calibration(BaseModel):
    """Analog front end of an STPM34 board: reference, voltage dividers, two current channels.

    Defaults describe an EVALSTPM34-like board (dual channel, a CT per channel, Imax 100 A): a
    1.18 V internal reference, a 2 x 810 kOhm / 470 Ohm divider, CTs of 2500:1 into 10 Ohm at
    gain x2. These are bench defaults, not read from ST's bill of materials: set the values of
    your board.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vref_v: float = Field(default=1.18, gt=0)
    divider_r1_ohm: float = Field(default=2 * 810_000.0, gt=0)
    divider_r2_ohm: float = Field(default=470.0, gt=0)
    channel1: ChannelCalibration = ChannelCalibration()
    channel2: ChannelCalibration = ChannelCalibration()

    def channel(self, channel: int) -> ChannelCalibration:
        """Settings of channel 1 or 2."""
        if channel == 1:
            return self.channel1
        if channel == 2:
            return self.channel2
        raise ValueError(f"STPM34 channels are 1 and 2, got {channel}")

    def scale(self, channel: int) -> ChannelScale:
        """LSB values of ``channel`` with the calibration registers this config writes."""
        return channel_scale(calibration=self, channel=channel)


@dataclass(frozen=True)
class ChannelScale:
    """Engineering value of one count of each measurement register of a channel."""

    v_rms_v: float
    i_rms_a: float
    power_w: float
    energy_ws: float

    def __post_init__(self) -> None:
        for name in ("v_rms_v", "i_rms_a", "power_w", "energy_ws"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LSB {name} must be > 0")

    @property
    def energy_wh(self) -> float:
        """One energy count, Wh."""
        return self.energy_ws / 3600.0


def channel_scale(
    *,
    calibration: Stpm34Calibration,
    channel: int,
    chv: int | None = None,
    chc: int | None = None,
    current_gain: int | None = None,
) -> ChannelScale:
    """LSB values of a channel; ``chv``/``chc``/``current_gain`` override the config's (the
    simulator passes what its registers hold)."""
    ch = calibration.channel(channel)
    cal_v = cal_factor(ch.chv if chv is None else chv)
    cal_i = cal_factor(ch.chc if chc is None else chc)
    ai = float(ch.current_gain if current_gain is None else current_gain)
    divider = 1.0 + calibration.divider_r1_ohm / calibration.divider_r2_ohm
    vref = calibration.vref_v
    ks = ch.ks_v_per_a
    power = divider * vref * vref / (ks * ch.kint * VOLTAGE_GAIN * ai * cal_v * cal_i * 2**28)
    return ChannelScale(
        v_rms_v=vref * divider / (cal_v * VOLTAGE_GAIN * 2**15),
        i_rms_a=vref / (cal_i * ai * 2**17 * ks * ch.kint),
        power_w=power,
        energy_ws=power * 2**28 / (2**17 * DSP_SAMPLE_HZ),
    )
