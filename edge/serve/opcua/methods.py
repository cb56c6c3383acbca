"""The line's OPC UA methods: argument descriptions, validation, roles, audit.

| method            | on                      | arguments                               |
|-------------------|-------------------------|-----------------------------------------|
| StartOrder        | ``<line>.Orders``       | OrderId                                 |
| HoldOrder         | ``<line>.Orders``       | OrderId, Reason                         |
| ResumeOrder       | ``<line>.Orders``       | OrderId                                 |
| CompleteOrder     | ``<line>.Orders``       | OrderId                                 |
| SetStopReason     | each machine            | Reason, StopId (0: none), Time (null: none) |
| AcknowledgeAlarm  | ``<line>``              | AlarmId                                 |

Each call is checked in this order, and the first failure answers with its own
status: the number of arguments (BadArgumentsMissing, BadTooManyArguments), the
caller's roles (BadUserAccessDenied; anonymous never calls a method), each
argument's type (BadTypeMismatch) and value (BadInvalidArgument), then the line
itself (a refused command: BadInvalidState; no order runtime:
BadResourceUnavailable; no answer in time: BadTimeout). An argument's problem
and every refusal are also told in words: the call's DiagnosticInfo and the
argument's, with the text in the response's StringTable, when the client asks
for diagnostics (``RequestHeader.ReturnDiagnostics``; see
:mod:`edge.serve.opcua.sessions`). ``UserExecutable`` of each method node
reads True only for a session whose user may call it.
Nothing raises out of a method: an unexpected error answers BadInternalError and
is logged.

Every call, accepted or not, becomes a :class:`~edge.commands.CommandAudit` on
the event bus (from there into the outbox) and an AuditUpdateMethodEvent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from asyncua import ua
from asyncua.crypto.permission_rules import User

from actors.machine import SetStopReason
from edge.commands import CommandAudit, LineCommands, OrderInfo, register_alarm_owner
from edge.config import OpcUaServerConfig
from edge.errors import CommandError, EdgeError
from edge.event_bus import BusEvent
from edge.serve.access import refusal
from edge.serve.opcua.alarms import AlarmBook, ConditionRefused
from edge.serve.opcua.security import Caller
from edge.serve.opcua.sessions import current_user, explain
from edge.serve.opcua.uaids import StatusCodes, numeric, status

log = logging.getLogger("edge.opcua_server.methods")

Vt = ua.VariantType
SOURCE = "opcua"
COMMAND_TIMEOUT_S = 10.0
MAX_TEXT = 256
# OPC UA's null DateTime is 1601-01-01; anything before the Unix epoch means "not given".
_EPOCH_TS = 0.0


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    vtype: ua.VariantType
    description: str
    optional: bool = False  # may be empty / 0 / null

    def argument(self) -> ua.Argument:
        arg = ua.Argument()
        arg.Name = self.name
        arg.DataType = numeric(self.vtype.value)
        arg.ValueRank = -1
        arg.ArrayDimensions = []
        arg.Description = ua.LocalizedText(self.description)
        return arg


@dataclass(frozen=True, slots=True)
class MethodDef:
    name: str
    description: str
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...] = ()


_ORDER_ID = Arg("OrderId", Vt.String, "The work order's id")
_STATUS = Arg("Status", Vt.String, "The order's status after the call")

METHODS: dict[str, MethodDef] = {
    m.name: m
    for m in (
        MethodDef(
            "StartOrder",
            "Start a released order on its machines",
            (_ORDER_ID,),
            (_STATUS,),
        ),
        MethodDef(
            "HoldOrder",
            "Hold a running order",
            (_ORDER_ID, Arg("Reason", Vt.String, "Why the order is held")),
            (_STATUS,),
        ),
        MethodDef("ResumeOrder", "Resume a held order", (_ORDER_ID,), (_STATUS,)),
        MethodDef(
            "CompleteOrder",
            "Complete an order (supervisor and above by default)",
            (_ORDER_ID,),
            (_STATUS,),
        ),
        MethodDef(
            "SetStopReason",
            "Name the reason of a stop of this machine: the stop StopId, else the stop "
            "at Time, else the open stop. Also for a stop that has ended.",
            (
                Arg("Reason", Vt.String, "A reason name from the machine's reason table"),
                Arg("StopId", Vt.UInt32, "The stop's id (the StopId variable); 0: none", True),
                Arg("Time", Vt.DateTime, "An instant inside the stop (UTC); null: none", True),
            ),
        ),
        MethodDef(
            "AcknowledgeAlarm",
            "Acknowledge an alarm by its id (the AlarmId of the alarm event)",
            (Arg("AlarmId", Vt.String, "The alarm's id"),),
        ),
        # The standard condition methods (OPC UA Part 9), on every condition of the line.
        MethodDef(
            "Acknowledge",
            "Acknowledge a condition's notification",
            (
                Arg("EventId", Vt.ByteString, "The EventId of the notification"),
                Arg("Comment", Vt.LocalizedText, "A comment", True),
            ),
        ),
        MethodDef(
            "Confirm",
            "Confirm an acknowledged condition: its cause is dealt with",
            (
                Arg("EventId", Vt.ByteString, "The EventId of the notification"),
                Arg("Comment", Vt.LocalizedText, "A comment", True),
            ),
        ),
    )
}
# Acknowledge and Confirm are what AcknowledgeAlarm is: the same roles.
_ROLES_OF = {"Acknowledge": "AcknowledgeAlarm", "Confirm": "AcknowledgeAlarm"}


class _Refusal(Exception):
    """A call answered with a Bad status; ``argument`` is the offending input's index."""

    def __init__(self, code: int, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.argument = argument


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    return str(value)


class MethodHandler:
    """Turns OPC UA calls into LineCommands calls."""

    def __init__(
        self,
        config: OpcUaServerConfig,
        *,
        commands: Callable[[], LineCommands | None],
        machine_ask: Callable[[str, SetStopReason], Awaitable[Any]],
        publish: Callable[[Sequence[BusEvent]], None],
        caller: Callable[[User | None], Caller],
        audit_event: Callable[..., Awaitable[None]],
        on_order: Callable[[OrderInfo], None],
    ) -> None:
        self._config = config
        self._commands = commands
        self._machine_ask = machine_ask
        self._publish = publish
        self._caller = caller
        self._audit_event = audit_event
        self._on_order = on_order
        self.calls = 0
        self.refused = 0
        self._names: dict[ua.NodeId, str] = {}
        self._not_executable: set[ua.NodeId] = set()
        self.alarms: AlarmBook | None = None  # the line's conditions (Acknowledge, Confirm)

    def not_executable(self, method_id: ua.NodeId) -> None:
        """A method node nobody calls (an InstanceDeclaration on a type)."""
        self._not_executable.add(method_id)

    def user_executable(self, method_id: ua.NodeId, user: User | None) -> bool | None:
        """:class:`~edge.serve.opcua.sessions.AccessRules`: may ``user`` call it?"""
        if method_id in self._not_executable:
            return False
        name = self._names.get(method_id)
        if name is None:
            return None
        return self.may_call(name, self._caller(user))

    def may_call(self, method: str, caller: Caller) -> bool:
        allowed = self._config.roles_for(_ROLES_OF.get(method, method))
        return not caller.anonymous and bool(caller.roles & allowed)

    def callback(
        self, name: str, method_id: ua.NodeId, machine_id: str | None = None
    ) -> Callable[..., Awaitable[ua.CallMethodResult]]:
        """The asyncua callback of method node ``method_id`` (on ``machine_id`` for
        SetStopReason)."""
        definition = METHODS[name]
        self._names[method_id] = name

        async def call(parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
            return await self._call(definition, machine_id, method_id, args, parent)

        return call

    async def _call(
        self,
        definition: MethodDef,
        machine_id: str | None,
        method_id: ua.NodeId,
        args: Sequence[ua.Variant],
        object_id: ua.NodeId,
    ) -> ua.CallMethodResult:
        self.calls += 1
        ts = time.time()
        caller = self._caller(current_user())
        names = [a.name for a in definition.inputs]
        arguments: dict[str, object] = {
            n: _text(v.Value) for n, v in zip(names, args, strict=False)
        }
        if machine_id is not None:
            arguments = {"MachineId": machine_id} | arguments
        if definition.name in _ROLES_OF:
            arguments = {"ConditionId": object_id.to_string()} | arguments
        result = ua.CallMethodResult()
        result.InputArgumentResults = [status(StatusCodes.Good) for _ in args]
        result.InputArgumentDiagnosticInfos = []
        try:
            self._authorize(definition.name, caller)
            values = self._validate(definition, args)
            outputs, outcome = await self._run(
                definition.name, machine_id, object_id, values, caller
            )
        except _Refusal as refusal:
            self.refused += 1
            result.StatusCode = status(refusal.code)
            explain(result, refusal.message)
            if refusal.argument is not None and refusal.argument < len(args):
                result.InputArgumentResults[refusal.argument] = status(refusal.code)
                result.InputArgumentDiagnosticInfos = [ua.DiagnosticInfo() for _ in args]
                result.InputArgumentDiagnosticInfos[refusal.argument] = ua.DiagnosticInfo(
                    AdditionalInfo=ua.String(refusal.message)
                )
            await self._audit(
                definition,
                ts=ts,
                caller=caller,
                method_id=method_id,
                args=args,
                arguments=arguments,
                accepted=False,
                result=refusal.message,
            )
            return result
        result.StatusCode = status(StatusCodes.Good)
        result.OutputArguments = outputs
        await self._audit(
            definition,
            ts=ts,
            caller=caller,
            method_id=method_id,
            args=args,
            arguments=arguments,
            accepted=True,
            result=outcome,
        )
        return result

    def _authorize(self, method: str, caller: Caller) -> None:
        # The line's one role rule, shared with the line display (edge.serve.access);
        # Acknowledge/Confirm of a condition take AcknowledgeAlarm's roles.
        allowed = self._config.roles_for(_ROLES_OF.get(method, method))
        message = refusal(method, caller, allowed)
        if message is not None:
            raise _Refusal(StatusCodes.BadUserAccessDenied, message)

    def _validate(self, definition: MethodDef, args: Sequence[ua.Variant]) -> list[object]:
        expected = definition.inputs
        if len(args) < len(expected):
            missing = ", ".join(a.name for a in expected[len(args) :])
            raise _Refusal(
                StatusCodes.BadArgumentsMissing, f"{definition.name}: missing argument(s) {missing}"
            )
        if len(args) > len(expected):
            raise _Refusal(
                StatusCodes.BadTooManyArguments,
                f"{definition.name}: takes {len(expected)} argument(s), got {len(args)}",
            )
        values: list[object] = []
        for index, (spec, variant) in enumerate(zip(expected, args, strict=True)):
            if variant.VariantType is not spec.vtype and not (
                spec.optional and variant.VariantType is Vt.Null
            ):
                raise _Refusal(
                    StatusCodes.BadTypeMismatch,
                    f"{spec.name}: must be {spec.vtype.name}, got {variant.VariantType.name}",
                    index,
                )
            values.append(self._check_value(spec, variant.Value, index))
        return values

    @staticmethod
    def _check_value(spec: Arg, value: object, index: int) -> object:
        if spec.vtype is Vt.String:
            text = (value or "") if isinstance(value, str | type(None)) else ""
            if not text.strip() and not spec.optional:
                raise _Refusal(
                    StatusCodes.BadInvalidArgument, f"{spec.name}: must not be empty", index
                )
            if len(text) > MAX_TEXT:
                raise _Refusal(
                    StatusCodes.BadInvalidArgument,
                    f"{spec.name}: at most {MAX_TEXT} characters, got {len(text)}",
                    index,
                )
            return text.strip()
        if spec.vtype is Vt.DateTime:
            if not isinstance(value, datetime):
                return None
            ts = value.timestamp()
            if ts <= _EPOCH_TS:
                return None
            if ts > time.time() + 60:
                raise _Refusal(
                    StatusCodes.BadInvalidArgument,
                    f"{spec.name}: {value.isoformat()} is in the future",
                    index,
                )
            return ts
        if spec.vtype is Vt.UInt32:
            return int(value) if isinstance(value, int) and value > 0 else None
        if spec.vtype is Vt.ByteString and not isinstance(value, bytes):
            raise _Refusal(StatusCodes.BadInvalidArgument, f"{spec.name}: must not be null", index)
        return value

    async def _run(
        self,
        method: str,
        machine_id: str | None,
        object_id: ua.NodeId,
        values: list[object],
        caller: Caller,
    ) -> tuple[list[ua.Variant], str]:
        try:
            return await asyncio.wait_for(
                self._dispatch(method, machine_id, object_id, values, caller), COMMAND_TIMEOUT_S
            )
        except CommandError as exc:
            raise _Refusal(StatusCodes.BadInvalidState, f"{method}: {exc}") from exc
        except TimeoutError as exc:
            raise _Refusal(
                StatusCodes.BadTimeout, f"{method}: no answer within {COMMAND_TIMEOUT_S:g} s"
            ) from exc
        except _Refusal:
            raise
        except EdgeError as exc:
            raise _Refusal(StatusCodes.BadResourceUnavailable, f"{method}: {exc}") from exc
        except Exception as exc:
            log.exception("OPC UA method failed unexpectedly", extra={"method": method})
            raise _Refusal(
                StatusCodes.BadInternalError, f"{method}: internal error ({type(exc).__name__})"
            ) from exc

    async def _dispatch(
        self,
        method: str,
        machine_id: str | None,
        object_id: ua.NodeId,
        values: list[object],
        caller: Caller,
    ) -> tuple[list[ua.Variant], str]:
        who = {"source": SOURCE, "user": caller.name}
        commands = self._commands()
        if method in _ROLES_OF:
            return await self._condition(method, object_id, values, caller, commands)
        if method == "SetStopReason":
            assert machine_id is not None
            reason, stop_id, ts = values
            if commands is None:
                # No order runtime: the machine actor itself takes operator reasons.
                await self._machine_ask(
                    machine_id,
                    SetStopReason(
                        cast(str, reason), cast("float | None", ts), cast("int | None", stop_id)
                    ),
                )
            else:
                await commands.set_stop_reason(
                    machine_id,
                    cast(str, reason),
                    stop_id=cast("int | None", stop_id),
                    ts=cast("float | None", ts),
                    **who,
                )
            return [], f"stop reason of {machine_id} set to {reason!r}"
        if commands is None:
            raise _Refusal(
                StatusCodes.BadResourceUnavailable,
                f"{method}: the line's order runtime is not running",
            )
        if method == "AcknowledgeAlarm":
            await commands.acknowledge_alarm(cast(str, values[0]), **who)
            return [], f"alarm {values[0]!r} acknowledged"
        order_id = cast(str, values[0])
        if method == "StartOrder":
            info = await commands.start_order(order_id, **who)
        elif method == "HoldOrder":
            info = await commands.hold_order(order_id, cast(str, values[1]), **who)
        elif method == "ResumeOrder":
            info = await commands.resume_order(order_id, **who)
        else:
            info = await commands.complete_order(order_id, **who)
        self._on_order(info)
        return [ua.Variant(info.status, Vt.String)], f"order {order_id!r} is {info.status}"

    async def _condition(
        self,
        method: str,
        condition_id: ua.NodeId,
        values: list[object],
        caller: Caller,
        commands: LineCommands | None,
    ) -> tuple[list[ua.Variant], str]:
        """Acknowledge or Confirm one of the line's conditions."""
        book = self.alarms
        if book is None:
            raise _Refusal(StatusCodes.BadNodeIdUnknown, f"{method}: this line has no conditions")
        event_id, comment = values
        note = (comment.Text or "") if isinstance(comment, ua.LocalizedText) else ""
        try:
            condition = book.check(condition_id, event_id, confirming=method == "Confirm")
        except ConditionRefused as refused:
            raise _Refusal(refused.code, f"{method}: {refused.message}") from refused
        if method == "Confirm":
            book.confirm(condition, time.time(), caller.name, note)
            return [], f"{condition.text} confirmed"
        if commands is None:
            raise _Refusal(
                StatusCodes.BadResourceUnavailable,
                f"{method}: the line's order runtime, which acknowledges alarms, is not running",
            )
        register_alarm_owner(commands, book)
        # The comment waits for the acknowledgement: this book's own (machine conditions)
        # or the station's AlarmAcknowledged event (SPC).
        condition.pending_comment = note
        try:
            await commands.acknowledge_alarm(condition.key, source=SOURCE, user=caller.name)
        except BaseException:
            condition.pending_comment = ""
            raise
        return [], f"{condition.text} ({condition.key}) acknowledged"

    async def _audit(
        self,
        definition: MethodDef,
        *,
        ts: float,
        caller: Caller,
        method_id: ua.NodeId,
        args: Sequence[ua.Variant],
        arguments: dict[str, object],
        accepted: bool,
        result: str,
    ) -> None:
        audit = CommandAudit(
            ts=ts,
            source=SOURCE,
            user=caller.name,
            command=definition.name,
            arguments=arguments,
            accepted=accepted,
            result=result,
        )
        # The bus is typed for domain events; it carries command audits to the outbox too.
        self._publish([audit])
        if not accepted:
            log.info("OPC UA method refused: %s", result, extra={"user": caller.name})
        try:
            await self._audit_event(
                ts=ts,
                user=caller.name,
                method_id=method_id,
                arguments=list(args),
                accepted=accepted,
                message=f"{definition.name} by {caller.name}: {result}",
            )
        except Exception as exc:  # the audit event is a courtesy; the bus record is the audit
            log.warning("OPC UA audit event not raised: %r", exc)
