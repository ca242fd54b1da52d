"""The EMS's curtailment state without the bus: request identity, setpoints, restore, retries,
and the agent's config validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from gridedge_ems.config import EmsConfig
from gridedge_ems.controller import ActiveRequest, CurtailmentController

from gridedge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "platform_config" / "agents" / "ems.json").read_text())
T0 = datetime(2024, 6, 10, 12, 0, tzinfo=timezone.utc)
IDS = ("heater", "lights", "house", "hvac", "fridge")


def controller() -> CurtailmentController:
    """A controller whose five circuits were all found on the relay board, at level 1."""
    ctl = CurtailmentController(config=EmsConfig.from_mapping(CONFIG))
    for cid in IDS:
        ctl.set_point_status(cid, level=1.0)
    return ctl


def apply_all(ctl: CurtailmentController) -> dict[str, float]:
    """Pretend every pending command went through; return what was commanded."""
    sent = dict(ctl.commands())
    for cid, level in sent.items():
        ctl.applied(cid, level)
    return sent


def message(**active: object) -> dict:
    base = {"event_id": "ev", "modification_number": 0, "interval_index": 0, "shed_kw": None,
            "setpoint_kw": None, "level": None, "until": None, "received_at": 0}
    return {"events": [], "active": {**base, **active}, "ts": T0.isoformat()}


def test_config_file_is_valid() -> None:
    """The shipped ems.json validates and describes the demo site's five circuits."""
    config = EmsConfig.from_mapping(CONFIG)
    assert [c.id for c in config.circuits] == list(IDS)
    assert config.relay_device == "site/main/relays"


