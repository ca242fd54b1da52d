"""Conformance tests of the VEN event rules (gridedge.openadr.policy), one per rule.

Events are built with openleadr's own objects, rendered to real oadrDistributeEvent XML and
parsed back with openleadr's parser, so the dicts are exactly what ``on_event`` receives. The
clock is injected; nothing sleeps.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from openleadr import enums, objects, utils
from openleadr.messaging import create_message, parse_message

from gridedge.openadr.models import EventStore, SignalInterval, StoredEvent
from gridedge.openadr.policy import (
    PolicyConfig,
    effective_request,
    handle_event,
    next_boundary,
    power_kw_factor,
    prune,
)

T0 = datetime(2030, 1, 7, 12, 0, tzinfo=timezone.utc)
CONFIG = PolicyConfig(simple_levels_kw={"0": 0.0, "1": 1.5, "2": 2.5, "3": 4.0})
KW = {"unit": "W", "scale": "k"}


def make_event(
    *,
    event_id: str = "e1",
    modification_number: int = 0,
    signal_name: str = "LOAD_DISPATCH",
    signal_type: str = "delta",
    values: tuple[float, ...] = (2.0,),
    interval_s: float = 600.0,
    start: datetime = T0,
    unit: dict[str, str] | None = KW,
    status: str | None = None,
    test_event: bool = False,
    response_required: str = "always",
    priority: int = 0,
    ramp_up_s: float | None = None,
    ven_id: str = "VEN1",
    extra_signals: tuple[objects.EventSignal, ...] = (),
) -> dict[str, Any]:
    """An event as openleadr's client hands it to on_event (rendered to XML and parsed back)."""
    intervals = [
        objects.Interval(dtstart=start + timedelta(seconds=i * interval_s), duration=timedelta(seconds=interval_s),
                         signal_payload=value, uid=i)
        for i, value in enumerate(values)
    ]
    measurement = None
    if unit is not None:
        measurement = replace(enums.MEASUREMENTS.POWER_REAL, unit=unit["unit"], scale=unit["scale"])
    signal = objects.EventSignal(intervals=intervals, signal_name=signal_name, signal_type=signal_type,
                                 signal_id="s1", measurement=measurement)
    period = objects.ActivePeriod(
        dtstart=start, duration=timedelta(seconds=interval_s * len(values)),
        ramp_up_period=timedelta(seconds=ramp_up_s) if ramp_up_s else None,
    )
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=event_id, modification_number=modification_number, market_context="oadr://test",
            event_status="far", priority=priority, test_event=test_event,
        ),
        event_signals=[signal, *extra_signals], active_period=period,
        targets=[objects.Target(ven_id=ven_id)], response_required=response_required,
    )
    if status is not None:
        utils.setmember(event, "event_descriptor.event_status", status)
    xml = create_message("oadrDistributeEvent", request_id="r1", vtn_id="VTN", events=[event])
    message_type, payload = parse_message(xml)
    assert message_type == "oadrDistributeEvent"
    return payload["events"][0]


def decide(event: dict[str, Any], store: EventStore | None = None, *, now: datetime = T0, **kwargs: Any):
    return handle_event(store or EventStore(), event, now=now, config=CONFIG, vtn_id="VTN", **kwargs)


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "shed_kw"), [(0, 0.0), (1, 1.5), (2, 2.5), (3, 4.0)])
def test_simple_level_sheds_the_configured_kw(level: int, shed_kw: float) -> None:
    """SIMPLE signal levels 0–3 each shed the kW configured for that level."""
    decision, store = decide(make_event(signal_name="SIMPLE", signal_type="level", values=(level,), unit=None))
    assert decision.opt == "optIn" and decision.action == "new"
    request = effective_request(store, T0 + timedelta(seconds=1))
    assert request is not None
    assert (request.shed_kw, request.level, request.setpoint_kw) == (shed_kw, level, None)


