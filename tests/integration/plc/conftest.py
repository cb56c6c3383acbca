"""A real pymodbus TCP server the tests can write into, stop, restart and spy on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer

from actors.messages import LinkChanged, Sample
from edge.config import ModbusPlcConfig
from edge.config.plc_maps import Area
from edge.sources.plc import SourceEvent

FUNCTION_CODE = {
    Area.COIL: 1,
    Area.DISCRETE_INPUT: 2,
    Area.HOLDING_REGISTER: 3,
    Area.INPUT_REGISTER: 4,
}


def new_device(size: int = 1000) -> ModbusDeviceContext:
    # The device context adds 1 to every address, hence one spare cell.
    return ModbusDeviceContext(
        co=ModbusSequentialDataBlock(0, [False] * (size + 1)),
        di=ModbusSequentialDataBlock(0, [False] * (size + 1)),
        hr=ModbusSequentialDataBlock(0, [0] * (size + 1)),
        ir=ModbusSequentialDataBlock(0, [0] * (size + 1)),
    )


class PlcServer:
    """A PLC stand-in: its datastore survives stop/start, like a PLC's memory."""

    def __init__(self, port: int, units: Sequence[int] = (1,), size: int = 1000) -> None:
        self.port = port
        self.devices = {unit: new_device(size) for unit in units}
        # (unit id, function code, address, count) of every request received
        self.requests: list[tuple[int, int, int, int]] = []
        self._server: ModbusTcpServer | None = None

    def set_registers(
        self,
        address: int,
        words: Sequence[int],
        *,
        unit: int = 1,
        area: Area = Area.HOLDING_REGISTER,
    ) -> None:
        self.devices[unit].setValues(FUNCTION_CODE[area], address, list(words))

    def set_bits(
        self, address: int, bits: Sequence[bool], *, unit: int = 1, area: Area = Area.COIL
    ) -> None:
        self.devices[unit].setValues(FUNCTION_CODE[area], address, list(bits))

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def start(self) -> None:
        context = ModbusServerContext(devices=self.devices, single=False)
        server = ModbusTcpServer(context, address=("127.0.0.1", self.port), trace_pdu=self._trace)
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def __aenter__(self) -> PlcServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Collector:
    """A sample sink that records every batch."""

    def __init__(self) -> None:
        self.batches: list[list[SourceEvent]] = []

    async def __call__(self, batch: Sequence[SourceEvent]) -> None:
        self.batches.append(list(batch))

    @property
    def events(self) -> list[SourceEvent]:
        return [e for batch in self.batches for e in batch]

    def samples(self, machine_id: str, signal: str) -> list[Sample]:
        return [
            e
            for e in self.events
            if isinstance(e, Sample) and e.machine_id == machine_id and e.signal == signal
        ]

    def values(self, machine_id: str, signal: str) -> list[Any]:
        return [s.value for s in self.samples(machine_id, signal)]

    def latest(self, machine_id: str, signal: str) -> Sample | None:
        found = self.samples(machine_id, signal)
        return found[-1] if found else None

    def links(self, machine_id: str) -> list[LinkChanged]:
        return [e for e in self.events if isinstance(e, LinkChanged) and e.machine_id == machine_id]

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within_s} s")
            await asyncio.sleep(0.01)


def plc_config(port: int, **overrides: Any) -> ModbusPlcConfig:
    settings: dict[str, Any] = {
        "id": "p1",
        "host": "127.0.0.1",
        "port": port,
        "poll_interval_s": 0.05,
        "timeout_s": 0.2,
        "retries": 0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    settings.update(overrides)
    return ModbusPlcConfig(**settings)


@pytest.fixture
def collector() -> Collector:
    return Collector()
