"""Register codec, read planning and scraping of register-mapped meters (Carlo Gavazzi EM24).

Real register words throughout; the "device" in the scrape tests is an in-memory register
image that answers like a meter (illegal address for unmapped registers).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from gridedge.errors import ConfigError, DeviceError, FrameError, ProtocolTimeout
from gridedge.protocols.modbus_meters import (
    EM24_POINTS,
    Function,
    ReadSpan,
    RegisterPoint,
    RegisterType,
    WordOrder,
    decode_registers,
    encode_registers,
    plan_reads,
    scrape_registers,
)

REPO = Path(__file__).resolve().parents[2]


class RegisterImage:
    """An in-memory meter: words by address; unmapped registers answer exception 02."""

    def __init__(self, words: Mapping[int, int], *, dead: bool = False) -> None:
        self.words = dict(words)
        self.dead = dead
        self.requests: list[tuple[Function, int, int]] = []

    def read(self, function: Function, address: int, count: int) -> Sequence[int]:
        self.requests.append((function, address, count))
        if self.dead:
            raise ProtocolTimeout("no answer")
        if any(a not in self.words for a in range(address, address + count)):
            raise DeviceError("Modbus exception 2 (illegal data address)")
        return [self.words[a] for a in range(address, address + count)]


# --- codec ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("words", "reg_type", "order", "raw"),
    [
        ([0x08FD, 0x0000], RegisterType.INT32, WordOrder.LSW_FIRST, 2301),  # CG: 230.1 V ×10
        ([0x0000, 0x08FD], RegisterType.INT32, WordOrder.MSW_FIRST, 2301),
        ([0x08FD, 0x0000], RegisterType.INT32, WordOrder.MSW_FIRST, 0x08FD0000),  # wrong order, other number
        ([0xFFF6, 0xFFFF], RegisterType.INT32, WordOrder.LSW_FIRST, -10),  # -1.0 W export
        ([0xFFFF, 0xFFF6], RegisterType.INT32, WordOrder.LSW_FIRST, -589825),
        ([0x0001, 0x0002], RegisterType.UINT32, WordOrder.LSW_FIRST, 0x00020001),
        ([0xFFFF], RegisterType.INT16, WordOrder.MSW_FIRST, -1),
        ([0xFFFF], RegisterType.UINT16, WordOrder.MSW_FIRST, 65535),
        ([0x4366, 0x0000], RegisterType.FLOAT32, WordOrder.MSW_FIRST, 230.0),
        ([0x0000, 0x4366], RegisterType.FLOAT32, WordOrder.LSW_FIRST, 230.0),
    ],
)
def test_decode_registers_with_word_order(words, reg_type, order, raw) -> None:
    """Words are big-endian; 32-bit values combine their words in the point's word order."""
    assert decode_registers(words, reg_type=reg_type, word_order=order) == raw
    assert encode_registers(raw, reg_type=reg_type, word_order=order) == words


@pytest.mark.parametrize(
    ("words", "reg_type"),
    [([0x0001], RegisterType.INT32), ([1, 2, 3], RegisterType.INT32), ([0x10000], RegisterType.UINT16),
     ([-1], RegisterType.INT16), ([], RegisterType.UINT16)],
)
def test_decode_rejects_wrong_word_count_or_non_words(words, reg_type) -> None:
    """A value needs exactly its register count of 16-bit words; anything else is a FrameError."""
    with pytest.raises(FrameError):
        decode_registers(words, reg_type=reg_type, word_order=WordOrder.LSW_FIRST)


@pytest.mark.parametrize(
    ("raw", "reg_type"),
    [(0x8000, RegisterType.INT16), (-1, RegisterType.UINT16), (2**31, RegisterType.INT32),
     (2**32, RegisterType.UINT32), (1.5, RegisterType.INT32)],
)
def test_encode_rejects_values_that_do_not_fit(raw, reg_type) -> None:
    """Encoding never wraps around silently."""
    with pytest.raises(ValueError):
        encode_registers(raw, reg_type=reg_type, word_order=WordOrder.MSW_FIRST)


