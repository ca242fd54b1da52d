"""The simulators' register images: what the site model measures, laid out as each meter does.

No sockets: the images are decoded with the same library the driver uses.
"""

from __future__ import annotations

import math

import pytest

from gridedge.errors import ConfigError
from gridedge.protocols.modbus_meters import EM24_POINTS, Function
from gridedge.protocols.sunspec import METER_MODEL_IDS, SunSpecPointRef, discover, model_def, scrape_sunspec
from gridedge.sim.modbus_meters import (
    DEFAULT_UNIMPLEMENTED,
    Em24Simulator,
    SunSpecMeterSimulator,
    em24_image,
    sunspec_meter_image,
)
from gridedge.sim.site import PhaseSample, SiteModel, SiteSnapshot, load_site_spec

SPEC = {
    "circuits": [
        {"id": "heater", "name": "Heater", "nominal_w": 2000, "pin": 17, "phase": 1},
        {"id": "pump", "name": "Pump", "nominal_w": 1500, "pin": 18, "phase": 2, "power_factor": 0.8},
        {"id": "pv", "name": "PV", "nominal_w": 0, "pin": 19, "phase": 3},
    ],
    "base_load_w": 300,
}


def _site(phases: int = 3) -> SiteModel:
    spec = dict(SPEC, phases=phases)
    if phases == 1:
        spec["circuits"] = [dict(c, phase=1) for c in SPEC["circuits"]]
    return SiteModel(spec=load_site_spec(spec), clock=lambda: 1_700_000_000.0)


def _em24(image: dict[int, int], name: str) -> float:
    p = EM24_POINTS[name]
    return p.decode([image[p.address + i] for i in range(p.count)])


def test_em24_image_carries_the_site_snapshot() -> None:
    """Per-phase V, A, W, var, the totals, frequency and energy counters, at the meter's resolution."""
    snap = _site().snapshot()
    image = em24_image(snap)
    for i, n in enumerate(("l1", "l2", "l3")):
        ph = snap.phases[i]
        assert _em24(image, f"voltage_{n}_v") == pytest.approx(ph.voltage_v, abs=0.05)
        assert _em24(image, f"current_{n}_a") == pytest.approx(ph.current_a, abs=0.0005)
        assert _em24(image, f"power_{n}_w") == pytest.approx(ph.power_w, abs=0.05)
        assert _em24(image, f"reactive_{n}_var") == pytest.approx(ph.reactive_var, abs=0.05)
    assert _em24(image, "power_w") == pytest.approx(snap.power_w, abs=0.05)
    assert _em24(image, "frequency_hz") == pytest.approx(snap.frequency_hz, abs=0.05)
    assert _em24(image, "energy_import_kwh") == pytest.approx(sum(snap.import_kwh), abs=0.05)
    assert _em24(image, "energy_export_kwh") == pytest.approx(sum(snap.export_kwh), abs=0.05)
    assert _em24(image, "energy_import_t1_kwh") == pytest.approx(snap.import_kwh[0], abs=0.05)
    v1, v2 = snap.phases[0].voltage_v, snap.phases[1].voltage_v
    assert _em24(image, "voltage_l1_l2_v") == pytest.approx(math.sqrt(v1 * v1 + v2 * v2 + v1 * v2), abs=0.05)
    assert _em24(image, "power_factor_l2") == pytest.approx(0.808, abs=0.001)  # the pump's PF 0.8 + base load


def test_em24_image_words_are_lsw_first() -> None:
    """INT32 values go out least significant word first, as Carlo Gavazzi sends them."""
    image = em24_image(_site().snapshot())
    raw = round(_site().snapshot().power_w * 10)
    assert (image[0x28], image[0x29]) == (raw & 0xFFFF, raw >> 16)


def test_em24_export_is_negative_power() -> None:
    """Power is positive on import; a site exporting (PV surplus) shows negative W and leading PF sign."""
    export = PhaseSample(voltage_v=231.0, current_a=6.5, power_w=-1500.0, reactive_var=-100.0)
    snap = SiteSnapshot(ts=0.0, circuits=(), phases=(export,) * 3, frequency_hz=50.0,
                        import_kwh=(1.0, 2.0), export_kwh=(3.0, 4.0), tariff=1, temperature_c=25.0)
    image = em24_image(snap)
    assert _em24(image, "power_w") == -4500.0
    assert _em24(image, "power_l1_w") == -1500.0
    assert (image[0x28], image[0x29]) == (0x5038, 0xFFFF)  # -45000 = 0xFFFF5038, LSW first
    assert _em24(image, "power_factor_l1") == pytest.approx(-0.998, abs=0.001)
    assert _em24(image, "energy_export_kwh") == 7.0


