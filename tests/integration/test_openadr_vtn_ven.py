"""A real demo VTN and the real VEN client thread over loopback (random free ports, 1 s poll).

The VEN starts before the VTN listens, so it must retry its registration. The tests then run in
order on the same pair: event → opt in recorded at the VTN, reports with the callable's value,
modification, cancellation, a capacity opt-out, a malformed event (logged, client keeps serving),
a W-scaled event, and a clean stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gridedge.openadr.control_client import VtnControlClient
from gridedge.openadr.models import EventStore
from gridedge.openadr.ven_client import VenClient, VenClientConfig
from gridedge.openadr.vtn import DemoVtn, VtnConfig, VtnThread
from gridedge.platform.processes import free_port

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], Any], timeout_s: float = 6.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Site:
    """Thread-safe stand-ins for what the agent hands the client."""

    power_w: float | None = 4321.0
    sheddable_kw: float | None = 10.0
    changes: list[tuple[str, EventStore]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_change(self, store: EventStore, reason: str) -> None:
        with self.lock:
            self.changes.append((reason, store))


@dataclass
class Pair:
    vtn_thread: VtnThread
    vtn: DemoVtn
    ven: VenClient
    site: Site
    control: VtnControlClient

    def ven_event(self, event_id: str) -> Any:
        return self.ven.events().get(event_id)

    def vtn_event(self, event_id: str) -> dict[str, Any] | None:
        return next((e for e in self.control.state()["events"] if e["event_id"] == event_id), None)

    def responses(self, event_id: str) -> list[dict[str, Any]]:
        event = self.vtn_event(event_id) or {}
        return event.get("responses", {}).get(self.ven.status()["ven_id"], [])


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    port, control_port = free_port(), free_port()
    site = Site()
    ven = VenClient(
        config=VenClientConfig(vtn_url=f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", ven_name="it-ven",
                               vtn_id="IT-VTN", poll_interval_s=1.0, report_sampling_s=1, register_retry_s=0.3),
        site_power_w=lambda: site.power_w,
        sheddable_kw=lambda: site.sheddable_kw,
        on_change=site.on_change,
    )
    ven.start()
    time.sleep(0.5)  # the first registration attempt fails: nothing listens yet
    assert not ven.status()["registered"]
    vtn_thread = VtnThread(config=VtnConfig(vtn_id="IT-VTN", port=port, control_port=control_port,
                                            poll_interval_s=1.0, report_sampling_s=1))
    vtn = vtn_thread.start()
    try:
        yield Pair(vtn_thread, vtn, ven, site, VtnControlClient(base_url=vtn.control_url))
    finally:
        ven.stop()
        vtn_thread.stop()


def test_ven_retries_and_registers(pair: Pair) -> None:
    """The VEN retries until the VTN listens, then registers; the VTN lists it."""
    wait_for(lambda: pair.ven.status()["registered"], what="registration")
    vens = pair.control.state()["vens"]
    assert [(v["ven_name"], v["registered"]) for v in vens] == [("it-ven", True)]
    assert vens[0]["ven_id"] == pair.ven.status()["ven_id"]


def test_event_reaches_the_ven_which_opts_in(pair: Pair) -> None:
    """An event created on the control surface reaches the VEN in about a poll and is opted in."""
    created = pair.control.create_event(shed_kw=2.0, duration_s=120)
    event_id = created["event_id"]
    stored = wait_for(lambda: pair.ven_event(event_id), what="the event at the VEN")
    assert (stored.opt, stored.signal, stored.signal_type, stored.intervals[0].shed_kw) == (
        "optIn", "LOAD_DISPATCH", "delta", 2.0)
    assert stored.vtn_id == "IT-VTN"
    answers = wait_for(lambda: pair.responses(event_id), what="the opt at the VTN")
    assert answers[-1]["opt"] == "optIn" and answers[-1]["modification_number"] == 0
    assert any(reason.startswith("new:") for reason, _ in pair.site.changes)


def test_reports_carry_the_callables_power(pair: Pair) -> None:
    """TELEMETRY_USAGE reports arrive at the VTN with the value of the site_power_w callable."""
    pair.site.power_w = 5150.0

    def reported() -> list[dict[str, Any]]:
        ven_id = pair.ven.status()["ven_id"]
        return [r for r in pair.control.state()["reports"].get(ven_id, []) if r["value"] == 5150.0]

    report = wait_for(reported, what="a report with 5150 W")[-1]
    assert report["unit"] == "W" and report["resource_id"] == "site"
    assert datetime.fromisoformat(report["ts"]) > datetime.now(timezone.utc) - timedelta(seconds=10)


def test_modification_replaces_the_event_at_the_ven(pair: Pair) -> None:
    """A modification (higher number) replaces the event; the VTN records the opt for it."""
    event_id = pair.control.create_event(shed_kw=1.0, duration_s=120)["event_id"]
    wait_for(lambda: pair.ven_event(event_id), what="the event")
    modified = pair.control.modify_event(event_id, shed_kw=[1.5, 2.5], duration_s=120)
    assert modified["modification_number"] == 1
    stored = wait_for(lambda: (e := pair.ven_event(event_id)) and e.modification_number == 1 and e,
                      what="the modification at the VEN")
    assert [i.shed_kw for i in stored.intervals] == [1.5, 2.5]
    wait_for(lambda: any(a["modification_number"] == 1 and a["opt"] == "optIn" for a in pair.responses(event_id)),
             what="the opt for modification 1")


def test_cancel_takes_the_event_out_of_the_active_set(pair: Pair) -> None:
    """A cancellation reaches the VEN, which marks the event cancelled and acknowledges it."""
    event_id = pair.control.create_event(level=2, duration_s=120)["event_id"]
    wait_for(lambda: pair.ven_event(event_id), what="the event")
    pair.control.cancel_event(event_id)
    wait_for(lambda: (e := pair.ven_event(event_id)) and e.cancelled, what="the cancellation at the VEN")
    assert pair.ven.events().get(event_id).status(datetime.now(timezone.utc)) == "cancelled"
    wait_for(lambda: any(a["modification_number"] == 1 for a in pair.responses(event_id)),
             what="the cancellation acknowledged at the VTN")
    assert pair.vtn_event(event_id)["status"] == "cancelled"


def test_capacity_opt_out_reaches_the_vtn_with_its_reason(pair: Pair) -> None:
    """When the EMS cannot shed what is asked, the VTN receives optOut with the reason."""
    pair.site.sheddable_kw = 0.5
    try:
        event_id = pair.control.create_event(shed_kw=3.0, duration_s=120)["event_id"]
        answers = wait_for(lambda: pair.responses(event_id), what="the opt at the VTN")
    finally:
        pair.site.sheddable_kw = 10.0
    assert answers[-1]["opt"] == "optOut"
    assert "insufficient capacity" in answers[-1]["description"]


def test_malformed_event_is_logged_and_the_client_keeps_serving(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed event (zero-length interval) is logged as an error and opted out; the next one works."""
    from openleadr import enums, objects

    caplog.set_level(logging.INFO, logger="gridedge.openadr.ven_client")
    ven_id = pair.ven.status()["ven_id"]
    now = datetime.now(timezone.utc)
    bad = objects.Event(
        event_descriptor=objects.EventDescriptor(event_id="bad-1", modification_number=0,
                                                 market_context="oadr://t", event_status="far"),
        event_signals=[objects.EventSignal(
            intervals=[objects.Interval(dtstart=now, duration=timedelta(0), signal_payload=1.0, uid=0)],
            signal_name="LOAD_DISPATCH", signal_type="delta", signal_id="s",
            measurement=enums.MEASUREMENTS.POWER_REAL)],
        active_period=objects.ActivePeriod(dtstart=now, duration=timedelta(0)),
        targets=[objects.Target(ven_id=ven_id)])
    pair.vtn_thread.call(pair.vtn.add_raw_event, ven_id, bad)
    wait_for(lambda: any(r.levelno == logging.ERROR and "bad-1" in r.getMessage() for r in caplog.records),
             what="the error log")
    error = next(r for r in caplog.records if "bad-1" in r.getMessage() and r.levelno == logging.ERROR)
    assert "malformed" in error.getMessage() and "positive duration" in error.getMessage()

    event_id = pair.control.create_event(shed_kw=1.0, duration_s=60)["event_id"]
    assert wait_for(lambda: pair.ven_event(event_id), what="the next event").opt == "optIn"


def test_watt_scaled_event_is_converted_to_kw(pair: Pair) -> None:
    """A LOAD_DISPATCH sent in W (siScaleCode none) arrives at the VEN as kW."""
    event_id = pair.control.create_event(shed_kw=2.0, duration_s=60, wire_unit="W")["event_id"]
    stored = wait_for(lambda: pair.ven_event(event_id), what="the event")
    assert stored.intervals[0].shed_kw == pytest.approx(2.0)


def test_stop_ends_the_thread_and_the_loop(pair: Pair) -> None:
    """stop() ends the client thread and closes its loop."""
    pair.ven.stop()
    assert not pair.ven.running
    assert pair.ven._loop is not None and pair.ven._loop.is_closed()
    assert pair.ven.status()["registered"] is False
