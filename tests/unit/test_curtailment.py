"""The DR curtailment planner: exact shedding over relays and dimmers, by priority."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge.domain.curtailment import (
    TOLERANCE_KW,
    Circuit,
    CurtailmentPlan,
    cap,
    curtail,
    sheddable_kw,
)


def demo_site() -> list[Circuit]:
    """The demo site of platform_config/site.json at nominal power: 10 kW."""
    return [
        Circuit(id="heater", power_kw=1.5, priority=1, sheddable_fraction=1.0, modulation="binary"),
        Circuit(id="lights", power_kw=0.4, priority=2, sheddable_fraction=0.7, modulation="continuous"),
        Circuit(id="house", power_kw=1.0, priority=3, sheddable_fraction=0.5, modulation="continuous"),
        Circuit(id="hvac", power_kw=6.0, priority=9, sheddable_fraction=0.0, critical=True),
        Circuit(id="fridge", power_kw=1.1, priority=9, sheddable_fraction=0.0, critical=True),
    ]


def test_required_example_two_kw_from_ten() -> None:
    """2 kW from the 10 kW demo site: heater off, lights 0.4 -> 0.12, house 1.0 -> 0.78, critical
    circuits untouched."""
    plan = curtail(demo_site(), 2.0)
    assert plan.feasible
    assert plan.achieved_kw == pytest.approx(2.0, abs=TOLERANCE_KW)
    assert plan.shortfall_kw == 0.0
    assert plan.target("heater").level == 0.0
    assert plan.target("heater").power_kw == 0.0
    assert plan.target("lights").power_kw == pytest.approx(0.12)
    assert plan.target("lights").level == pytest.approx(0.3)
    assert plan.target("house").power_kw == pytest.approx(0.78)
    assert plan.target("house").level == pytest.approx(0.78)
    for cid in ("hvac", "fridge"):
        assert plan.target(cid).level == 1.0
        assert plan.target(cid).shed_kw == 0.0


@pytest.mark.parametrize(
    ("shed_kw", "levels"),
    [
        (1.5, {"heater": 0.0, "lights": 1.0, "house": 1.0}),
        (1.6, {"heater": 0.0, "lights": 0.75, "house": 1.0}),
        (0.2, {"heater": 1.0, "lights": 0.5, "house": 1.0}),
        (0.78, {"heater": 1.0, "lights": 0.3, "house": 0.5}),
        (2.28, {"heater": 0.0, "lights": 0.3, "house": 0.5}),
    ],
)
def test_exact_fit(shed_kw: float, levels: dict[str, float]) -> None:
    """Where relays plus dimming can reach the request, the plan reaches it exactly."""
    plan = curtail(demo_site(), shed_kw)
    assert plan.feasible
    assert plan.achieved_kw == pytest.approx(shed_kw, abs=TOLERANCE_KW)
    for cid, level in levels.items():
        assert plan.target(cid).level == pytest.approx(level)


def test_relay_that_would_overshoot_is_skipped_for_dimming() -> None:
    """A relay whose power exceeds what is left to shed is skipped when dimming reaches the request."""
    circuits = [
        Circuit(id="boiler", power_kw=3.0, priority=1, modulation="binary"),
        Circuit(id="dimmer", power_kw=2.0, priority=2, modulation="continuous"),
    ]
    plan = curtail(circuits, 1.0)
    assert plan.target("boiler").level == 1.0
    assert plan.target("dimmer").level == pytest.approx(0.5)
    assert plan.overshoot_kw == pytest.approx(0.0, abs=TOLERANCE_KW)


def test_dimming_given_back_when_a_later_relay_is_needed() -> None:
    """If dimming the first circuits leaves too little room for a relay the request needs, the
    plan opens the relay and gives the dimming back instead of falling short."""
    circuits = [
        Circuit(id="lights", power_kw=0.4, priority=1, sheddable_fraction=0.7, modulation="continuous"),
        Circuit(id="heater", power_kw=1.5, priority=2, modulation="binary"),
        Circuit(id="house", power_kw=1.0, priority=3, sheddable_fraction=0.5, modulation="continuous"),
    ]
    plan = curtail(circuits, 1.5)
    assert plan.feasible
    assert plan.achieved_kw == pytest.approx(1.5, abs=TOLERANCE_KW)
    assert plan.target("heater").level == 0.0
    assert plan.target("lights").level == 1.0
    assert plan.target("house").level == 1.0


def test_overshoot_only_when_nothing_else_reaches() -> None:
    """With relays only, a request between their sizes is met by the smallest overshoot, never
    left short."""
    circuits = [
        Circuit(id="a", power_kw=2.5, priority=1),
        Circuit(id="b", power_kw=2.0, priority=2),
        Circuit(id="c", power_kw=2.0, priority=3),
    ]
    plan = curtail(circuits, 3.0)
    assert plan.feasible
    assert plan.achieved_kw == pytest.approx(4.0)
    assert plan.overshoot_kw == pytest.approx(1.0)
    assert plan.levels == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_relay_combination_found_for_exact_fit() -> None:
    """The greedy choice (biggest first-priority relay) is replaced by a combination that is exact."""
    circuits = [
        Circuit(id="a", power_kw=2.5, priority=1),
        Circuit(id="b", power_kw=1.5, priority=2),
        Circuit(id="c", power_kw=1.5, priority=3),
    ]
    plan = curtail(circuits, 3.0)
    assert plan.achieved_kw == pytest.approx(3.0, abs=TOLERANCE_KW)
    assert plan.levels == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_infeasible_sheds_everything_sheddable() -> None:
    """A request beyond what can be shed sheds all of it and reports the shortfall."""
    plan = curtail(demo_site(), 5.0)
    assert not plan.feasible
    assert plan.achieved_kw == pytest.approx(2.28)
    assert plan.shortfall_kw == pytest.approx(5.0 - 2.28)
    assert plan.levels == pytest.approx(
        {"heater": 0.0, "lights": 0.3, "house": 0.5, "hvac": 1.0, "fridge": 1.0})


def test_zero_request_sheds_nothing() -> None:
    """A zero request leaves every circuit as it is and is feasible."""
    plan = curtail(demo_site(), 0.0)
    assert plan.feasible
    assert plan.achieved_kw == 0.0
    assert set(plan.levels.values()) == {1.0}


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_negative_or_non_finite_request_rejected(bad: float) -> None:
    """Curtailment cannot add load: negative and non-finite requests are the caller's mistake."""
    with pytest.raises(ValueError):
        curtail(demo_site(), bad)


