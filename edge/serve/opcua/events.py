"""OPC UA events: state changes, stop classification and alarms on the machine
objects, and an audit event for every method call.

Each event is raised on its machine object and on the Server object, so a client
watching one machine and a SCADA alarm list watching the whole server (the usual
setup) both see it. Event types are subtypes of BaseEventType with stable
string NodeIds in the fixed types namespace (``StopEventType``), so event filters
survive restarts and work on every line.

- MachineStateChangedEventType: every state change; severity 100 running,
  300 stopped, 500 unknown.
- StopEventType: a stop starts, ends (classified micro-stop or downtime by its
  whole length), or its reason is set; severity 200 to 500.
- MachineAlarmEventType: a core warning, the PLC link lost; severity 700.
- AuditUpdateMethodEventType (standard): every method call, on the Server
  object; severity 100 accepted, 500 refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from asyncua import ua
from asyncua.common.event_objects import BaseEvent
from asyncua.common.events import get_event_obj_from_type_node
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server

from edge.errors import EdgeError
from edge.serve.opcua.model import type_node_id
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric, string, ua_time

Vt = ua.VariantType

STATE_EVENT = "MachineStateChangedEventType"
STOP_EVENT = "StopEventType"
ALARM_EVENT = "MachineAlarmEventType"

_EVENT_TYPES: dict[str, tuple[str, tuple[tuple[str, ua.VariantType, object], ...]]] = {
    STATE_EVENT: (
        "A machine's state changed (running, stopped, unknown)",
        (
            ("MachineId", Vt.String, ""),
            ("State", Vt.String, ""),
            ("PreviousState", Vt.String, ""),
        ),
    ),
    STOP_EVENT: (
        "A stop started, ended (classified micro-stop or downtime by its length), "
        "or its reason was set",
        (
            ("MachineId", Vt.String, ""),
            ("StopId", Vt.UInt32, 0),
            ("Reason", Vt.String, ""),
            ("Category", Vt.String, ""),
            ("Classification", Vt.String, ""),
            ("StopStart", Vt.DateTime, ua_time(0)),
            ("Duration", Vt.Double, 0.0),
        ),
    ),
    ALARM_EVENT: (
        "Something on a machine a person should look at",
        (
            ("MachineId", Vt.String, ""),
            ("AlarmId", Vt.String, ""),
            ("Kind", Vt.String, ""),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event to raise: its type, the machine, its fields, time and message."""

    type_name: str
    machine_id: str
    ts: float
    message: str
    severity: int
    fields: tuple[tuple[str, object], ...]


class EventEmitter:
    """Event generators per (type, machine object) and per type on the Server object."""

    def __init__(self, server: Server, idx: int) -> None:
        self._server = server
        self._idx = idx
        self._types: dict[str, Node] = {}
        self._templates: dict[str, BaseEvent] = {}
        self._on_machine: dict[tuple[str, str], EventGenerator] = {}
        self._on_server: dict[str, EventGenerator] = {}
        self._machine_nodes: dict[str, ua.NodeId] = {}
        self._audit: EventGenerator | None = None
        self.emitted = 0

    async def build_types(self) -> None:
        base = self._server.get_node(numeric(ObjectIds.BaseEventType))
        for name, (description, properties) in _EVENT_TYPES.items():
            node = await base.add_object_type(
                string(type_node_id(name), self._idx), ua.QualifiedName(name, self._idx)
            )
            await node.write_attribute(
                AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(description), Vt.LocalizedText)),
            )
            for prop_name, vtype, default in properties:
                prop = await node.add_property(
                    string(type_node_id(name, prop_name), self._idx),
                    ua.QualifiedName(prop_name, self._idx),
                    default,
                    varianttype=vtype,
                )
                await prop.set_modelling_rule(True)
            self._types[name] = node
        for name, node in self._types.items():
            # Browsing a type for its fields is what makes a generator costly; every
            # generator of a type starts from a copy of one event object instead.
            template = await get_event_obj_from_type_node(node)
            if not isinstance(template, BaseEvent):
                raise EdgeError(f"OPC UA event type {name} is not a BaseEventType")
            self._templates[name] = template
            self._on_server[name] = await self._generator(name, numeric(ObjectIds.Server))
        self._audit = await self._server.get_event_generator(
            numeric(ObjectIds.AuditUpdateMethodEventType), numeric(ObjectIds.Server)
        )
        # asyncua types ActionTimeStamp by its DataType NodeId (UtcTime), which a
        # Variant cannot carry; UtcTime is a DateTime.
        self._audit.event.data_types["ActionTimeStamp"] = Vt.DateTime

    async def _generator(self, type_name: str, emitting: ua.NodeId) -> EventGenerator:
        # A shallow copy: a generator rebinds fields (setattr), never mutates the
        # template's values in place; only the field table is its own.
        event = copy.copy(self._templates[type_name])
        event.data_types = dict(event.data_types)
        return await self._server.get_event_generator(event, emitting)

    async def add_machine(self, machine_id: str, node_id: ua.NodeId) -> None:
        self._machine_nodes[machine_id] = node_id
        for name in self._types:
            self._on_machine[(name, machine_id)] = await self._generator(name, node_id)

    async def emit(self, spec: EventSpec) -> None:
        machine_node = self._machine_nodes.get(spec.machine_id)
        generators = [self._on_server[spec.type_name]]
        local = self._on_machine.get((spec.type_name, spec.machine_id))
        if local is not None:
            generators.insert(0, local)
        for generator in generators:
            event = generator.event
            for field, value in spec.fields:
                setattr(event, field, value)
            event.Severity = spec.severity
            if machine_node is not None:
                event.SourceNode = machine_node
                event.SourceName = spec.machine_id
            await generator.trigger(ua_time(spec.ts), spec.message)
        self.emitted += 1

    async def audit(
        self,
        *,
        ts: float,
        user: str,
        method_id: ua.NodeId,
        arguments: list[ua.Variant],
        accepted: bool,
        message: str,
    ) -> None:
        generator = self._audit
        if generator is None:
            return
        event = generator.event
        event.ActionTimeStamp = ua_time(ts)
        event.Status = accepted
        event.ServerId = self._server.get_application_uri()
        event.ClientUserId = user
        event.MethodId = method_id
        event.InputArguments = arguments
        event.Severity = 100 if accepted else 500
        await generator.trigger(ua_time(ts), message)
        self.emitted += 1
