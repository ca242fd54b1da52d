"""SunSpec meters: layouts from pysunspec2, "not implemented" markers, scale factors, discovery, scraping.

Register images are built the way a device lays them out ("SunS", model 1, meter model, end
model) and read through an in-memory reader that answers exception 02 outside the map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from gridedge.errors import ConfigError, DeviceError, FrameError, ProtocolTimeout
from gridedge.protocols.modbus_meters import Function
from gridedge.protocols.sunspec import (
    METER_MODEL_IDS,
    PointDef,
    ScaleFactorError,
    SunSpecPointRef,
    apply_scale,
    build_image,
    check_scale_factor,
    decode_raw,
    discover,
    encode_model,
    encode_raw,
    model_def,
    scrape_sunspec,
)


class Device:
    """An in-memory SunSpec device: holding registers from ``base``; exception 02 elsewhere."""

    def __init__(self, image: Sequence[int], base: int = 40000, *, dead: bool = False) -> None:
        self.words = {base + i: w for i, w in enumerate(image)}
        self.dead = dead
        self.requests: list[tuple[int, int]] = []

    def read(self, function: Function, address: int, count: int) -> list[int]:
        assert function is Function.HOLDING
        self.requests.append((address, count))
        if self.dead:
            raise ProtocolTimeout("no answer")
        if count > 125 or any(a not in self.words for a in range(address, address + count)):
            raise DeviceError("Modbus exception 2 (illegal data address)")
        return [self.words[a] for a in range(address, address + count)]

    def holding(self, address: int, count: int) -> list[int]:
        return self.read(Function.HOLDING, address, count)


def _meter_image(model_id: int = 203, values: Mapping[str, object] | None = None,
                 sfs: Mapping[str, int | None] | None = None, patch: Mapping[str, list[int]] | None = None,
                 ) -> list[int]:
    common = encode_model(1, {"Mn": "GridEdge", "Md": "TEST", "SN": "0001", "DA": 1})
    vals = {"W": 3677, "PhVphA": 229.7, "Hz": 49.99, "TotWhImp": 2222100, "TotWhExp": 169000, "A": 18.1}
    vals.update(values or {})
    meter = model_def(model_id)
    vals = {k: v for k, v in vals.items() if k in meter.points}
    scale = {"W_SF": 0, "V_SF": -1, "Hz_SF": -2, "TotWh_SF": 0, "A_SF": -2}
    scale.update(sfs or {})
    words = encode_model(model_id, vals, scale_factors=scale)
    for name, raw in (patch or {}).items():
        p = meter.point(name)
        words[p.offset : p.offset + p.size] = raw
    return build_image([common, words])


# --- layouts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", METER_MODEL_IDS)
def test_meter_model_layout_comes_from_pysunspec2(model_id: int) -> None:
    """Meter models 201..204 have L = 105; points follow each other from offset 2."""
    mdl = model_def(model_id)
    assert mdl.length == 105
    assert mdl.point("ID").offset == 0 and mdl.point("L").offset == 1 and mdl.point("A").offset == 2
    assert mdl.point("W").sf == "W_SF" and mdl.point("TotWhImp").sunspec_type == "acc32"
    assert sum(p.size for p in mdl.points.values()) == 107


def test_common_model_layout() -> None:
    """Model 1 (common) has L = 66: Mn, Md 16 registers, Opt, Vr 8, SN 16, DA, Pad."""
    mdl = model_def(1)
    assert mdl.length == 66
    assert [(p.name, p.offset, p.size) for p in mdl.points.values()][2:5] == [
        ("Mn", 2, 16), ("Md", 18, 16), ("Opt", 34, 8)]


def test_unknown_point_or_model_is_a_config_error() -> None:
    """Asking a model for a point it lacks names both; an unknown model id is refused."""
    with pytest.raises(ConfigError, match=r"201.*PhVphAB"):
        model_def(201).point("PhVphAB")
    with pytest.raises(ConfigError):
        model_def(999)
    with pytest.raises(ConfigError, match="NoSuch"):
        SunSpecPointRef(name="x", point_id="NoSuch", model_id=203)


# --- "not implemented" markers ---------------------------------------------------------------------

def _pdef(ptype: str, size: int = 1) -> PointDef:
    return PointDef(name="P", offset=0, sunspec_type=ptype, size=size)


@pytest.mark.parametrize(
    ("ptype", "words", "expected"),
    [
        ("int16", [0x8000], None), ("int16", [0x8001], -32767), ("int16", [0x7FFF], 32767),
        ("uint16", [0xFFFF], None), ("uint16", [0xFFFE], 65534),
        ("sunssf", [0x8000], None), ("sunssf", [0xFFFE], -2),
        ("enum16", [0xFFFF], None), ("acc16", [0x0000], None), ("acc16", [0x0001], 1),
        ("acc32", [0x0000, 0x0000], None), ("acc32", [0x0000, 0x0001], 1), ("acc32", [0x0001, 0x0000], 65536),
        ("int32", [0x8000, 0x0000], None), ("int32", [0x8000, 0x0001], -2147483647),
        ("uint32", [0xFFFF, 0xFFFF], None), ("uint32", [0xFFFF, 0xFFFE], 0xFFFFFFFE),
        ("bitfield32", [0xFFFF, 0xFFFF], None), ("bitfield32", [0x0000, 0x0004], 4),
        ("float32", [0x7FC0, 0x0000], None), ("float32", [0x4366, 0x0000], 230.0),
        ("string", [0, 0], None), ("string", [0x4142, 0x0000], "AB"),
    ],
)
def test_not_implemented_markers_give_no_value(ptype: str, words: list[int], expected: object) -> None:
    """int16 0x8000, uint16 0xFFFF, acc 0, int32 0x80000000, uint32 0xFFFFFFFF, sf 0x8000, NaN
    and an empty string mean "no value" (None), never a number; neighbours of the marker are numbers."""
    point = _pdef(ptype, len(words))
    assert decode_raw(point, words) == expected
    assert encode_raw(point, expected) == words


def test_encoding_a_marker_as_a_value_is_refused() -> None:
    """A device never sends a real value that reads back as "not implemented"."""
    with pytest.raises(ValueError, match="not implemented"):
        encode_raw(_pdef("int16"), -32768)
    with pytest.raises(ValueError):
        encode_raw(_pdef("int16"), 40000)


def test_scale_factor_not_implemented_gives_no_value() -> None:
    """A point whose scale factor is 0x8000 has no value, whatever its own register holds."""
    image = _meter_image(patch={"W_SF": [0x8000]})
    device = Device(image)
    result = scrape_sunspec({"w": SunSpecPointRef(name="w", point_id="W")}, device.read, discover(device.holding))
    assert result.errors == {}
    assert result.values == {"w": None}


# --- scale factors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "sf", "value"),
                         [(2297, -1, 229.7), (4999, -2, 49.99), (5, 3, 5000), (-32767, 0, -32767),
                          (12, -10, 1.2e-9), (1, 10, 10**10), (None, 0, None), (100, None, None)])
def test_value_is_raw_times_ten_to_the_sf(raw, sf, value) -> None:
    """value = raw × 10^sf (exact for the decimal places the sf gives)."""
    assert apply_scale(raw, sf) == value


@pytest.mark.parametrize("sf", [-10, 0, 10])
def test_scale_factor_within_range_is_accepted(sf: int) -> None:
    """Scale factors -10..10 are valid."""
    assert check_scale_factor(sf, point_name="W_SF") == sf


@pytest.mark.parametrize("sf", [-11, 11, 0x7FFF, -32767])
def test_scale_factor_outside_range_is_rejected_naming_the_point(sf: int) -> None:
    """A scale factor outside -10..10 is refused with an error that names the sf point."""
    with pytest.raises(ScaleFactorError, match="W_SF"):
        check_scale_factor(sf, point_name="W_SF")


def test_scrape_reports_out_of_range_scale_factor_for_its_points_only() -> None:
    """Points scaled by a bad sf fail with its name; other points still read."""
    image = _meter_image(patch={"W_SF": [11]})
    device = Device(image)
    refs = {"w": SunSpecPointRef(name="w", point_id="W"), "hz": SunSpecPointRef(name="hz", point_id="Hz")}
    result = scrape_sunspec(refs, device.read, discover(device.holding))
    assert result.values == {"hz": 49.99}
    assert "W_SF" in result.errors["w"] and "11" in result.errors["w"]


# --- discovery -----------------------------------------------------------------------------------

def test_discovery_walks_the_model_chain() -> None:
    """"SunS" at 40000, then models by ID and length, until the end model 0xFFFF."""
    image = _meter_image(203)
    assert image[:2] == [0x5375, 0x6E53]
    device = Device(image)
    chain = discover(device.holding)
    assert chain.base_address == 40000
    assert [(m.model_id, m.address, m.length) for m in chain.models] == [(1, 40002, 66), (203, 40070, 105)]
    assert chain.meter().model_id == 203
    assert device.requests == [(40000, 2), (40002, 2), (40070, 2), (40177, 2)]


def test_discovery_tries_the_other_base_addresses() -> None:
    """Base 40000 answering exception 02 is skipped; 0 and 50000 are tried next."""
    device = Device(_meter_image(201), base=50000)
    chain = discover(device.holding)
    assert chain.base_address == 50000 and chain.meter().model_id == 201


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ([0x5375, 0x6E54, 0xFFFF, 0], DeviceError),  # "SunT": not a SunSpec device
        ([0x5375, 0x6E53] + [1, 0] * 70, FrameError),  # no end model
    ],
)
def test_discovery_refuses_what_is_not_a_sunspec_chain(image: list[int], error: type) -> None:
    """No "SunS" anywhere is a DeviceError; a chain that never ends is a FrameError."""
    with pytest.raises(error):
        discover(Device(image).holding)


def test_discovery_stops_at_a_timeout() -> None:
    """A device that does not answer ends discovery at the first read (retryable error)."""
    device = Device([], dead=True)
    with pytest.raises(ProtocolTimeout):
        discover(device.holding)
    assert len(device.requests) == 1


# --- scraping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", METER_MODEL_IDS)
def test_scrape_any_meter_model_with_one_registry(model_id: int) -> None:
    """Points without a model id come from whichever meter model (201..204) the device has."""
    device = Device(_meter_image(model_id))
    refs = {
        "power_w": SunSpecPointRef(name="power_w", point_id="W"),
        "frequency_hz": SunSpecPointRef(name="frequency_hz", point_id="Hz"),
        "energy_import_kwh": SunSpecPointRef(name="energy_import_kwh", point_id="TotWhImp", scale=1000),
        "energy_export_kwh": SunSpecPointRef(name="energy_export_kwh", point_id="TotWhExp", scale=1000),
        "var": SunSpecPointRef(name="var", point_id="VAR"),
        "model": SunSpecPointRef(name="model", point_id="Md", model_id=1),
    }
    chain = discover(device.holding)
    device.requests.clear()
    result = scrape_sunspec(refs, device.read, chain)
    assert result.errors == {}
    assert result.values == {"power_w": 3677, "frequency_hz": 49.99, "energy_import_kwh": 2222.1,
                             "energy_export_kwh": 169.0, "var": None, "model": "TEST"}
    assert device.requests == [(40020, 105)]  # Md in model 1 through TotWh_SF in the meter model: one read


def test_point_absent_from_the_device_model_is_an_error_for_that_point() -> None:
    """A registry naming a point of another model (PhVphAB is PPVphAB in 201) fails that point only."""
    device = Device(_meter_image(201))
    refs = {"w": SunSpecPointRef(name="w", point_id="W"),
            "vab": SunSpecPointRef(name="vab", point_id="PhVphAB"),
            "inv": SunSpecPointRef(name="inv", point_id="W", model_id=103)}
    result = scrape_sunspec(refs, device.read, discover(device.holding))
    assert result.values == {"w": 3677}
    assert "PhVphAB" in result.errors["vab"] and "103" in result.errors["inv"]