@pytest.mark.parametrize("level", [4, 7, 1.5])
def test_simple_level_outside_0_to_3_opts_out(level: float) -> None:
    """A SIMPLE level outside 0..3 (or not an integer) is not supported: optOut with the reason."""
    event = make_event(signal_name="SIMPLE", signal_type="level", values=(1,), unit=None)
    # openleadr's own VTN refuses to send such a level (preflight rule 9); another VTN may not
    event["event_signals"][0]["intervals"][0]["signal_payload"] = level
    decision, store = decide(event)
    assert decision.opt == "optOut"
    assert "outside 0..3" in decision.reason
    assert decision.response_code == 460
    assert effective_request(store, T0 + timedelta(seconds=1)) is None


@pytest.mark.parametrize(
    ("unit", "scale", "payload", "shed_kw"),
    [("W", "none", 2000.0, 2.0), ("W", "k", 2.0, 2.0), ("W", "M", 0.002, 2.0), ("kW", "none", 2.0, 2.0),
     ("W", "m", 2_000_000.0, 2.0)],
)
def test_load_dispatch_delta_is_kw_to_shed_in_power_real_units(unit: str, scale: str, payload: float,
                                                               shed_kw: float) -> None:
    """LOAD_DISPATCH delta is the power to shed, converted with the itemBase unit and siScaleCode."""
    decision, store = decide(make_event(values=(payload,), unit={"unit": unit, "scale": scale}))
    assert decision.opt == "optIn"
    request = effective_request(store, T0)
    assert request is not None and request.shed_kw == pytest.approx(shed_kw)
    assert request.setpoint_kw is None


def test_load_dispatch_setpoint_is_kw_to_stay_under() -> None:
    """LOAD_DISPATCH setpoint is the import (kW) the site must stay under; no shed figure."""
    decision, store = decide(make_event(signal_type="setpoint", values=(3000.0,), unit={"unit": "W", "scale": "none"}))
    assert decision.opt == "optIn"
    request = effective_request(store, T0)
    assert request is not None
    assert (request.setpoint_kw, request.shed_kw, request.signal_type) == (3.0, None, "setpoint")


@pytest.mark.parametrize(
    ("unit", "why"),
    [(None, "no powerReal itemBase"), ({"unit": "A", "scale": "none"}, "unit 'A'")],
)
def test_load_dispatch_without_known_power_unit_opts_out(unit: dict[str, str] | None, why: str) -> None:
    """A LOAD_DISPATCH payload whose power unit is unknown is never guessed: optOut."""
    decision, store = decide(make_event(unit=unit))
    assert decision.opt == "optOut"
    assert why in decision.reason
    assert effective_request(store, T0) is None


def test_load_dispatch_negative_delta_opts_out() -> None:
    """A negative delta asks for more load, which this VEN does not offer: optOut."""
    decision, _ = decide(make_event(values=(-1.0,)))
    assert decision.opt == "optOut" and "load increase" in decision.reason


@pytest.mark.parametrize(
    ("signal_name", "signal_type"),
    [("ELECTRICITY_PRICE", "price"), ("SIMPLE", "delta"), ("LOAD_DISPATCH", "level"),
     ("LOAD_DISPATCH", "multiplier"), ("x-loadControlCapacity", "x-loadControlCapacity")],
)
def test_unknown_signal_name_or_type_opts_out(signal_name: str, signal_type: str) -> None:
    """Any signal other than SIMPLE/level and LOAD_DISPATCH/delta|setpoint → optOut with a reason."""
    decision, store = decide(make_event(signal_name=signal_name, signal_type=signal_type))
    assert decision.opt == "optOut"
    assert decision.reason.startswith("unsupported:")
    assert decision.send_response
    assert store.get("e1").signal == signal_name  # remembered so that a resend gets the same answer


def test_event_without_signal_opts_out() -> None:
    """An event that carries no signal at all is opted out."""
    event = make_event()
    event["event_signals"] = []
    decision, _ = decide(event)
    assert decision.opt == "optOut" and "no signal" in decision.reason


