"""Codec: known vectors computed by hand, round trips, scale/offset, BAD data."""

from __future__ import annotations

import itertools
import math
import struct

import pytest

from edge.config.plc_maps import Area, DataType, Endian, ModbusLocation, SignalDef
from edge.errors import PlcDataError
from edge.sources.plc.codec import (
    compile_decoder,
    decode_registers,
    encode_registers,
    from_engineering,
    to_engineering,
    with_bit,
)

BIG, LITTLE = Endian.BIG, Endian.LITTLE


def signal(
    data_type: DataType,
    *,
    area: Area = Area.HOLDING_REGISTER,
    bit: int | None = None,
    byte_order: Endian = BIG,
    word_order: Endian = BIG,
    scale: float = 1.0,
    offset: float = 0.0,
    minimum: float | None = None,
    maximum: float | None = None,
) -> SignalDef:
    return SignalDef(
        name="x",
        data_type=data_type,
        location=ModbusLocation(area, 0, bit),
        byte_order=byte_order,
        word_order=word_order,
        scale=scale,
        offset=offset,
        minimum=minimum,
        maximum=maximum,
    )


# Hand-computed: the value's bytes most significant first, then split into
# 16-bit registers; word_order little reverses the registers, byte_order
# little swaps the two bytes inside each register.
KNOWN_VECTORS = [
    # float32 1.0 = 0x3F800000
    (DataType.FLOAT32, BIG, BIG, [0x3F80, 0x0000], 1.0),
    (DataType.FLOAT32, BIG, LITTLE, [0x0000, 0x3F80], 1.0),
    (DataType.FLOAT32, LITTLE, BIG, [0x803F, 0x0000], 1.0),
    (DataType.FLOAT32, LITTLE, LITTLE, [0x0000, 0x803F], 1.0),
    # float32 -2.5 = sign 1, exponent 128 (0x80), mantissa 0x200000 -> 0xC0200000
    (DataType.FLOAT32, BIG, BIG, [0xC020, 0x0000], -2.5),
    # float64 1.0 = 0x3FF0000000000000
    (DataType.FLOAT64, BIG, BIG, [0x3FF0, 0, 0, 0], 1.0),
    (DataType.FLOAT64, BIG, LITTLE, [0, 0, 0, 0x3FF0], 1.0),
    (DataType.FLOAT64, LITTLE, BIG, [0xF03F, 0, 0, 0], 1.0),
    # int16 -1 = 0xFFFF; 0x0102 = 258, byte-swapped 0x0201
    (DataType.INT16, BIG, BIG, [0xFFFF], -1),
    (DataType.INT16, BIG, BIG, [0x8000], -32768),
    (DataType.UINT16, BIG, BIG, [0xFFFF], 65535),
    (DataType.UINT16, BIG, BIG, [0x0102], 258),
    (DataType.UINT16, LITTLE, BIG, [0x0201], 258),
    # word order does not matter for one register
    (DataType.UINT16, BIG, LITTLE, [0x0102], 258),
    # uint32 0x12345678 = 305419896
    (DataType.UINT32, BIG, BIG, [0x1234, 0x5678], 305419896),
    (DataType.UINT32, BIG, LITTLE, [0x5678, 0x1234], 305419896),
    (DataType.UINT32, LITTLE, BIG, [0x3412, 0x7856], 305419896),
    (DataType.UINT32, LITTLE, LITTLE, [0x7856, 0x3412], 305419896),
    # uint32 65536 = 0x00010000
    (DataType.UINT32, BIG, BIG, [0x0001, 0x0000], 65536),
    # int32 -2 = 0xFFFFFFFE
    (DataType.INT32, BIG, BIG, [0xFFFF, 0xFFFE], -2),
    (DataType.INT32, BIG, LITTLE, [0xFFFE, 0xFFFF], -2),
    # uint64 0x0102030405060708 = 72623859790382856
    (DataType.UINT64, BIG, BIG, [0x0102, 0x0304, 0x0506, 0x0708], 72623859790382856),
    (DataType.UINT64, BIG, LITTLE, [0x0708, 0x0506, 0x0304, 0x0102], 72623859790382856),
    (DataType.UINT64, LITTLE, LITTLE, [0x0807, 0x0605, 0x0403, 0x0201], 72623859790382856),
    # int64 -1 = all ones; int64 min = 0x8000000000000000
    (DataType.INT64, BIG, BIG, [0xFFFF] * 4, -1),
    (DataType.INT64, BIG, BIG, [0x8000, 0, 0, 0], -(2**63)),
]


@pytest.mark.parametrize(
    ("data_type", "byte_order", "word_order", "registers", "value"), KNOWN_VECTORS
)
def test_known_vectors_decode_and_encode(
    data_type: DataType, byte_order: Endian, word_order: Endian, registers: list[int], value: float
) -> None:
    assert decode_registers(registers, data_type, byte_order, word_order) == value
    assert encode_registers(value, data_type, byte_order, word_order) == registers
    decode = compile_decoder(signal(data_type, byte_order=byte_order, word_order=word_order))
    # The compiled decoder reads at an index inside a larger block.
    assert decode([0xAAAA, *registers, 0xBBBB], 1) == value


