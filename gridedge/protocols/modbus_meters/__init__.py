"""Modbus energy meters with a fixed register map (Carlo Gavazzi EM24): codec, read planning, client."""

from gridedge.protocols.modbus_meters.cg_em24 import (
    EM24_ID_ADDRESS,
    EM24_MODEL_CODES,
    EM24_POINTS,
    em24_point,
)
from gridedge.protocols.modbus_meters.client import ModbusRegisterReader, RtuTransport, TcpTransport
from gridedge.protocols.modbus_meters.registers import (
    MAX_READ_REGISTERS,
    Function,
    ReadBlock,
    ReadPlan,
    ReadSpan,
    RegisterPoint,
    RegisterType,
    WordOrder,
    decode_registers,
    encode_registers,
    plan_reads,
)
from gridedge.protocols.modbus_meters.scrape import ReadFn, ScrapeResult, read_blocks, scrape_registers

__all__ = [
    "EM24_ID_ADDRESS",
    "EM24_MODEL_CODES",
    "EM24_POINTS",
    "MAX_READ_REGISTERS",
    "Function",
    "ModbusRegisterReader",
    "ReadBlock",
    "ReadFn",
    "ReadPlan",
    "ReadSpan",
    "RegisterPoint",
    "RegisterType",
    "RtuTransport",
    "ScrapeResult",
    "TcpTransport",
    "WordOrder",
    "decode_registers",
    "em24_point",
    "encode_registers",
    "plan_reads",
    "read_blocks",
    "scrape_registers",
]
