"""Companion specifications with an asyncua client: every machine carries OPC 40001-1
(Machinery) identification and MachineryItemState and is listed in Machinery's
Machines folder; the PackML machine carries the OPC 30050 state machine. States
follow the engine's state (fed to the real machine actor) and the PLC's state
word (the sample tap)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from asyncua import Client, ua

from actors.machine import GetStatus, SampleBatch, SetStopReason
from actors.messages import Sample
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server
from edge.serve.opcua import OpcUaServer

from .conftest import client, free_port, make_config, node_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DI = "http://opcfoundation.org/UA/DI/"
MACHINERY = "http://opcfoundation.org/UA/Machinery/"
PACKML = "http://opcfoundation.org/UA/PackML/"


@dataclass
class Line:
    service: LineService
    server: OpcUaServer
    port: int


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    port = free_port()
    config = make_config(tmp_path_factory.mktemp("companions"), port)
    async with LineService(
        config, components=[opcua_server.component], tick_interval_s=None
    ) as service:
        server = next(c for c in service.components if isinstance(c, OpcUaServer))
        yield Line(service, server, port)


async def value(c: Client, text: str) -> object:
    return await c.get_node(await node_of(c, text)).read_value()


async def test_machines_carry_machinery_identification(line: Line) -> None:
    async with client(line.port) as c:
        di = await c.get_namespace_index(DI)
        machinery = await c.get_namespace_index(MACHINERY)
        # Machinery's entry point lists the machines
        machines = c.get_node(ua.NodeId(1001, machinery))
        listed = {child.nodeid for child in await machines.get_children()}
        assert {await node_of(c, "L1.M1"), await node_of(c, "L1.M2")} <= listed
        # DI:Identification, a MachineIdentificationType, reached by HasAddIn
        m1 = c.get_node(await node_of(c, "L1.M1"))
        add_ins = await m1.get_referenced_nodes(ua.ObjectIds.HasAddIn)
        identification = await node_of(c, "L1.M1.Identification")
        assert identification in {n.nodeid for n in add_ins}
        node = c.get_node(identification)
        assert await node.read_browse_name() == ua.QualifiedName("Identification", di)
        assert await node.read_type_definition() == ua.NodeId(1012, machinery)
        assert (await value(c, "L1.M1.Identification.Manufacturer")) == ua.LocalizedText(
            "Acme Filling GmbH"
        )
        assert await value(c, "L1.M1.Identification.Model") == ua.LocalizedText("AF-400")
        assert await value(c, "L1.M1.Identification.SerialNumber") == "AF4-2019-0042"
        assert await value(c, "L1.M1.Identification.YearOfConstruction") == 2019
        assert await value(c, "L1.M1.Identification.ProductInstanceUri") == "urn:T:a:L1:M1"
        manufacturer = c.get_node(await node_of(c, "L1.M1.Identification.Manufacturer"))
        assert await manufacturer.read_browse_name() == ua.QualifiedName("Manufacturer", di)
        # M2 has no make configured: the mandatory ones are empty, the optional ones absent
        assert await value(c, "L1.M2.Identification.SerialNumber") == ""
        with pytest.raises(ua.UaStatusCodeError):
            await value(c, "L1.M2.Identification.Model")


async def test_machinery_item_state_follows_the_engine(line: Line) -> None:
    async with client(line.port) as c:
        machinery = await c.get_namespace_index(MACHINERY)
        state = "L1.M1.MachineryBuildingBlocks.MachineryItemState"
        node = c.get_node(await node_of(c, state))
        assert await node.read_type_definition() == ua.NodeId(1002, machinery)

        async def current() -> tuple[str, ua.NodeId]:
            text = await value(c, f"{state}.CurrentState")
            state_id = await value(c, f"{state}.CurrentState.Id")
            assert isinstance(text, ua.LocalizedText) and isinstance(state_id, ua.NodeId)
            return str(text.Text), state_id

        # no data yet: NotAvailable (the state object of the type, by its NodeId)
        assert await current() == ("NotAvailable", ua.NodeId(5005, machinery))
        ref = line.service.machine_ref("M1")
        t0 = time.time() - 600
        await ref.tell(SampleBatch((Sample("M1", "running", True, t0),)))
        await ref.ask(GetStatus(time.time()))
        await wait_for(lambda: _state_is(current(), "Executing"))
        assert (await current())[1] == ua.NodeId(5006, machinery)
        # a stop without a reason: NotExecuting; named "cleaning" (planned): OutOfService
        await ref.tell(SampleBatch((Sample("M1", "running", False, t0 + 10),)))
        await ref.ask(GetStatus(time.time()))
        await wait_for(lambda: _state_is(current(), "NotExecuting"))
        await ref.ask(SetStopReason("cleaning", None, None))
        await wait_for(lambda: _state_is(current(), "OutOfService"))
        assert (await current())[1] == ua.NodeId(5004, machinery)


async def _state_is(current: object, name: str) -> bool:
    text, _ = await current  # type: ignore[misc]
    return bool(text == name)


async def test_the_packml_machine_carries_the_packml_state_machine(line: Line) -> None:
    async with client(line.port) as c:
        packml = await c.get_namespace_index(PACKML)
        base = "L1.M2.BaseStateMachine"
        node = c.get_node(await node_of(c, base))
        assert await node.read_browse_name() == ua.QualifiedName("BaseStateMachine", packml)
        assert await node.read_type_definition() == ua.NodeId(3, packml)
        # M1 (no PackML state word in its plc_map) has none
        with pytest.raises(ua.UaStatusCodeError):
            await value(c, "L1.M1.BaseStateMachine.CurrentState")
        available = await value(c, f"{base}.MachineState.ExecuteState.AvailableStates")
        assert isinstance(available, list) and len(available) == 12

        async def states() -> list[str | None]:
            out: list[str | None] = []
            for path in ("", ".MachineState", ".MachineState.ExecuteState"):
                data = await c.get_node(
                    await node_of(c, f"{base}{path}.CurrentState")
                ).read_data_value(raise_on_bad_status=False)
                text = data.Value.Value if data.Value is not None else None
                out.append(text.Text or None if isinstance(text, ua.LocalizedText) else "?")
            return out

        # Execute (6): Cleared / Running / Execute
        line.server.ingest_samples([Sample("M2", "state", 6, time.time())])
        await wait_for(lambda: _equals(states(), ["Cleared", "Running", "Execute"]))
        execute_id = await value(c, f"{base}.MachineState.ExecuteState.CurrentState.Id")
        assert execute_id == ua.NodeId(36, packml)
        # Aborted (9): the nested machines are not active (empty, a null Id)
        line.server.ingest_samples([Sample("M2", "state", 9, time.time())])
        await wait_for(lambda: _equals(states(), ["Aborted", None, None]))
        assert await value(c, f"{base}.MachineState.CurrentState.Id") == ua.NodeId()
        # Stopped (2): Cleared / Stopped, no execute state
        line.server.ingest_samples([Sample("M2", "state", 2, time.time())])
        await wait_for(lambda: _equals(states(), ["Cleared", "Stopped", None]))


async def _equals(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]
