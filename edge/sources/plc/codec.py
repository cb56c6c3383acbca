"""Raw PLC words and bits to engineering values and back.

Protocol-neutral: Modbus delivers 16-bit registers and bits, OPC UA delivers
typed values; both end in :func:`to_engineering` (scale/offset, NaN and range
checks). Anything that cannot be a trustworthy value raises
:class:`~edge.errors.PlcDataError`; a source turns that into a BAD sample.

Byte and word order, shown for the float32 1.0 (bytes 3F 80 00 00, most
significant first)::

    byte_order  word_order   registers on the wire
    big         big          0x3F80 0x0000    (Modbus default)
    big         little       0x0000 0x3F80    (word-swapped, common in PLCs)
    little      big          0x803F 0x0000
    little      little       0x0000 0x803F    (fully little-endian)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from actors.messages import Value
from edge.config.plc_maps import DataType, Endian, ModbusLocation, SignalDef
from edge.errors import PlcDataError

__all__ = [
    "Raw",
    "compile_decoder",
    "decode_registers",
    "encode_registers",
    "from_engineering",
    "to_engineering",
    "with_bit",
]

Raw = bool | int | float
# Decodes one signal from a block read: (words or bits of the block, index in it).
BlockDecoder = Callable[[Sequence[int] | Sequence[bool], int], Value]

_FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def _value_struct(data_type: DataType) -> struct.Struct:
    try:
        return struct.Struct(">" + _FORMATS[data_type])
    except KeyError:
        raise ValueError(f"{data_type.value} is not kept in registers") from None


def _words_struct(count: int, byte_order: Endian) -> struct.Struct:
    return struct.Struct(("<" if byte_order is Endian.LITTLE else ">") + "H" * count)


def decode_registers(
    registers: Sequence[int],
    data_type: DataType,
    byte_order: Endian = Endian.BIG,
    word_order: Endian = Endian.BIG,
) -> int | float:
    """The raw number held in ``registers`` (exactly ``data_type.registers`` of them)."""
    count = data_type.registers
    if data_type is DataType.BOOL or len(registers) != count:
        raise PlcDataError(f"{data_type.value} needs {count} registers, got {len(registers)}")
    words = list(registers)
    if word_order is Endian.LITTLE:
        words.reverse()
    try:
        data = _words_struct(count, byte_order).pack(*words)
    except struct.error as exc:
        raise PlcDataError(f"register value out of 0..65535 in {registers!r}") from exc
    value: int | float = _value_struct(data_type).unpack(data)[0]
    return value


def encode_registers(
    value: Raw,
    data_type: DataType,
    byte_order: Endian = Endian.BIG,
    word_order: Endian = Endian.BIG,
) -> list[int]:
    """The registers that hold ``value``; raises PlcDataError when it does not fit the type."""
    if data_type is DataType.BOOL:
        raise PlcDataError("a bool is a bit, not registers (see with_bit)")
    if data_type.is_integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlcDataError(f"{data_type.value} needs an integer, got {value!r}")
        low, high = data_type.int_range
        if not low <= value <= high:
            raise PlcDataError(f"{value} is out of range for {data_type.value} ({low}..{high})")
    try:
        data = _value_struct(data_type).pack(value)
    except (struct.error, OverflowError) as exc:
        raise PlcDataError(f"{value!r} does not fit {data_type.value}: {exc}") from exc
    words = list(_words_struct(data_type.registers, byte_order).unpack(data))
    if word_order is Endian.LITTLE:
        words.reverse()
    return words


def with_bit(word: int, bit: int, value: bool) -> int:
    """``word`` with one bit set or cleared (for bools kept in a register)."""
    mask = 1 << bit
    return (word | mask) if value else (word & ~mask & 0xFFFF)


def _slack(bound: float) -> float:
    # raw * scale is inexact (2500 * 0.1 = 250.00000000000003): a value on the
    # bound must not turn BAD because of the last bit of a float.
    return 1e-9 * max(1.0, abs(bound))


def to_engineering(signal: SignalDef, raw: Raw) -> Value:
    """Scale/offset and sanity checks: the value a machine actor may trust.

    Raises PlcDataError for NaN/infinite floats and values outside the map's min..max.
    """
    if signal.data_type is DataType.BOOL:
        return bool(raw)
    value: int | float = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise PlcDataError(f"{signal.name}: not a number ({value})")
    if signal.is_scaled:
        value = value * signal.scale + signal.offset
    if (signal.minimum is not None and value < signal.minimum - _slack(signal.minimum)) or (
        signal.maximum is not None and value > signal.maximum + _slack(signal.maximum)
    ):
        raise _out_of_range(signal, value)
    return value


def _out_of_range(signal: SignalDef, value: float) -> PlcDataError:
    low = "" if signal.minimum is None else f"{signal.minimum:g}"
    high = "" if signal.maximum is None else f"{signal.maximum:g}"
    return PlcDataError(f"{signal.name}: {value} outside {low}..{high}")


def from_engineering(signal: SignalDef, value: Value) -> Raw:
    """The raw value a PLC holds for an engineering value (simulators and tests)."""
    if signal.data_type is DataType.BOOL:
        return bool(value)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise PlcDataError(f"{signal.name}: needs a number, got {value!r}")
    raw: int | float = (value - signal.offset) / signal.scale if signal.is_scaled else value
    if not signal.data_type.is_integer:
        return float(raw)
    if isinstance(raw, int):
        return raw
    if not math.isfinite(raw):
        raise PlcDataError(f"{signal.name}: {value!r} has no integer raw value")
    return round(raw)


def compile_decoder(signal: SignalDef) -> BlockDecoder:
    """A fast decoder of ``signal`` from the words/bits of a Modbus block read.

    Precomputes the struct formats once, because a line polls thousands of
    points a second. Raises PlcDataError from the returned function on bad data.
    """
    loc = signal.location
    if not isinstance(loc, ModbusLocation):
        raise ValueError(f"{signal.name} is not a Modbus signal")
    if loc.area.holds_bits:

        def decode_bit(data: Sequence[int] | Sequence[bool], index: int) -> Value:
            return bool(data[index])

        return decode_bit
    if signal.data_type is DataType.BOOL:
        bit = loc.bit if loc.bit is not None else 0

        def decode_register_bit(data: Sequence[int] | Sequence[bool], index: int) -> Value:
            return bool((int(data[index]) >> bit) & 1)

        return decode_register_bit

    count = signal.data_type.registers
    words_struct = _words_struct(count, signal.byte_order)
    unpack_value = _value_struct(signal.data_type).unpack
    reverse = signal.word_order is Endian.LITTLE and count > 1
    # Big-endian 16-bit integers need no struct round trip: the register is the value.
    direct = signal.byte_order is Endian.BIG and signal.data_type in (
        DataType.UINT16,
        DataType.INT16,
    )
    signed16 = signal.data_type is DataType.INT16
    scaled = signal.is_scaled
    scale, offset = signal.scale, signal.offset
    low = -math.inf if signal.minimum is None else signal.minimum - _slack(signal.minimum)
    high = math.inf if signal.maximum is None else signal.maximum + _slack(signal.maximum)
    bounded = signal.minimum is not None or signal.maximum is not None
    is_float = signal.data_type.is_float
    name = signal.name

    def decode_value(data: Sequence[int] | Sequence[bool], index: int) -> Value:
        value: int | float
        if direct:
            value = int(data[index])
            if signed16 and value & 0x8000:
                value -= 0x10000
        else:
            words = data[index : index + count]
            if reverse:
                words = words[::-1]
            try:
                value = unpack_value(words_struct.pack(*words))[0]
            except struct.error as exc:
                raise PlcDataError(f"{name}: bad registers {list(words)!r}") from exc
            if is_float and not math.isfinite(value):
                raise PlcDataError(f"{name}: not a number ({value})")
        if scaled:
            value = value * scale + offset
        if bounded and not low <= value <= high:
            raise _out_of_range(signal, value)
        return value

    return decode_value