def test_value_weight_divides_raw_value() -> None:
    """value = raw / scale: CG sends V×10, A×1000, W×10, kWh×10."""
    assert EM24_POINTS["voltage_l1_v"].decode([0x08FD, 0x0000]) == 230.1
    assert EM24_POINTS["current_l1_a"].decode([0x24CF, 0x0000]) == 9.423
    assert EM24_POINTS["power_w"].decode([0x8F9F, 0x0000]) == 3676.7
    assert EM24_POINTS["power_w"].decode([0x7061, 0xFFFF]) == -3676.7
    assert EM24_POINTS["energy_import_kwh"].decode([0x6CD1, 0x0000]) == 2785.7
    assert EM24_POINTS["frequency_hz"].decode([0x01F4]) == 50.0
    assert EM24_POINTS["power_factor_l1"].decode([0xFC49]) == -0.951
    assert EM24_POINTS["model_id"].decode([72]) == 72 and isinstance(EM24_POINTS["model_id"].decode([72]), int)
    assert EM24_POINTS["power_w"].encode(-3676.7) == [0x7061, 0xFFFF]


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        ({"address": "0x0028", "reg_type": "INT32", "word_order": "lsw", "scale": "10"}, True),
        ({"address": "40", "reg_type": "int32", "word_order": "little", "scale": ""}, True),
        ({"address": 40, "reg_type": "uint16", "function": "input"}, True),
        ({"address": "0x28", "reg_type": "int24"}, False),
        ({"address": "forty", "reg_type": "int32"}, False),
        ({"address": "65535", "reg_type": "int32"}, False),
        ({"address": "0", "reg_type": "int32", "word_order": "middle"}, False),
        ({"address": "0", "reg_type": "int32", "scale": "0"}, False),
        ({"address": "0", "reg_type": "int32", "function": "coil"}, False),
    ],
)
def test_register_point_parse_valid_and_invalid(kwargs, ok) -> None:
    """Registry text becomes a point, or a ConfigError that names the point."""
    if ok:
        point = RegisterPoint.parse(name="pt_x", **kwargs)
        assert point.address == 40
        return
    with pytest.raises(ConfigError, match="pt_x"):
        RegisterPoint.parse(name="pt_x", **kwargs)


# --- read planning ------------------------------------------------------------------------------

def _span(address: int, count: int = 2, function: Function = Function.HOLDING, alone: bool = False) -> ReadSpan:
    return ReadSpan(function=function, address=address, count=count, alone=alone)


def test_contiguous_registers_coalesce_into_one_read() -> None:
    """Neighbouring spans of one table are read together."""
    plan = plan_reads([_span(4), _span(0), _span(2), _span(6, 1)])
    assert [(b.address, b.count) for b in plan.blocks] == [(0, 7)]


def test_gaps_split_reads_unless_bridging_is_allowed() -> None:
    """With max_gap 0 a hole splits the read (unmapped registers raise exception 02)."""
    spans = [_span(0), _span(10)]
    assert [(b.address, b.count) for b in plan_reads(spans).blocks] == [(0, 2), (10, 2)]
    assert [(b.address, b.count) for b in plan_reads(spans, max_gap=8).blocks] == [(0, 12)]
    assert [(b.address, b.count) for b in plan_reads(spans, max_gap=7).blocks] == [(0, 2), (10, 2)]


def test_reads_never_exceed_125_registers() -> None:
    """A read covers at most 125 registers (Modbus application protocol)."""
    spans = [_span(a) for a in range(0, 300, 2)]
    plan = plan_reads(spans)
    assert [(b.address, b.count) for b in plan.blocks] == [(0, 124), (124, 124), (248, 52)]
    assert all(plan.block_for(s).contains(s) for s in spans)
    with pytest.raises(ConfigError):
        plan_reads([_span(0, 126)])
    with pytest.raises(ConfigError):
        plan_reads(spans, max_count=126)


def test_tables_are_never_mixed_and_duplicates_read_once() -> None:
    """Holding and input registers need different function codes; identical spans share a read."""
    plan = plan_reads([_span(0), _span(0), _span(2, function=Function.INPUT)])
    assert [(b.function, b.address, b.count) for b in plan.blocks] == [
        (Function.HOLDING, 0, 2), (Function.INPUT, 2, 2)]