@pytest.mark.parametrize(
    ("change", "message_part"),
    [
        ({"circuits": CONFIG["circuits"] + [CONFIG["circuits"][1]]}, "duplicate circuit id 'lights'"),
        ({"circuits": [{**CONFIG["circuits"][0], "id": "heater/1"}]}, "must be a point name"),
        ({"circuits": [{**CONFIG["circuits"][0], "sheddable_fraction": 2}]}, "sheddable_fraction"),
        ({"circuits": [{**CONFIG["circuits"][0], "modulation": "dimmer"}]}, "modulation"),
        ({"circuits": []}, "circuits"),
        ({"relay_devcie": "x"}, "relay_devcie"),
    ],
)
def test_invalid_config_rejected(change: dict, message_part: str) -> None:
    """Bad configs are refused with a ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=message_part):
        EmsConfig.from_mapping({**CONFIG, **change})


def test_unknown_circuit_lookup_names_it() -> None:
    """Asking the config for a circuit it does not have names the circuit and the known ones."""
    with pytest.raises(ConfigError, match="unknown circuit 'boiler'"):
        EmsConfig.from_mapping(CONFIG).circuit("boiler")


def test_same_request_key_is_not_replanned() -> None:
    """A repeated request is no change; a modification or a new interval is."""
    ctl = controller()
    assert ctl.on_dr_message(message(shed_kw=1.5))
    apply_all(ctl)
    assert not ctl.on_dr_message(message(shed_kw=1.5))
    assert ctl.commands() == []
    assert ctl.on_dr_message(message(shed_kw=2.0, interval_index=1))
    assert dict(ctl.commands()) == pytest.approx({"lights": 0.3, "house": 0.78})


def test_only_changed_circuits_are_commanded() -> None:
    """Critical circuits and circuits the plan leaves at 1 are never written."""
    ctl = controller()
    ctl.on_dr_message(message(shed_kw=1.5))
    assert ctl.commands() == [("heater", 0.0)]


def test_setpoint_follows_baseline_not_curtailed_power() -> None:
    """Setpoint mode caps the baseline (measured + shed now), so the shed does not ratchet."""
    ctl = controller()
    ctl.on_site_power(10_000.0)
    ctl.on_dr_message(message(setpoint_kw=8.5))
    assert apply_all(ctl) == {"heater": 0.0}
    ctl.on_site_power(8_500.0)  # the meter now sees the shed
    assert not ctl.tick(T0)
    ctl.on_site_power(9_000.0)  # a load outside the EMS's circuits came on: shed 0.5 kW more
    assert ctl.tick(T0)
    assert dict(ctl.commands()) == pytest.approx({"lights": 0.3, "house": 0.78})


def test_setpoint_above_site_power_sheds_nothing() -> None:
    """A limit the site is already under needs no shed."""
    ctl = controller()
    ctl.on_site_power(7_000.0)
    ctl.on_dr_message(message(setpoint_kw=8.0))
    assert ctl.commands() == []
    assert ctl.status(T0)["requested_kw"] == 0.0


def test_request_without_kw_sheds_nothing() -> None:
    """A bare level the VEN could not map to kW is active but sheds nothing."""
    ctl = controller()
    assert ctl.on_dr_message(message(level=2))
    assert ctl.commands() == []
    assert ctl.status(T0)["active"] is True


def test_cancel_restores_only_what_was_changed() -> None:
    """active null restores the circuits the EMS switched, and only those."""
    ctl = controller()
    ctl.on_dr_message(message(shed_kw=1.6))
    apply_all(ctl)
    assert ctl.on_dr_message({"events": [], "active": None, "ts": ""})
    assert dict(ctl.commands()) == {"heater": 1.0, "lights": 1.0}


def test_failed_command_stays_pending() -> None:
    """A failed set_point is returned again by the next commands()."""
    ctl = controller()
    ctl.on_dr_message(message(shed_kw=1.5))
    ctl.failed("heater", "TimeoutError")
    assert ctl.commands() == [("heater", 0.0)]
    assert ctl.errors() == {"heater": "TimeoutError"}
    ctl.applied("heater", 0.0)
    assert ctl.commands() == [] and ctl.errors() == {}


def test_until_ends_the_request_even_if_repeated() -> None:
    """Past 'until' the request is over: restored, and a late repeat of it is ignored."""
    ctl = controller()
    until = (T0 + timedelta(minutes=5)).isoformat()
    ctl.on_dr_message(message(shed_kw=1.5, until=until))
    apply_all(ctl)
    assert ctl.tick(T0 + timedelta(minutes=5))
    assert apply_all(ctl) == {"heater": 1.0}
    assert not ctl.on_dr_message(message(shed_kw=1.5, until=until))


def test_missing_point_is_planned_as_unswitchable() -> None:
    """A circuit the relay board lacks is neither planned nor commanded; it becomes usable when
    its point shows up, and the request is re-planned."""
    ctl = CurtailmentController(config=EmsConfig.from_mapping(CONFIG))
    for cid in IDS:
        ctl.set_point_status(cid, level=1.0, error="DriverInterfaceError" if cid == "heater" else None)
    assert ctl.unverified() == ["heater"]
    ctl.on_dr_message(message(shed_kw=0.2))
    assert dict(ctl.commands()) == pytest.approx({"lights": 0.5})
    ctl.on_dr_message(message(shed_kw=1.5, modification_number=1))
    assert "heater" not in dict(ctl.commands())
    assert ctl.set_point_status("heater", level=1.0)
    assert dict(ctl.commands())["heater"] == 0.0


def test_reconfigure_forgets_removed_circuits() -> None:
    """A circuit dropped from the config is no longer commanded or reported."""
    ctl = controller()
    ctl.on_dr_message(message(shed_kw=2.0))
    ctl.reconfigure(EmsConfig.from_mapping({**CONFIG, "circuits": CONFIG["circuits"][1:]}))
    assert "heater" not in dict(ctl.commands())
    assert [c["id"] for c in ctl.status(T0)["circuits"]] == list(IDS[1:])


@pytest.mark.parametrize(
    "active",
    [{"shed_kw": "2"}, {"shed_kw": -1.0}, {"shed_kw": float("nan")}, {"until": "tomorrow"},
     {"modification_number": "x"}, "not an object"],
)
def test_malformed_active_rejected(active: object) -> None:
    """Malformed requests raise ValueError and leave the state unchanged."""
    ctl = controller()
    payload = message(**active) if isinstance(active, dict) else {"events": [], "active": active}
    with pytest.raises(ValueError):
        ctl.on_dr_message(payload)
    assert ctl.request is None


def test_active_request_parses_iso_and_epoch_until() -> None:
    """'until' is ISO 8601 (Z or offset) or epoch seconds."""
    a = ActiveRequest.from_bus({"event_id": "e", "until": "2024-06-10T12:05:00Z"})
    b = ActiveRequest.from_bus({"event_id": "e", "until": (T0 + timedelta(minutes=5)).timestamp()})
    assert a.until == b.until == T0 + timedelta(minutes=5)
