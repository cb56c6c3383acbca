"""Alarms & Conditions with an asyncua client, against the real order runtime: a
machine fault (the PLC's fault code, delivered through the sample tap as the PLC
sources deliver it) becomes an active, unacknowledged OffNormalAlarm; Acknowledge
goes through the line's commands (audited) and Confirm ends its retention;
ConditionRefresh lists exactly the retained conditions, to the caller's own
subscription only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua

from actors.messages import LinkChanged, Sample
from edge import opcua_server
from edge.commands import CommandAudit
from edge.opcua_server import OpcUaServer
from edge.orders import component as orders_component
from edge.service import LineService

from .conftest import USERS, client, free_port, make_config, node_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ACK = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
CONFIRM = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm)
REFRESH = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)
REFRESH2 = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh2)
CONDITION_TYPE = ua.NodeId(ua.ObjectIds.ConditionType)


@dataclass
class Line:
    service: LineService
    server: OpcUaServer
    port: int
    bus: list[Any] = field(default_factory=list)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    port = free_port()
    config = make_config(tmp_path_factory.mktemp("alarms"), port, opcua=USERS)
    components = [orders_component, opcua_server.component]
    async with LineService(config, components=components, tick_interval_s=None) as service:
        server = next(c for c in service.components if isinstance(c, OpcUaServer))
        result = Line(service, server, port)
        unsubscribe = service.bus.subscribe("test", result.bus.extend)
        yield result
        unsubscribe()


class Events:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.seen.append(event)

    def of(self, condition: ua.NodeId) -> list[Any]:
        return [e for e in self.seen if getattr(e, "NodeId", None) == condition]

    def types(self) -> list[ua.NodeId]:
        return [e.EventType for e in self.seen]


async def alarm_subscription(c: Client, events: Events) -> Any:
    subscription = await c.create_subscription(50, events)
    alarm_type = c.get_node(ua.NodeId(ua.ObjectIds.AlarmConditionType))
    refresh_types = [
        c.get_node(ua.NodeId(ua.ObjectIds.RefreshStartEventType)),
        c.get_node(ua.NodeId(ua.ObjectIds.RefreshEndEventType)),
    ]
    await subscription.subscribe_events(c.nodes.server, [alarm_type, *refresh_types])
    return subscription


async def test_a_fault_code_raises_an_alarm_acknowledged_confirmed_and_refreshed(
    line: Line,
) -> None:
    events = Events()
    async with client(line.port, "op") as c:
        fault = await node_of(c, "L1.M1.FaultAlarm")
        assert await c.get_node(fault).read_type_definition() == ua.NodeId(
            ua.ObjectIds.OffNormalAlarmType
        )
        subscription = await alarm_subscription(c, events)
        # the PLC reports fault 17 ("jam at infeed" in M1's reason table)
        t0 = time.time() - 5
        line.server.ingest_samples([Sample("M1", "fault_code", 17, t0)])
        await wait_for(lambda: len(events.of(fault)) >= 1)
        raised = events.of(fault)[-1]
        assert raised.Message.Text == "M1 fault 17: jam at infeed"
        assert raised.Severity == 700
        assert raised.Retain is True
        assert getattr(raised, "ActiveState/Id") is True
        assert getattr(raised, "AckedState/Id") is False
        assert raised.SourceName == "M1"
        assert raised.SourceNode == await node_of(c, "L1.M1")
        assert raised.Time.timestamp() == pytest.approx(t0, abs=0.001)
        # the condition's own variables say the same
        active = c.get_node(await node_of(c, "L1.M1.FaultAlarm.ActiveState.Id"))
        await wait_for(lambda: _is(active.read_value(), True))

        # a stale EventId is refused with its reason
        stale = await _call(c, fault, ACK, b"not-it", "")
        assert stale.StatusCode.value == ua.StatusCodes.BadEventIdUnknown
        ok = await _call(c, fault, ACK, raised.EventId, "on my way")
        assert ok.StatusCode.is_good(), ok
        await wait_for(lambda: getattr(events.of(fault)[-1], "AckedState/Id") is True)
        acked = events.of(fault)[-1]
        assert acked.Comment.Text == "on my way" and acked.ClientUserId == "op"
        assert acked.Retain is True  # still active
        again = await _call(c, fault, ACK, acked.EventId, "")
        assert again.StatusCode.value == ua.StatusCodes.BadConditionBranchAlreadyAcked

        # a second client connecting now sees the live alarm list through ConditionRefresh
        late = Events()
        async with client(line.port) as viewer:
            late_subscription = await alarm_subscription(viewer, late)
            await viewer.get_node(CONDITION_TYPE).call_method(
                REFRESH, ua.Variant(late_subscription.subscription_id, ua.VariantType.UInt32)
            )
            await wait_for(lambda: ua.NodeId(ua.ObjectIds.RefreshEndEventType) in late.types())
            listed = [e for e in late.seen if getattr(e, "NodeId", None) is not None]
            assert [e.NodeId for e in listed] == [fault]
            assert listed[0].EventId == acked.EventId  # the last notification, as it was
            # someone else's subscription is not this session's to refresh
            with pytest.raises(ua.UaStatusCodeError) as info:
                await viewer.get_node(CONDITION_TYPE).call_method(
                    REFRESH, ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)
                )
            assert info.value.code == ua.StatusCodes.BadSubscriptionIdInvalid
            await late_subscription.delete()

        # the fault clears: inactive, but retained until confirmed
        line.server.ingest_samples([Sample("M1", "fault_code", 0, t0 + 3)])
        await wait_for(lambda: getattr(events.of(fault)[-1], "ActiveState/Id") is False)
        cleared = events.of(fault)[-1]
        assert cleared.Retain is True
        done = await _call(c, fault, CONFIRM, cleared.EventId, "jam removed")
        assert done.StatusCode.is_good(), done
        await wait_for(lambda: getattr(events.of(fault)[-1], "ConfirmedState/Id") is True)
        assert events.of(fault)[-1].Retain is False
        await subscription.delete()
    # audited like every OPC UA method call (the runtime does not audit opcua calls twice)
    audits = [a for a in line.bus if isinstance(a, CommandAudit) and a.accepted]
    condition_id = "ns=2;s=L1.M1.FaultAlarm"
    assert [
        (a.command, a.user, a.arguments["ConditionId"], a.arguments["Comment"], a.result)
        for a in audits
        if a.command in ("Acknowledge", "Confirm")
    ] == [
        (
            "Acknowledge",
            "op",
            condition_id,
            "on my way",
            "L1.M1.FaultAlarm (machine/M1/fault) acknowledged",
        ),
        ("Confirm", "op", condition_id, "jam removed", "L1.M1.FaultAlarm confirmed"),
    ]


async def test_acknowledge_goes_through_the_line_commands(line: Line) -> None:
    """Without the order runtime (the line's commands) nothing is acknowledged."""
    events = Events()
    runtime, line.service.commands = line.service.commands, None
    try:
        async with client(line.port, "op") as c:
            fault = await node_of(c, "L1.M1.FaultAlarm")
            subscription = await alarm_subscription(c, events)
            line.server.ingest_samples([Sample("M1", "fault_code", 3, time.time())])
            await wait_for(lambda: len(events.of(fault)) >= 1)
            refused = await _call(c, fault, ACK, events.of(fault)[-1].EventId, "")
            assert refused.StatusCode.value == ua.StatusCodes.BadResourceUnavailable
            await subscription.delete()
    finally:
        line.service.commands = runtime
    # the MES acknowledges the same condition through the commands (as over MQTT)
    assert runtime is not None
    await runtime.acknowledge_alarm("machine/M1/fault", source="mqtt", user="mes")
    condition = line.server.alarms.by_key("machine/M1/fault")
    assert condition is not None and condition.acked and condition.user == "mes"
    line.server.ingest_samples([Sample("M1", "fault_code", 0, time.time())])


async def test_refresh2_serves_one_monitored_item(line: Line) -> None:
    events = Events()
    async with client(line.port, "lead") as c:
        # no PLC in this config: no PlcLinkAlarm (test_link_cut has one)
        with pytest.raises(ua.UaStatusCodeError):
            await c.get_node(await node_of(c, "L1.M1.PlcLinkAlarm")).read_browse_name()
        subscription = await alarm_subscription(c, events)
        (item,) = subscription._monitored_items.values()
        await c.get_node(CONDITION_TYPE).call_method(
            REFRESH2,
            ua.Variant(subscription.subscription_id, ua.VariantType.UInt32),
            ua.Variant(item.server_handle, ua.VariantType.UInt32),
        )
        await wait_for(lambda: ua.NodeId(ua.ObjectIds.RefreshEndEventType) in events.types())
        with pytest.raises(ua.UaStatusCodeError) as info:
            await c.get_node(CONDITION_TYPE).call_method(
                REFRESH2,
                ua.Variant(subscription.subscription_id, ua.VariantType.UInt32),
                ua.Variant(999_999, ua.VariantType.UInt32),
            )
        assert info.value.code == ua.StatusCodes.BadMonitoredItemIdInvalid
        await subscription.delete()


async def test_anonymous_sees_alarms_but_cannot_acknowledge(line: Line) -> None:
    events = Events()
    async with client(line.port) as c:
        fault = await node_of(c, "L1.M1.FaultAlarm")
        subscription = await alarm_subscription(c, events)
        line.server.ingest_samples([Sample("M1", "fault_code", 99, time.time())])
        await wait_for(lambda: len(events.of(fault)) >= 1)
        raised = events.of(fault)[-1]
        assert raised.Message.Text == "M1 fault 99"  # a code the reason table does not name
        refused = await _call(c, fault, ACK, raised.EventId, "")
        assert refused.StatusCode.value == ua.StatusCodes.BadUserAccessDenied
        # UserExecutable tells the HMI beforehand
        ack = c.get_node(ACK)
        assert await ack.read_attribute(ua.AttributeIds.UserExecutable) is not None
        value = await ack.read_attribute(ua.AttributeIds.UserExecutable)
        assert value.Value.Value is False
        await subscription.delete()
    async with client(line.port, "op") as c:
        value = await c.get_node(ACK).read_attribute(ua.AttributeIds.UserExecutable)
        assert value.Value.Value is True
    line.server.ingest_samples([LinkChanged("M1", up=True, ts=time.time())])


async def _call(
    c: Client, condition: ua.NodeId, method: ua.NodeId, event_id: bytes, comment: str
) -> ua.CallMethodResult:
    request = ua.CallMethodRequest()
    request.ObjectId = condition
    request.MethodId = method
    request.InputArguments = [
        ua.Variant(event_id, ua.VariantType.ByteString),
        ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
    ]
    (result,) = await c.uaclient.call([request])
    return result


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)