def test_supported_signal_is_used_next_to_an_unknown_one() -> None:
    """With several signals, the supported one is applied and unknown companions are ignored."""
    price = objects.EventSignal(
        intervals=[objects.Interval(dtstart=T0, duration=timedelta(minutes=10), signal_payload=0.3, uid=0)],
        signal_name="ELECTRICITY_PRICE", signal_type="price", signal_id="s2")
    decision, store = decide(make_event(extra_signals=(price,)))
    assert decision.opt == "optIn"
    assert effective_request(store, T0).shed_kw == 2.0


def test_load_dispatch_wins_over_simple_in_the_same_event() -> None:
    """LOAD_DISPATCH (a quantity) is preferred to SIMPLE (a level) when an event carries both."""
    simple = objects.EventSignal(
        intervals=[objects.Interval(dtstart=T0, duration=timedelta(minutes=10), signal_payload=3, uid=0)],
        signal_name="SIMPLE", signal_type="level", signal_id="s2")
    _, store = decide(make_event(values=(0.5,), extra_signals=(simple,)))
    request = effective_request(store, T0)
    assert (request.signal, request.shed_kw) == ("LOAD_DISPATCH", 0.5)


# -- intervals -----------------------------------------------------------------------------------


def test_multi_interval_event_steps_through_its_intervals() -> None:
    """Intervals follow each other from dtstart, each lasting its duration; `until` is the next step."""
    _, store = decide(make_event(values=(1.0, 3.0, 2.0), interval_s=300))
    seen = []
    for offset_s in (0, 299, 300, 650, 899):
        request = effective_request(store, T0 + timedelta(seconds=offset_s))
        seen.append((request.interval_index, request.shed_kw, request.until))
    assert seen == [
        (0, 1.0, T0 + timedelta(seconds=300)),
        (0, 1.0, T0 + timedelta(seconds=300)),
        (1, 3.0, T0 + timedelta(seconds=600)),
        (2, 2.0, T0 + timedelta(seconds=900)),
        (2, 2.0, T0 + timedelta(seconds=900)),
    ]
    assert effective_request(store, T0 + timedelta(seconds=900)) is None
    assert effective_request(store, T0 - timedelta(seconds=1)) is None


def test_event_status_follows_the_clock_and_ramp_up() -> None:
    """Status is far, near (inside the ramp-up period), active, then completed."""
    _, store = decide(make_event(start=T0 + timedelta(minutes=10), ramp_up_s=120), now=T0)
    event = store.get("e1")
    assert [event.status(T0 + timedelta(minutes=m)) for m in (0, 8.5, 10, 19.9, 20)] == [
        "far", "near", "active", "active", "completed"]


def test_next_boundary_lists_every_status_and_interval_change() -> None:
    """The agent re-publishes at ramp-up start, start, every interval boundary and the end."""
    _, store = decide(make_event(values=(1.0, 2.0), interval_s=60, start=T0 + timedelta(seconds=100),
                                 ramp_up_s=30))
    moments = []
    now = T0
    while (now := next_boundary(store, now)) is not None:
        moments.append((now - T0).total_seconds())
    assert moments == [70.0, 100.0, 160.0, 220.0]


# -- lifecycle -------------------------------------------------------------------------------------


def test_test_event_is_acknowledged_but_not_applied() -> None:
    """test_event true: answered (optIn, as a response is required) but never shapes the site."""
    decision, store = decide(make_event(test_event=True))
    assert (decision.opt, decision.action, decision.send_response) == ("optIn", "test", True)
    assert store.get("e1").test_event is True
    assert effective_request(store, T0) is None


def test_event_already_finished_at_receipt_is_dropped() -> None:
    """An event whose active period ended before it arrived is neither stored nor answered."""
    decision, store = decide(make_event(start=T0 - timedelta(hours=1)), now=T0)
    assert (decision.action, decision.send_response, decision.changed) == ("dropped", False, False)
    assert len(store) == 0


def test_same_event_and_modification_is_handled_once() -> None:
    """A resent event (same id and modification number) changes nothing; the stored opt is repeated."""
    first, store = decide(make_event(), sheddable_kw=10.0)
    again, store_again = decide(make_event(), store, now=T0 + timedelta(seconds=5), sheddable_kw=0.0)
    assert again.action == "duplicate" and not again.changed
    assert again.opt == first.opt == "optIn"  # not re-decided although capacity dropped
    assert store_again is store


