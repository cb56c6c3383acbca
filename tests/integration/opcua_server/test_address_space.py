"""Browse, read, subscribe and receive events from the line's OPC UA server with an
asyncua client, while the real machine actors process samples.

One server for the whole module (starting one takes about a second); the
machines have no PLC here, so each test feeds its machine's actor samples with
exact timestamps and knows, by hand, what the engine must show. The wall-clock
tick is off: a tick at "now" would move a machine's event time past the recorded
timestamps the tests feed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.object_ids import ObjectIds

from actors.machine import GetStatus, SampleBatch
from actors.messages import LinkChanged, Sample
from edge import opcua_server
from edge.opcua_server import OpcUaServer
from edge.opcua_server.model import TYPES_NAMESPACE as TYPES
from edge.opcua_server.units import unece_unit_id
from edge.service import LineService

from .conftest import USERS, client, free_port, make_config, node_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Line:
    service: LineService
    server: OpcUaServer
    port: int


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    port = free_port()
    config = make_config(tmp_path_factory.mktemp("line"), port, opcua=USERS)
    async with LineService(
        config, components=[opcua_server.component], tick_interval_s=None
    ) as service:
        server = next(c for c in service.components if isinstance(c, OpcUaServer))
        yield Line(service, server, port)


async def feed(line: Line, machine_id: str, *samples: tuple[str, object, float]) -> None:
    batch = tuple(Sample(machine_id, signal, value, ts) for signal, value, ts in samples)
    ref = line.service.machine_ref(machine_id)
    await ref.tell(SampleBatch(batch))
    await ref.ask(GetStatus(time.time()))  # handled, events published


async def read(c: Client, text: str) -> ua.DataValue:
    node = c.get_node(await node_of(c, text))
    value: ua.DataValue = await node.read_data_value(raise_on_bad_status=False)
    return value


async def browse_names(c: Client, text: str) -> set[str]:
    node = c.get_node(await node_of(c, text))
    return {(await child.read_browse_name()).Name for child in await node.get_children()}


async def test_the_tree_has_typed_objects_with_stable_node_ids(line: Line) -> None:
    async with client(line.port) as c:
        objects = {(await n.read_browse_name()).Name for n in await c.nodes.objects.get_children()}
        assert "L1" in objects
        assert await browse_names(c, "L1") >= {
            "Machines",
            "Orders",
            "QualityStations",
            "Shift",
            "Diagnostics",
            "AcknowledgeAlarm",
        }
        assert await browse_names(c, "L1.Machines") == {"M1", "M2"}
        assert await browse_names(c, "L1.QualityStations") == {"QS1"}
        idx = await c.get_namespace_index("urn:T:a:L1")
        # the types are in the one namespace of every edge, the instances in the line's
        tidx = await c.get_namespace_index(TYPES)
        assert (idx, tidx) == (2, 3)  # the line's namespace keeps index 2, as SCADA tags have it
        machine_type = ua.NodeId("MachineType", tidx)
        m1 = c.get_node(ua.NodeId("L1.M1", idx))
        assert await m1.read_type_definition() == machine_type
        station = c.get_node(ua.NodeId("L1.QS1", idx))  # not there: stations have their own path
        with pytest.raises(ua.UaStatusCodeError):
            await station.read_browse_name()
        qs1 = c.get_node(ua.NodeId("L1.QualityStations.QS1", idx))
        assert await qs1.read_type_definition() == ua.NodeId("QualityStationType", tidx)
        # MachineType is an ObjectType below BaseObjectType, and an instance has every
        # mandatory member, under the same BrowseName (in the types namespace)
        supertype = await c.get_node(machine_type).get_parent()
        assert supertype.nodeid == ua.NodeId(ObjectIds.BaseObjectType)
        type_members = {
            (q.NamespaceIndex, q.Name)
            for n in await c.get_node(machine_type).get_children()
            if (q := await n.read_browse_name())
        }
        optional = {"FaultAlarm", "PlcLinkAlarm", "BaseStateMachine"}
        mandatory = {m for m in type_members if m[1] not in optional}
        m1_members = {
            (q.NamespaceIndex, q.Name)
            for n in await m1.get_children()
            if (q := await n.read_browse_name())
        }
        assert mandatory <= m1_members
        assert (tidx, "OEE") in m1_members
        assert {"State", "OEE", "LastShift", "ProcessValues", "SetStopReason"} <= {
            name for _, name in mandatory
        }
        assert await c.get_node(ua.NodeId("L1.M1.OEE", idx)).read_type_definition() == (
            ua.NodeId("OeeWindowType", tidx)
        )
        # the plc_map's process values, by their map names
        assert await browse_names(c, "L1.M1.ProcessValues") == {
            "temperature",
            "speed",
            "pressure",
            "door_closed",
        }
        assert await browse_names(c, "L1.M2.ProcessValues") == {"speed", "temperature"}


async def _unit_id(c: Client, text: str) -> int:
    idx = await c.get_namespace_index("urn:T:a:L1")
    prop = c.get_node(ua.NodeId(f"{text}.EngineeringUnits", idx))
    info = await prop.read_value()
    assert info.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
    unit: int = info.UnitId
    return unit


async def test_values_have_their_data_types_units_and_descriptions(line: Line) -> None:
    async with client(line.port) as c:
        idx = await c.get_namespace_index("urn:T:a:L1")

        async def data_type(text: str) -> ua.NodeId:
            node_id: ua.NodeId = await c.get_node(ua.NodeId(text, idx)).read_data_type()
            return node_id

        assert await data_type("L1.M1.OEE.Availability") == ua.NodeId(ObjectIds.Double)
        assert await data_type("L1.M1.OEE.TotalCount") == ua.NodeId(ObjectIds.Int64)
        assert await data_type("L1.M1.State") == ua.NodeId(ObjectIds.String)
        assert await data_type("L1.M1.StateSince") == ua.NodeId(ObjectIds.DateTime)
        assert await data_type("L1.M1.PlcLinkUp") == ua.NodeId(ObjectIds.Boolean)
        # a scaled int16 is an engineering Double; an unscaled uint16 stays UInt16
        assert await data_type("L1.M1.ProcessValues.temperature") == ua.NodeId(ObjectIds.Double)
        assert await data_type("L1.M1.ProcessValues.speed") == ua.NodeId(ObjectIds.UInt16)
        assert await data_type("L1.M1.ProcessValues.pressure") == ua.NodeId(ObjectIds.Float)
        # UNECE codes (OPC UA Part 8): "CEL" = 0x43454C, "H87" piece, "SEC" second
        assert await _unit_id(c, "L1.M1.ProcessValues.temperature") == 0x43454C
        assert await _unit_id(c, "L1.M1.ProcessValues.speed") == unece_unit_id("H10")
        assert await _unit_id(c, "L1.M1.OEE.TotalCount") == unece_unit_id("H87")
        assert await _unit_id(c, "L1.M1.OEE.RunTime") == unece_unit_id("SEC")
        eu_range = await c.get_node(
            ua.NodeId("L1.M1.ProcessValues.temperature.EURange", idx)
        ).read_value()
        assert (eu_range.Low, eu_range.High) == (-40.0, 250.0)
        description = await c.get_node(ua.NodeId("L1.M1.OEE.Availability", idx)).read_description()
        assert "RunTime / PlannedProductionTime" in description.Text
        # a name from the config, Good from the start; a value not known yet says so
        name = await read(c, "L1.M1.Name")
        assert name.Value.Value == "Filler" and name.StatusCode.is_good()
        never = await read(c, "L1.M1.ProcessValues.door_closed")
        assert never.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData


async def test_clients_cannot_write(line: Line) -> None:
    """Each item of a Write is answered on its own (no ServiceFault for the request)."""
    async with client(line.port, "lead") as c:
        state = await node_of(c, "L1.M1.State")
        items = []
        for node_id, attribute, value in (
            (state, ua.AttributeIds.Value, ua.Variant("running", ua.VariantType.String)),
            (state, ua.AttributeIds.DisplayName, ua.Variant(ua.LocalizedText("x"))),
            (
                ua.NodeId("L1.M1.NoSuchNode", state.NamespaceIndex),
                ua.AttributeIds.Value,
                ua.Variant(1),
            ),
            # a standard node a client could write in asyncua's default address space
            (
                ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
                ua.AttributeIds.Value,
                ua.Variant("x"),
            ),
        ):
            item = ua.WriteValue()
            item.NodeId, item.AttributeId, item.Value = node_id, attribute, ua.DataValue(value)
            items.append(item)
        params = ua.WriteParameters()
        params.NodesToWrite = items
        results = await c.uaclient.write(params)
        assert [r.value for r in results] == [
            ua.StatusCodes.BadNotWritable,
            ua.StatusCodes.BadNotWritable,
            ua.StatusCodes.BadNodeIdUnknown,
            ua.StatusCodes.BadNotWritable,
        ]
        assert (await read(c, "L1.M1.State")).Value.Value != "x"


class Changes:
    def __init__(self) -> None:
        self.values: dict[str, list[ua.DataValue]] = {}
        self.names: dict[ua.NodeId, str] = {}

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        name = self.names[node.nodeid]
        self.values.setdefault(name, []).append(data.monitored_item.Value)

    def of(self, name: str) -> list[object]:
        return [dv.Value.Value for dv in self.values.get(name, [])]


async def test_subscribers_receive_changes_as_the_engine_counts(line: Line) -> None:
    changes = Changes()
    async with client(line.port) as c:
        subscription = await c.create_subscription(50, changes)
        names = ["L1.M1.OEE.TotalCount", "L1.M1.State", "L1.M1.OEE.GoodCount"]
        nodes = []
        for name in names:
            node = c.get_node(await node_of(c, name))
            changes.names[node.nodeid] = name
            nodes.append(node)
        await subscription.subscribe_data_change(nodes)
        t0 = time.time() - 60
        # The first reading is the baseline (OEE.md §5): 1000 counts nothing; then
        # 1000 -> 1004 is 4 pieces at t0+10, 1004 -> 1010 six more at t0+20.
        await feed(line, "M1", ("running", True, t0), ("total_count", 1000, t0))
        await feed(line, "M1", ("total_count", 1004, t0 + 10))
        await feed(line, "M1", ("total_count", 1010, t0 + 20))
        await wait_for(lambda: 10 in changes.of("L1.M1.OEE.TotalCount"))
        assert changes.of("L1.M1.OEE.TotalCount")[-1] == 10
        # only total_count is mapped... no: generic-modbus maps good and reject too,
        # but none was delivered, so good = total - station rejects = 10
        await wait_for(lambda: 10 in changes.of("L1.M1.OEE.GoodCount"))
        assert "running" in changes.of("L1.M1.State")
        last = changes.values["L1.M1.OEE.TotalCount"][-1]
        # SourceTimestamp is event time (the reading that revealed the pieces), not now
        assert abs(last.SourceTimestamp.timestamp() - (t0 + 20)) < 0.01
        assert last.ServerTimestamp.timestamp() > t0 + 50
        await subscription.delete()


async def test_process_values_and_the_packml_state_from_the_sample_tap(line: Line) -> None:
    # Before the stop test's samples (each signal's time only moves forward).
    ts = time.time() - 200
    samples = [
        Sample("M2", "temperature", 61.5, ts),
        Sample("M2", "speed", 120.25, ts),
        Sample("M2", "state", 6, ts),
    ]
    # The actor sees them too, as it does from a PLC: M2 runs, its link is up.
    await line.service.machine_ref("M2").tell(SampleBatch(tuple(samples)))
    line.server.ingest_samples(samples)
    async with client(line.port) as c:

        async def shown() -> bool:
            # Good, with the sample's own time: the writer flushes in batches, and a
            # status refresh may show M2 unknown (not yet past the samples) meanwhile.
            values = [
                await read(c, text)
                for text in (
                    "L1.M2.ProcessValues.temperature",
                    "L1.M2.ProcessValues.speed",
                    "L1.M2.PackMLState",
                )
            ]
            return all(
                v.StatusCode.is_good()
                and v.SourceTimestamp is not None
                and abs(v.SourceTimestamp.timestamp() - ts) < 0.01
                for v in values
            )

        await wait_for(shown)
        assert (await read(c, "L1.M2.ProcessValues.temperature")).Value.Value == 61.5
        speed = await read(c, "L1.M2.ProcessValues.speed")
        assert speed.Value.VariantType == ua.VariantType.Float
        assert speed.Value.Value == pytest.approx(120.25)
        assert (await read(c, "L1.M2.PackMLState")).Value.Value == "Execute"


async def test_stop_and_state_events_on_the_machine_and_the_server(line: Line) -> None:
    seen: list[Any] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            seen.append(event)

    async with client(line.port) as c:
        idx = await c.get_namespace_index("urn:T:a:L1")
        tidx = await c.get_namespace_index(TYPES)
        stop_type = c.get_node(ua.NodeId("StopEventType", tidx))
        state_type = c.get_node(ua.NodeId("MachineStateChangedEventType", tidx))
        subscription = await c.create_subscription(50, Handler())
        m2 = c.get_node(ua.NodeId("L1.M2", idx))
        await subscription.subscribe_events(m2, [stop_type, state_type])
        await subscription.subscribe_events(c.nodes.server, [stop_type])
        t0 = time.time() - 120
        # PackML: Execute (6) at t0, Held (11) at t0+10, Execute again at t0+40:
        # a 30 s stop, shorter than micro_stop_s (120 s): a micro-stop named "Held".
        await feed(line, "M2", ("state", 6, t0), ("total_count", 5, t0))
        await feed(line, "M2", ("state", 11, t0 + 10))
        await feed(line, "M2", ("state", 6, t0 + 40))

        def ended() -> list[Any]:
            return [e for e in seen if getattr(e, "Classification", None) == "micro_stop"]

        await wait_for(lambda: len(ended()) == 2)  # once on M2, once on the Server object
        event = ended()[0]
        assert event.MachineId == "M2" and event.Reason == "Held"
        assert event.Duration == pytest.approx(30.0), [
            (e.Message.Text, getattr(e, "Duration", None), e.Time) for e in seen
        ]
        assert abs(event.Time.timestamp() - (t0 + 40)) < 0.01
        assert event.SourceName == "M2"
        states = [e for e in seen if getattr(e, "State", None) == "stopped"]
        assert states and states[0].PreviousState == "running"
        await subscription.delete()


async def test_a_lost_plc_link_turns_live_values_uncertain_then_good_again(line: Line) -> None:
    t0 = time.time() - 30
    await feed(line, "M1", ("running", True, t0), ("total_count", 2000, t0 + 1))
    line.server.ingest_samples([Sample("M1", "temperature", 40.0, t0 + 1)])
    async with client(line.port) as c:

        async def counted() -> ua.DataValue:
            return await read(c, "L1.M1.OEE.TotalCount")

        # The KPI refresh runs on its own cycle: wait until it shows the actor's count.
        status = await line.service.machine_ref("M1").ask(GetStatus(time.time()))
        assert status.current_shift is not None
        before = status.current_shift.total_count

        async def settled() -> bool:
            value = await counted()
            return bool(value.StatusCode.is_good() and value.Value.Value == before)

        await wait_for(settled)
        lost = t0 + 5
        line.server.ingest_samples([LinkChanged("M1", False, lost, "timeout")])
        await line.service.machine_ref("M1").tell(LinkChanged("M1", False, lost))

        async def degraded() -> bool:
            value = await counted()
            return value.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue

        await wait_for(degraded)
        value = await counted()
        assert value.Value.Value == before  # the last usable value
        assert abs(value.SourceTimestamp.timestamp() - lost) < 0.01  # stamped with the loss
        temperature = await read(c, "L1.M1.ProcessValues.temperature")
        assert temperature.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
        assert temperature.Value.Value == 40.0
        # never had a value: Bad, not a made-up one
        pressure = await read(c, "L1.M1.ProcessValues.pressure")
        assert pressure.StatusCode.value == ua.StatusCodes.BadCommunicationError
        await wait_for(lambda: _value(read(c, "L1.M1.PlcLinkUp"), False))
        await wait_for(lambda: _value(read(c, "L1.M1.State"), "unknown"))

        back = t0 + 8
        line.server.ingest_samples([LinkChanged("M1", True, back)])
        await feed(line, "M1", ("running", True, back), ("total_count", 2003, back))
        await wait_for(lambda: _good(counted()))
        # The link status is refreshed with the diagnostics cycle, not with the values.
        await wait_for(lambda: _value(read(c, "L1.M1.PlcLinkUp"), True))
        # the last sample is Good again, with the time it was sampled
        await wait_for(lambda: _good(read(c, "L1.M1.ProcessValues.temperature")))
        temperature = await read(c, "L1.M1.ProcessValues.temperature")
        assert temperature.Value.Value == 40.0
        assert abs(temperature.SourceTimestamp.timestamp() - (t0 + 1)) < 0.01


async def _good(value: Any) -> bool:
    data = await value
    return bool(data.StatusCode.is_good())


async def _value(value: Any, expected: object) -> bool:
    data = await value
    return bool(data.Value.Value == expected)


async def test_counts_match_the_actor_and_kpis_are_doubles_or_no_value(line: Line) -> None:
    status = await line.service.machine_ref("M1").ask(GetStatus(time.time()))
    assert status.current_shift is not None
    async with client(line.port) as c:
        await asyncio.sleep(0.5)  # a refresh
        total = await read(c, "L1.M1.OEE.TotalCount")
        assert total.Value.Value == status.current_shift.total_count
        availability = await read(c, "L1.M1.OEE.Availability")
        assert availability.Value.VariantType == ua.VariantType.Double
        assert 0.0 < availability.Value.Value <= 1.0
        # no shift has closed yet: no window to show, said so
        last = await read(c, "L1.M1.LastShift.OEE")
        assert last.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
        assert (await read(c, "L1.Shift.Name")).Value.Value == "All"
        assert (await read(c, "L1.Diagnostics.Version")).Value.Value
