"""Every captured telegram in shared/data/p1 decodes to the values printed in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridedge.errors import CrcError
from gridedge.protocols.dsmr import (
    decode,
    decode_telegram_bytes,
    extract_telegram,
    normalize,
    select_specification,
    to_json,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"

# Values read off the telegram files by eye; times in Belgian civil time.
EXPECTED: dict[str, dict[str, object]] = {
    "fluvius_v171.txt": {
        "specification": "fluvius",
        "meter_time": "2020-05-12T13:54:09+02:00",
        "equipment_id": "3153414733313031303231363035",
        "energy_import_t1_kwh": 0.034,
        "energy_import_t2_kwh": 15.758,
        "energy_export_t1_kwh": 0.0,
        "energy_export_t2_kwh": 0.011,
        "tariff": 1,
        "tariff_period": "day",
        "power_import_w": 0.0,
        "power_export_w": 0.0,
        "voltage_l1_v": 234.7,
        "voltage_l3_v": 234.7,
        "current_l2_a": 0.0,
        "avg_demand_kw": 2.351,
        "month_peak_kw": 2.589,
        "month_peak_time": "2020-05-09T13:45:58+02:00",
        "peak_history": [
            ["2020-05-01T00:00:00+02:00", "2020-04-23T19:25:38+02:00", 3.695],
            ["2020-04-01T00:00:00+02:00", "2020-03-05T12:21:39+01:00", 5.98],
            ["2020-03-01T00:00:00+01:00", "2020-02-10T03:54:21+01:00", 4.318],
        ],
        "gas_m3": 112.384,
        "gas_time": "2020-05-12T13:45:58+02:00",
        "water_m3": 872.234,
        "water_time": "2020-05-12T13:45:58+02:00",
    },
    "dsmr_v5.txt": {
        "specification": "v5",
        "meter_time": "2017-01-02T19:20:02+01:00",
        "energy_import_t1_kwh": 4.426,
        "energy_import_t2_kwh": 2.399,
        "energy_export_t1_kwh": 2.444,
        "energy_export_t2_kwh": 0.0,
        "tariff": 2,
        "power_import_w": 244.0,
        "power_export_w": 0.0,
        "power_import_l1_w": 70.0,
        "power_import_l2_w": 32.0,
        "power_import_l3_w": 142.0,
        "voltage_l3_v": 229.0,
        "current_l1_a": 0.48,
        "current_l3_a": 0.86,
        "avg_demand_kw": None,
        "peak_history": [],
        "gas_m3": 0.107,
        "gas_time": "2017-01-02T16:10:05+01:00",
        "water_m3": None,
    },
    "dsmr_v5_two_mbus.txt": {
        "specification": "v5",
        "meter_time": "2020-04-26T22:33:25+02:00",
        "energy_import_t1_kwh": 2130.115,
        "energy_import_t2_kwh": 245.467,
        "energy_import_total_kwh": 2375.582,
        "tariff": 1,
        "power_import_w": 111.0,
        "power_import_l1_w": 56.0,
        "power_import_l3_w": 55.0,
        "voltage_l1_v": 229.9,
        "voltage_l2_v": 229.2,
        "voltage_l3_v": 222.9,
        "current_l3_a": 1.0,
        # channel 1 is an empty gas slot (1970 timestamp, no unit); the real gas meter is channel 2
        "gas_m3": 246.138,
        "gas_time": "2020-04-26T22:30:01+02:00",
    },
    "dsmr_v4_2.txt": {
        "specification": "v4",
        "meter_time": "2016-11-13T20:57:57+01:00",
        "energy_import_t1_kwh": 1581.123,
        "energy_import_t2_kwh": 1435.706,
        "energy_export_t1_kwh": 0.0,
        "tariff": 2,
        "power_import_w": 2027.0,
        "power_import_l1_w": 170.0,
        "power_import_l2_w": 1247.0,
        "power_import_l3_w": 209.0,
        "voltage_l1_v": None,
        "current_l2_a": 6.0,
        "current_l3_a": 2.0,
        "gas_m3": 981.443,
        "gas_time": "2016-11-29T20:00:00+01:00",
    },
    "dsmr_unpadded_crc.txt": {
        "specification": "v5",
        "meter_time": "2026-02-15T20:05:23+01:00",
        "equipment_id": "ADC3100000158491",
        "energy_import_t1_kwh": None,
        "tariff": None,
        # the only M-Bus device is a heat meter (type 004, GJ): neither gas nor water
        "gas_m3": None,
        "water_m3": None,
    },
    "sagemcom_t210_d_r.txt": {
        "specification": "sagemcom_t210_d_r",
        "meter_time": "2022-10-06T15:50:14+02:00",
        # this meter counts in Wh and W
        "energy_import_total_kwh": 6545.766,
        "energy_import_t1_kwh": 5017.12,
        "energy_import_t2_kwh": 1528.646,
        "energy_export_total_kwh": 0.058,
        "energy_export_t2_kwh": 0.058,
        "power_import_w": 286.0,
        "power_export_w": 0.0,
    },
    "iskra_ie.txt": {
        "specification": "iskra_ie",
        "meter_time": "2023-02-02T13:27:47+01:00",
        "energy_import_t1_kwh": 10.181,
        "energy_import_t2_kwh": 10.182,
        "energy_export_t1_kwh": 10.281,
        "energy_export_t2_kwh": 10.282,
        "tariff": 1,
        "power_import_w": 170.0,
        "power_export_w": 270.0,
        "power_net_w": -100.0,
        "power_export_l3_w": 627.0,
        "voltage_l2_v": 241.7,
    },
}


def test_every_data_file_has_expectations() -> None:
    """Each telegram file in shared/data/p1 is covered by this test module."""
    assert sorted(p.name for p in DATA.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_telegram_values(name: str) -> None:
    """A captured telegram gives exactly the values printed in it, in our units."""
    decoded = decode_telegram_bytes((DATA / name).read_bytes())
    points = normalize(decoded).as_points()
    for key, expected in EXPECTED[name].items():
        assert points[key] == (pytest.approx(expected) if isinstance(expected, float) else expected), key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_telegram_specification_detected(name: str) -> None:
    """The specification is chosen from the telegram's own content."""
    text = extract_telegram((DATA / name).read_bytes())
    assert select_specification(text) == EXPECTED[name]["specification"]


