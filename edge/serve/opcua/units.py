"""EngineeringUnits for the address space: the unit texts of configs and plc_maps as
UNECE Recommendation 20 codes, the encoding OPC UA Part 8 prescribes (EUInformation).

A unit this table does not know keeps its text as DisplayName with UnitId -1, so a
client still shows it; it just cannot convert it.
"""

from __future__ import annotations

from asyncua import ua

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

# unit text -> (UNECE common code, display name, description)
_UNITS: dict[str, tuple[str, str, str]] = {
    "1": ("C62", "1", "one"),  # a ratio
    "s": ("SEC", "s", "second"),
    "min": ("MIN", "min", "minute"),
    "h": ("HUR", "h", "hour"),
    "ms": ("C26", "ms", "millisecond"),
    "pcs": ("H87", "pcs", "piece"),
    "pieces": ("H87", "pcs", "piece"),
    "%": ("P1", "%", "percent"),
    "degC": ("CEL", "°C", "degree Celsius"),
    "°C": ("CEL", "°C", "degree Celsius"),
    "degF": ("FAH", "°F", "degree Fahrenheit"),
    "K": ("KEL", "K", "kelvin"),
    "bar": ("BAR", "bar", "bar"),
    "mbar": ("MBR", "mbar", "millibar"),
    "Pa": ("PAL", "Pa", "pascal"),
    "kPa": ("KPA", "kPa", "kilopascal"),
    "MPa": ("MPA", "MPa", "megapascal"),
    "1/s": ("C97", "1/s", "reciprocal second"),
    "1/min": ("C94", "1/min", "reciprocal minute"),
    "1/h": ("H10", "1/h", "reciprocal hour"),
    "rpm": ("RPM", "r/min", "revolutions per minute"),
    "mm": ("MMT", "mm", "millimetre"),
    "cm": ("CMT", "cm", "centimetre"),
    "m": ("MTR", "m", "metre"),
    "um": ("4H", "µm", "micrometre"),
    "m/s": ("MTS", "m/s", "metre per second"),
    "mm/s": ("C16", "mm/s", "millimetre per second"),
    "m/min": ("2X", "m/min", "metre per minute"),
    "g": ("GRM", "g", "gram"),
    "kg": ("KGM", "kg", "kilogram"),
    "l": ("LTR", "l", "litre"),
    "ml": ("MLT", "ml", "millilitre"),
    "l/min": ("L2", "l/min", "litre per minute"),
    "V": ("VLT", "V", "volt"),
    "A": ("AMP", "A", "ampere"),
    "mA": ("4K", "mA", "milliampere"),
    "W": ("WTT", "W", "watt"),
    "kW": ("KWT", "kW", "kilowatt"),
    "kWh": ("KWH", "kWh", "kilowatt hour"),
    "Hz": ("HTZ", "Hz", "hertz"),
    "N": ("NEW", "N", "newton"),
    "Nm": ("NU", "N·m", "newton metre"),
}


def unece_unit_id(code: str) -> int:
    """OPC UA Part 8: the code's characters, as bytes, big-endian in one integer."""
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def eu_information(unit: str) -> ua.EUInformation:
    known = _UNITS.get(unit)
    info = ua.EUInformation()
    info.NamespaceUri = UNECE_NAMESPACE
    if known is None:
        info.UnitId = -1
        info.DisplayName = ua.LocalizedText(unit)
        info.Description = ua.LocalizedText(unit)
        return info
    code, display, description = known
    info.UnitId = unece_unit_id(code)
    info.DisplayName = ua.LocalizedText(display)
    info.Description = ua.LocalizedText(description)
    return info