def test_lower_modification_number_is_never_applied() -> None:
    """A modification number lower than the stored one is stale: not applied, stored opt answered."""
    _, store = decide(make_event(modification_number=3, values=(2.0,)))
    decision, after = decide(make_event(modification_number=2, values=(9.0,)), store)
    assert decision.action == "stale" and not decision.changed
    assert after is store
    assert effective_request(after, T0).shed_kw == 2.0


def test_higher_modification_number_replaces_the_event() -> None:
    """A higher modification number replaces the event and is decided afresh."""
    _, store = decide(make_event(values=(2.0,)))
    decision, after = decide(make_event(modification_number=1, values=(3.0,)), store,
                             now=T0 + timedelta(seconds=10), received_at=1234.5)
    assert decision.action == "modified" and decision.changed
    request = effective_request(after, T0 + timedelta(seconds=10))
    assert (request.modification_number, request.shed_kw, request.received_at) == (1, 3.0, 1234.5)


@pytest.mark.parametrize("kind", ["new", "duplicate", "cancelled", "unsupported"])
def test_response_required_never_sends_no_created_event(kind: str) -> None:
    """response_required == "never" → no oadrCreatedEvent, whatever the rule decided."""
    store = EventStore()
    if kind == "duplicate":
        _, store = decide(make_event(response_required="never"))
    event = make_event(
        response_required="never",
        status="cancelled" if kind == "cancelled" else None,
        signal_name="ELECTRICITY_PRICE" if kind == "unsupported" else "LOAD_DISPATCH",
        signal_type="price" if kind == "unsupported" else "delta",
    )
    decision, _ = decide(event, store)
    assert decision.send_response is False


def test_cancelled_event_leaves_the_active_set() -> None:
    """event_status cancelled takes the event out of the active set; it stays visible as cancelled."""
    _, store = decide(make_event())
    assert effective_request(store, T0) is not None
    decision, after = decide(make_event(modification_number=1, status="cancelled"), store,
                             now=T0 + timedelta(seconds=30))
    assert (decision.action, decision.opt, decision.send_response) == ("cancelled", "optIn", True)
    assert effective_request(after, T0 + timedelta(seconds=31)) is None
    assert after.get("e1").to_bus(T0 + timedelta(seconds=31))["status"] == "cancelled"


def test_cancellation_of_an_unknown_event_is_acknowledged_and_inert() -> None:
    """A cancellation for an event the VEN never saw is acknowledged and never applied."""
    decision, store = decide(make_event(status="cancelled"))
    assert decision.opt == "optIn" and decision.action == "cancelled"
    assert effective_request(store, T0) is None


# -- capacity, targets, malformed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sheddable_kw", "opt"), [(1.0, "optOut"), (2.9, "optOut"), (3.0, "optIn"), (10.0, "optIn"), (None, "optIn")],
)
def test_opt_out_when_the_site_cannot_shed_what_is_asked(sheddable_kw: float | None, opt: str) -> None:
    """The largest shed over all intervals must fit in sheddable_kw; unknown capacity is not checked."""
    decision, _ = decide(make_event(values=(1.0, 3.0)), sheddable_kw=sheddable_kw)
    assert decision.opt == opt
    if opt == "optOut":
        assert "insufficient capacity" in decision.reason


@pytest.mark.parametrize(("site_power_kw", "opt"), [(9.0, "optOut"), (6.0, "optIn"), (None, "optIn")])
def test_setpoint_capacity_is_site_power_minus_setpoint(site_power_kw: float | None, opt: str) -> None:
    """For a setpoint the shed needed is site_power_kw − setpoint_kw, checked against sheddable_kw."""
    decision, _ = decide(make_event(signal_type="setpoint", values=(4.0,)), sheddable_kw=2.0,
                         site_power_kw=site_power_kw)
    assert decision.opt == opt


