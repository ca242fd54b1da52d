"""Configuration and request validation of the VEN client, the demo VTN and ``gridedge vtn``."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from gridedge.cli import vtn as vtn_cli
from gridedge.errors import ConfigError
from gridedge.openadr.control_client import default_control_url
from gridedge.openadr.ven_client import DEFAULT_VTN_URL, VenClientConfig
from gridedge.openadr.vtn import EventRequest


def test_vtn_url_is_overridden_by_the_environment() -> None:
    """GRIDEDGE_VTN_URL wins over the configured vtn_url; without it the config (or default) holds."""
    url = "http://10.0.0.5:8080/OpenADR2/Simple/2.0b"
    assert VenClientConfig.from_mapping({"vtn_url": url}, environ={}).vtn_url == url
    assert VenClientConfig.from_mapping({}, environ={}).vtn_url == DEFAULT_VTN_URL
    env = {"GRIDEDGE_VTN_URL": "http://127.0.0.1:9000/OpenADR2/Simple/2.0b/"}
    assert VenClientConfig.from_mapping({"vtn_url": url}, environ=env).vtn_url == env["GRIDEDGE_VTN_URL"].rstrip("/")


@pytest.mark.parametrize(
    "data",
    [{"vtn_url": "127.0.0.1:8080"}, {"poll_interval_s": 0}, {"report_sampling_s": 11}, {"report_sampling_s": 0},
     {"report_unit": "MW"}, {"simple_levels_kw": {"0": 0, "1": 1}}, {"ven_name": ""}, {"unknown": 1}],
)
def test_ven_client_config_rejects_invalid_settings(data: dict[str, Any]) -> None:
    """Invalid VEN settings raise ConfigError naming the problem (the agent then keeps its last good one)."""
    with pytest.raises(ConfigError):
        VenClientConfig.from_mapping(data, environ={})


def test_ven_client_config_policy_carries_the_levels() -> None:
    """simple_levels_kw from the config reach the policy as levels 0..3."""
    config = VenClientConfig.from_mapping({"simple_levels_kw": {"0": 0, "1": 0.5, "2": 1, "3": 9}}, environ={})
    assert config.policy().simple_levels_kw == {0: 0.0, 1: 0.5, 2: 1.0, 3: 9.0}


@pytest.mark.parametrize(
    ("body", "key", "intervals"),
    [
        ({"shed_kw": 2, "duration_s": 300}, "shed_kw", [(300.0, 2.0)]),
        ({"shed_kw": [1, 2, 3], "duration_s": 300}, "shed_kw", [(100.0, 1.0), (100.0, 2.0), (100.0, 3.0)]),
        ({"level": 3}, "level", [(300.0, 3.0)]),
        ({"setpoint_kw": 4.5, "duration_s": 60}, "setpoint_kw", [(60.0, 4.5)]),
        ({"signal": "shed_kw", "intervals": [{"duration_s": 10, "value": 1}, {"duration_s": 20, "value": 2}]},
         "shed_kw", [(10.0, 1.0), (20.0, 2.0)]),
    ],
)
def test_event_request_valid(body: dict[str, Any], key: str, intervals: list[tuple[float, float]]) -> None:
    """A control-surface request names one signal; a value list splits the duration evenly."""
    request = EventRequest.model_validate(body)
    assert request.signal_key() == key
    assert request.interval_list() == intervals


@pytest.mark.parametrize(
    "body",
    [{}, {"shed_kw": 1, "level": 1}, {"level": 4}, {"level": 1.5}, {"shed_kw": -1}, {"duration_s": 0, "shed_kw": 1},
     {"intervals": [{"duration_s": 1, "value": 1}]}, {"signal": "level", "intervals": []},
     {"shed_kw": 1, "response_required": "sometimes"}, {"shed_kw": 1, "wire_unit": "GW"}],
)
def test_event_request_invalid(body: dict[str, Any]) -> None:
    """Ambiguous, out-of-range or unknown requests are refused (the control surface answers 400)."""
    with pytest.raises(ValueError):
        EventRequest.model_validate(body)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gridedge")
    vtn_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["vtn", "event", "--shed-kw", "2", "--duration", "300"],
         {"shed_kw": 2.0, "duration_s": 300.0, "start_in_s": 0.0}),
        (["vtn", "event", "--level", "1,2", "--start-in", "30"], {"level": [1, 2], "start_in_s": 30.0}),
        (["vtn", "event", "--setpoint-kw", "4.5", "--ven-id", "VEN-1"], {"setpoint_kw": 4.5, "ven_ids": ["VEN-1"]}),
    ],
)
def test_cli_event_arguments_become_the_request_body(argv: list[str], expected: dict[str, Any]) -> None:
    """``gridedge vtn event`` turns its flags into a control-surface body the VTN accepts."""
    body = vtn_cli._event_body(_parse(argv))
    assert expected.items() <= body.items()
    EventRequest.model_validate(body)


@pytest.mark.parametrize(
    "argv", [["vtn", "event"], ["vtn", "event", "--shed-kw", "2", "--level", "1"], ["vtn", "event", "--shed-kw", "x"],
             ["vtn", "cancel"]],
)
def test_cli_refuses_ambiguous_or_missing_arguments(argv: list[str]) -> None:
    """Exactly one of --shed-kw/--level/--setpoint-kw; cancel needs an EVENT_ID."""
    with pytest.raises(SystemExit):
        _parse(argv)


def test_cli_serve_defaults() -> None:
    """``gridedge vtn serve`` listens on 127.0.0.1:8080 with its control surface on 8081."""
    args = _parse(["vtn", "serve"])
    assert (args.host, args.port, args.control_port) == ("127.0.0.1", 8080, 8081)


def test_control_url_default_and_environment() -> None:
    """The control URL is $GRIDEDGE_VTN_CONTROL_URL, else http://127.0.0.1:8081."""
    assert default_control_url({}) == "http://127.0.0.1:8081"
    assert default_control_url({"GRIDEDGE_VTN_CONTROL_URL": "http://h:1"}) == "http://h:1"


@pytest.mark.parametrize(
    ("env", "ports", "expected"),
    [
        ({"GRIDEDGE_VTN_CONTROL_URL": "http://vtn.local:9"}, {"vtn_control_url": "http://127.0.0.1:7"},
         "http://vtn.local:9"),
        ({}, {"vtn_control_url": "http://127.0.0.1:18081"}, "http://127.0.0.1:18081"),
        ({}, None, "http://127.0.0.1:8081"),
        ({}, {"vtn_control_url": None}, "http://127.0.0.1:8081"),
    ],
)
def test_control_url_follows_the_running_site(tmp_path, env, ports, expected) -> None:
    """The CLI finds the demo VTN's control surface: explicit env first, then the running site's
    ports.json (its ports may be moved by GRIDEDGE_PORT_BASE), then the default port."""
    import json

    from gridedge.openadr.control_client import default_control_url

    if ports is not None:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "ports.json").write_text(json.dumps(ports))
    assert default_control_url({**env, "GRIDEDGE_SITE_DIR": str(tmp_path)}) == expected