def _scrape_image(words: list[int], refs: dict[str, SunSpecPointRef]) -> dict:
    mem = {40000 + i: w for i, w in enumerate(words)}

    def read(function: Function, address: int, count: int) -> list[int]:
        return [mem[a] for a in range(address, address + count)]

    chain = discover(lambda a, c: read(Function.HOLDING, a, c))
    result = scrape_sunspec(refs, read, chain)
    assert result.errors == {}
    return result.values


@pytest.mark.parametrize("model_id", METER_MODEL_IDS)
def test_sunspec_image_carries_the_site_snapshot(model_id: int) -> None:
    """Each meter model reports the site's totals; phases it does not measure are not implemented."""
    snap = _site().snapshot()
    points = ("W", "Hz", "A", "TotWhImp", "TotWhExp", "PhVphA", "AphA", "AphC", "VA", "PFphA")
    refs = {p: SunSpecPointRef(name=p, point_id=p) for p in points}
    values = _scrape_image(sunspec_meter_image(snap, model_id=model_id), refs)
    assert values["W"] == pytest.approx(snap.power_w, abs=0.5)
    assert values["Hz"] == pytest.approx(snap.frequency_hz, abs=0.005)
    assert values["TotWhImp"] == pytest.approx(sum(snap.import_kwh) * 1000, abs=0.5)
    assert values["TotWhExp"] == pytest.approx(sum(snap.export_kwh) * 1000, abs=0.5)
    assert values["AphA"] == pytest.approx(snap.phases[0].current_a, abs=0.005)
    if model_id == 204:
        assert values["PhVphA"] is None  # a delta meter has no neutral
    else:
        assert values["PhVphA"] == pytest.approx(snap.phases[0].voltage_v, abs=0.05)
    if model_id in (201, 202):
        assert values["AphC"] is None
    else:
        assert values["AphC"] == pytest.approx(snap.phases[2].current_a, abs=0.005)
    assert values["VA"] is None and values["PFphA"] is None  # deliberately not implemented
    assert "VA_SF" in DEFAULT_UNIMPLEMENTED


def test_sunspec_scale_factor_rises_when_a_value_would_overflow() -> None:
    """W is an int16: 40 kW is sent with W_SF 1 instead of overflowing."""
    spec = load_site_spec({"circuits": [{"id": "ev", "name": "EV", "nominal_w": 40000, "pin": 5}], "phases": 1})
    snap = SiteModel(spec=spec, clock=lambda: 1_700_000_000.0).snapshot()
    words = sunspec_meter_image(snap, model_id=201)
    meter = model_def(201)
    w_sf = words[2 + 68 + meter.point("W_SF").offset]
    assert w_sf == 1
    values = _scrape_image(words, {"W": SunSpecPointRef(name="W", point_id="W")})
    assert values["W"] == pytest.approx(snap.power_w, abs=10)


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [(Em24Simulator, {"model_code": 99}), (SunSpecMeterSimulator, {"model_id": 103}),
     (SunSpecMeterSimulator, {"unimplemented": frozenset({"NoSuchPoint"})}),
     (Em24Simulator, {"port": 70000}), (Em24Simulator, {"unit_id": 0})],
)
def test_simulator_refuses_invalid_settings(factory, kwargs) -> None:
    """Unknown models, points, ports or unit ids are configuration errors, raised before serving."""
    from gridedge.errors import ConfigError

    with pytest.raises(ConfigError):
        factory(snapshot_source=_site().snapshot, **kwargs)


@pytest.mark.parametrize(("duration_s", "valid"), [(0.0, True), (2.5, True), (-0.1, False)])
def test_stall_takes_a_non_negative_duration(duration_s: float, valid: bool) -> None:
    """A meter can be made busy for zero or more seconds (no server needed to set it)."""
    sim = SunSpecMeterSimulator(snapshot_source=_site().snapshot)
    if valid:
        sim.stall(duration_s)
    else:
        with pytest.raises(ConfigError, match="stall"):
            sim.stall(duration_s)