def test_ties_broken_by_circuit_id() -> None:
    """Equal priorities are shed in order of circuit id, so plans are reproducible."""
    circuits = [
        Circuit(id="zeta", power_kw=1.0, priority=1, modulation="continuous"),
        Circuit(id="alpha", power_kw=1.0, priority=1, modulation="continuous"),
    ]
    plan = curtail(circuits, 0.5)
    assert plan.target("alpha").level == pytest.approx(0.5)
    assert plan.target("zeta").level == 1.0
    assert curtail(list(reversed(circuits)), 0.5).levels == plan.levels


def test_all_critical_site_cannot_shed() -> None:
    """A site whose circuits are all critical sheds nothing and reports the whole request short."""
    circuits = [Circuit(id="hvac", power_kw=6.0, critical=True), Circuit(id="fridge", power_kw=1.1,
                                                                        critical=True)]
    assert sheddable_kw(circuits) == 0.0
    plan = curtail(circuits, 1.0)
    assert not plan.feasible
    assert plan.shortfall_kw == pytest.approx(1.0)
    assert plan.levels == {"hvac": 1.0, "fridge": 1.0}


def test_partial_relay_is_not_sheddable() -> None:
    """A relay cannot shed part of a load: a binary circuit with sheddable_fraction < 1 stays on."""
    circuits = [Circuit(id="pump", power_kw=2.0, sheddable_fraction=0.5, modulation="binary")]
    assert sheddable_kw(circuits) == 0.0
    assert curtail(circuits, 1.0).levels == {"pump": 1.0}