def test_unpadded_crc_is_valid() -> None:
    """A CRC written with three hex digits (!B9F) is the number 0x0B9F and is accepted."""
    text = extract_telegram((DATA / "dsmr_unpadded_crc.txt").read_bytes())
    assert text.endswith("!B9F\r\n")
    mbus = normalize(decode(text)).mbus
    assert [(m.channel, m.device_type, m.value, m.unit) for m in mbus] == [(1, 4, 240.86, "GJ")]


def test_unpadded_crc_wrong_digits_rejected() -> None:
    """Three digits that do not match the content are a CRC error, not a pass."""
    text = extract_telegram((DATA / "dsmr_unpadded_crc.txt").read_bytes()).replace("!B9F", "!B9E")
    with pytest.raises(CrcError, match="B9E"):
        decode(text)


def test_gas_and_water_found_by_device_type_not_channel() -> None:
    """M-Bus channels are identified by their 0-n:24.1.0 device type (3 gas, 7 water)."""
    text = extract_telegram((DATA / "fluvius_v171.txt").read_bytes())
    # swap the channel numbers: gas on channel 2, water on channel 1 (CRC recomputed)
    body = (
        text[: text.rindex("!") + 1].replace("0-1:", "0-X:").replace("0-2:", "0-1:").replace("0-X:", "0-2:")
    )
    from gridedge.protocols.dsmr import crc16

    reading = normalize(decode(body + f"{crc16(body):04X}\r\n"))
    assert (reading.gas_m3, reading.water_m3) == (112.384, 872.234)
    assert {m.channel: m.device_type for m in reading.mbus} == {1: 7, 2: 3}


def test_fluvius_json_keys_and_timestamps() -> None:
    """to_json keys objects by dsmr-parser's names with value, unit and ISO 8601 timestamps."""
    decoded = decode_telegram_bytes((DATA / "fluvius_v171.txt").read_bytes())
    data = to_json(decoded.telegram)
    assert data["ELECTRICITY_USED_TARIFF_1"] == {"value": 0.034, "unit": "kWh"}
    assert data["BELGIUM_CURRENT_AVERAGE_DEMAND"] == {"value": 2.351, "unit": "kW"}
    assert data["BELGIUM_MAXIMUM_DEMAND_MONTH"] == {
        "value": 2.589,
        "unit": "kW",
        "timestamp": "2020-05-09T13:45:58+02:00",
    }
    assert data["BELGIUM_MAXIMUM_DEMAND_13_MONTHS"][1] == {
        "month_end": "2020-04-01T00:00:00+02:00",
        "timestamp": "2020-03-05T12:21:39+01:00",
        "value": 5.98,
        "unit": "kW",
    }
    assert len(data["BELGIUM_MAXIMUM_DEMAND_13_MONTHS"]) == 3
    water = next(d for d in data["MBUS_DEVICES"] if d["CHANNEL_ID"] == 2)
    assert water["MBUS_DEVICE_TYPE"]["value"] == 7
    assert water["MBUS_METER_READING"] == {
        "value": 872.234,
        "unit": "m3",
        "timestamp": "2020-05-12T13:45:58+02:00",
    }


def test_power_failure_log_json() -> None:
    """The DSMR 4 power-failure log becomes a list of entries with their timestamps."""
    decoded = decode_telegram_bytes((DATA / "dsmr_v4_2.txt").read_bytes())
    log = to_json(decoded.telegram)["POWER_EVENT_FAILURE_LOG"]
    assert log[0] == {"timestamp": "2000-01-04T18:03:20+01:00", "value": 237126, "unit": "s"}
    assert len(log) == 3


def test_repeated_decoding_does_not_grow_parser_state() -> None:
    """Decoding a power-failure log many times leaves the parser as it was (no leak, same result)."""
    from dsmr_parser.parsers import ProfileGenericParser

    from gridedge.protocols.dsmr import TelegramDecoder

    decoder = TelegramDecoder()
    text = extract_telegram((DATA / "dsmr_v4_2.txt").read_bytes())
    first = to_json(decoder.decode(text).telegram)
    for _ in range(50):
        last = to_json(decoder.decode(text).telegram)
    assert last == first
    parser = decoder._parsers["v4"]
    sizes = [
        len(o["value_parser"].value_formats)
        for o in parser.telegram_specification["objects"]
        if isinstance(o["value_parser"], ProfileGenericParser)
    ]
    assert sizes == [2]
