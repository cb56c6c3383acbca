"""A real asyncua server playing a PLC, a recording sink and a TCP proxy that can go silent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC

from asyncua import ua
from asyncua.server.server import Server

from actors.messages import LinkChanged, Sample, Value
from edge.config import OpcUaPlcConfig
from edge.config.plc_maps import DataType, NodeLocation, PlcMap, Protocol, SignalDef
from edge.sources.plc.delivery import SourceEvent

NAMESPACE = "urn:test:opcua-plc"

_VARIANT = {
    DataType.BOOL: ua.VariantType.Boolean,
    DataType.INT16: ua.VariantType.Int16,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.INT32: ua.VariantType.Int32,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT32: ua.VariantType.Float,
    DataType.FLOAT64: ua.VariantType.Double,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> ua.DateTime:
    """A UTC instant, typed as asyncua wants it for a DataValue's timestamps."""
    return ua.DateTime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def plc_config(endpoint: str, **overrides: float) -> OpcUaPlcConfig:
    """Fast intervals so link changes show within a second."""
    values: dict[str, float] = {
        "sampling_interval_s": 0.05,
        "publishing_interval_s": 0.05,
        "timeout_s": 0.5,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(overrides)
    return OpcUaPlcConfig(id="plc1", endpoint=endpoint, **values)  # type: ignore[arg-type]


def signal(name: str, data_type: DataType, node: str, **extra: float) -> SignalDef:
    return SignalDef(name=name, data_type=data_type, location=NodeLocation(node), **extra)  # type: ignore[arg-type]


def opcua_map(*signals: SignalDef, name: str = "test-opcua") -> PlcMap:
    return PlcMap(name=name, protocol=Protocol.OPCUA, signals=tuple(signals))


@dataclass
class OpcUaPlc:
    """An asyncua server with variables named after machines, like a PLC's tags.

    ``values`` holds what the PLC holds; a restart brings the same values back.
    """

    port: int
    variables: dict[str, DataType]  # node id text ("ns=2;s=M1.Count") -> type
    values: dict[str, tuple[object, ua.DateTime]] = field(default_factory=dict)
    server: Server | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        index = await server.register_namespace(NAMESPACE)
        assert index == 2, "the maps address the PLC's tags as ns=2"
        objects = server.nodes.objects
        for text, data_type in self.variables.items():
            node_id = ua.NodeId.from_string(text)
            value, stamp = self.values.get(text, (_zero(data_type), utc(2025, 1, 1)))
            variable = await objects.add_variable(
                node_id, str(node_id.Identifier), ua.Variant(value, _VARIANT[data_type])
            )
            await server.write_attribute_value(
                variable.nodeid, self._data_value(text, value, stamp)
            )
            self.values[text] = (value, stamp)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def power_off(self) -> None:
        """Stop listening and drop every connection; the tags keep their values."""
        assert self.server is not None
        await self.server.stop()

    async def power_on(self) -> None:
        """Listen again on the same port (a restarted PLC; starting is quick the second time)."""
        assert self.server is not None
        await self.server.start()

    def _data_value(
        self, text: str, value: object, stamp: ua.DateTime | None, status: int | None = None
    ) -> ua.DataValue:
        if status is not None:
            return ua.DataValue(
                ua.Variant(None, ua.VariantType.Null), StatusCode=ua.StatusCode(ua.UInt32(status))
            )
        variant = ua.Variant(value, _VARIANT[self.variables[text]])
        return ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=ua.DateTime.now(UTC))

    async def write(self, text: str, value: object, stamp: ua.DateTime) -> None:
        """The PLC changes a tag at ``stamp`` (its SourceTimestamp)."""
        self.values[text] = (value, stamp)
        if self.server is not None:
            await self.server.write_attribute_value(
                ua.NodeId.from_string(text), self._data_value(text, value, stamp)
            )

    async def write_status(self, text: str, status: int) -> None:
        """The PLC reports a tag as unusable (a Bad status code, no value)."""
        assert self.server is not None
        await self.server.write_attribute_value(
            ua.NodeId.from_string(text), self._data_value(text, None, None, status)
        )


def _zero(data_type: DataType) -> object:
    if data_type is DataType.BOOL:
        return False
    return 0.0 if data_type.is_float else 0


class Recorder:
    """A sample sink that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[list[SourceEvent]] = []
        self.fail_next = 0  # this many calls raise before accepting

    async def __call__(self, batch: Sequence[SourceEvent]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("sink refused the batch")
        self.batches.append(list(batch))

    @property
    def events(self) -> list[SourceEvent]:
        return [event for batch in self.batches for event in batch]

    def samples(self, machine_id: str, signal_name: str) -> list[Sample]:
        return [
            e
            for e in self.events
            if isinstance(e, Sample) and e.machine_id == machine_id and e.signal == signal_name
        ]

    def values(self, machine_id: str, signal_name: str) -> list[Value]:
        return [s.value for s in self.samples(machine_id, signal_name)]

    def links(self, machine_id: str) -> list[LinkChanged]:
        return [e for e in self.events if isinstance(e, LinkChanged) and e.machine_id == machine_id]

    async def wait_for(
        self, condition: Callable[[], bool], what: str, timeout_s: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.events!r}")
            await asyncio.sleep(0.01)

    async def wait_value(self, machine_id: str, signal_name: str, value: Value) -> None:
        """Wait until the signal's last delivered value is ``value`` (None: BAD)."""

        def arrived() -> bool:
            values = self.values(machine_id, signal_name)
            return bool(values) and values[-1] == value and type(values[-1]) is type(value)

        await self.wait_for(arrived, f"{machine_id}.{signal_name} = {value!r}")


class SilentProxy:
    """A TCP forwarder that can stop passing bytes while keeping every socket open.

    That is what a dead network path looks like to a client: no error, no
    data, no FIN. New connections are accepted but go nowhere while silent.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.silent = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not self.silent:
                    writer.write(data)
                    await writer.drain()
        writer.close()


def machine_nodes(machine_id: str, signals: Iterable[SignalDef]) -> dict[str, DataType]:
    return {
        s.location.node_id(machine_id): s.data_type
        for s in signals
        if isinstance(s.location, NodeLocation)
    }
