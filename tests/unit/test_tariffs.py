"""rates.json: validation (valid and invalid side by side), tariff indicator, prices."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from gridedge.domain.tariffs import EXAMPLE_RATES, Tariff, load_rates, parse_rates
from gridedge.domain.usage import Usage, cost_of
from gridedge.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def variant(path: tuple[str, ...], value: object) -> dict:
    """EXAMPLE_RATES with one key replaced (value=... deletes it)."""
    data = copy.deepcopy(EXAMPLE_RATES)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (EXAMPLE_RATES, None),
        (variant(("Electricity", "+", "Night"), 0.0), None),
        (variant(("Gas", "+"), "1.2"), None),  # numeric strings are accepted
        (variant(("Electricity", "+", "Night"), ...), r"Electricity\.\+\.Night: missing"),
        (variant(("Electricity", "-", "Day"), -0.1), r"Electricity\.-\.Day: price must not be negative"),
        (variant(("Water", "+"), "cheap"), r"Water\.\+: .*valid number.*'cheap'"),
        (variant(("Water", "+"), math.nan), r"Water\.\+: price must be a finite number"),
        (variant(("Gas", "cnv"), ["MJ", 11.5]), r"Gas\.cnv\.0"),
        (variant(("Gas", "cnv"), ["kWh", 0]), r"Gas\.cnv: .*positive"),
        (variant(("Gas", "cnv"), ["kWh"]), r"Gas\.cnv"),
        (variant(("Electricty",), {}), r"Electricty: Extra inputs"),
        (variant(("Gas",), ...), r"Gas: missing"),
        (variant(("Electricity", "+", "Peak"), 0.5), r"Electricity\.\+\.Peak"),
    ],
)
def test_rates_are_validated_naming_the_bad_key(data, error):
    """A valid rates.json loads; an invalid one raises ConfigError naming the key and value."""
    if error is None:
        rates = parse_rates(data)
        assert rates.to_json_dict()["Electricity"]["+"]["Day"] == 0.4
    else:
        with pytest.raises(ConfigError, match=error):
            parse_rates(data)


def test_rates_round_trip_the_public_shape():
    """to_json_dict() gives back the rates.json shape."""
    assert parse_rates(EXAMPLE_RATES).to_json_dict() == EXAMPLE_RATES


def test_platform_rates_file_is_valid():
    """platform_config/rates.json loads and matches the example."""
    assert load_rates(REPO / "platform_config" / "rates.json").to_json_dict() == EXAMPLE_RATES


@pytest.mark.parametrize(
    ("content", "error"), [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")]
)
def test_bad_rates_file_is_a_config_error(tmp_path, content, error):
    """Unparsable files and non-objects name the file."""
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=error) as info:
        load_rates(path)
    assert str(path) in str(info.value)


def test_missing_rates_file_is_a_config_error(tmp_path):
    """A missing file is a ConfigError, not an OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_rates(tmp_path / "nope.json")


@pytest.mark.parametrize(("indicator", "tariff"), [(1, Tariff.DAY), ("2", Tariff.NIGHT), (2.0, Tariff.NIGHT)])
def test_belgian_tariff_indicator(indicator, tariff):
    """Belgium: indicator 1 = day, 2 = night."""
    assert Tariff.from_indicator(indicator) is tariff


@pytest.mark.parametrize("indicator", [0, 3, 1.5, "x", None])
def test_unknown_tariff_indicator_is_refused(indicator):
    """Only 1 and 2 exist."""
    with pytest.raises(ValueError, match="tariff indicator"):
        Tariff.from_indicator(indicator)


def test_prices_by_tariff_and_gas_conversion():
    """Import/export by tariff; gas cost = m³ x 1.576 EUR/m³; water per m³."""
    rates = parse_rates(EXAMPLE_RATES)
    assert rates.import_eur_per_kwh(Tariff.DAY) == 0.4
    assert rates.import_eur_per_kwh(Tariff.NIGHT) == 0.3
    assert rates.export_eur_per_kwh(Tariff.NIGHT) == 0.1
    cost = cost_of(Usage(import_kwh_t1=10, import_kwh_t2=5, export_kwh_t1=4, gas_m3=2, water_m3=0.5), rates)
    assert cost.import_eur == pytest.approx(10 * 0.4 + 5 * 0.3)
    assert cost.export_eur == pytest.approx(0.4)
    assert cost.gas_eur == pytest.approx(2 * 1.576)
    assert cost.water_eur == pytest.approx(0.5 * 6.1)
    assert cost.total_eur == pytest.approx(5.5 - 0.4 + 2 * 1.576 + 3.05)
    json.dumps(cost.to_dict())
