"""The one-call register answers decode exactly as pymodbus' own, and describe themselves
without their registers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from edge.plc.responses import BlockHoldingRegisters, BlockInputRegisters


@given(st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=125))
def test_the_same_registers_as_pymodbus_decodes(registers: list[int]) -> None:
    for theirs, ours in (
        (ReadHoldingRegistersResponse, BlockHoldingRegisters),
        (ReadInputRegistersResponse, BlockInputRegisters),
    ):
        frame = theirs(registers=registers).encode()
        expected, got = theirs(), ours()
        expected.decode(frame)
        got.decode(frame)
        assert got.registers == expected.registers == registers
        assert ours.function_code == theirs.function_code


def test_a_short_packet_is_refused_as_pymodbus_does() -> None:
    with pytest.raises(ModbusIOException, match="byte_count"):
        BlockHoldingRegisters().decode(bytes([4, 0, 1]))


def test_the_description_leaves_the_registers_out() -> None:
    response = BlockHoldingRegisters(registers=list(range(100)), dev_id=3, transaction_id=7)
    text = str(response)
    assert "100 registers" in text and "dev_id=3" in text and "99" not in text
