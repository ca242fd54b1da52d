"""Carlo Gavazzi EM24-DIN (AV2/AV5/AV6/AV9, PFA/PFB/X models): the meter's Modbus register map.

Source: Carlo Gavazzi "EM24-DIN PFA, PFB & X models - Communication Protocol", table 2.3-1
"Instantaneous variables and meters" (0000h..0044h), with the rest of the energy table
(per-phase kWh from 0046h, tariff kWh from 004Ch, kWh(-) TOT at 005Ch) as used by the Victron
community EM24-RTU integration that runs against real meters. The tariff and kvarh-tariff
addresses 004Ch..005Bh follow the order of the protocol's reset note ("kWh T1..T4, kvarh
T1..T4"); they are not in the excerpt of the table we had.

Conventions of the protocol, all reproduced here:

- every read uses function 03 or 04 (same table for both);
- INT32 values are sent least significant word first;
- value weights: V×10, A×1000, W/VA/var×10, PF×1000, Hz×10, kWh/kvarh×10;
- power is positive when imported (consumed); PF is negative for a capacitive (leading) load;
- the identification code (table 2.6-1, 000Bh, UINT16) can only be read "a word at a time":
  it shares its address with the high word of "V L3-L1" (000Ah..000Bh).
"""

from __future__ import annotations

from collections.abc import Mapping

from gridedge.protocols.modbus_meters.registers import Function, RegisterPoint, RegisterType, WordOrder

__all__ = [
    "EM24_APPLICATION_ADDRESS",
    "EM24_ID_ADDRESS",
    "EM24_MODEL_CODES",
    "EM24_POINTS",
    "EM24_SERIAL_ADDRESS",
    "EM24_SYSTEM_ADDRESS",
    "EM24_VERSION_ADDRESS",
    "em24_point",
]

#: identification code register (single-word reads only)
EM24_ID_ADDRESS = 0x000B
#: version code (0302h) and revision code (0303h), one word at a time
EM24_VERSION_ADDRESS = 0x0302
#: "Type of application" (1101h, 7 = "H") and measuring system (1102h, 0 = "3Pn")
EM24_APPLICATION_ADDRESS = 0x1101
EM24_SYSTEM_ADDRESS = 0x1102
#: serial number, 7 words of two ASCII characters each (1300h..1306h)
EM24_SERIAL_ADDRESS = 0x1300

#: identification codes read at 000Bh
EM24_MODEL_CODES: Mapping[int, str] = {
    70: "EM24-DIN AV9",
    71: "EM24-DIN AV2",
    72: "EM24-DIN AV5",
    73: "EM24-DIN AV6",
}


def _i32(name: str, address: int, scale: float, units: str, description: str) -> RegisterPoint:
    return RegisterPoint(
        name=name,
        address=address,
        reg_type=RegisterType.INT32,
        word_order=WordOrder.LSW_FIRST,
        scale=scale,
        function=Function.HOLDING,
        units=units,
        description=description,
    )


def _i16(name: str, address: int, scale: float, units: str, description: str) -> RegisterPoint:
    return RegisterPoint(
        name=name, address=address, reg_type=RegisterType.INT16, scale=scale, units=units,
        description=description,
    )


