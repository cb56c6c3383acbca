"""Every method with good and bad arguments and as an unauthorized user; every call
audited on the bus (CommandAudit, for the outbox) and as an OPC UA audit event.

The order runtime is a hand-written LineCommands double (our interface, see
conftest); SetStopReason without a runtime goes to the real machine actor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.ua_binary import struct_from_binary

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from actors.oee.events import StopReasonChanged
from edge.commands import CommandAudit
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server

from .conftest import USERS, OrdersDouble, client, free_port, make_config, node_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Line:
    service: LineService
    port: int
    orders: OrdersDouble
    bus: list[Any] = field(default_factory=list)

    def audits(self) -> list[CommandAudit]:
        return [e for e in self.bus if isinstance(e, CommandAudit)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    port = free_port()
    config = make_config(tmp_path_factory.mktemp("methods"), port, opcua=USERS)
    async with LineService(
        config, components=[opcua_server.component], tick_interval_s=None
    ) as service:
        orders = OrdersDouble()
        service.commands = orders
        result = Line(service, port, orders)
        unsubscribe = service.bus.subscribe("test", result.bus.extend)
        yield result
        unsubscribe()


@dataclass
class Called:
    """A Call's result with the words the server gave: the call's DiagnosticInfo and
    each argument's, looked up in the response's StringTable."""

    result: ua.CallMethodResult
    text: str | None
    symbol: str | None
    argument_texts: list[str | None]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)


# RequestHeader.ReturnDiagnostics: symbolic id, localized text, additional info of operations
OPERATION_DIAGNOSTICS = 0x20 | 0x40 | 0x80


async def call(
    c: Client, parent: str, method: str, *args: ua.Variant, diagnostics: int = OPERATION_DIAGNOSTICS
) -> Called:
    """A raw Call asking for diagnostics, to see the status, per-argument results and words."""
    item = ua.CallMethodRequest()
    item.ObjectId = await node_of(c, parent)
    item.MethodId = await node_of(c, f"{parent}.{method}")
    item.InputArguments = list(args)
    request = ua.CallRequest()
    request.Parameters.MethodsToCall = [item]
    request.RequestHeader.ReturnDiagnostics = diagnostics
    assert c.uaclient.protocol is not None
    data = await c.uaclient.protocol.send_request(request)
    response = struct_from_binary(ua.CallResponse, data)
    (result,) = response.Results
    table = response.ResponseHeader.StringTable

    def text(info: ua.DiagnosticInfo | None) -> str | None:
        if info is None or info.LocalizedText is None:
            return None
        return table[info.LocalizedText]

    diagnostic = response.DiagnosticInfos[0] if response.DiagnosticInfos else None
    symbol = (
        table[diagnostic.SymbolicId]
        if diagnostic is not None and diagnostic.SymbolicId is not None
        else None
    )
    if diagnostic is not None and diagnostic.LocalizedText is not None:
        assert diagnostic.AdditionalInfo == text(diagnostic)  # the same words, both ways
    return Called(
        result,
        text(diagnostic),
        symbol,
        [text(info) for info in result.InputArgumentDiagnosticInfos],
    )


def s(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


def bad(result: Called | ua.CallMethodResult) -> int:
    code: int = result.StatusCode.value
    return code


async def test_start_hold_resume_complete_an_order(line: Line) -> None:
    line.orders.add("WO-1")
    async with client(line.port, "lead") as c:
        # the high-level client API works too: outputs come back as values
        orders = c.get_node(await node_of(c, "L1.Orders"))
        start = c.get_node(await node_of(c, "L1.Orders.StartOrder"))
        assert await orders.call_method(start, s("WO-1")) == "running"
        result = await call(c, "L1.Orders", "HoldOrder", s("WO-1"), s("waiting for labels"))
        assert result.StatusCode.is_good() and result.OutputArguments[0].Value == "held"
        assert (await call(c, "L1.Orders", "ResumeOrder", s("WO-1"))).OutputArguments[0].Value == (
            "running"
        )
        done = await call(c, "L1.Orders", "CompleteOrder", s("WO-1"))
        assert done.OutputArguments[0].Value == "completed"
        # the order object appeared and follows the order
        status_node = c.get_node(await node_of(c, "L1.Orders.WO-1.Status"))
        await wait_for(lambda: _equals(status_node.read_value(), "completed"))
        product = c.get_node(await node_of(c, "L1.Orders.WO-1.Product"))
        assert await product.read_value() == "bottle-1l"
        target = c.get_node(await node_of(c, "L1.Orders.WO-1.TargetQuantity"))
        assert await target.read_value() == 100
    assert [(a, args, user, src) for a, args, user, src in line.orders.calls[-4:]] == [
        ("start", ("WO-1",), "lead", "opcua"),
        ("hold", ("WO-1",), "lead", "opcua"),
        ("resume", ("WO-1",), "lead", "opcua"),
        ("complete", ("WO-1",), "lead", "opcua"),
    ]
    audits = [a for a in line.audits() if a.arguments.get("OrderId") == "WO-1"]
    assert [(a.command, a.accepted, a.user, a.source) for a in audits] == [
        ("StartOrder", True, "lead", "opcua"),
        ("HoldOrder", True, "lead", "opcua"),
        ("ResumeOrder", True, "lead", "opcua"),
        ("CompleteOrder", True, "lead", "opcua"),
    ]
    assert audits[1].arguments == {"OrderId": "WO-1", "Reason": "waiting for labels"}
    assert audits[3].result == "order 'WO-1' is completed"


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_bad_arguments_get_specific_statuses_and_words(line: Line) -> None:
    line.orders.add("WO-2")
    async with client(line.port, "lead") as c:
        missing = await call(c, "L1.Orders", "HoldOrder", s("WO-2"))
        assert bad(missing) == ua.StatusCodes.BadArgumentsMissing
        extra = await call(c, "L1.Orders", "StartOrder", s("WO-2"), s("x"))
        assert bad(extra) == ua.StatusCodes.BadTooManyArguments
        wrong_type = await call(c, "L1.Orders", "StartOrder", ua.Variant(7, ua.VariantType.Int32))
        assert bad(wrong_type) == ua.StatusCodes.BadTypeMismatch
        assert wrong_type.InputArgumentResults[0].value == ua.StatusCodes.BadTypeMismatch
        assert wrong_type.argument_texts[0] == "OrderId: must be String, got Int32"
        assert wrong_type.text == "OrderId: must be String, got Int32"
        assert wrong_type.symbol == "BadTypeMismatch"
        empty = await call(c, "L1.Orders", "HoldOrder", s("WO-2"), s("  "))
        assert bad(empty) == ua.StatusCodes.BadInvalidArgument
        assert empty.InputArgumentResults[1].value == ua.StatusCodes.BadInvalidArgument
        assert empty.argument_texts[1] == "Reason: must not be empty"
        too_long = await call(c, "L1.Orders", "StartOrder", s("W" * 300))
        assert bad(too_long) == ua.StatusCodes.BadInvalidArgument
        # refused by the order runtime: an unknown order, a transition not allowed
        unknown = await call(c, "L1.Orders", "StartOrder", s("WO-404"))
        assert bad(unknown) == ua.StatusCodes.BadInvalidState
        assert unknown.text == "StartOrder: order_id: unknown order 'WO-404'"
        assert unknown.symbol == "BadInvalidState"
        not_running = await call(c, "L1.Orders", "HoldOrder", s("WO-2"), s("why"))
        assert bad(not_running) == ua.StatusCodes.BadInvalidState
        assert not_running.text == "HoldOrder: order 'WO-2' is released; cannot hold"
        # diagnostics only when asked for (Part 4 7.29): the status alone otherwise
        quiet = await call(c, "L1.Orders", "StartOrder", s("WO-404"), diagnostics=0)
        assert bad(quiet) == ua.StatusCodes.BadInvalidState
        assert quiet.text is None and quiet.argument_texts == []
        silent = await call(c, "L1.Orders", "StartOrder", ua.Variant(7), diagnostics=0)
        assert silent.argument_texts == []
        # the session survives every refusal
        assert (await call(c, "L1.Orders", "StartOrder", s("WO-2"))).StatusCode.is_good()
    refused = [a for a in line.audits() if not a.accepted]
    assert any(
        a.command == "StartOrder" and a.result == "StartOrder: order_id: unknown order 'WO-404'"
        for a in refused
    )
    assert any(
        a.command == "HoldOrder" and a.result == "HoldOrder: order 'WO-2' is released; cannot hold"
        for a in refused
    )


async def test_roles_decide_who_may_call_what(line: Line) -> None:
    line.orders.add("WO-3")
    async with client(line.port, "op") as c:
        assert (await call(c, "L1.Orders", "StartOrder", s("WO-3"))).StatusCode.is_good()
        # only supervisor and above complete an order
        refused = await call(c, "L1.Orders", "CompleteOrder", s("WO-3"))
        assert bad(refused) == ua.StatusCodes.BadUserAccessDenied
        assert refused.text == (
            "CompleteOrder: user 'op' (roles operator) may not call it; "
            "allowed roles: admin, supervisor"
        )
    async with client(line.port, "maint") as c:
        refused = await call(c, "L1.Orders", "StartOrder", s("WO-3"))
        assert bad(refused) == ua.StatusCodes.BadUserAccessDenied
    async with client(line.port) as c:  # anonymous: read-only, never a method
        for method, args in (
            ("StartOrder", (s("WO-3"),)),
            ("HoldOrder", (s("WO-3"), s("r"))),
            ("ResumeOrder", (s("WO-3"),)),
            ("CompleteOrder", (s("WO-3"),)),
        ):
            assert bad(await call(c, "L1.Orders", method, *args)) == (
                ua.StatusCodes.BadUserAccessDenied
            ), method
        assert bad(await call(c, "L1.M1", "SetStopReason", s("cleaning"), *_no_stop())) == (
            ua.StatusCodes.BadUserAccessDenied
        )
        assert bad(await call(c, "L1", "AcknowledgeAlarm", s("M1.x"))) == (
            ua.StatusCodes.BadUserAccessDenied
        )
    assert line.orders.orders["WO-3"].status == "running"  # nothing refused changed anything
    denied = [a for a in line.audits() if not a.accepted and a.user == "anonymous"]
    assert {a.command for a in denied} == {
        "StartOrder",
        "HoldOrder",
        "ResumeOrder",
        "CompleteOrder",
        "SetStopReason",
        "AcknowledgeAlarm",
    }
    completes = [a for a in line.audits() if a.command == "CompleteOrder" and a.user == "op"]
    assert completes[-1].result == (
        "CompleteOrder: user 'op' (roles operator) may not call it; "
        "allowed roles: admin, supervisor"
    )


def _no_stop() -> tuple[ua.Variant, ua.Variant]:
    return ua.Variant(0, ua.VariantType.UInt32), ua.Variant(None, ua.VariantType.Null)


async def test_set_stop_reason_and_acknowledge_alarm_through_the_runtime(line: Line) -> None:
    stop_time = datetime(2025, 8, 22, 10, 0, tzinfo=UTC)
    async with client(line.port, "maint") as c:
        ok = await call(
            c,
            "L1.M1",
            "SetStopReason",
            s("jam at infeed"),
            ua.Variant(7, ua.VariantType.UInt32),
            ua.Variant(stop_time, ua.VariantType.DateTime),
        )
        assert ok.StatusCode.is_good()
        refused = await call(c, "L1.M1", "SetStopReason", s("no such reason"), *_no_stop())
        assert bad(refused) == ua.StatusCodes.BadInvalidState
        future = await call(
            c,
            "L1.M1",
            "SetStopReason",
            s("cleaning"),
            ua.Variant(0, ua.VariantType.UInt32),
            ua.Variant(datetime(2999, 1, 1, tzinfo=UTC), ua.VariantType.DateTime),
        )
        assert bad(future) == ua.StatusCodes.BadInvalidArgument
        assert future.InputArgumentResults[2].value == ua.StatusCodes.BadInvalidArgument
        assert (await call(c, "L1", "AcknowledgeAlarm", s("M1.jam.1"))).StatusCode.is_good()
        unknown = await call(c, "L1", "AcknowledgeAlarm", s("M9.none"))
        assert bad(unknown) == ua.StatusCodes.BadInvalidState
    assert (
        "set_stop_reason",
        ("M1", "jam at infeed", 7, stop_time.timestamp()),
        "maint",
        "opcua",
    ) in line.orders.calls
    assert ("acknowledge_alarm", ("M1.jam.1",), "maint", "opcua") in line.orders.calls


async def test_set_stop_reason_reaches_the_machine_without_a_runtime(line: Line) -> None:
    """No order runtime: the operator reason goes to the machine actor, also for a past stop."""
    runtime, line.service.commands = line.service.commands, None
    try:
        t0 = time.time() - 600
        ref = line.service.machine_ref("M1")
        # running, stopped at t0+10 (no fault code: "unassigned"), running at t0+310
        batch = (
            Sample("M1", "running", True, t0),
            Sample("M1", "running", False, t0 + 10),
            Sample("M1", "running", True, t0 + 310),
        )
        await ref.tell(SampleBatch(batch))
        await ref.ask(GetStatus(time.time()))
        async with client(line.port, "op") as c:
            result = await call(
                c,
                "L1.M1",
                "SetStopReason",
                s("waiting for material"),
                ua.Variant(0, ua.VariantType.UInt32),
                ua.Variant(datetime.fromtimestamp(t0 + 100, UTC), ua.VariantType.DateTime),
            )
            assert result.StatusCode.is_good(), result
            # a reason the machine refuses comes back as BadInvalidState
            refused = await call(
                c,
                "L1.M1",
                "SetStopReason",
                s("waiting for material"),
                ua.Variant(0, ua.VariantType.UInt32),
                ua.Variant(datetime.fromtimestamp(t0 + 5, UTC), ua.VariantType.DateTime),
            )
            assert bad(refused) == ua.StatusCodes.BadInvalidState
            # an order method needs the runtime
            no_runtime = await call(c, "L1.Orders", "StartOrder", s("WO-1"))
            assert bad(no_runtime) == ua.StatusCodes.BadResourceUnavailable
    finally:
        line.service.commands = runtime
    changed = _of_type(line.bus, StopReasonChanged)
    assert any(e.machine_id == "M1" and e.reason == "waiting for material" for e in changed)


def _of_type(events: Sequence[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_every_call_raises_an_audit_event(line: Line) -> None:
    seen: list[Any] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            seen.append(event)

    line.orders.add("WO-5")
    async with client(line.port, "op") as c:
        subscription = await c.create_subscription(50, Handler())
        audit_type = c.get_node(ua.NodeId(ua.ObjectIds.AuditUpdateMethodEventType))
        await subscription.subscribe_events(c.nodes.server, audit_type)
        await call(c, "L1.Orders", "StartOrder", s("WO-5"))
        await call(c, "L1.Orders", "CompleteOrder", s("WO-5"))
        await wait_for(lambda: len(seen) >= 2)
        accepted, refused = seen[:2]
        assert accepted.Status is True and accepted.ClientUserId == "op"
        assert accepted.Message.Text == "StartOrder by op: order 'WO-5' is running"
        assert refused.Status is False
        assert accepted.MethodId == await node_of(c, "L1.Orders.StartOrder")
        await subscription.delete()