def test_float_sums_count_as_exact() -> None:
    """0.1 + 0.2 kW of request against a 0.3 kW relay: float noise must not skip the relay."""
    circuits = [Circuit(id="a", power_kw=0.3, priority=1), Circuit(id="b", power_kw=0.1, priority=2),
                Circuit(id="c", power_kw=0.2, priority=3)]
    plan = curtail(circuits, 0.1 + 0.2)
    assert plan.levels == {"a": 0.0, "b": 1.0, "c": 1.0}
    assert plan.feasible
    plan = curtail(circuits, 0.6000000000000001)
    assert plan.feasible and set(plan.levels.values()) == {0.0}


def test_full_dimming_lands_exactly_on_the_floor() -> None:
    """A circuit dimmed by its whole sheddable fraction sits exactly at 1 - fraction."""
    plan = curtail(demo_site(), 2.28)
    assert plan.target("lights").level == 1.0 - 0.7
    assert plan.target("house").level == 0.5


@pytest.mark.parametrize(
    ("limit_kw", "requested_kw"),
    [(12.0, 0.0), (10.0, 0.0), (8.0, 2.0), (7.72, 2.28)],
)
def test_cap_sheds_down_to_limit(limit_kw: float, requested_kw: float) -> None:
    """cap() sheds the excess of the site's total over the limit, and nothing when under it."""
    plan = cap(demo_site(), limit_kw)
    assert plan.requested_kw == pytest.approx(requested_kw)
    remaining = sum(t.power_kw for t in plan.targets)
    assert remaining <= max(limit_kw, 10.0) + TOLERANCE_KW
    assert remaining == pytest.approx(min(limit_kw, 10.0), abs=1e-6)


def test_cap_below_what_can_be_shed_is_infeasible() -> None:
    """A limit under the unsheddable load is infeasible; the plan says by how much."""
    plan = cap(demo_site(), 5.0)
    assert not plan.feasible
    assert plan.shortfall_kw == pytest.approx(5.0 - 2.28)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": "", "power_kw": 1.0},
        {"id": "x", "power_kw": -1.0},
        {"id": "x", "power_kw": math.nan},
        {"id": "x", "power_kw": 1.0, "sheddable_fraction": 1.5},
        {"id": "x", "power_kw": 1.0, "modulation": "stepped"},
    ],
)
def test_invalid_circuit_rejected(kwargs: dict) -> None:
    """Circuits validate their own fields."""
    with pytest.raises(ValueError):
        Circuit(**kwargs)


def test_duplicate_circuit_ids_rejected() -> None:
    """Two circuits with one id cannot be planned."""
    with pytest.raises(ValueError, match="duplicate"):
        curtail([Circuit(id="a", power_kw=1.0), Circuit(id="a", power_kw=2.0)], 0.5)


_circuit = st.builds(
    Circuit,
    id=st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    power_kw=st.floats(min_value=0.0, max_value=10.0),
    priority=st.integers(min_value=0, max_value=5),
    sheddable_fraction=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    critical=st.booleans(),
    modulation=st.sampled_from(["binary", "continuous"]),
)


@settings(max_examples=300, deadline=None)
@given(circuits=st.lists(_circuit, max_size=8, unique_by=lambda c: c.id),
       shed_kw=st.floats(min_value=0.0, max_value=30.0))
def test_plan_invariants(circuits: list[Circuit], shed_kw: float) -> None:
    """For any site and request: never short when feasible, never touching critical circuits,
    levels within each circuit's allowed range, and exact whenever dimming alone could do it."""
    plan: CurtailmentPlan = curtail(circuits, shed_kw)
    total = sheddable_kw(circuits)
    assert plan.feasible == (shed_kw <= total + TOLERANCE_KW)
    if plan.feasible:
        assert plan.achieved_kw >= shed_kw - TOLERANCE_KW
    else:
        assert plan.achieved_kw == pytest.approx(total)
    dimmable = sum(c.sheddable_kw for c in circuits if c.modulation == "continuous")
    if shed_kw <= dimmable:
        assert plan.achieved_kw == pytest.approx(shed_kw, abs=1e-5)
    for c in circuits:
        t = plan.target(c.id)
        if c.critical or c.sheddable_kw == 0:
            assert t.level == 1.0
        elif c.modulation == "binary":
            assert t.level in (0.0, 1.0)
        else:
            assert 1.0 - c.sheddable_fraction - 1e-9 <= t.level <= 1.0