def test_event_targeting_another_ven_opts_out() -> None:
    """An event whose targets name only other VEN ids is not for this VEN: optOut, code 462."""
    decision, store = decide(make_event(ven_id="OTHER"), ven_id="VEN1")
    assert decision.opt == "optOut" and decision.response_code == 462
    assert effective_request(store, T0) is None
    ok, _ = decide(make_event(ven_id="VEN1"), ven_id="VEN1")
    assert ok.opt == "optIn"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda e: e.pop("event_descriptor"), "no event_descriptor"),
        (lambda e: e["event_descriptor"].pop("event_id"), "no event_id"),
        (lambda e: e.pop("active_period"), "no active_period"),
        (lambda e: e["event_signals"][0]["intervals"][0].update(duration=timedelta(0)), "no positive duration"),
        (lambda e: e["event_signals"][0]["intervals"][0].pop("signal_payload"), "no numeric signal_payload"),
        (lambda e: e["event_signals"][0].update(intervals=[]), "no intervals"),
    ],
)
def test_malformed_event_is_opted_out_with_the_reason(damage: Any, reason: str) -> None:
    """A malformed event never raises: it is opted out with a reason naming what is wrong."""
    event = make_event()
    damage(event)
    decision, store = decide(event)
    assert decision.opt == "optOut"
    assert reason in decision.reason
    assert effective_request(store, T0) is None


# -- overlap ---------------------------------------------------------------------------------------


def test_overlap_largest_shed_wins() -> None:
    """Overlapping applied events: the one asking the largest shed at that instant wins."""
    _, store = decide(make_event(event_id="a", values=(1.0, 5.0), interval_s=300))
    _, store = decide(make_event(event_id="b", values=(3.0,), interval_s=600), store)
    assert effective_request(store, T0).event_id == "b"
    assert effective_request(store, T0 + timedelta(seconds=301)).event_id == "a"


def test_overlap_tie_goes_to_highest_priority_then_latest_modification() -> None:
    """Equal sheds: OpenADR priority 1 beats 2 beats 0 (unspecified); then the higher modification."""
    _, store = decide(make_event(event_id="p0", priority=0))
    _, store = decide(make_event(event_id="p2", priority=2), store)
    assert effective_request(store, T0).event_id == "p2"
    _, store = decide(make_event(event_id="p1", priority=1), store)
    assert effective_request(store, T0).event_id == "p1"
    _, store = decide(make_event(event_id="p1b", priority=1, modification_number=4), store)
    assert effective_request(store, T0).event_id == "p1b"


def test_overlap_setpoint_counts_as_the_shed_it_implies() -> None:
    """A setpoint competes with the shed it implies at the current site import."""
    _, store = decide(make_event(event_id="delta", values=(2.0,)))
    _, store = decide(make_event(event_id="cap", signal_type="setpoint", values=(5.0,)), store)
    assert effective_request(store, T0, site_power_kw=8.0).event_id == "cap"  # implies 3 kW
    assert effective_request(store, T0, site_power_kw=6.0).event_id == "delta"  # implies 1 kW
    assert effective_request(store, T0).event_id == "delta"  # import unknown: implies 0 kW


def test_opted_out_event_never_shapes_the_site() -> None:
    """An event the VEN opted out of is stored and published but never the active request."""
    _, store = decide(make_event(values=(5.0,)), sheddable_kw=1.0)
    assert store.get("e1").opt == "optOut"
    assert effective_request(store, T0) is None


# -- store upkeep and the bus shape ----------------------------------------------------------------


def test_prune_forgets_events_after_the_retention() -> None:
    """Completed and cancelled events are forgotten retention_s after they ended / were cancelled."""
    config = PolicyConfig(retention_s=600)
    _, store = decide(make_event(event_id="done", interval_s=60))
    _, store = decide(make_event(event_id="live", interval_s=3600), store)
    assert [e.event_id for e in prune(store, T0 + timedelta(seconds=659), config)] == ["done", "live"]
    assert [e.event_id for e in prune(store, T0 + timedelta(seconds=660), config)] == ["live"]


