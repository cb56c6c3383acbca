"""Machine faults, lost PLC links and SPC violations as OPC UA Alarms & Conditions
(OPC UA Part 9), so any A&C client shows the line's live alarm list.

Conditions (each a node in the line's namespace; its NodeId is the ConditionId):

- ``<line>.<machine>.FaultAlarm`` (OffNormalAlarmType): active while the PLC's
  fault code is not 0 (machines whose plc_map maps one), message and severity
  from the code and the machine's reason table;
- ``<line>.<machine>.PlcLinkAlarm`` (OffNormalAlarmType): active while the
  machine's PLC link is down;
- ``<line>.QualityStations.<station>.<alarm id>`` (AlarmConditionType), one per
  SPC alarm the quality station raised: active from the violation until it is
  acknowledged (SPC alarms latch), created when raised, removed once it no
  longer needs to be retained (the last ``KEEP_SPC`` stay browsable).

Each state change is one event notification, on the Server object and on the
condition's source (the machine, the station), with every field Part 9 defines
for the type (ConditionId included); ``Retain`` is True while the condition is
active, unacknowledged or unconfirmed. ``ConditionRefresh`` and
``ConditionRefresh2`` send a RefreshStartEvent, the current state of every
retained condition (with the EventId of its last notification, which is what
Acknowledge and Confirm take), then a RefreshEndEvent, to the caller's own
subscription only.

Acknowledge goes through the line's command path like the AcknowledgeAlarm
method (roles, CommandAudit, :meth:`LineCommands.acknowledge_alarm
<edge.commands.LineCommands.acknowledge_alarm>`): the SPC alarm is acknowledged
by its quality station (the AlarmAcknowledged event it publishes updates the
condition), a machine condition by this book, which the order runtime asks
(:class:`~edge.commands.AlarmOwner`). Confirm is the operator saying the cause
is dealt with; it exists only here (no line command), and is audited the same.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common import event_objects
from asyncua.server.server import Server

from edge.serve.opcua.address_space import AddressSpace, VarHandle
from edge.serve.opcua.uaids import ObjectIds, StatusCodes, numeric, status, ua_time
from edge.serve.opcua.writer import LiveValueWriter

log = logging.getLogger("edge.opcua_server")

FAULT_ALARM = "FaultAlarm"
PLC_LINK_ALARM = "PlcLinkAlarm"
SPC_ALARM = "SpcAlarm"
KEEP_SPC = 20  # SPC conditions kept browsable after they need no retaining

MACHINE_PREFIX = "machine/"
FAULT_SEVERITY = 700
PLC_LINK_SEVERITY = 600
SPC_SEVERITY = 500

_OFF_NORMAL = numeric(ObjectIds.OffNormalAlarmType)
_ALARM_CONDITION = numeric(ObjectIds.AlarmConditionType)
_PROCESS_CLASS = numeric(ObjectIds.ProcessConditionClassType)
_SYSTEM_CLASS = numeric(ObjectIds.SystemConditionClassType)
_SERVER = numeric(ObjectIds.Server)


def fault_key(machine_id: str) -> str:
    """The alarm id of a machine's FaultAlarm (LineCommands.acknowledge_alarm)."""
    return f"{MACHINE_PREFIX}{machine_id}/fault"


def plc_link_key(machine_id: str) -> str:
    """The alarm id of a machine's PlcLinkAlarm."""
    return f"{MACHINE_PREFIX}{machine_id}/plc_link"


