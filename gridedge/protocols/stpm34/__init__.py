"""STMicroelectronics STPM32/33/34 metering chip over UART: CRC, frames, register map,
calibration and a pipelined client.

Pure protocol code: no volttron, no gevent, no I/O of its own (the client takes a port-like).
"""

from gridedge.protocols.stpm34.calibration import (
    ChannelCalibration,
    ChannelScale,
    Stpm34Calibration,
    cal_factor,
    channel_scale,
)
from gridedge.protocols.stpm34.client import (
    SAMPLE_ROWS,
    ChannelSample,
    PortLike,
    Stpm34Client,
    Stpm34Sample,
    decode_power,
    decode_rms,
    frequency_from_period,
    thermal_zone_reader,
)
from gridedge.protocols.stpm34.crc import bit_reverse, crc8_msb, crc8_stpm
from gridedge.protocols.stpm34.frame import FRAME_LEN, NO_ADDRESS, Frame, decode_reply, encode_reply
from gridedge.protocols.stpm34.registers import RESET_VALUES, BitField, Reg, field_get, field_set

__all__ = [
    "FRAME_LEN",
    "NO_ADDRESS",
    "RESET_VALUES",
    "SAMPLE_ROWS",
    "BitField",
    "ChannelCalibration",
    "ChannelSample",
    "ChannelScale",
    "Frame",
    "PortLike",
    "Reg",
    "Stpm34Calibration",
    "Stpm34Client",
    "Stpm34Sample",
    "bit_reverse",
    "cal_factor",
    "channel_scale",
    "crc8_msb",
    "crc8_stpm",
    "decode_power",
    "decode_reply",
    "decode_rms",
    "encode_reply",
    "field_get",
    "field_set",
    "frequency_from_period",
    "thermal_zone_reader",
]