def test_multiplexed_register_is_read_alone() -> None:
    """A span overlapping another (CG 000Bh inside V L3-L1) or marked alone gets its own read."""
    plan = plan_reads([_span(0x0A), _span(0x0B, 1), _span(0x0C)])
    assert [(b.address, b.count) for b in plan.blocks] == [(0x0A, 4), (0x0B, 1)]
    assert plan.block_for(_span(0x0B, 1)).count == 1
    plan = plan_reads([_span(0x0A, 1), _span(0x0B, 1, alone=True), _span(0x0C)])
    assert [(b.address, b.count) for b in plan.blocks] == [(0x0A, 1), (0x0C, 2), (0x0B, 1)]


def test_em24_map_reads_in_two_requests() -> None:
    """The whole EM24 measurement map is one read of 96 registers plus the single-word ID read."""
    plan = plan_reads(p.span for p in EM24_POINTS.values())
    assert [(b.address, b.count) for b in plan.blocks] == [(0x0000, 0x60), (0x000B, 1)]


def test_registry_csv_matches_em24_map() -> None:
    """driver_configs/registries/cg_em24.csv describes exactly the library's EM24 map."""
    with open(REPO / "driver_configs/registries/cg_em24.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["Volttron Point Name"] for r in rows} == set(EM24_POINTS)
    for r in rows:
        point = RegisterPoint.parse(
            name=r["Volttron Point Name"], address=r["Address"], reg_type=r["Type"],
            word_order=r["Word Order"], scale=r["Scale"], function=r["Function"], units=r["Units"],
            description=r["Notes"], read_alone=r["Read Alone"] == "TRUE",
        )
        assert point == EM24_POINTS[point.name]
        assert r["Writable"] == "FALSE"


# --- scraping -----------------------------------------------------------------------------------

def _em24_words(values: Mapping[str, float], model_code: int = 72) -> dict[int, int]:
    words = {a: 0 for a in range(0x60)}
    for name, value in values.items():
        point = EM24_POINTS[name]
        for i, w in enumerate(point.encode(value)):
            words[point.address + i] = w
    return words


def test_scrape_decodes_each_point_from_coalesced_reads() -> None:
    """One scrape reads each contiguous run once and decodes every point from it."""
    device = RegisterImage(_em24_words({"voltage_l1_v": 230.1, "current_l1_a": 9.423, "power_w": -1250.5,
                                        "frequency_hz": 49.9}))
    names = ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "voltage_l1_l2_v", "voltage_l2_l3_v",
             "voltage_l3_l1_v", "current_l1_a", "power_w", "frequency_hz", "model_id")
    result = scrape_registers({k: EM24_POINTS[k] for k in names}, device.read)
    assert result.errors == {}
    assert result.values["voltage_l1_v"] == 230.1
    assert result.values["current_l1_a"] == 9.423
    assert result.values["power_w"] == -1250.5
    assert result.values["frequency_hz"] == 49.9
    assert sorted(device.requests) == [
        (Function.HOLDING, 0x00, 0x0E), (Function.HOLDING, 0x0B, 1), (Function.HOLDING, 0x28, 2),
        (Function.HOLDING, 0x37, 1)]


def test_modbus_exception_fails_only_its_block() -> None:
    """An exception answer fails the points of that read; the other reads still happen."""
    device = RegisterImage(_em24_words({"power_w": 100.0}))
    points = {"power_w": EM24_POINTS["power_w"],
              "missing": RegisterPoint(name="missing", address=0x200, reg_type=RegisterType.UINT16)}
    result = scrape_registers(points, device.read)
    assert result.values == {"power_w": 100.0}
    assert "illegal data address" in result.errors["missing"]
    assert "512..512" in result.errors["missing"]


def test_timeout_fails_the_whole_scrape_at_once() -> None:
    """A timeout ends the scrape: every point fails, and no further read waits for it again."""
    device = RegisterImage({}, dead=True)
    points = {"a": EM24_POINTS["power_w"],
              "b": RegisterPoint(name="b", address=0x200, reg_type=RegisterType.UINT16)}
    result = scrape_registers(points, device.read)
    assert result.values == {}
    assert set(result.errors) == {"a", "b"}
    assert all("no answer" in e for e in result.errors.values())
    assert len(device.requests) == 1