class ConditionRefused(Exception):
    """A condition method refused; ``code`` is the status to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# asyncua types some event fields by their DataType NodeId, which a Variant cannot
# carry; each is a built-in type underneath (Part 3 §8, Part 5 §12).
_BUILT_IN = {
    ObjectIds.UtcTime: ua.VariantType.DateTime,
    ObjectIds.Duration: ua.VariantType.Double,
    ObjectIds.AudioDataType: ua.VariantType.ByteString,
    ObjectIds.LocaleId: ua.VariantType.String,
}


def new_event(cls: type) -> Any:
    """An asyncua event object whose every field a Variant can carry."""
    event: Any = cls()
    for name, data_type in list(event.data_types.items()):
        if isinstance(data_type, ua.NodeId):
            identifier = data_type.Identifier
            built_in = _BUILT_IN.get(identifier) if isinstance(identifier, int) else None
            event.data_types[name] = built_in if built_in is not None else ua.VariantType.Variant
    return event


def _two_state(
    event: Any, name: str, value: bool, *, labels: tuple[str, str], ts: datetime
) -> None:
    true, false = labels
    fields = event.data_types
    setattr(event, name, ua.LocalizedText(true if value else false))
    setattr(event, f"{name}/Id", value)
    for suffix, text in (("TrueState", true), ("FalseState", false)):
        if f"{name}/{suffix}" in fields:
            setattr(event, f"{name}/{suffix}", ua.LocalizedText(text))
    if f"{name}/TransitionTime" in fields:
        setattr(event, f"{name}/TransitionTime", ts)


@dataclass(slots=True)
class Condition:
    """One condition's state, its event object and its nodes' handles."""

    key: str  # the alarm id of LineCommands.acknowledge_alarm
    node_id: ua.NodeId  # the ConditionId
    text: str  # its NodeId string
    name: str  # ConditionName
    source: ua.NodeId
    source_name: str
    event: Any  # an asyncua event object of the condition's type
    handles: dict[str, VarHandle] = field(default_factory=dict)
    active: bool = False
    acked: bool = True
    confirmed: bool = True
    severity: int = 0
    message: str = ""
    active_since: datetime | None = None
    acked_time: datetime | None = None
    confirmed_time: datetime | None = None
    event_id: bytes = b""
    comment: str = ""
    user: str = ""
    pending_comment: str = ""  # of an Acknowledge on its way through the line's commands
    changed: float = 0.0  # wall time of the last change

    @property
    def retain(self) -> bool:
        return self.active or not self.acked or not self.confirmed

    def apply(self, ts: datetime, message: str | None) -> None:
        """Fill the event object from the state; a new EventId (one notification)."""
        event = self.event
        self.event_id = uuid.uuid4().bytes
        event.EventId = self.event_id
        event.Time = ts
        event.ReceiveTime = datetime.now(UTC)
        event.Message = ua.LocalizedText(message if message is not None else self.message)
        event.LastSeverity = event.Severity or self.severity
        event.Severity = self.severity
        event.Retain = self.retain
        _two_state(event, "EnabledState", True, labels=("Enabled", "Disabled"), ts=ts)
        _two_state(
            event,
            "ActiveState",
            self.active,
            labels=("Active", "Inactive"),
            ts=self.active_since or ts,
        )
        _two_state(
            event,
            "AckedState",
            self.acked,
            labels=("Acknowledged", "Unacknowledged"),
            ts=self.acked_time or ts,
        )
        _two_state(
            event,
            "ConfirmedState",
            self.confirmed,
            labels=("Confirmed", "Unconfirmed"),
            ts=self.confirmed_time or ts,
        )
        event.Comment = ua.LocalizedText(self.comment)
        event.ClientUserId = self.user
        event.Quality = status(StatusCodes.Good)
        event.SuppressedOrShelved = False


class AlarmBook:
    """The line's conditions; their changes go out as events through ``emit``."""

    def __init__(
        self,
        server: Server,
        space: AddressSpace,
        writer: LiveValueWriter,
        *,
        notify: Callable[[Condition], None],
    ) -> None:
        self._server = server
        self._space = space
        self._writer = writer
        self._notify = notify
        self._conditions: dict[ua.NodeId, Condition] = {}
        self._by_key: dict[str, Condition] = {}
        self._spc_done: OrderedDict[str, None] = OrderedDict()

    # -- building ---------------------------------------------------------------------

    async def add_machine_condition(
        self,
        kind: str,
        machine_id: str,
        machine_text: str,
        machine: ua.NodeId,
    ) -> Condition:
        """A machine's FaultAlarm or PlcLinkAlarm (an OffNormalAlarmType instance)."""
        text = f"{machine_text}.{kind}"
        with self._space.recording() as handles:
            node_id = await self._space.add_declared(
                text,
                ua.QualifiedName(kind, self._space.types_idx),
                machine,
                _OFF_NORMAL,
                optional=("ConfirmedState",),
            )
        cls = _SYSTEM_CLASS if kind == PLC_LINK_ALARM else _PROCESS_CLASS
        severity = PLC_LINK_SEVERITY if kind == PLC_LINK_ALARM else FAULT_SEVERITY
        key = plc_link_key(machine_id) if kind == PLC_LINK_ALARM else fault_key(machine_id)
        return self._add(
            key=key,
            text=text,
            node_id=node_id,
            handles=handles,
            name=kind,
            source=machine,
            source_name=machine_id,
            condition_class=cls,
            severity=severity,
        )

    async def add_spc_condition(
        self, alarm_id: str, station_id: str, station_text: str, station: ua.NodeId
    ) -> Condition:
        text = f"{station_text}.{alarm_id}"
        with self._space.recording() as handles:
            node_id = await self._space.add_declared(
                text,
                ua.QualifiedName(alarm_id, self._space.idx),
                station,
                _ALARM_CONDITION,
                optional=("ConfirmedState",),
            )
        return self._add(
            key=alarm_id,
            text=text,
            node_id=node_id,
            handles=handles,
            name=SPC_ALARM,
            source=station,
            source_name=station_id,
            condition_class=_PROCESS_CLASS,
            severity=SPC_SEVERITY,
        )

    def _add(
        self,
        *,
        key: str,
        text: str,
        node_id: ua.NodeId,
        handles: dict[str, VarHandle],
        name: str,
        source: ua.NodeId,
        source_name: str,
        condition_class: ua.NodeId,
        severity: int,
    ) -> Condition:
        event = new_event(
            event_objects.OffNormalAlarm if name != SPC_ALARM else event_objects.AlarmCondition
        )
        event.add_property("NodeId", node_id, ua.VariantType.NodeId)  # the ConditionId
        event.SourceNode = source
        event.SourceName = source_name
        event.ConditionName = name
        event.ConditionClassId = condition_class
        event.ConditionClassName = ua.LocalizedText(
            "System" if condition_class == _SYSTEM_CLASS else "Process"
        )
        event.BranchId = ua.NodeId()
        prefix = text + "."
        condition = Condition(
            key=key,
            node_id=node_id,
            text=text,
            name=name,
            source=source,
            source_name=source_name,
            event=event,
            handles={t[len(prefix) :]: h for t, h in handles.items() if t.startswith(prefix)},
            severity=severity,
        )
        self._conditions[node_id] = condition
        self._by_key[key] = condition
        condition.apply(datetime.now(UTC), "")
        self._stage(condition)
        return condition

    # -- reading ----------------------------------------------------------------------

    def get(self, node_id: ua.NodeId) -> Condition | None:
        return self._conditions.get(node_id)

    def by_key(self, key: str) -> Condition | None:
        return self._by_key.get(key)

    def retained(self) -> list[Condition]:
        return [c for c in self._conditions.values() if c.retain]

    def __len__(self) -> int:
        return len(self._conditions)

    # -- changes ----------------------------------------------------------------------

    def set_active(
        self, condition: Condition, active: bool, ts: float, message: str, severity: int | None
    ) -> None:
        """The condition's cause came or went (a fault code, a link, a violation)."""
        if active == condition.active and (not active or message == condition.message):
            return
        when = ua_time(ts)
        if active and not condition.active:
            condition.acked = condition.confirmed = False
            condition.comment = condition.user = ""
            condition.active_since = when
        elif not active:
            condition.active_since = when
        condition.active = active
        condition.message = message
        if severity is not None:
            condition.severity = severity
        self._changed(condition, when, None)

    def check(
        self, condition_id: ua.NodeId, event_id: object, *, confirming: bool = False
    ) -> Condition:
        """The condition an Acknowledge/Confirm call names, or why not (Part 9 §5.7)."""
        condition = self._conditions.get(condition_id)
        if condition is None:
            raise ConditionRefused(
                StatusCodes.BadNodeIdUnknown,
                f"{condition_id.to_string()} is not a condition of this line",
            )
        if not isinstance(event_id, bytes) or event_id != condition.event_id:
            raise ConditionRefused(
                StatusCodes.BadEventIdUnknown,
                f"{condition.text}: EventId is not the condition's latest notification "
                "(refresh the alarm list and try again)",
            )
        if confirming:
            if condition.confirmed:
                raise ConditionRefused(
                    StatusCodes.BadConditionBranchAlreadyConfirmed,
                    f"{condition.text} is already confirmed",
                )
            if not condition.acked:
                raise ConditionRefused(
                    StatusCodes.BadInvalidState,
                    f"{condition.text}: acknowledge it before confirming it",
                )
        elif condition.acked:
            raise ConditionRefused(
                StatusCodes.BadConditionBranchAlreadyAcked,
                f"{condition.text} is already acknowledged",
            )
        return condition

    # -- edge.commands.AlarmOwner: the order runtime acknowledges machine conditions here

    def owns(self, alarm_id: str) -> bool:
        return alarm_id.startswith(MACHINE_PREFIX) and alarm_id in self._by_key

    async def acknowledge(self, alarm_id: str, *, ts: float, user: str) -> bool:
        condition = self._by_key[alarm_id]
        return self.acknowledged(condition, ts, user)

    def acknowledged(self, condition: Condition, ts: float, user: str) -> bool:
        """The line accepted the acknowledgement; False: it already was."""
        comment, condition.pending_comment = condition.pending_comment, ""
        if condition.acked:
            return False
        when = ua_time(ts)
        condition.acked = True
        condition.acked_time = when
        condition.user = user
        if comment:
            condition.comment = comment
        if condition.name == SPC_ALARM:
            # An SPC alarm latches until acknowledged: then the violation is dealt with.
            condition.active = False
            condition.active_since = when
        self._changed(condition, when, f"{condition.message} (acknowledged by {user})")
        return True

    def confirm(self, condition: Condition, ts: float, user: str, comment: str) -> None:
        when = ua_time(ts)
        condition.confirmed = True
        condition.confirmed_time = when
        condition.user = user
        if comment:
            condition.comment = comment
        self._changed(condition, when, f"{condition.message} (confirmed by {user})")

    def _changed(self, condition: Condition, when: datetime, message: str | None) -> None:
        condition.apply(when, message)
        condition.changed = time.time()
        self._stage(condition)
        self._notify(condition)

    def _stage(self, condition: Condition) -> None:
        """Mirror the state into the condition's variables."""
        event = condition.event
        values: dict[str, object] = {
            "EventId": condition.event_id,
            "EventType": event.EventType,
            "SourceNode": condition.source,
            "SourceName": condition.source_name,
            "Time": event.Time,
            "ReceiveTime": event.ReceiveTime,
            "Message": event.Message,
            "Severity": condition.severity,
            "ConditionClassId": event.ConditionClassId,
            "ConditionClassName": event.ConditionClassName,
            "ConditionName": condition.name,
            "BranchId": ua.NodeId(),
            "Retain": condition.retain,
            "EnabledState": event.EnabledState,
            "EnabledState.Id": True,
            "ActiveState": event.ActiveState,
            "ActiveState.Id": condition.active,
            "AckedState": event.AckedState,
            "AckedState.Id": condition.acked,
            "ConfirmedState": event.ConfirmedState,
            "ConfirmedState.Id": condition.confirmed,
            "Comment": event.Comment,
            "ClientUserId": condition.user,
            "LastSeverity": event.LastSeverity,
            "Quality": event.Quality,
            "SuppressedOrShelved": False,
        }
        ts = event.Time.timestamp() if isinstance(event.Time, datetime) else None
        for name, value in values.items():
            handle = condition.handles.get(name)
            if handle is not None:
                self._writer.stage(handle, value, ts)

    # -- events -----------------------------------------------------------------------

    async def emit(self, condition: Condition) -> None:
        """One notification of the condition's state, on the Server and its source."""
        service = self._server.iserver.subscription_service
        event = condition.event
        for notifier in (_SERVER, condition.source):
            event.emitting_node = notifier
            await service.trigger_event(event)

    async def refresh(self, subscription: Any, monitored_item: int | None) -> None:
        """ConditionRefresh(2) for one subscription (Part 9 §5.5.7)."""
        monitored = subscription.monitored_item_srv
        notifiers = list(monitored._monitored_events)  # asyncua keeps them by notifier node
        start = new_event(event_objects.RefreshStartEvent)
        end = new_event(event_objects.RefreshEndEvent)
        for marker in (start, end):
            marker.SourceNode = _SERVER
            marker.SourceName = "Server"
            marker.Severity = 100
        await self._deliver(monitored, start, notifiers, monitored_item, fresh=True)
        for condition in self.retained():
            await self._deliver(
                monitored, condition.event, (_SERVER, condition.source), monitored_item
            )
        await self._deliver(monitored, end, notifiers, monitored_item, fresh=True)

    @staticmethod
    async def _deliver(
        monitored: Any,
        event: Any,
        notifiers: Sequence[ua.NodeId],
        monitored_item: int | None,
        *,
        fresh: bool = False,
    ) -> None:
        if fresh:
            event.EventId = uuid.uuid4().bytes
            event.Time = event.ReceiveTime = datetime.now(UTC)
        for notifier in notifiers:
            event.emitting_node = notifier
            await monitored.trigger_event(event, monitored_item)

    # -- SPC conditions: created and removed as the station raises them ---------------

    def spc_finished(self, condition: Condition) -> list[Condition]:
        """An SPC condition that needs no retaining; the ones to remove now."""
        self._spc_done[condition.key] = None
        self._spc_done.move_to_end(condition.key)
        gone: list[Condition] = []
        while len(self._spc_done) > KEEP_SPC:
            key, _ = self._spc_done.popitem(last=False)
            old = self._by_key.pop(key, None)
            if old is not None and not old.retain:
                self._conditions.pop(old.node_id, None)
                gone.append(old)
        return gone

    def forget(self, condition: Condition) -> None:
        self._writer.forget(list(condition.handles.values()))