#: the measurement map, keyed by our point name (units in the name)
EM24_POINTS: Mapping[str, RegisterPoint] = {
    p.name: p
    for p in (
        _i32("voltage_l1_v", 0x0000, 10, "V", "V L1-N"),
        _i32("voltage_l2_v", 0x0002, 10, "V", "V L2-N"),
        _i32("voltage_l3_v", 0x0004, 10, "V", "V L3-N"),
        _i32("voltage_l1_l2_v", 0x0006, 10, "V", "V L1-L2"),
        _i32("voltage_l2_l3_v", 0x0008, 10, "V", "V L2-L3"),
        _i32("voltage_l3_l1_v", 0x000A, 10, "V", "V L3-L1"),
        _i32("current_l1_a", 0x000C, 1000, "A", "A L1"),
        _i32("current_l2_a", 0x000E, 1000, "A", "A L2"),
        _i32("current_l3_a", 0x0010, 1000, "A", "A L3"),
        _i32("power_l1_w", 0x0012, 10, "W", "W L1"),
        _i32("power_l2_w", 0x0014, 10, "W", "W L2"),
        _i32("power_l3_w", 0x0016, 10, "W", "W L3"),
        _i32("apparent_l1_va", 0x0018, 10, "VA", "VA L1"),
        _i32("apparent_l2_va", 0x001A, 10, "VA", "VA L2"),
        _i32("apparent_l3_va", 0x001C, 10, "VA", "VA L3"),
        _i32("reactive_l1_var", 0x001E, 10, "var", "var L1"),
        _i32("reactive_l2_var", 0x0020, 10, "var", "var L2"),
        _i32("reactive_l3_var", 0x0022, 10, "var", "var L3"),
        _i32("voltage_ln_v", 0x0024, 10, "V", "V L-N system"),
        _i32("voltage_ll_v", 0x0026, 10, "V", "V L-L system"),
        _i32("power_w", 0x0028, 10, "W", "W system (positive = import)"),
        _i32("apparent_va", 0x002A, 10, "VA", "VA system"),
        _i32("reactive_var", 0x002C, 10, "var", "var system"),
        _i32("demand_w", 0x002E, 10, "W", "DMD W"),
        _i32("demand_va", 0x0030, 10, "VA", "DMD VA"),
        _i16("power_factor_l1", 0x0032, 1000, "", "PF L1 (negative = leading)"),
        _i16("power_factor_l2", 0x0033, 1000, "", "PF L2"),
        _i16("power_factor_l3", 0x0034, 1000, "", "PF L3"),
        _i16("power_factor", 0x0035, 1000, "", "PF system"),
        _i16("phase_sequence", 0x0036, 1, "", "-1 = L1-L3-L2, 0 = L1-L2-L3"),
        _i16("frequency_hz", 0x0037, 10, "Hz", "Hz"),
        _i32("demand_max_w", 0x0038, 10, "W", "DMD W max"),
        _i32("demand_max_va", 0x003A, 10, "VA", "DMD VA max"),
        _i32("demand_max_a", 0x003C, 1000, "A", "DMD A max"),
        _i32("energy_import_kwh", 0x003E, 10, "kWh", "kWh(+) TOT"),
        _i32("reactive_energy_import_kvarh", 0x0040, 10, "kvarh", "kvarh(+) TOT"),
        _i32("energy_import_partial_kwh", 0x0042, 10, "kWh", "kWh(+) PAR"),
        _i32("reactive_energy_import_partial_kvarh", 0x0044, 10, "kvarh", "kvarh(+) PAR"),
        _i32("energy_import_l1_kwh", 0x0046, 10, "kWh", "kWh(+) L1"),
        _i32("energy_import_l2_kwh", 0x0048, 10, "kWh", "kWh(+) L2"),
        _i32("energy_import_l3_kwh", 0x004A, 10, "kWh", "kWh(+) L3"),
        _i32("energy_import_t1_kwh", 0x004C, 10, "kWh", "kWh(+) tariff 1"),
        _i32("energy_import_t2_kwh", 0x004E, 10, "kWh", "kWh(+) tariff 2"),
        _i32("energy_import_t3_kwh", 0x0050, 10, "kWh", "kWh(+) tariff 3"),
        _i32("energy_import_t4_kwh", 0x0052, 10, "kWh", "kWh(+) tariff 4"),
        _i32("reactive_energy_import_t1_kvarh", 0x0054, 10, "kvarh", "kvarh(+) tariff 1"),
        _i32("reactive_energy_import_t2_kvarh", 0x0056, 10, "kvarh", "kvarh(+) tariff 2"),
        _i32("reactive_energy_import_t3_kvarh", 0x0058, 10, "kvarh", "kvarh(+) tariff 3"),
        _i32("reactive_energy_import_t4_kvarh", 0x005A, 10, "kvarh", "kvarh(+) tariff 4"),
        _i32("energy_export_kwh", 0x005C, 10, "kWh", "kWh(-) TOT"),
        _i32("reactive_energy_export_kvarh", 0x005E, 10, "kvarh", "kvarh(-) TOT"),
        RegisterPoint(
            name="model_id", address=EM24_ID_ADDRESS, reg_type=RegisterType.UINT16, units="",
            description="Carlo Gavazzi Controls identification code (single-word read)",
            read_alone=True,
        ),
    )
}


def em24_point(name: str) -> RegisterPoint:
    """The EM24 point called ``name``; KeyError listing the known names otherwise."""
    try:
        return EM24_POINTS[name]
    except KeyError:
        raise KeyError(f"no EM24 point {name!r}; known: {sorted(EM24_POINTS)}") from None
