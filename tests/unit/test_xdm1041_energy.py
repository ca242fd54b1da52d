"""Charge/discharge integration and the meter-pair battery monitor, on an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gridedge.errors import ConfigError, DeviceError, ProtocolTimeout
from gridedge.protocols.xdm1041 import (
    BatteryMonitor,
    EnergyIntegrator,
    EnergyTotals,
    MeterSetup,
    ShuntSpec,
    Xdm1041Client,
    battery_current_a,
    split_trapezoid,
)
from gridedge.sim.xdm1041 import Xdm1041Device, Xdm1041Loopback, Xdm1041Quirks


def test_constant_discharge_for_an_hour_counts_its_energy() -> None:
    """120 W and 10 A out of the battery for one hour is 120 Wh and 10 Ah of discharge."""
    integ = EnergyIntegrator(max_gap_s=30)
    for k in range(361):
        integ.add(1000.0 + 10.0 * k, power_w=120.0, current_a=10.0)
    t = integ.totals
    assert t.discharge_wh == pytest.approx(120.0)
    assert t.discharge_ah == pytest.approx(10.0)
    assert (t.charge_wh, t.charge_ah) == (0.0, 0.0)


def test_negative_power_counts_as_charge() -> None:
    """Negative power and current (into the battery) go to the charge totals."""
    integ = EnergyIntegrator()
    integ.add(0.0, power_w=-360.0, current_a=-30.0)
    integ.add(10.0, power_w=-360.0, current_a=-30.0)
    t = integ.totals
    assert t.charge_wh == pytest.approx(1.0)
    assert t.charge_ah == pytest.approx(30.0 * 10 / 3600)
    assert t.discharge_wh == 0.0


def test_a_sign_change_is_split_at_the_zero_crossing() -> None:
    """From +100 W to -100 W in 2 s: 50 W·s discharge, 50 W·s charge (not 0 and 0)."""
    integ = EnergyIntegrator()
    integ.add(0.0, power_w=100.0, current_a=8.0)
    integ.add(2.0, power_w=-100.0, current_a=-8.0)
    t = integ.totals
    assert t.discharge_wh == pytest.approx(50.0 / 3600)
    assert t.charge_wh == pytest.approx(50.0 / 3600)
    assert t.discharge_ah == pytest.approx(4.0 / 3600)


def test_gaps_longer_than_max_gap_are_not_integrated() -> None:
    """Samples further apart than max_gap_s are not integrated across; the chain resumes after."""
    integ = EnergyIntegrator(max_gap_s=30)
    integ.add(0.0, power_w=3600.0, current_a=1.0)
    integ.add(31.0, power_w=3600.0, current_a=1.0)
    assert integ.totals.discharge_wh == 0.0
    assert integ.skipped_gaps == 1
    integ.add(32.0, power_w=3600.0, current_a=1.0)
    assert integ.totals.discharge_wh == pytest.approx(1.0)


def test_a_sample_without_value_breaks_the_chain() -> None:
    """An overload (no value) is not bridged: the interval around it is not counted."""
    integ = EnergyIntegrator(max_gap_s=30)
    integ.add(0.0, power_w=3600.0, current_a=1.0)
    integ.add(1.0, power_w=None, current_a=None)
    integ.add(2.0, power_w=3600.0, current_a=1.0)
    assert integ.totals.discharge_wh == 0.0
    integ.add(3.0, power_w=3600.0, current_a=1.0)
    assert integ.totals.discharge_wh == pytest.approx(1.0)


def test_time_going_backwards_counts_nothing() -> None:
    """A sample not later than the previous one adds nothing and does not move the chain."""
    integ = EnergyIntegrator()
    integ.add(10.0, power_w=3600.0, current_a=1.0)
    integ.add(10.0, power_w=3600.0, current_a=1.0)
    integ.add(5.0, power_w=3600.0, current_a=1.0)
    assert integ.totals == EnergyTotals()
    integ.add(11.0, power_w=3600.0, current_a=1.0)
    assert integ.totals.discharge_wh == pytest.approx(1.0)


@given(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4), st.floats(0.0, 1e3))
@example(-6545.488443664577, 3.7379062100177304e-50, 3.7379062100177304e-50)  # rounding at the crossing
def test_split_trapezoid_preserves_the_net_area(y0: float, y1: float, dt: float) -> None:
    """Positive minus negative share equals the plain trapezoid; both shares are >= 0."""
    pos, neg = split_trapezoid(y0, y1, dt)
    assert pos >= 0 and neg >= 0
    assert pos - neg == pytest.approx((y0 + y1) / 2 * dt, abs=1e-6)


@pytest.mark.parametrize("kwargs", [{"charge_wh": -1.0}, {"discharge_ah": float("nan")}])
def test_invalid_totals(kwargs: dict) -> None:
    """Totals are per direction and never negative."""
    with pytest.raises(ValueError):
        EnergyTotals(**kwargs)


@pytest.mark.parametrize(
    ("reading", "shunt", "current_a"),
    [
        (0.075, ShuntSpec(shunt_ohm=0.00075), 100.0),
        (0.075, ShuntSpec(shunt_ohm=0.00075, polarity=-1), -100.0),
        (-0.0075, ShuntSpec(shunt_ohm=0.00075), -10.0),
        (2.5, ShuntSpec(function="CURR:DC", polarity=-1), -2.5),
    ],
)
def test_battery_current_from_the_shunt_meter(reading: float, shunt: ShuntSpec, current_a: float) -> None:
    """Current = shunt volts / shunt ohms × polarity (or the series reading × polarity)."""
    assert battery_current_a(reading, shunt) == pytest.approx(current_a)


@pytest.mark.parametrize("kwargs", [{"shunt_ohm": 0.0}, {"shunt_ohm": -1.0}, {"polarity": 0},
                                    {"function": "RES"}])
def test_invalid_shunt_specs(kwargs: dict) -> None:
    """A shunt needs a positive resistance, a polarity of ±1 and a DC function."""
    with pytest.raises(ConfigError):
        ShuntSpec(**kwargs)


class _Rig:
    """Two simulated meters behind in-memory ports, sharing one injected clock."""

    def __init__(self, *, volts: float, amps: float, shunt_ohm: float = 0.001, polarity: int = 1,
                 shunt_quirks: Xdm1041Quirks | None = None) -> None:
        self.now = 1000.0
        self.volts = volts
        self.amps = amps
        self.voltage_dev = Xdm1041Device(value_fn=lambda: self.volts)
        self.shunt_dev = Xdm1041Device(value_fn=lambda: self.amps * shunt_ohm * polarity, quirks=shunt_quirks)
        self.monitor = BatteryMonitor(
            voltage_meter=self._client(self.voltage_dev, "voltage meter"),
            shunt_meter=self._client(self.shunt_dev, "shunt meter"),
            shunt=ShuntSpec(shunt_ohm=shunt_ohm, polarity=polarity),
            voltage_setup=MeterSetup(function="VOLT:DC", range=50.0, rate="S"),
            shunt_setup=MeterSetup(function="VOLT:DC", range=0.05, rate="S"),
            clock=lambda: self.now,
            max_gap_s=30.0,
        )

    def _advance(self, dt: float) -> None:
        self.now += dt

    def _client(self, dev: Xdm1041Device, name: str) -> Xdm1041Client:
        port = Xdm1041Loopback(device=dev, timeout=0.05, advance=self._advance)
        return Xdm1041Client(port=port, name=name, timeout_s=0.5, command_gap_s=0.0,
                             monotonic=lambda: self.now, sleep=self._advance)


def test_monitor_reports_voltage_current_power_and_energy() -> None:
    """The pair gives V, I = V_shunt/R, P = V·I (positive = discharge) and integrates energy."""
    rig = _Rig(volts=12.8, amps=25.0)
    first = rig.monitor.read()
    assert first.voltage_v == pytest.approx(12.8)
    assert first.current_a == pytest.approx(25.0)
    assert first.power_w == pytest.approx(320.0)
    assert first.energy == EnergyTotals()
    rig.now += 9.0
    second = rig.monitor.read()
    assert second.energy.discharge_wh == pytest.approx(320.0 * (second.ts - first.ts) / 3600)
    assert second.energy.charge_wh == 0.0
    assert rig.voltage_dev.lines_seen[:5] == ["*IDN?", "SYST:REM", "CONF:VOLT:DC 50", "RATE S", "FUNC1?"]
    assert rig.shunt_dev.lines_seen[2] == "CONF:VOLT:DC 50E-3"


def test_monitor_swapped_shunt_leads_with_polarity_minus_one() -> None:
    """Leads swapped on the shunt meter and polarity -1 configured: the sign comes out right."""
    rig = _Rig(volts=13.0, amps=-20.0, polarity=-1)
    sample = rig.monitor.read()
    assert sample.shunt_value == pytest.approx(0.02)
    assert sample.current_a == pytest.approx(-20.0)
    assert sample.power_w == pytest.approx(-260.0)


def test_monitor_overload_gives_no_value_and_no_energy() -> None:
    """Shunt beyond its range: current and power are None and the interval is not counted."""
    rig = _Rig(volts=12.0, amps=10.0)
    rig.monitor.read()
    rig.amps = 80.0  # 80 mV on the 50 mV range
    rig.now += 1.0
    over = rig.monitor.read()
    assert (over.current_a, over.power_w) == (None, None)
    assert over.voltage_v == pytest.approx(12.0)
    assert rig.monitor.shunt_meter.stats.overloads == 1
    rig.amps = 10.0
    rig.now += 1.0
    rig.monitor.read()
    assert rig.monitor.totals.discharge_wh == 0.0


def test_monitor_reading_in_the_wrong_unit_forces_reconfiguration() -> None:
    """A meter turned to another function (unit A on the voltage meter) is refused and
    reconfigured on the next read."""
    rig = _Rig(volts=12.0, amps=10.0)
    rig.monitor.read()
    rig.voltage_dev.set_quirks(Xdm1041Quirks(gbk_units=True))
    rig.voltage_dev.handle_line("CONF:CURR:DC 10")  # someone turned the knob
    with pytest.raises(DeviceError):
        rig.monitor.read()
    assert not rig.monitor.voltage_meter.configured
    rig.now += 1.0
    sample = rig.monitor.read()
    assert sample.voltage_v == pytest.approx(12.0)
    assert rig.voltage_dev.function == "VOLT:DC"


def test_monitor_timeout_is_raised_and_the_next_read_recovers() -> None:
    """A timeout on one meter fails that read with ProtocolTimeout; the next read is good."""
    rig = _Rig(volts=12.0, amps=10.0, shunt_quirks=Xdm1041Quirks(timeout_every_n=4))
    rig.monitor.read()  # shunt queries: *IDN? (1), FUNC1? (2), MEAS1? (3)
    rig.now += 1.0
    with pytest.raises(ProtocolTimeout, match="shunt meter"):
        rig.monitor.read()  # MEAS1? (4) is not answered
    rig.now += 1.0
    sample = rig.monitor.read()
    assert sample.current_a == pytest.approx(10.0)
    assert rig.monitor.diagnostics()["shunt_timeouts"] == 1
    assert sample.energy.discharge_wh > 0
