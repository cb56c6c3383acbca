"""The line's OPC UA server as a LineService component.

::

    async with LineService(config, components=[opcua_server.component]) as service:
        ...   # SCADA browses opc.tcp://host:4840/edge/

Start: the address space (types, the line, one MachineType object per machine
with its plc_map's process values, quality stations, methods), security
(certificate, trust list, users), then the server listens and three tasks run:

- the **writer** (:mod:`edge.serve.opcua.writer`) drains staged values;
- the **event task** raises OPC UA events and creates/updates order objects
  from what the bus delivered (the bus callback itself only stages and queues);
- the **refresh task** asks each machine actor for its ``MachineStatus`` when an
  event touched the machine (at most every ``REFRESH_MIN_S``) and
  ``status_interval_s`` after its last refresh anyway (KPIs move with time), and
  refreshes the shift and diagnostics.

Process values and PLC link changes arrive through :meth:`OpcUaServer.ingest_samples`
(the service's sample tap, ``service.samples``, when it has one). Link loss is
also seen on the bus (a state change to ``unknown``) and in the PLC sources'
statistics, so values turn Uncertain/Bad without the tap too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from asyncua import ua

from actors.machine import GetStatus, MachineStatus, SetStopReason
from actors.messages import LinkChanged, Sample
from actors.oee.events import (
    OrderWindowClosed,
    PiecesCounted,
    StateChanged,
    StopEnded,
    StopReasonChanged,
    StopStarted,
    Warning,
)
from actors.oee.state import MachineState
from actors.orders.events import OrderStatusChanged
from actors.quality.events import AlarmAcknowledged, SpcViolation
from edge import __version__
from edge.commands import OrderInfo, register_alarm_owner
from edge.config import LineConfig, OpcUaServerConfig
from edge.context import LineContext
from edge.errors import (
    ActorError,
    ConfigError,
    ConnectorError,
    EdgeError,
    MailboxFullError,
    Problem,
)
from edge.event_bus import BusEvent
from edge.serve.opcua.address_space import AddressSpace, VarHandle
from edge.serve.opcua.alarms import (
    FAULT_ALARM,
    PLC_LINK_ALARM,
    AlarmBook,
    Condition,
    plc_link_key,
)
from edge.serve.opcua.bulk import compact
from edge.serve.opcua.companions import Companions, Identification
from edge.serve.opcua.events import ALARM_EVENT, STATE_EVENT, STOP_EVENT, EventEmitter, EventSpec
from edge.serve.opcua.machines import MachineAlarms, MachineView, process_variable
from edge.serve.opcua.methods import METHODS, MethodHandler
from edge.serve.opcua.model import (
    MACHINE_TYPE,
    QUALITY_STATION_TYPE,
    RESERVED_IDS,
    TYPES_NAMESPACE,
    Var,
    Vt,
    machine_node_id,
    station_node_id,
    type_node_id,
)
from edge.serve.opcua.nodesets import (
    COMPANION_NODESETS,
    DI_URI,
    IA_URI,
    MACHINERY_URI,
    NODESET_DIR,
    PACKML_URI,
    NodesetLoader,
)
from edge.serve.opcua.orders import OrdersView, OrderUpdate, update_from_event, update_from_info
from edge.serve.opcua.security import (
    EdgePermissions,
    EdgeUserManager,
    Pki,
    TrustList,
    endpoint_labels,
    ensure_certificate,
    security_policies,
)
from edge.serve.opcua.sessions import EdgeServer, current_session, explain
from edge.serve.opcua.standard_nodes import StandardNodeCache, installed_cache_dir
from edge.serve.opcua.stations import StationView
from edge.serve.opcua.uaids import (
    AttributeIds,
    ObjectIds,
    StatusCodes,
    numeric,
    status,
    ua_time,
)
from edge.serve.opcua.writer import LiveValueWriter, WriterStatistics
from edge.sources.plc import load_plc_map

log = logging.getLogger("edge.opcua_server")

REFRESH_MIN_S = 0.1  # an event-triggered status refresh waits at least this long
EVENT_QUEUE_MAX = 10_000  # OPC UA events waiting to be raised; beyond, they are dropped
ASK_TIMEOUT_S = 5.0


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OpcUaServerStatistics:
    writer: WriterStatistics
    events_raised: int
    events_dropped: int
    method_calls: int
    methods_refused: int
    refreshes: int
    last_refresh_s: float  # wall time of the last status refresh pass
    nodes: int
    status_asks: int = 0  # machines asked for their status by a refresh pass
    status_pulls: int = 0  # statuses answered when a client read one of their values


_LINE_VARS = (
    Var("Name", Vt.String, "The line's name"),
    Var("Site", Vt.String, "The site id"),
    Var("Area", Vt.String, "The area id"),
)
_SHIFT_VARS = (
    Var("Name", Vt.String, "The shift now; empty outside every shift"),
    Var("Start", Vt.DateTime, "Start of the current shift instance (UTC)"),
    Var("End", Vt.DateTime, "End of the current shift instance (UTC)"),
    Var("InBreak", Vt.Boolean, "A planned break is on now"),
)
_DIAGNOSTIC_VARS = (
    Var("Version", Vt.String, "The edge software version"),
    Var("StartTime", Vt.DateTime, "When the edge service became ready (UTC)"),
    Var("OutboxDepth", Vt.UInt64, "Events waiting in the outbox for the central MES"),
    Var("MqttConnected", Vt.Boolean, "The MQTT link to the central MES is up"),
    Var("EventsPublished", Vt.UInt64, "Domain events published since start"),
)
_PLC_VARS = (
    Var("LinkUp", Vt.Boolean, "The link to this PLC is up"),
    Var("ConsecutiveFailures", Vt.UInt32, "Failed attempts since the link was last up"),
)


def application_uri(config: LineConfig) -> str:
    ident = config.line
    return f"urn:{ident.site}:{ident.area}:{ident.id}:edge"


class OpcUaServer:
    """The line's OPC UA server; one per LineService, runs once."""

    def __init__(self, service: LineContext) -> None:
        self._service = service
        self._config: LineConfig = service.config
        self.state = ServerState.NEW
        self.idx = 0
        self.types_idx = 0
        self._server: EdgeServer | None = None
        self._space: AddressSpace | None = None
        self._writer: LiveValueWriter | None = None
        self._emitter: EventEmitter | None = None
        self._users = EdgeUserManager(
            self._config.opcua.users, anonymous=self._config.opcua.anonymous
        )
        self._methods: MethodHandler | None = None
        self._alarms: AlarmBook | None = None
        self._companions: Companions | None = None
        self._notifiers: list[ua.NodeId] = []  # objects whose events the line object relays
        self._machines: dict[str, MachineView] = {}
        self._stations: dict[str, StationView] = {}
        self._orders: OrdersView | None = None
        self._plc_machines: dict[str, list[str]] = {}
        self._order_machines: dict[str, tuple[str, ...]] = {}
        self._pending_events: deque[_Pending] = deque()
        self._events_ready = asyncio.Event()
        self._dirty: set[str] = set()
        self._dirty_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._diagnostics: dict[str, object] = {}
        self._dropped = 0
        self._refreshes = 0
        self._status_asks = self._status_pulls = 0
        self._last_refresh_s = 0.0
        self._standard_nodes: StandardNodeCache | None = None
        self._alarm_seq = 0
        self.pki = Pki(self._config.opcua.pki_dir or self._config.storage.state_dir / "opcua-pki")

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not ServerState.NEW:
            raise EdgeError(f"an OpcUaServer runs once (state {self.state.value})")
        self.state = ServerState.RUNNING
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        self._check_ids()
        config = self._config
        opcua = config.opcua
        self._standard_nodes = StandardNodeCache(config.storage.cache, installed_cache_dir())
        server = EdgeServer(self._users, standard_nodes=self._standard_nodes)
        self._server = server
        await server.init()
        server.set_endpoint(opcua.endpoint)
        server.set_server_name(f"edge {config.line.name}")
        await server.set_application_uri(application_uri(config))
        policies = security_policies(opcua)
        if any(p is not ua.SecurityPolicyType.NoSecurity for p in policies):
            identity = await asyncio.to_thread(
                ensure_certificate,
                self.pki,
                application_uri(config),
                f"edge {config.line.site}/{config.line.area}/{config.line.id}",
                urlsplit(opcua.endpoint).hostname,
            )
            # What Server.load_certificate/load_private_key set, given the objects
            # already loaded (they only take a path or bytes, and would re-run the
            # costly RSA key check on every start).
            server.iserver.certificate = identity.certificate
            server.iserver.private_key = identity.private_key
        else:
            self.pki.create()
        server.set_security_policy(policies, permission_ruleset=EdgePermissions())
        tokens: list[type] = []
        if opcua.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if opcua.users:
            tokens.append(ua.UserNameIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(TrustList(self.pki))

        # The line's namespace first: it keeps index 2, as SCADA tags have it.
        self.idx = await server.register_namespace(config.namespace_uri)
        self.types_idx = await server.register_namespace(TYPES_NAMESPACE)
        namespaces = {
            uri: await server.register_namespace(uri)
            for uri in (DI_URI, IA_URI, MACHINERY_URI, PACKML_URI)
        }
        compact(server.iserver.aspace)  # asyncua's standard nodes, before ours are added
        NodesetLoader(server.iserver.aspace, namespaces.__getitem__).load(
            [NODESET_DIR / name for name in COMPANION_NODESETS]
        )
        space = self._space = AddressSpace(server, self.idx, types_idx=self.types_idx)
        writer = self._writer = LiveValueWriter(server)
        emitter = self._emitter = EventEmitter(server, self.types_idx)
        self._alarms = AlarmBook(server, space, writer, notify=self._queue)
        self._methods = MethodHandler(
            opcua,
            commands=lambda: self._service.commands,
            machine_ask=self._ask_machine,
            publish=self._service.bus.publish,
            caller=self._users.caller,
            audit_event=emitter.audit,
            on_order=self._order_result,
        )
        self._methods.alarms = self._alarms
        server.set_access_rules(self._methods)
        await space.build_types()
        self._companions = Companions(space, namespaces)
        await self._companions.declare_on_machine_type()
        await self._declare_alarms()
        await emitter.build_types()
        await self._bind_condition_methods()
        await self._build_line()
        register_alarm_owner(self._service.commands, self._alarms)
        try:
            await server.start()
        except OSError as exc:
            raise ConnectorError(f"OPC UA server cannot listen on {opcua.endpoint}: {exc}") from exc
        writer.start()
        self._unsubscribe.append(self._service.bus.subscribe("opcua-server", self._on_bus))
        samples = getattr(self._service, "samples", None)
        if samples is not None:
            self._unsubscribe.append(samples.subscribe("opcua-server", self.ingest_samples))
        self._spawn(self._event_loop(), "opcua-events")
        self._spawn(self._refresh_loop(), "opcua-refresh")
        log.info(
            "OPC UA server listening",
            extra={"endpoint": opcua.endpoint, "namespace": config.namespace_uri, "ns": self.idx},
        )

    def _check_ids(self) -> None:
        problems = [
            Problem(
                f"machines[{index}].id",
                f"{machine.id!r} is reserved by the OPC UA address space "
                f"(<line>.{machine.id} is a line-level node)",
            )
            for index, machine in enumerate(self._config.machines)
            if machine.id in RESERVED_IDS
        ]
        if problems:
            raise ConfigError(str(self._config.source_path), problems)

    async def _stop(self) -> None:
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.CLOSED
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            await self._writer.stop()
        if self._standard_nodes is not None:
            await self._standard_nodes.stop()
        if self._server is not None:
            with contextlib.suppress(Exception):  # a server that never started
                await self._server.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

    # ------------------------------------------------------------------ building

    async def _build_line(self) -> None:
        space, config = self._require_space(), self._config
        line = config.line.id
        objects = numeric(ObjectIds.ObjectsFolder)
        line_node = await space.add_object(
            line,
            line,
            objects,
            f"Production line {config.line.name}",
            reference=ObjectIds.Organizes,
            event_notifier=True,
            variables=_LINE_VARS,
        )
        writer = self._require_writer()
        for name, value in (("Name", config.line.name), ("Site", config.line.site)):
            writer.stage(space.handle(f"{line}.{name}"), value, None)
        writer.stage(space.handle(f"{line}.Area"), config.line.area, None)
        machines = await space.add_folder(f"{line}.Machines", "Machines", line_node, "The machines")
        orders = await space.add_folder(f"{line}.Orders", "Orders", line_node, "Work orders")
        stations = await space.add_folder(
            f"{line}.QualityStations", "QualityStations", line_node, "Quality stations"
        )
        await space.add_object(
            f"{line}.Shift", "Shift", line_node, "The current shift", variables=_SHIFT_VARS
        )
        diagnostics = await space.add_object(
            f"{line}.Diagnostics",
            "Diagnostics",
            line_node,
            "The edge itself",
            variables=_DIAGNOSTIC_VARS,
        )
        writer.stage(space.handle(f"{line}.Diagnostics.Version"), __version__, None)
        plc_links = await space.add_folder(
            f"{line}.Diagnostics.PlcLinks", "PlcLinks", diagnostics, "PLC connections"
        )
        for plc in config.plcs:
            await space.add_object(
                f"{line}.Diagnostics.PlcLinks.{plc.id}",
                plc.id,
                plc_links,
                f"PLC {plc.id} ({plc.protocol})",
                variables=_PLC_VARS,
            )
            self._plc_machines[plc.id] = [m.id for m in config.machines if m.plc == plc.id]
        for machine in config.machines:
            await self._build_machine(machine.id, machine.name, machines)
        for station in getattr(config, "quality_stations", ()):
            await self._build_station(station, stations)
        self._orders = OrdersView(space, writer, line)
        methods = self._require_methods()
        for name in ("StartOrder", "HoldOrder", "ResumeOrder", "CompleteOrder"):
            await self._add_method(orders, f"{line}.Orders.{name}", name, methods)
        await self._add_method(line_node, f"{line}.AcknowledgeAlarm", "AcknowledgeAlarm", methods)
        await self._add_type_methods()
        self._mark_waiting()

    async def _build_machine(self, machine_id: str, name: str, parent: ua.NodeId) -> None:
        space, config = self._require_space(), self._config
        line = config.line.id
        node_id = machine_node_id(line, machine_id)
        machine = config.machine(machine_id)
        plc_map = load_plc_map(machine.plc_map, config.plc_map_dirs) if machine.plc_map else None
        roles = {s.role for s in plc_map.signals} if plc_map is not None else set()
        companions = self._companions
        assert companions is not None
        book = self._require_alarms()
        with space.recording() as handles:
            created = await space.add_instance(
                node_id, machine_id, MACHINE_TYPE, parent, description=f"Machine {name}"
            )
            if plc_map is not None:
                await space.add_variables(
                    f"{node_id}.ProcessValues",
                    [process_variable(s) for s in plc_map.signals if s.role is None],
                )
            await companions.add_to_machine(node_id, created, packml="state" in roles)
            alarms = MachineAlarms(
                book,
                fault=(
                    await book.add_machine_condition(FAULT_ALARM, machine_id, node_id, created)
                    if "fault_code" in roles
                    else None
                ),
                plc_link=(
                    await book.add_machine_condition(PLC_LINK_ALARM, machine_id, node_id, created)
                    if machine.plc is not None
                    else None
                ),
            )
        view = MachineView(
            machine_id,
            node_id,
            handles,
            self._require_writer(),
            plc_map,
            companions=companions,
            alarms=alarms,
            reasons=machine.params.reasons,
        )
        self._machines[machine_id] = view
        view.pull_status_with(partial(self._status_now, machine_id))
        view.initialize(
            name,
            time.time(),
            Identification(
                manufacturer=machine.manufacturer,
                model=machine.model,
                serial_number=machine.serial_number,
                product_instance_uri=(
                    machine.product_instance_uri or f"{config.namespace_uri}:{machine_id}"
                ),
                year_of_construction=machine.year_of_construction,
            ),
        )
        self._notifiers.append(created)
        await self._add_method(
            created,
            f"{node_id}.SetStopReason",
            "SetStopReason",
            self._require_methods(),
            machine_id=machine_id,
        )
        await self._require_emitter().add_machine(machine_id, created)

    async def _build_station(self, station: Any, parent: ua.NodeId) -> None:
        space = self._require_space()
        station_id = str(station.id)
        node_id = station_node_id(self._config.line.id, station_id)
        await space.add_instance(
            node_id, station_id, QUALITY_STATION_TYPE, parent, description=f"Station {station_id}"
        )
        prefix = node_id + "."
        view = StationView(
            station_id,
            {t[len(prefix) :]: h for t, h in space.handles.items() if t.startswith(prefix)},
            self._require_writer(),
        )
        self._stations[station_id] = view
        self._require_writer().stage(
            space.handle(f"{node_id}.Name"), str(getattr(station, "name", station_id)), None
        )
        view.reset_counts(None)

    async def _add_method(
        self,
        parent: ua.NodeId,
        node_id: str,
        name: str,
        methods: MethodHandler,
        machine_id: str | None = None,
    ) -> None:
        space = self._require_space()
        definition = METHODS[name]
        await space.add_method(
            parent,
            node_id,
            name,
            callback=methods.callback(name, space.node_id(node_id), machine_id),
            inputs=[a.argument() for a in definition.inputs],
            outputs=[a.argument() for a in definition.outputs],
            description=definition.description,
        )

    async def _add_type_methods(self) -> None:
        """SetStopReason as an InstanceDeclaration of MachineType (not callable there)."""
        space = self._require_space()
        definition = METHODS["SetStopReason"]

        async def not_on_a_type(_parent: ua.NodeId, *_args: ua.Variant) -> ua.StatusCode:
            return ua.StatusCode(ua.UInt32(StatusCodes.BadNotExecutable))

        node = await space.add_method(
            space.type_ids[MACHINE_TYPE],
            type_node_id(MACHINE_TYPE, "SetStopReason"),
            "SetStopReason",
            callback=not_on_a_type,
            inputs=[a.argument() for a in definition.inputs],
            outputs=[],
            description=definition.description,
            mandatory=True,
        )
        await node.write_attribute(
            AttributeIds.Executable, ua.DataValue(ua.Variant(False, ua.VariantType.Boolean))
        )
        self._require_methods().not_executable(node.nodeid)

    async def _declare_alarms(self) -> None:
        """MachineType's optional FaultAlarm and PlcLinkAlarm (OffNormalAlarmType)."""
        space = self._require_space()
        for kind in (FAULT_ALARM, PLC_LINK_ALARM):
            await space.declare(
                MACHINE_TYPE,
                numeric(ObjectIds.OffNormalAlarmType),
                ua.QualifiedName(kind, self.types_idx),
                optional=("ConfirmedState",),
                rule=numeric(ObjectIds.ModellingRule_Optional),
            )

    async def _bind_condition_methods(self) -> None:
        """The standard condition methods, served for every condition of the line."""
        server, methods = self.server, self._require_methods()
        session = server.iserver.isession
        for name, object_id in (
            ("Acknowledge", ObjectIds.AcknowledgeableConditionType_Acknowledge),
            ("Confirm", ObjectIds.AcknowledgeableConditionType_Confirm),
        ):
            method_id = numeric(object_id)
            session.add_method_callback(method_id, methods.callback(name, method_id))
        for object_id in (
            ObjectIds.ConditionType_ConditionRefresh,
            ObjectIds.ConditionType_ConditionRefresh2,
        ):
            session.add_method_callback(numeric(object_id), self._condition_refresh)
        for object_id in (
            ObjectIds.ConditionType_Enable,
            ObjectIds.ConditionType_Disable,
            ObjectIds.ConditionType_AddComment,
        ):
            session.add_method_callback(numeric(object_id), _not_supported)
            methods.not_executable(numeric(object_id))

    async def _condition_refresh(
        self, _parent: ua.NodeId, *args: ua.Variant
    ) -> ua.CallMethodResult:
        """ConditionRefresh(SubscriptionId) and ConditionRefresh2(SubscriptionId,
        MonitoredItemId) for the caller's own subscription (Part 9 §5.5.7/§5.5.8)."""
        result = ua.CallMethodResult()
        result.InputArgumentResults = [status(StatusCodes.Good) for _ in args]
        values = [a.Value for a in args]
        if not 1 <= len(values) <= 2 or not all(isinstance(v, int) for v in values):
            return _refused(
                result,
                StatusCodes.BadInvalidArgument,
                "ConditionRefresh: SubscriptionId "
                "(and for ConditionRefresh2 MonitoredItemId), each a UInt32",
            )
        subscription_id = values[0]
        subscriptions = self.server.iserver.subscription_service.subscriptions
        subscription = subscriptions.get(subscription_id)
        session = current_session()
        if subscription is None or session is None or subscription.session_id != session.session_id:
            return _refused(
                result,
                StatusCodes.BadSubscriptionIdInvalid,
                f"ConditionRefresh: no subscription {subscription_id} in this session",
            )
        monitored_item = values[1] if len(values) == 2 else None
        if monitored_item is not None and (
            monitored_item not in subscription.monitored_item_srv._monitored_items
        ):
            return _refused(
                result,
                StatusCodes.BadMonitoredItemIdInvalid,
                f"ConditionRefresh2: no monitored item {monitored_item} in subscription "
                f"{subscription_id}",
            )
        await self._require_alarms().refresh(subscription, monitored_item)
        result.StatusCode = status(StatusCodes.Good)
        return result

    def _mark_waiting(self) -> None:
        """Every value not known yet reads BadWaitingForInitialData, not a made-up zero."""
        writer = self._require_writer()
        for handle in self._require_space().handles.values():
            if writer.last(handle) is None:
                writer.stage(handle, None, None, StatusCodes.BadWaitingForInitialData)

    # ------------------------------------------------------------------ inputs

    def _on_bus(self, events: Sequence[BusEvent]) -> None:
        """Bus callback: stage what is cheap now, queue OPC UA events for the event task."""
        for event in events:
            view = self._machines.get(getattr(event, "machine_id", ""))
            if view is not None and isinstance(
                event,
                PiecesCounted
                | StateChanged
                | StopStarted
                | StopEnded
                | StopReasonChanged
                | OrderWindowClosed,
            ):
                view.on_event(event)
                self._dirty.add(view.machine_id)
            spec = self._event_spec(event)
            if spec is not None:
                self._queue(spec)
            update = update_from_event(event)
            if update is not None:
                if update.machine_ids is not None:
                    self._order_machines[update.order_id] = update.machine_ids
                self._queue(update)
                self._current_order(event)
            station = self._stations.get(getattr(event, "station_id", ""))
            if station is not None:
                station.on_event(event)
                if isinstance(event, SpcViolation | AlarmAcknowledged):
                    self._queue(event)
        if self._dirty:
            self._dirty_ready.set()

    def _current_order(self, event: object) -> None:
        if isinstance(event, OrderStatusChanged):
            # An order-level event names no machine: use the order's machines.
            machines = (
                (event.machine_id,)
                if event.machine_id
                else self._order_machines.get(event.order_id, ())
            )
            self._order_moved(event.order_id, event.status, machines, event.ts)

    def _order_moved(
        self, order_id: str, status: str, machine_ids: Sequence[str], ts: float
    ) -> None:
        for machine_id in machine_ids:
            view = self._machines.get(machine_id)
            if view is None:
                continue
            if status == "running":
                view.set_current_order(order_id, ts)
            elif view.current_order == order_id and status in ("completed", "aborted"):
                view.set_current_order("", ts)

    def _queue(self, item: _Pending) -> None:
        if len(self._pending_events) >= EVENT_QUEUE_MAX and isinstance(item, EventSpec):
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning(
                    "OPC UA events dropped: clients cannot keep up",
                    extra={"dropped": self._dropped},
                )
            return
        self._pending_events.append(item)
        self._events_ready.set()

    def _event_spec(self, event: object) -> EventSpec | None:
        if isinstance(event, StateChanged):
            severity = {MachineState.RUNNING: 100, MachineState.STOPPED: 300}.get(event.state, 500)
            return EventSpec(
                STATE_EVENT,
                event.machine_id,
                event.ts,
                f"{event.machine_id} {event.previous.value} -> {event.state.value}",
                severity,
                (
                    ("MachineId", event.machine_id),
                    ("State", event.state.value),
                    ("PreviousState", event.previous.value),
                ),
            )
        if isinstance(event, StopStarted):
            return self._stop_spec(
                event.machine_id,
                event.ts,
                event.stop_id,
                event.reason,
                event.category.value,
                "open",
                event.ts,
                0.0,
                300,
                f"{event.machine_id} stopped: {event.reason}",
            )
        if isinstance(event, StopEnded):
            kind = event.kind.value
            return self._stop_spec(
                event.machine_id,
                event.ts,
                event.stop_id,
                event.reason,
                event.category.value,
                kind,
                event.start,
                event.duration_s,
                500 if event.downtime else 200,
                f"{event.machine_id} stop {event.stop_id} ended after {event.duration_s:.0f} s: "
                f"{kind}, {event.reason}",
            )
        if isinstance(event, StopReasonChanged):
            return self._stop_spec(
                event.machine_id,
                event.ts,
                event.stop_id,
                event.reason,
                event.category.value,
                "reason",
                event.stop_start,
                (event.stop_end - event.stop_start) if event.stop_end is not None else 0.0,
                300,
                f"{event.machine_id} stop {event.stop_id} reason: {event.previous_reason} -> "
                f"{event.reason}",
            )
        if isinstance(event, Warning):
            return self._alarm_spec(event.machine_id, event.ts, event.kind, event.message, None)
        if isinstance(event, SpcViolation):
            return self._alarm_spec(
                event.machine_id,
                event.ts,
                f"spc_rule_{event.rule}",
                f"{event.station_id} {event.characteristic}: {event.description}",
                event.alarm_id,
            )
        return None

    @staticmethod
    def _stop_spec(  # noqa: PLR0917 - one stop event's fields
        machine_id: str,
        ts: float,
        stop_id: int,
        reason: str,
        category: str,
        classification: str,
        start: float,
        duration: float,
        severity: int,
        message: str,
    ) -> EventSpec:
        return EventSpec(
            STOP_EVENT,
            machine_id,
            ts,
            message,
            severity,
            (
                ("MachineId", machine_id),
                ("StopId", stop_id),
                ("Reason", reason),
                ("Category", category),
                ("Classification", classification),
                ("StopStart", ua_time(start)),
                ("Duration", duration),
            ),
        )

    def _alarm_spec(
        self, machine_id: str, ts: float, kind: str, message: str, alarm_id: str | None
    ) -> EventSpec:
        if alarm_id is None:
            self._alarm_seq += 1
            alarm_id = f"{machine_id}.{kind}.{int(ts)}.{self._alarm_seq}"
        return EventSpec(
            ALARM_EVENT,
            machine_id,
            ts,
            message,
            700,
            (("MachineId", machine_id), ("AlarmId", alarm_id), ("Kind", kind)),
        )

    def ingest_samples(self, batch: Sequence[Sample | LinkChanged]) -> None:
        """The PLC sources' samples and link changes, as delivered to the machines.

        Synchronous and cheap (stages values): the service calls it on the event loop
        for every source batch (``service.samples`` tap).
        """
        for item in batch:
            view = self._machines.get(item.machine_id)
            if view is None:
                continue
            if isinstance(item, Sample):
                view.on_sample(item)
            elif item.up:
                view.link_seen(True, item.ts)
            else:
                view.link_seen(False, item.ts)
                # The AlarmId of the machine's PlcLinkAlarm: AcknowledgeAlarm takes it.
                link = self._alarms.by_key(plc_link_key(item.machine_id)) if self._alarms else None
                self._queue(
                    self._alarm_spec(
                        item.machine_id,
                        item.ts,
                        "comm_loss",
                        f"{item.machine_id}: PLC link lost {item.detail}".strip(),
                        link.key if link is not None else None,
                    )
                )

    def set_diagnostics(self, **values: object) -> None:
        """Outbox depth and MQTT state from their components: ``outbox_depth=``,
        ``mqtt_connected=``. Written with the next refresh."""
        self._diagnostics.update(values)

    def _order_result(self, info: OrderInfo) -> None:
        now = time.time()
        self._order_machines[info.order_id] = info.machine_ids
        self._order_moved(info.order_id, info.status, info.machine_ids, now)
        self._queue(update_from_info(info, now))

    # ------------------------------------------------------------------ tasks

    async def _event_loop(self) -> None:
        emitter, orders = self._require_emitter(), self._orders
        assert orders is not None
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            while self._pending_events:
                item = self._pending_events.popleft()
                try:
                    if isinstance(item, EventSpec):
                        await emitter.emit(item)
                    elif isinstance(item, Condition):
                        await self._require_alarms().emit(item)
                    elif isinstance(item, SpcViolation | AlarmAcknowledged):
                        await self._spc_alarm(item)
                    else:
                        await orders.apply(item)
                except Exception:  # an event lost is logged; the loop goes on
                    log.exception("OPC UA event not raised")

    async def _spc_alarm(self, event: SpcViolation | AlarmAcknowledged) -> None:
        """An SPC alarm's condition: created when raised, updated, removed in the end."""
        book = self._require_alarms()
        condition = book.by_key(event.alarm_id)
        if isinstance(event, AlarmAcknowledged):
            if condition is not None and book.acknowledged(condition, event.ts, event.user):
                for old in book.spc_finished(condition):
                    book.forget(old)
                    await self._require_space().delete(old.text)
            return
        if condition is None:
            station_text = station_node_id(self._config.line.id, event.station_id)
            space = self._require_space()
            if f"{station_text}.Name" not in space.handles:
                return
            condition = await book.add_spc_condition(
                event.alarm_id, event.station_id, station_text, space.node_id(station_text)
            )
        book.set_active(
            condition,
            True,
            event.ts,
            f"{event.station_id} {event.characteristic}: {event.description}",
            None,
        )

    async def _refresh_loop(self) -> None:
        # Every machine is refreshed at least once per interval, each at its own phase
        # of it (a big line's refresh in one go held the event loop for tens of ms,
        # late polls), and a machine an event touched at the next pass (at most every
        # REFRESH_MIN_S), which puts its next periodic one an interval later.
        interval = self._config.opcua.status_interval_s
        start = time.monotonic()
        machines = list(self._machines)
        due = {m: start + interval * i / max(1, len(machines)) for i, m in enumerate(machines)}
        next_line = start
        while True:
            now = time.monotonic()
            timeout = max(0.0, min([next_line, *due.values()]) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty_ready.wait(), timeout)
            now = time.monotonic()
            chosen = set(self._dirty)
            for machine_id in chosen:
                # Refreshed now for an event: its periodic refresh is an interval away
                # (a machine counting a piece every second needs no second refresh).
                due[machine_id] = now + interval
            for machine_id, at in due.items():
                if at <= now:
                    chosen.add(machine_id)
                    due[machine_id] = max(at + interval, now)
            self._dirty.clear()
            self._dirty_ready.clear()
            started = time.perf_counter()
            await self._refresh(sorted(chosen))
            if now >= next_line:
                next_line = now + interval
                self._refresh_line()
            self._last_refresh_s = time.perf_counter() - started
            await asyncio.sleep(REFRESH_MIN_S)

    async def _refresh(self, machine_ids: Sequence[str]) -> None:
        # One ask future per machine under one deadline: no task and no timer per
        # machine (a 200-machine line asks ~200 statuses a second). A machine whose
        # status values nobody watches is not asked: the first Read of one asks it,
        # synchronously (most of the OPC UA server's cost on a line without clients).
        now = time.time()
        replies: dict[str, asyncio.Future[MachineStatus]] = {}
        for machine_id in machine_ids:
            view = self._machines[machine_id]
            if not view.status_watched():
                view.status_stale()
                continue
            try:
                replies[machine_id] = self._service.machine_ref(machine_id).ask_nowait(
                    GetStatus(now)
                )
            except MailboxFullError:
                self._dirty.add(machine_id)  # busy: asked again with the next pass
                self._dirty_ready.set()
            except ActorError:
                continue  # restarting or stopping: its next refresh finds it back
        self._status_asks += len(replies)
        if replies:
            await asyncio.wait(replies.values(), timeout=ASK_TIMEOUT_S)
        for machine_id, reply in replies.items():
            if not reply.done():
                reply.cancel()
            elif not reply.cancelled() and reply.exception() is None:
                result = reply.result()
                if isinstance(result, MachineStatus):
                    self._machines[machine_id].apply_status(result, now)
        self._refreshes += 1

    def _status_now(self, machine_id: str) -> MachineStatus | None:
        """The machine's status as of now, answered synchronously (None: not now)."""
        try:
            status = self._service.machine_ref(machine_id).query(GetStatus(time.time()))
        except (ActorError, KeyError):
            return None
        self._status_pulls += 1
        return status if isinstance(status, MachineStatus) else None

    async def _ask_machine(self, machine_id: str, message: SetStopReason) -> Any:
        try:
            ref = self._service.machine_ref(machine_id)
        except KeyError as exc:
            raise EdgeError(f"unknown machine {machine_id!r}") from exc
        try:
            return await ref.ask(message, timeout=ASK_TIMEOUT_S)
        except ActorError as exc:
            raise EdgeError(f"machine {machine_id} did not answer: {exc}") from exc

    def _refresh_line(self) -> None:
        space, writer = self._require_space(), self._require_writer()
        line = self._config.line.id
        now = time.time()
        instance = self._service.calendar.instance_at(now)
        shift = f"{line}.Shift"
        writer.stage(space.handle(f"{shift}.Name"), instance.name if instance else "", now)
        if instance is not None:
            writer.stage(space.handle(f"{shift}.Start"), ua_time(instance.start), now)
            writer.stage(space.handle(f"{shift}.End"), ua_time(instance.end), now)
            writer.stage(space.handle(f"{shift}.InBreak"), instance.in_break(now), now)
        diag = f"{line}.Diagnostics"
        if self._service.started_at is not None:
            started = self._service.started_at
            writer.stage(space.handle(f"{diag}.StartTime"), ua_time(started), started)
        writer.stage(space.handle(f"{diag}.EventsPublished"), self._service.bus.published, now)
        self._poll_components()
        if "outbox_depth" in self._diagnostics:
            depth = int(self._diagnostics["outbox_depth"])  # type: ignore[call-overload]
            writer.stage(space.handle(f"{diag}.OutboxDepth"), depth, now)
        if "mqtt_connected" in self._diagnostics:
            connected = bool(self._diagnostics["mqtt_connected"])
            writer.stage(space.handle(f"{diag}.MqttConnected"), connected, now)
        self._poll_links(now)

    def _poll_components(self) -> None:
        """Outbox depth and MQTT state from the components that report them: through
        ``diagnostics()``, or the ``metric_values()`` they give the metrics endpoint."""
        for component in self._service.components:
            report = getattr(component, "diagnostics", None) or getattr(
                component, "metric_values", None
            )
            if component is self or not callable(report):
                continue
            with contextlib.suppress(Exception):
                values = report()
                for key in ("outbox_depth", "mqtt_connected"):
                    if key in values:
                        self._diagnostics[key] = values[key]

    def _poll_links(self, now: float) -> None:
        space, writer = self._require_space(), self._require_writer()
        line = self._config.line.id
        for source in self._service.sources:
            link = source.link  # not statistics(): no histogram copies, once a second per PLC
            link_up, failures = bool(link.is_up), int(link.consecutive_failures)
            plc_id = source.plc_id
            base = f"{line}.Diagnostics.PlcLinks.{plc_id}"
            if f"{base}.LinkUp" not in space.handles:
                continue
            writer.stage(space.handle(f"{base}.LinkUp"), link_up, now)
            writer.stage(space.handle(f"{base}.ConsecutiveFailures"), failures, now)
            for machine_id in self._plc_machines.get(plc_id, ()):
                view = self._machines[machine_id]
                if not link_up and failures > 0:
                    view.link_lost(now)
                    view.link_alarm(True, now)
                elif link_up:
                    view.link_alarm(False, now)
                    if view.down_since is None:
                        view.stage("PlcLinkUp", True, now)

    # ------------------------------------------------------------------ reporting

    def _require_space(self) -> AddressSpace:
        return _started(self._space)

    def _require_writer(self) -> LiveValueWriter:
        return _started(self._writer)

    def _require_emitter(self) -> EventEmitter:
        return _started(self._emitter)

    def _require_alarms(self) -> AlarmBook:
        return _started(self._alarms)

    def _require_methods(self) -> MethodHandler:
        return _started(self._methods)

    @property
    def alarms(self) -> AlarmBook:
        return self._require_alarms()

    @property
    def writer(self) -> LiveValueWriter:
        return self._require_writer()

    def handle(self, node_id: str) -> VarHandle:
        """A variable's handle by its NodeId string (``L1.M1.OEE.Availability``)."""
        return self._require_space().handle(node_id)

    @property
    def server(self) -> EdgeServer:
        if self._server is None:
            raise EdgeError("the OPC UA server is not started")
        return self._server

    def statistics(self) -> OpcUaServerStatistics:
        methods = self._methods
        return OpcUaServerStatistics(
            writer=self._require_writer().statistics(),
            events_raised=self._emitter.emitted if self._emitter else 0,
            events_dropped=self._dropped,
            method_calls=methods.calls if methods else 0,
            methods_refused=methods.refused if methods else 0,
            refreshes=self._refreshes,
            last_refresh_s=self._last_refresh_s,
            nodes=len(self._space.handles) if self._space else 0,
            status_asks=self._status_asks,
            status_pulls=self._status_pulls,
        )

    def metric_values(self) -> dict[str, float | int | bool | None]:
        """For the metrics endpoint (edge.serve.metrics.MetricsSource) and /readyz."""
        server = self._server
        if server is None or self.state is not ServerState.RUNNING:
            return {}
        idx = self.idx
        every = server.iserver.aspace.keys()  # it has keys() but no __iter__
        nodes = sum(1 for node_id in every if node_id.NamespaceIndex == idx)
        values: dict[str, float | int | bool | None] = {
            "opcua_sessions": server.session_count,
            "opcua_subscriptions": server.subscription_count,
            "opcua_nodes": nodes,
        }
        return values

    def health_checks(self) -> dict[str, str]:
        """Named checks for /readyz: listening, and its tasks alive."""
        if self.state is not ServerState.RUNNING or self._server is None:
            return {"opcua server": f"not running ({self.state.value})"}
        bserver = self._server.bserver
        listening = (
            bserver is not None and bserver._server is not None and (bserver._server.is_serving())
        )
        dead = [t.get_name() for t in self._tasks if t.done()]
        writer = self._writer
        if writer is not None and not writer.running:
            dead.append("opcua-writer")
        if not listening:
            return {"opcua server": f"not listening on {self._config.opcua.endpoint}"}
        if dead:
            return {"opcua server": "stopped: " + ", ".join(sorted(dead))}
        return {"opcua server": "ok"}

    def banner(self) -> list[str]:
        opcua, config = self._config.opcua, self._config
        users = len(opcua.users)
        login = ", ".join(
            part
            for part in (
                "anonymous read-only" if opcua.anonymous else "",
                f"{users} user{'s' if users != 1 else ''} with roles" if users else "",
            )
            if part
        )
        lines = [
            f"OPC UA      {opcua.endpoint} namespace {config.namespace_uri} (ns={self.idx}), "
            f"NodeIds like ns={self.idx};s={config.line.id}.<machine>.OEE.Availability; "
            f"types in {TYPES_NAMESPACE} (ns={self.types_idx})",
            f"  security  {', '.join(endpoint_labels(opcua))}; login: {login}",
            f"  PKI       {self.pki.root}: secured endpoints accept only client certificates "
            "in trusted/ (refused ones land in rejected/: move one to trusted/, no restart)",
        ]
        if opcua.security_none:
            lines.append(f"  None      {none_endpoint_allows(opcua)}")
        return lines


_Pending = EventSpec | OrderUpdate | Condition | SpcViolation | AlarmAcknowledged


def none_endpoint_allows(opcua: OpcUaServerConfig) -> str:
    """What the unsecured endpoint lets through, in words (banner, docs)."""
    who = []
    if opcua.anonymous:
        who.append("anyone who reaches the port browses, reads and subscribes anonymously")
    if opcua.users:
        who.append("users log in (password encrypted) and call the methods of their roles")
    return (
        "unsigned, unencrypted: "
        + "; ".join(who)
        + "; its traffic can be read and altered on the way - "
        "set [opcua] security_none = false where the network is not trusted"
    )


def _refused(result: ua.CallMethodResult, code: int, message: str) -> ua.CallMethodResult:
    result.StatusCode = status(code)
    explain(result, message)
    return result


async def _not_supported(_parent: ua.NodeId, *_args: ua.Variant) -> ua.CallMethodResult:
    return _refused(
        ua.CallMethodResult(),
        StatusCodes.BadNotSupported,
        "the line's conditions are always enabled; comments go with Acknowledge and Confirm",
    )


_Part = TypeVar("_Part")


def _started(part: _Part | None) -> _Part:
    """A part the server makes when it starts (its address space, writer, ...)."""
    if part is None:
        raise EdgeError("the OPC UA server is not started")
    return part


def component(service: LineContext) -> OpcUaServer:
    """The LineService component factory (``components=[edge.serve.opcua.component]``)."""
    return OpcUaServer(service)
