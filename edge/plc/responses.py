"""Register answers decoded in one call, registered with each pymodbus client.

pymodbus decodes a register answer word by word (one ``struct.unpack`` and one
slice per register) and formats the whole answer, every register of it, for a
debug line on every response even when debug logging is off. For a line of
thousands of points a second that was a tenth of what a poll cost. These
subclasses, given to ``client.register`` (pymodbus' way to add or replace
responses), unpack the block with one precompiled ``struct`` call and describe
themselves without their registers. Everything else (framing, transaction ids,
timeouts, exception responses) stays pymodbus'.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

__all__ = ["BLOCK_RESPONSES", "BlockHoldingRegisters", "BlockInputRegisters"]


@lru_cache(maxsize=128)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


def _decode(pdu: ReadHoldingRegistersResponse, data: bytes) -> None:
    byte_count = data[0]
    if byte_count >= len(data):
        raise ModbusIOException(  # type: ignore[no-untyped-call]
            f"byte_count {byte_count} > length of packet {len(data)}"
        )
    pdu.registers = list(_words(byte_count // 2).unpack_from(data, 1))


def _describe(pdu: ReadHoldingRegistersResponse) -> str:
    return (
        f"{type(pdu).__name__}(dev_id={pdu.dev_id}, transaction_id={pdu.transaction_id}, "
        f"{len(pdu.registers)} registers)"
    )


class BlockHoldingRegisters(ReadHoldingRegistersResponse):
    """Function code 3's answer, unpacked in one call."""

    function_code = 3

    def decode(self, data: bytes) -> None:
        _decode(self, data)

    def __str__(self) -> str:
        return _describe(self)


class BlockInputRegisters(ReadInputRegistersResponse):
    """Function code 4's answer, unpacked in one call."""

    function_code = 4

    def decode(self, data: bytes) -> None:
        _decode(self, data)

    def __str__(self) -> str:
        return _describe(self)


BLOCK_RESPONSES = (BlockHoldingRegisters, BlockInputRegisters)