def test_normalized_event_has_the_bus_contract_keys() -> None:
    """A normalized event carries exactly the fields of the gridedge/dr/events contract."""
    _, store = decide(make_event(values=(1.0, 2.0), interval_s=60), received_at=99.5)
    bus = store.to_bus(T0 + timedelta(seconds=61))
    assert len(bus) == 1
    event = bus[0]
    assert set(event) == {"event_id", "modification_number", "status", "signal", "signal_type", "shed_kw",
                          "setpoint_kw", "level", "start", "end", "intervals", "opt", "opt_reason",
                          "test_event", "received_at", "vtn_id", "priority"}
    assert (event["status"], event["shed_kw"], event["received_at"], event["vtn_id"]) == ("active", 2.0, 99.5, "VTN")
    assert event["start"] == T0.isoformat() and event["end"] == (T0 + timedelta(seconds=120)).isoformat()
    assert [i["shed_kw"] for i in event["intervals"]] == [1.0, 2.0]
    active = effective_request(store, T0 + timedelta(seconds=61)).to_bus()
    assert active["received_at"] == 99.5 and active["until"] == (T0 + timedelta(seconds=120)).isoformat()


@pytest.mark.parametrize(
    ("measurement", "factor"),
    [({"name": "powerReal", "unit": "W", "scale": "none"}, 0.001),
     ({"name": "powerReal", "unit": "W", "scale": "k"}, 1.0),
     ({"name": "powerReal", "unit": "W", "scale": "M"}, 1000.0),
     ({"name": "powerReal", "unit": "MW"}, 1000.0)],
)
def test_power_kw_factor_valid(measurement: dict[str, str], factor: float) -> None:
    """kW per payload unit follows the unit and the SI scale code."""
    assert power_kw_factor(measurement) == pytest.approx(factor)


@pytest.mark.parametrize(
    "measurement",
    [None, {}, {"name": "energyReal", "unit": "Wh"}, {"name": "powerReal", "unit": "VA"},
     {"name": "powerReal", "unit": "W", "scale": "x"}],
)
def test_power_kw_factor_invalid(measurement: dict[str, str] | None) -> None:
    """A missing, non-powerReal or unknown-unit itemBase is refused, never guessed."""
    with pytest.raises(ValueError):
        power_kw_factor(measurement)


@pytest.mark.parametrize(
    "levels",
    [{"0": 0, "1": 1, "2": 2}, {"0": 0, "1": 1, "2": 2, "3": -1}, {"0": 0, "1": 1, "2": 2, "4": 3},
     {"0": 0, "1": 1, "2": 2, "3": float("nan")}, {"zero": 0}],
)
def test_policy_config_rejects_bad_simple_levels(levels: dict[str, float]) -> None:
    """simple_levels_kw needs all of levels 0..3 with finite, non-negative kW."""
    with pytest.raises(ValueError):
        PolicyConfig(simple_levels_kw=levels)


@pytest.mark.parametrize(
    "kwargs",
    [{"shed_kw": None, "setpoint_kw": None}, {"shed_kw": 1.0, "setpoint_kw": 1.0}, {"shed_kw": -1.0},
     {"shed_kw": 1.0, "level": 5}, {"shed_kw": 1.0, "end": T0}],
)
def test_signal_interval_rejects_invalid_values(kwargs: dict[str, Any]) -> None:
    """An interval has exactly one of shed/setpoint, non-negative kW, a level 0..3 and end > start."""
    base = {"start": T0, "end": T0 + timedelta(minutes=1), "shed_kw": 1.0}
    with pytest.raises(ValueError):
        SignalInterval(**{**base, **kwargs})


def test_stored_event_rejects_an_unknown_opt() -> None:
    """A stored event's opt is optIn or optOut, nothing else."""
    with pytest.raises(ValueError):
        StoredEvent(event_id="e", modification_number=0, signal="SIMPLE", signal_type="level", start=T0,
                    end=T0, intervals=(), opt="maybe", opt_reason="", received_at=0.0)