ROUND_TRIP_VALUES = {
    DataType.INT16: [-32768, -1, 0, 1, 32767],
    DataType.UINT16: [0, 1, 0x1234, 65535],
    DataType.INT32: [-(2**31), -70000, 0, 70000, 2**31 - 1],
    DataType.UINT32: [0, 65535, 65536, 2**32 - 1],
    DataType.INT64: [-(2**63), -(2**40), 0, 2**40, 2**63 - 1],
    DataType.UINT64: [0, 2**32, 2**64 - 1],
    DataType.FLOAT32: [0.0, -0.5, 1.5, 3.25e10, -1.0e-3],
    DataType.FLOAT64: [0.0, math.pi, -1e300, 5e-324],
}


@pytest.mark.parametrize("data_type", list(ROUND_TRIP_VALUES))
@pytest.mark.parametrize(("byte_order", "word_order"), list(itertools.product(Endian, Endian)))
def test_round_trip_every_type_and_order(
    data_type: DataType, byte_order: Endian, word_order: Endian
) -> None:
    for value in ROUND_TRIP_VALUES[data_type]:
        words = encode_registers(value, data_type, byte_order, word_order)
        assert len(words) == data_type.registers
        assert all(0 <= w <= 0xFFFF for w in words)
        decoded = decode_registers(words, data_type, byte_order, word_order)
        if data_type is DataType.FLOAT32:
            # float32 keeps 24 significant bits: compare with the float32 rounding.
            expected = struct.unpack(">f", struct.pack(">f", value))[0]
            assert decoded == expected
        else:
            assert decoded == value


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (65536, DataType.UINT16),
        (-1, DataType.UINT16),
        (-32769, DataType.INT16),
        (2**32, DataType.UINT32),
        (2**63, DataType.INT64),
        (1.5, DataType.UINT32),
        (True, DataType.UINT16),
        (1e39, DataType.FLOAT32),
    ],
)
def test_encode_rejects_values_the_type_cannot_hold(value: float, data_type: DataType) -> None:
    with pytest.raises(PlcDataError):
        encode_registers(value, data_type)


def test_decode_rejects_wrong_register_count_and_out_of_range_words() -> None:
    with pytest.raises(PlcDataError, match="needs 2 registers"):
        decode_registers([1], DataType.UINT32)
    with pytest.raises(PlcDataError):
        decode_registers([70000], DataType.UINT16)


def test_bit_of_a_register() -> None:
    # 0x0008 = bit 3 set; 0x8000 = bit 15 set
    assert compile_decoder(signal(DataType.BOOL, bit=3))([0x0008], 0) is True
    assert compile_decoder(signal(DataType.BOOL, bit=2))([0x0008], 0) is False
    assert compile_decoder(signal(DataType.BOOL, bit=15))([0x8000], 0) is True
    assert with_bit(0x0000, 3, True) == 0x0008
    assert with_bit(0xFFFF, 15, False) == 0x7FFF
    assert with_bit(0x0008, 3, True) == 0x0008


def test_coil_and_discrete_input_bits() -> None:
    decode = compile_decoder(signal(DataType.BOOL, area=Area.COIL))
    assert decode([False, True, False], 1) is True
    assert decode([False, True, False], 2) is False
    assert compile_decoder(signal(DataType.BOOL, area=Area.DISCRETE_INPUT))([1], 0) is True


def test_scale_and_offset() -> None:
    # temperature int16 in tenths: raw 215 * 0.1 = 21.5
    tenths = signal(DataType.INT16, scale=0.1)
    assert to_engineering(tenths, 215) == pytest.approx(21.5)
    assert compile_decoder(tenths)([215], 0) == pytest.approx(21.5)
    # raw -40 (0xFFD8) * 0.1 = -4.0
    assert compile_decoder(tenths)([0xFFD8], 0) == pytest.approx(-4.0)
    # raw 100 * 0.5 + (-10) = 40.0
    shifted = signal(DataType.UINT16, scale=0.5, offset=-10.0)
    assert to_engineering(shifted, 100) == pytest.approx(40.0)
    # and back: (40.0 - (-10)) / 0.5 = 100
    assert from_engineering(shifted, 40.0) == 100
    assert from_engineering(tenths, 21.5) == 215
    # unscaled integers stay integers
    plain = signal(DataType.UINT16)
    assert to_engineering(plain, 7) == 7
    assert isinstance(to_engineering(plain, 7), int)


def test_nan_and_infinity_are_bad_data() -> None:
    # float32 quiet NaN = 0x7FC00000, +inf = 0x7F800000
    decode = compile_decoder(signal(DataType.FLOAT32))
    with pytest.raises(PlcDataError, match="not a number"):
        decode([0x7FC0, 0x0000], 0)
    with pytest.raises(PlcDataError):
        decode([0x7F80, 0x0000], 0)
    with pytest.raises(PlcDataError):
        to_engineering(signal(DataType.FLOAT64), math.nan)


def test_min_max_range_check_with_float_slack_on_the_bound() -> None:
    bounded = signal(DataType.INT16, scale=0.1, minimum=-40.0, maximum=250.0)
    decode = compile_decoder(bounded)
    # 2500 * 0.1 is 250.00000000000003 in binary floating point: still on the bound.
    assert decode([2500], 0) == pytest.approx(250.0)
    with pytest.raises(PlcDataError, match="outside"):
        decode([2501], 0)  # 250.1 > 250
    with pytest.raises(PlcDataError, match="outside"):
        decode([0xFE6F], 0)  # raw -401 -> -40.1 < -40
