"""The order runtime: work orders, quality stations and lot traceability on a running line.

A service component (``LineService(config, components=[component])``) that
implements :class:`edge.commands.LineCommands` and sets ``service.commands``
to itself, so every front end (MQTT command topics, OPC UA methods, the CLI,
QMIB batch templates) drives orders through it::

    async with OrdersRuntime(service) as runtime:      # service.commands is runtime
        await runtime.download_order(spec, source="mqtt", user="mes")
        await runtime.start_order("WO1", source="opcua", user="op1")

What it runs
    - one :class:`~actors.orders.actor.OrderActor` per order that is not
      finished, a dynamic child (``order/<id>``) of the line's supervisor;
    - one :class:`~actors.quality.actor.QualityStationActor` per
      ``[[quality_stations]]`` entry (``quality/<id>``); a station with a ``plc``
      and a ``plc_map`` of its own is read over that PLC's one connection, beside
      the machines (:meth:`edge.service.LineService.attach_bindings`);
    - the lot ledger (:class:`~actors.traceability.LotLedger`).

How pieces reach an order
    The machine core stamps every counter delta with the order it runs
    (``SetOrder``, sent here when an order starts, holds, resumes, completes or
    aborts on a machine). The runtime subscribes to the event bus and posts
    ``PiecesCounted`` and the machines' order-window KPIs (``OrderWindowClosed``,
    ``WindowRevised``) of its orders straight into their actors' mailboxes
    (``ActorRef.post``: never waits, never refused), in bus order, within the
    bus callback. So the moment a machine has published a piece, the piece is
    in its order's state or in its order's mailbox. Before an order finishes,
    the runtime takes it off its machines with an ``ask`` (so every piece
    counted for it is on the bus, hence in its mailbox).

Commands
    Every command is validated whole before anything changes; a refusal is a
    :class:`~edge.errors.CommandError` naming the argument and why. Commands run
    one at a time. Each one, accepted or refused, is audited as a
    :class:`~edge.commands.CommandAudit` on the bus, except for the sources in
    ``self_audited_sources`` (the OPC UA methods audit their calls themselves).
    Status changes are :class:`~actors.orders.events.OrderStatusChanged`
    events; a finished order's record is a
    :class:`~actors.orders.events.BatchRecordCompleted` event (completed or
    aborted), for the outbox, MQTT and QMIB.

Rejects and double counting (docs/orders-and-quality.md)
    A station with ``feeds_machine_rejects`` adds its failures to its machine
    (``AddRejects``); the machine stamps them with its order like any piece. A
    station without it only reports them: its machine's PLC counts rejects.

Restart safety
    Orders (with the pieces still queued for them), stations (counter
    readings, tallies, charts, alarms), the lot ledger and the finished orders'
    records are a state source of the line's cut (:mod:`edge.cut`): the state
    writer saves what changed with every commit of events, in the same
    transaction as the machines and the events, so after a ``kill -9`` or a
    power cut the restored machines, orders and events agree exactly. A
    command holds the cut's gate while it runs (a restart never sees half of
    it) and replies only once a cut taken after it is committed. A restart
    with the same state directory restores them and tells every machine its
    order again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from actors.actor import ActorRef
from actors.machine import AddRejects, GetStatus, SetOrder, SetStopReason
from actors.messages import LinkChanged, Sample
from actors.oee.counters import ROLE_INDEX
from actors.oee.events import OrderWindowClosed, PiecesCounted, WindowRevised
from actors.orders.actor import (
    ApplyAction,
    AttributePieces,
    BuildBatchRecord,
    CheckAction,
    GetOrderView,
    OrderActor,
    OrderMessage,
    SegmentKpis,
)
from actors.orders.batch import BatchRecord
from actors.orders.core import OrderAction, OrderCore, OrderStatus, OrderView, QuantityRule
from actors.orders.events import (
    BatchRecordCompleted,
    LotScanned,
    OrderProgress,
    OrderStatusChanged,
    OrderTargetReached,
)
from actors.quality.actor import (
    AcknowledgeAlarm,
    Dispose,
    ForgetOrder,
    GetCharts,
    GetOrderQuality,
    GetStationStatus,
    QualityStationActor,
    RecordInspection,
    SetStationOrder,
    StationMessage,
    StationSamples,
)
from actors.quality.core import Alarm, ChartView, StationStatus
from actors.supervisor import ChildSpec, RestartPolicy
from actors.traceability import LotLedger, LotScan
from edge.commands import AlarmOwner, CommandAudit, OrderInfo, OrderSpec
from edge.config import LineConfig, QualityStationConfig
from edge.cut import Saved, decode_pending, encode_pending
from edge.errors import ActorError, CommandError, EdgeError, StateStoreError
from edge.event_bus import BusEvent
from edge.logs import OutageLog
from edge.plc.delivery import per_reader

if TYPE_CHECKING:
    from edge.service import LineService

__all__ = ["FinishedOrder", "LotScanResult", "OrdersRuntime", "RuntimeState", "component"]

log = logging.getLogger("edge.orders")

PROGRESS_INTERVAL_S = 1.0
ORDER_MAILBOX = 10_000
STATION_MAILBOX = 1_000
INDEX_KEY = "orders/index"
LEDGER_KEY = "orders/lots"
# Ids become OPC UA node ids and MQTT payload keys: the config's id alphabet.
_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_TEXT = 256


def _order_key(order_id: str) -> str:
    return f"order/{order_id}"


def _station_key(station_id: str) -> str:
    return f"quality/{station_id}"


class RuntimeState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LotScanResult:
    recorded: bool  # False: the same scan was recorded before (a duplicate, ignored)
    scan: LotScan


@dataclass(frozen=True, slots=True)
class FinishedOrder:
    info: OrderInfo
    record: BatchRecord


@dataclass(frozen=True, slots=True)
class _Who:
    """Who asked, for the audit trail and the order history."""

    source: str
    user: str


class _Barrier:
    """A marker in the forwarding queue: set when everything queued before it was handed on."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def _status_changed(
    ts: float, view: OrderView, previous: OrderView, reason: str, who: _Who
) -> OrderStatusChanged:
    return OrderStatusChanged(
        "",
        ts,
        view.order_id,
        view.status.value,
        previous.status.value,
        reason,
        who.source,
        who.user,
    )


def _info(view: OrderView) -> OrderInfo:
    return OrderInfo(
        order_id=view.order_id,
        status=view.status.value,
        product=view.product,
        target_quantity=view.target_quantity,
        good_count=view.good_quantity,
        reject_count=view.reject_quantity,
        machine_ids=view.machine_ids,
    )


def _info_to_data(info: OrderInfo) -> dict[str, Any]:
    return {
        "order_id": info.order_id,
        "status": info.status,
        "product": info.product,
        "target_quantity": info.target_quantity,
        "good_count": info.good_count,
        "reject_count": info.reject_count,
        "machine_ids": list(info.machine_ids),
    }


def _info_from_data(data: Mapping[str, Any]) -> OrderInfo:
    return OrderInfo(**{**data, "machine_ids": tuple(data["machine_ids"])})


def _text(name: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{name} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not empty and not text:
        raise CommandError(f"{name} must not be empty")
    if len(text) > _MAX_TEXT:
        raise CommandError(f"{name} must be at most {_MAX_TEXT} characters")
    return text


def _order_id(value: object) -> str:
    if not isinstance(value, str) or not _ORDER_ID_RE.match(value):
        raise CommandError(
            "order_id must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or "
            f"digit, got {value!r}"
        )
    return value


def _event_ts(ts: object, default: float) -> float:
    if ts is None:
        return default
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise CommandError(f"ts must be a finite epoch time in seconds, got {ts!r}")
    return float(ts)


def machine_roles(config: LineConfig) -> dict[str, int]:
    """Per machine, the counter roles its plc_map maps (``actors.oee.counters`` bits)."""
    from edge.plc import load_plc_map  # noqa: PLC0415 - only when the runtime starts

    roles: dict[str, int] = {}
    for machine in config.machines:
        mask = 0
        if machine.plc_map is not None:
            with contextlib.suppress(EdgeError):
                for role in load_plc_map(machine.plc_map, config.plc_map_dirs).roles:
                    if role in ROLE_INDEX:
                        mask |= 1 << ROLE_INDEX[role]
        roles[machine.id] = mask
    return roles


class OrdersRuntime:
    """Implements :class:`edge.commands.LineCommands`; ``async with`` is its lifecycle."""

    def __init__(
        self,
        service: LineService,
        *,
        clock: Callable[[], float] = time.time,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        self_audited_sources: frozenset[str] = frozenset({"opcua"}),
    ) -> None:
        self._service = service
        self._config = service.config
        self._clock = clock
        self._progress_interval_s = progress_interval_s
        self._self_audited = self_audited_sources
        self._quantity_rule = QuantityRule(self._config.orders.quantity_rule)
        self.state = RuntimeState.NEW
        self._roles: dict[str, int] = {}
        self._orders: dict[str, ActorRef[OrderMessage, Any]] = {}
        self._order_specs: dict[str, OrderSpec] = {}
        self._running_on: dict[str, str] = {}  # machine id -> the order running on it
        self._finished: OrderedDict[str, FinishedOrder] = OrderedDict()
        self._stations: dict[str, ActorRef[StationMessage, Any]] = {}
        self._stations_of: dict[str, list[str]] = {}  # machine id -> station ids
        self._ledger = LotLedger(max_finished_scans=self._config.orders.max_finished_scans)
        # Machine samples for stations without a PLC of their own (from service.samples).
        self._station_queue: asyncio.Queue[tuple[str, StationMessage] | _Barrier] = asyncio.Queue()
        self._machine_stations: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self._unsubscribe_samples: Callable[[], None] | None = None
        self._lock = asyncio.Lock()
        self._alarm_owners: list[AlarmOwner] = []  # alarms acknowledged elsewhere (OPC UA)
        self._stack = AsyncExitStack()
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands_running: set[asyncio.Future[Any]] = set()
        self._progress: set[str] = set()  # orders whose quantities changed since last reported
        self._unsubscribe: Callable[[], None] | None = None
        self._remove_source: Callable[[], None] | None = None
        # What the next cut saves besides the actors: the index and the ledger when they
        # changed, and the keys of finished orders to delete.
        self._index_changed = False
        self._ledger_changed = False
        self._gone: set[str] = set()
        self._persist_outage = OutageLog(log, "order state persistence")
        self._started = False  # fully restored: only then may stopping save over the store

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not RuntimeState.NEW:
            raise EdgeError(f"an OrdersRuntime runs once (state {self.state.value})")
        self.state = RuntimeState.RUNNING
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _start(self) -> None:
        service = self._service
        store = service.store
        self._roles = machine_roles(self._config)
        self._unsubscribe = service.bus.subscribe("orders", self._on_events)
        index = store.load(INDEX_KEY) or {}
        for item in index.get("finished", []):
            info = _info_from_data(item["info"])
            self._finished[info.order_id] = FinishedOrder(
                info, BatchRecord.from_dict(item["record"])
            )
        ledger = store.load(LEDGER_KEY)
        if ledger is not None:
            self._ledger = LotLedger.restore(
                ledger, max_finished_scans=self._config.orders.max_finished_scans
            )
        for station in self._config.quality_stations:
            snapshot = store.load(_station_key(station.id))
            self._stations[station.id] = await self._add_station(station.id, snapshot)
            self._stations_of.setdefault(station.params.machine_id, []).append(station.id)
            if station.plc is None and station.params.signals:
                self._machine_stations.setdefault(station.params.machine_id, []).append(
                    (station.id, station.params.signals)
                )
        auto: list[tuple[str, float]] = []
        for order_id in index.get("active", []):
            record = store.record(_order_key(order_id))
            if record is None:
                log.error("order listed as active has no saved state", extra={"order": order_id})
                continue
            core = OrderCore.restore(record.data, machine_roles=self._roles)
            order_ref = await self._add_order(core)
            # Pieces that were on their way to the order when the cut was taken.
            for message in decode_pending(record.pending, OrderActor.kept_on_cut):
                order_ref.post(message)  # type: ignore[arg-type]
            if core.status is OrderStatus.RUNNING:
                for machine_id in core.spec.machine_ids:
                    self._running_on[machine_id] = order_id
                if core.spec.auto_complete and core.target_reached:
                    auto.append((order_id, self._clock()))
        # Tell every machine its order (or none): a machine restored from an older
        # snapshot than its orders catches up here; the same order again is a no-op.
        now = self._clock()
        for machine in self._config.machines:
            order_id = self._running_on.get(machine.id)
            spec = self._order_specs.get(order_id) if order_id else None
            await self._set_machine_order(
                machine.id, order_id, spec.ideal_cycle_s if spec else None, now
            )
        for station_id, ref in self._stations.items():
            machine_id = self._config_station(station_id).params.machine_id
            await ref.ask(SetStationOrder(self._running_on.get(machine_id)))
        self._attach_station_bindings()
        if self._machine_stations:
            self._spawn(self._station_loop(), "orders-stations")
            self._unsubscribe_samples = service.samples.subscribe("quality", self._on_samples)
        self._spawn(self._progress_loop(), "orders-progress")
        for order_id, ts in auto:
            self._on_target(order_id, ts)
        self._service.commands = self
        # After the machines' source (added by the service first): a piece a machine
        # counted is then in its order's cut, as state or as a pending message.
        self._remove_source = service.cuts.add("orders", self._cut_state)
        self._started = True
        if self._orders or self._finished:
            log.info(
                "orders restored",
                extra={"active": len(self._orders), "finished": len(self._finished)},
            )

    async def _shutdown(self) -> None:
        if self.state is RuntimeState.CLOSED:
            return
        self.state = RuntimeState.CLOSED
        if self._service.commands is self:
            self._service.commands = None
        await self._stack.aclose()  # station PLC sources stop first
        # An auto-complete under way finishes (a half-done one would leave the machines
        # off an order that is still running); one not started yet is refused.
        auto = [t for t in self._tasks if t.get_name().startswith("orders-auto")]
        if auto:
            await asyncio.wait(auto, timeout=10.0)
        if self._started:
            async with self._lock:  # after the command under way, if any
                # The machines' queued samples become events now, and reach the orders.
                now = self._clock()
                for machine in self._config.machines:
                    with contextlib.suppress(ActorError, KeyError):
                        await self._service.machine_ref(machine.id).ask(GetStatus(now))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await self._drain_stations()
                try:
                    await self._persist()
                except EdgeError as exc:
                    log.error("cannot persist order state on stop", extra={"error": str(exc)})
        if self._remove_source is not None:
            self._remove_source()  # saved above; its actors stop now
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._unsubscribe_samples is not None:
            self._unsubscribe_samples()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        supervisor = self._service.supervisor
        for child_id in [_order_key(o) for o in self._orders] + [
            _station_key(s) for s in self._stations
        ]:
            with contextlib.suppress(KeyError, ActorError):
                await supervisor.remove_child(child_id)

    def banner(self) -> list[str]:
        stations = len(self._stations)
        return [
            f"orders      {len(self._orders)} open, {len(self._finished)} finished kept; "
            f"{stations} quality station{'s' if stations != 1 else ''}; "
            "commands over MQTT/OPC UA (edge.commands.LineCommands)"
        ]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ actors

    async def _add_order(self, core: OrderCore) -> ActorRef[OrderMessage, Any]:
        order_id = core.spec.order_id
        seed: list[OrderCore | None] = [core]

        def factory() -> OrderActor:
            # The first instance gets the core; a crash restart is restored by the
            # actor runtime from its last in-memory snapshot.
            first, seed[0] = seed[0], None
            start = first if first is not None else OrderCore(core.spec)
            return OrderActor(start, self._on_target, self._roles)

        spec: ChildSpec[OrderMessage, Any] = ChildSpec(
            id=_order_key(order_id),
            factory=factory,
            restart=RestartPolicy.TRANSIENT,
            mailbox_capacity=ORDER_MAILBOX,
        )
        ref = await self._service.supervisor.add_child(spec)
        self._orders[order_id] = ref
        self._order_specs[order_id] = core.spec
        self._index_changed = True
        return ref

    async def _add_station(
        self, station_id: str, snapshot: dict[str, Any] | None
    ) -> ActorRef[StationMessage, Any]:
        params = self._config_station(station_id).params
        seed = [snapshot]
        service = self._service

        def add_rejects(count: int, ts: float) -> None:
            # Posted, not told: the station's handler must not await after publishing
            # (edge.cut), and the machine keeps these in a cut until it handled them.
            try:
                service.machine_ref(params.machine_id).post(AddRejects(count, ts))
            except ActorError as exc:
                log.error(
                    "station rejects not added to the machine",
                    extra={"station": station_id, "machine": params.machine_id, "error": str(exc)},
                )

        def factory() -> QualityStationActor:
            first, seed[0] = seed[0], None
            return QualityStationActor(params, self._publish, add_rejects, first)

        spec: ChildSpec[StationMessage, Any] = ChildSpec(
            id=_station_key(station_id),
            factory=factory,
            mailbox_capacity=STATION_MAILBOX,
        )
        return await service.supervisor.add_child(spec)

    def _config_station(self, station_id: str) -> QualityStationConfig:
        for station in self._config.quality_stations:
            if station.id == station_id:
                return station
        raise KeyError(station_id)

    def _attach_station_bindings(self) -> None:
        """Stations with a plc_map of their own are read over their PLC's connection,
        the one the service polls the machines through (PLCs allow few connections)."""
        from edge.plc import MachineBinding, load_plc_map  # noqa: PLC0415

        config = self._config
        for plc in config.plcs:
            bindings = [
                MachineBinding(
                    machine_id=s.id,
                    plc_map=load_plc_map(s.plc_map, config.plc_map_dirs),
                    unit_id=s.unit_id,
                    address_offset=s.address_offset,
                )
                for s in config.quality_stations
                if s.plc == plc.id and s.plc_map is not None
            ]
            if bindings:
                self._service.attach_bindings(plc.id, bindings, self._station_sink)

    async def _station_sink(self, batch: Sequence[Sample | LinkChanged]) -> None:
        for station_id, item in per_reader(batch):
            message = StationSamples(item) if isinstance(item, tuple) else item
            await self._tell_station(station_id, message)

    async def _tell_station(self, station_id: str, message: StationMessage) -> None:
        ref = self._stations.get(station_id)
        if ref is None:
            return
        try:
            await ref.tell(message)
        except ActorError as exc:
            log.debug(
                "station did not take a message", extra={"station": station_id, "error": str(exc)}
            )

    # ------------------------------------------------------------------ events

    def _publish(self, events: Sequence[BusEvent]) -> None:
        self._service.bus.publish(events)

    def _on_events(self, events: Sequence[object]) -> None:
        """Bus consumer (synchronous, must not block): post what belongs to an order."""
        orders = self._orders
        for event in events:
            if isinstance(event, PiecesCounted):
                if event.order_id is not None and event.order_id in orders:
                    self._post(
                        event.order_id,
                        AttributePieces(event.machine_id, event.role, event.count, event.ts),
                    )
                    self._progress.add(event.order_id)
            elif isinstance(event, OrderWindowClosed):
                if event.order_id in orders:
                    self._post(event.order_id, SegmentKpis(event.kpis.as_dict()))
            elif isinstance(event, WindowRevised):
                kpis = event.kpis
                if kpis.window == "order" and kpis.key in orders:
                    self._post(kpis.key, SegmentKpis(kpis.as_dict()))

    def _post(self, order_id: str, message: OrderMessage) -> None:
        try:
            self._orders[order_id].post(message)
        except ActorError as exc:
            log.error("order did not take its pieces", extra={"order": order_id, "error": str(exc)})

    def _on_samples(self, batch: Sequence[Sample | LinkChanged]) -> None:
        """Sample bus consumer: a machine's samples that stations without a PLC read."""
        stations = self._machine_stations
        groups: dict[str, list[Sample]] = {}
        queue = self._station_queue
        for item in batch:
            readers = stations.get(item.machine_id)
            if not readers:
                continue
            if isinstance(item, Sample):
                for station_id, signals in readers:
                    if item.signal in signals:
                        groups.setdefault(station_id, []).append(item)
                continue
            for station_id, _ in readers:
                samples = groups.pop(station_id, None)
                if samples:
                    queue.put_nowait((station_id, StationSamples(tuple(samples))))
                queue.put_nowait((station_id, item))
        for station_id, samples in groups.items():
            queue.put_nowait((station_id, StationSamples(tuple(samples))))

    async def _station_loop(self) -> None:
        queue = self._station_queue
        while True:
            item = await queue.get()
            if isinstance(item, _Barrier):
                if not item.done.done():
                    item.done.set_result(None)
                continue
            station_id, message = item
            await self._tell_station(station_id, message)

    async def _drain_stations(self) -> None:
        """Until the machine samples stations read so far are in their mailboxes."""
        if not self._machine_stations:
            return
        barrier = _Barrier()
        self._station_queue.put_nowait(barrier)
        await barrier.done

    def _on_target(self, order_id: str, ts: float) -> None:
        """From an OrderActor: auto-complete reached its target."""
        if self.state is not RuntimeState.RUNNING:
            return
        self._spawn(self._auto_complete(order_id, ts), f"orders-auto-{order_id}")

    async def _auto_complete(self, order_id: str, ts: float) -> None:
        ref = self._orders.get(order_id)
        if ref is None:
            return
        try:
            view: OrderView = await ref.ask(GetOrderView())
            self._publish(
                [OrderTargetReached("", ts, order_id, view.good_quantity, view.target_quantity)]
            )
            who = _Who("auto", "edge")
            await self._command(
                "complete_order",
                {"order_id": order_id, "reason": "target reached"},
                who,
                lambda now: self._finish(
                    order_id, OrderAction.COMPLETE, now, "target reached", who
                ),
            )
        except CommandError as exc:
            # Completed or aborted by a person meanwhile: nothing to do.
            log.info("auto-complete skipped", extra={"order": order_id, "why": str(exc)})
        except EdgeError as exc:
            log.error("auto-complete failed", extra={"order": order_id, "error": str(exc)})

    # ------------------------------------------------------------------ persistence

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self._progress_interval_s)
            await self._report_progress()

    async def _report_progress(self) -> None:
        changed, self._progress = self._progress, set()
        events: list[OrderProgress] = []
        for order_id in changed:
            ref = self._orders.get(order_id)
            if ref is None:
                continue
            with contextlib.suppress(ActorError):
                view: OrderView = await ref.ask(GetOrderView())
                events.append(
                    OrderProgress(
                        "",
                        self._clock(),
                        order_id,
                        view.good_quantity,
                        view.reject_quantity,
                        view.total_quantity,
                        view.target_quantity,
                    )
                )
        if events:
            self._publish(events)

    async def _persist(self) -> None:
        """Until the whole line (machines, orders, stations, ledger) as of now is committed."""
        await self._service.persist_now()

    def _cut_state(self) -> dict[str, Saved | None]:
        """This runtime's part of the line's cut (edge.cut): what changed since the last.

        Synchronous, between two messages of every actor: an order's part is its state
        and the pieces still queued for it, so with the machines' part (taken just
        before) every piece counted is in exactly one place.
        """
        saved: dict[str, Saved | None] = {key: None for key in self._gone}
        self._gone.clear()
        for order_id, ref in self._orders.items():
            cut = ref.cut()
            if cut is not None and cut.snapshot is not None:
                saved[_order_key(order_id)] = Saved(cut.snapshot, encode_pending(cut.pending))
        for station_id, station in self._stations.items():
            station_cut = station.cut()
            if station_cut is not None and station_cut.snapshot is not None:
                saved[_station_key(station_id)] = Saved(station_cut.snapshot)
        if self._ledger_changed:
            self._ledger_changed = False
            saved[LEDGER_KEY] = Saved(self._ledger.snapshot())
        if self._index_changed:
            self._index_changed = False
            saved[INDEX_KEY] = Saved(
                {
                    "active": list(self._orders),
                    "finished": [
                        {"info": _info_to_data(f.info), "record": f.record.as_dict()}
                        for f in self._finished.values()
                    ],
                }
            )
        return saved

    # ------------------------------------------------------------------ commands

    async def _command(
        self,
        name: str,
        arguments: dict[str, object],
        who: _Who,
        action: Callable[[float], Any],
        describe: Callable[[Any], str] | None = None,
    ) -> Any:
        """Run one command under the lock, audited.

        A caller that gives up (a front end's timeout, a cancelled task) does not
        cut a command in half: it runs to its end, like an ask whose asker left.
        """
        if self.state is not RuntimeState.RUNNING:
            ts = self._clock()
            reason = f"the order runtime is {self.state.value}"
            self._audit(ts, who, name, arguments, accepted=False, result=reason)
            raise CommandError(reason)
        task = asyncio.ensure_future(self._run_command(name, arguments, who, action, describe))
        self._commands_running.add(task)
        task.add_done_callback(self._command_done)
        return await asyncio.shield(task)

    def _command_done(self, task: asyncio.Future[Any]) -> None:
        self._commands_running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a refusal whose caller left is audited, not lost

    async def _run_command(
        self,
        name: str,
        arguments: dict[str, object],
        who: _Who,
        action: Callable[[float], Any],
        describe: Callable[[Any], str] | None,
    ) -> Any:
        async with self._lock:
            ts = self._clock()
            # The command and its audit are one step of the line's state: no cut
            # falls in between (a restart sees all of it or none of it).
            with self._service.cuts.gate.hold():
                try:
                    if self.state is not RuntimeState.RUNNING:  # stopped while it waited
                        raise CommandError(f"the order runtime is {self.state.value}")
                    result = await action(ts)
                except CommandError as exc:
                    self._audit(ts, who, name, arguments, accepted=False, result=str(exc))
                    raise
                except EdgeError as exc:
                    self._audit(ts, who, name, arguments, accepted=False, result=f"failed: {exc}")
                    raise
                text = describe(result) if describe is not None else _describe(result)
                self._audit(ts, who, name, arguments, accepted=True, result=text)
            # Durable before the reply: an acknowledged command survives a crash.
            await self._persist_now()
        return result

    def _audit(
        self,
        ts: float,
        who: _Who,
        command: str,
        arguments: dict[str, object],
        *,
        accepted: bool,
        result: str,
    ) -> None:
        if not accepted:
            log.info(
                "command refused: %s",
                result,
                extra={"command": command, "source": who.source, "user": who.user},
            )
        if who.source in self._self_audited:
            return
        self._publish(
            [
                CommandAudit(
                    ts=ts,
                    source=who.source,
                    user=who.user,
                    command=command,
                    arguments=arguments,
                    accepted=accepted,
                    result=result,
                )
            ]
        )

    def _order_ref(self, order_id: object) -> tuple[str, ActorRef[OrderMessage, Any]]:
        oid = _order_id(order_id)
        ref = self._orders.get(oid)
        if ref is None:
            finished = self._finished.get(oid)
            if finished is not None:
                raise CommandError(
                    f"order {oid!r} is {finished.info.status}; a {finished.info.status} "
                    "order is final"
                )
            raise CommandError(f"order_id {oid!r}: no such order")
        return oid, ref

    def _check_machine(self, machine_id: object, name: str = "machine_id") -> str:
        if not isinstance(machine_id, str) or machine_id not in self._roles:
            known = ", ".join(sorted(self._roles))
            raise CommandError(f"{name} {machine_id!r}: no such machine (known: {known})")
        return machine_id

    def _check_free(self, order_id: str) -> None:
        for machine_id in self._order_specs[order_id].machine_ids:
            other = self._running_on.get(machine_id)
            if other is not None and other != order_id:
                raise CommandError(
                    f"machine {machine_id!r} is running order {other!r}; "
                    "hold or complete that order first"
                )

    async def _set_machine_order(
        self, machine_id: str, order_id: str | None, ideal_cycle_s: float | None, ts: float
    ) -> None:
        try:
            # ask, not tell: when it returns, the machine's events of the old order
            # (its last pieces, its window's KPIs) are on the bus.
            await self._service.machine_ref(machine_id).ask(SetOrder(order_id, ideal_cycle_s, ts))
        except ActorError as exc:
            log.error(
                "machine did not take its order",
                extra={"machine": machine_id, "order": order_id, "error": str(exc)},
            )

    async def _put_on_machines(
        self, order_id: str | None, machine_ids: Sequence[str], ts: float
    ) -> None:
        ideal = self._order_specs[order_id].ideal_cycle_s if order_id is not None else None
        for machine_id in machine_ids:
            if order_id is None:
                self._running_on.pop(machine_id, None)
            else:
                self._running_on[machine_id] = order_id
            await self._set_machine_order(machine_id, order_id, ideal, ts)
        # Stations reading these machines' samples get every sample the machines got
        # under the old order before they change order too.
        await self._drain_stations()
        for machine_id in machine_ids:
            for station_id in self._stations_of.get(machine_id, ()):
                await self._stations[station_id].ask(SetStationOrder(order_id))

    async def _transition(
        self, order_id: str, action: OrderAction, ts: float, reason: str, who: _Who
    ) -> OrderInfo:
        oid, ref = self._order_ref(order_id)
        target: OrderStatus = await ref.ask(CheckAction(action))
        machines = self._order_specs[oid].machine_ids
        if target is OrderStatus.RUNNING:
            self._check_free(oid)
        previous: OrderView = await ref.ask(GetOrderView())
        view: OrderView = await ref.ask(ApplyAction(action, ts, reason, who.source, who.user))
        if target is OrderStatus.RUNNING:
            await self._put_on_machines(oid, machines, ts)
        elif previous.status is OrderStatus.RUNNING:
            await self._put_on_machines(None, machines, ts)
        self._publish([_status_changed(ts, view, previous, reason, who)])
        return _info(view)

    async def _finish(
        self, order_id: str, action: OrderAction, ts: float, reason: str, who: _Who
    ) -> OrderInfo:
        oid, ref = self._order_ref(order_id)
        await ref.ask(CheckAction(action))
        spec = self._order_specs[oid]
        previous: OrderView = await ref.ask(GetOrderView())
        if previous.status is OrderStatus.RUNNING:
            await self._put_on_machines(None, spec.machine_ids, ts)
        # Every piece and window the machines published for the order is in its mailbox
        # (posted by the bus callback): this ask is handled after them.
        view: OrderView = await ref.ask(ApplyAction(action, ts, reason, who.source, who.user))
        quality = []
        for machine_id in spec.machine_ids:
            for station_id in self._stations_of.get(machine_id, ()):
                quality.append(await self._stations[station_id].ask(GetOrderQuality(oid)))
        genealogy = self._ledger.genealogy(oid, spec.produced_lot_id)
        record: BatchRecord = await ref.ask(BuildBatchRecord(quality, genealogy))
        info = _info(view)
        self._publish(
            [
                _status_changed(ts, view, previous, reason, who),
                BatchRecordCompleted("", ts, oid, record),
            ]
        )
        self._ledger.finish(oid)
        self._ledger_changed = True
        for machine_id in spec.machine_ids:
            for station_id in self._stations_of.get(machine_id, ()):
                await self._stations[station_id].ask(ForgetOrder(oid))
        del self._orders[oid]
        del self._order_specs[oid]
        self._progress.discard(oid)
        self._finished[oid] = FinishedOrder(info, record)
        while len(self._finished) > self._config.orders.retain_finished:
            self._finished.popitem(last=False)
        self._index_changed = True
        self._gone.add(_order_key(oid))  # deleted by the next cut, with the index
        with contextlib.suppress(KeyError):
            await self._service.supervisor.remove_child(_order_key(oid))
        log.info(
            "order %s",
            view.status.value,
            extra={
                "order": oid,
                "good": record.good_quantity,
                "reject": record.reject_quantity,
                "source": who.source,
            },
        )
        return info

    async def _persist_now(self) -> None:
        try:
            await self._persist()
        except StateStoreError as exc:
            # The command is done; the writer retries the commit with its next one.
            self._persist_outage.failed(exc)
        else:
            self._persist_outage.recovered()

    # -- LineCommands ---------------------------------------------------------------

    async def download_order(self, spec: OrderSpec, *, source: str, user: str) -> OrderInfo:
        async def run(ts: float) -> OrderInfo:
            checked = self._validate_spec(spec)
            existing = self._orders.get(checked.order_id)
            if existing is not None:
                if self._order_specs[checked.order_id] == checked:
                    # A resent download (its reply was lost): the same order, no change.
                    return _info(await existing.ask(GetOrderView()))
                raise CommandError(
                    f"order_id {checked.order_id!r} already exists with another spec"
                )
            if checked.order_id in self._finished:
                status = self._finished[checked.order_id].info.status
                raise CommandError(
                    f"order_id {checked.order_id!r} already exists and is {status}; "
                    "a new order needs a new id"
                )
            core = OrderCore(
                checked,
                machine_roles=self._roles,
                quantity_rule=self._quantity_rule,
                created_at=ts,
                source=source,
                user=user,
            )
            ref = await self._add_order(core)
            self._publish(
                [OrderStatusChanged("", ts, checked.order_id, "created", "", "", source, user)]
            )
            return _info(await ref.ask(GetOrderView()))

        arguments: dict[str, object] = {
            "order_id": getattr(spec, "order_id", None),
            "product": getattr(spec, "product", None),
            "target_quantity": getattr(spec, "target_quantity", None),
            "machine_ids": list(getattr(spec, "machine_ids", ()) or ()),
        }
        result: OrderInfo = await self._command(
            "download_order", arguments, _Who(source, user), run
        )
        return result

    def _validate_spec(self, spec: object) -> OrderSpec:
        if not isinstance(spec, OrderSpec):
            raise CommandError(f"spec must be an OrderSpec, got {type(spec).__name__}")
        order_id = _order_id(spec.order_id)
        product = _text("product", spec.product)
        target = spec.target_quantity
        if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
            raise CommandError(f"target_quantity must be a positive integer, got {target!r}")
        machines = spec.machine_ids
        if not isinstance(machines, (tuple, list)) or not machines:
            raise CommandError("machine_ids must list at least one machine")
        for machine_id in machines:
            self._check_machine(machine_id, "machine_ids:")
        if len(set(machines)) != len(machines):
            raise CommandError(f"machine_ids lists a machine twice: {list(machines)}")
        ideal = spec.ideal_cycle_s
        if ideal is not None and (
            isinstance(ideal, bool)
            or not isinstance(ideal, (int, float))
            or not math.isfinite(ideal)
            or ideal <= 0
        ):
            raise CommandError(f"ideal_cycle_s must be a number > 0 or null, got {ideal!r}")
        if not isinstance(spec.auto_complete, bool):
            raise CommandError(f"auto_complete must be a boolean, got {spec.auto_complete!r}")
        return OrderSpec(
            order_id=order_id,
            product=product,
            target_quantity=target,
            machine_ids=tuple(machines),
            ideal_cycle_s=float(ideal) if ideal is not None else None,
            operation_id=_text("operation_id", spec.operation_id, empty=True),
            auto_complete=spec.auto_complete,
            produced_lot_id=_text("produced_lot_id", spec.produced_lot_id, empty=True),
        )

    async def release_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.RELEASE, order_id, "", source, user)

    async def start_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.START, order_id, "", source, user)

    async def hold_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.HOLD, order_id, reason, source, user)

    async def resume_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.RESUME, order_id, "", source, user)

    async def complete_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.COMPLETE, order_id, "", source, user)

    async def abort_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        return await self._order_command(OrderAction.ABORT, order_id, reason, source, user)

    async def _order_command(
        self, action: OrderAction, order_id: str, reason: str, source: str, user: str
    ) -> OrderInfo:
        arguments: dict[str, object] = {"order_id": order_id}
        if action in (OrderAction.HOLD, OrderAction.ABORT):
            arguments["reason"] = reason

        async def run(ts: float) -> OrderInfo:
            why = _text("reason", reason, empty=True)
            if action in (OrderAction.COMPLETE, OrderAction.ABORT):
                return await self._finish(order_id, action, ts, why, _Who(source, user))
            return await self._transition(order_id, action, ts, why, _Who(source, user))

        result: OrderInfo = await self._command(
            f"{action.value}_order", arguments, _Who(source, user), run
        )
        return result

    async def set_stop_reason(
        self,
        machine_id: str,
        reason: str,
        *,
        stop_id: int | None = None,
        ts: float | None = None,
        source: str,
        user: str,
    ) -> None:
        async def run(now: float) -> None:
            machine = self._check_machine(machine_id)
            text = _text("reason", reason)
            if stop_id is not None and (isinstance(stop_id, bool) or not isinstance(stop_id, int)):
                raise CommandError(f"stop_id must be an integer or null, got {stop_id!r}")
            at = _event_ts(ts, now) if ts is not None else None
            await self._service.machine_ref(machine).ask(SetStopReason(text, at, stop_id))

        arguments: dict[str, object] = {
            "machine_id": machine_id,
            "reason": reason,
            "stop_id": stop_id,
            "ts": ts,
        }
        await self._command("set_stop_reason", arguments, _Who(source, user), run, lambda _: "ok")

    def add_alarm_owner(self, owner: AlarmOwner) -> None:
        """Acknowledge ``owner``'s alarms here too (edge.commands.AlarmOwners)."""
        if owner not in self._alarm_owners:
            self._alarm_owners.append(owner)

    async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
        async def run(ts: float) -> bool:
            owner = next((o for o in self._alarm_owners if o.owns(alarm_id)), None)
            if owner is not None:
                return await owner.acknowledge(alarm_id, ts=ts, user=user)
            ref = self._station_for_alarm(alarm_id)
            acknowledged: bool = await ref.ask(AcknowledgeAlarm(alarm_id, ts, user))
            return acknowledged

        await self._command(
            "acknowledge_alarm",
            {"alarm_id": alarm_id},
            _Who(source, user),
            run,
            lambda done: "acknowledged" if done else "already acknowledged",
        )

    def _station_for_alarm(self, alarm_id: object) -> ActorRef[StationMessage, Any]:
        parts = alarm_id.split("/") if isinstance(alarm_id, str) else []
        ref = self._stations.get(parts[1]) if len(parts) == 4 and parts[0] == "spc" else None
        if ref is None:
            raise CommandError(f"alarm_id {alarm_id!r}: no such alarm")
        return ref

    # -- further commands (lots, manual inspections, dispositions) ----------------------

    async def record_lot_scan(
        self,
        scan_id: str,
        lot_id: str,
        machine_id: str,
        *,
        order_id: str | None = None,
        material: str = "",
        quantity: float | None = None,
        ts: float | None = None,
        source: str,
        user: str,
    ) -> LotScanResult:
        """A material lot loaded into a machine, for ``order_id`` or the order on the machine
        (running, else the one held on it). The same ``scan_id`` again is ignored."""

        async def run(now: float) -> LotScanResult:
            machine = self._check_machine(machine_id)
            order = self._order_for_scan(machine, order_id)
            scan = LotScan(
                scan_id=_text("scan_id", scan_id),
                lot_id=_text("lot_id", lot_id),
                order_id=order,
                machine_id=machine,
                ts=_event_ts(ts, now),
                material=_text("material", material, empty=True),
                quantity=quantity,
                source=source,
                user=user,
            )
            recorded = self._ledger.record(scan)
            if recorded:
                self._ledger_changed = True
                self._publish(
                    [
                        LotScanned(
                            machine,
                            scan.ts,
                            order,
                            scan.scan_id,
                            scan.lot_id,
                            scan.material,
                            scan.quantity,
                        )
                    ]
                )
            return LotScanResult(recorded, scan)

        arguments: dict[str, object] = {
            "scan_id": scan_id,
            "lot_id": lot_id,
            "machine_id": machine_id,
            "order_id": order_id,
            "material": material,
            "quantity": quantity,
        }
        result: LotScanResult = await self._command(
            "record_lot_scan",
            arguments,
            _Who(source, user),
            run,
            lambda r: "recorded" if r.recorded else "duplicate scan ignored",
        )
        return result

    def _order_for_scan(self, machine_id: str, order_id: str | None) -> str:
        if order_id is not None:
            oid, _ = self._order_ref(order_id)
            if machine_id not in self._order_specs[oid].machine_ids:
                raise CommandError(f"machine_id {machine_id!r} is not one of order {oid!r}'s")
            return oid
        running = self._running_on.get(machine_id)
        if running is not None:
            return running
        held = [oid for oid, spec in self._order_specs.items() if machine_id in spec.machine_ids]
        if len(held) == 1:
            return held[0]
        raise CommandError(
            f"order_id: machine {machine_id!r} runs no order"
            + (f" and has several open ({', '.join(held)})" if held else "")
            + "; name the order"
        )

    async def record_inspection(
        self,
        station_id: str,
        *,
        passed: int = 0,
        failed: int = 0,
        measurements: Mapping[str, Sequence[float]] | None = None,
        disposition: str | None = None,
        reason_code: str = "",
        ts: float | None = None,
        source: str,
        user: str,
    ) -> StationStatus:
        """A manual inspection entry at a station (counts, dispositions, measurements)."""

        async def run(now: float) -> StationStatus:
            ref = self._station_ref(station_id)
            if measurements is not None and not isinstance(measurements, Mapping):
                raise CommandError("measurements must map characteristic names to values")
            values: dict[str, list[float]] = {
                str(name): list(v) if isinstance(v, (list, tuple)) else [cast(float, v)]
                for name, v in (measurements or {}).items()
            }
            await ref.ask(
                RecordInspection(
                    passed, failed, _event_ts(ts, now), disposition, reason_code, values
                )
            )
            status: StationStatus = await ref.ask(GetStationStatus())
            return status

        arguments: dict[str, object] = {
            "station_id": station_id,
            "passed": passed,
            "failed": failed,
            "measurements": dict(measurements)
            if isinstance(measurements, Mapping)
            else measurements,
            "disposition": disposition,
            "reason_code": reason_code,
        }
        result: StationStatus = await self._command(
            "record_inspection", arguments, _Who(source, user), run, lambda _: "recorded"
        )
        return result

    async def dispose_rejects(
        self,
        station_id: str,
        count: int,
        disposition: str,
        reason_code: str,
        *,
        order_id: str | None = None,
        ts: float | None = None,
        source: str,
        user: str,
    ) -> str | None:
        """Pending failed pieces of ``order_id`` (default: the station's current order)
        get a disposition (scrap, rework, reuse); returns the order they belong to."""

        async def run(now: float) -> str | None:
            ref = self._station_ref(station_id)
            if order_id is not None:
                _order_id(order_id)
            owner: str | None = await ref.ask(
                Dispose(count, disposition, reason_code, _event_ts(ts, now), order_id)
            )
            return owner

        arguments: dict[str, object] = {
            "station_id": station_id,
            "count": count,
            "disposition": disposition,
            "reason_code": reason_code,
            "order_id": order_id,
        }
        result: str | None = await self._command(
            "dispose_rejects", arguments, _Who(source, user), run, lambda o: f"order {o}"
        )
        return result

    def _station_ref(self, station_id: object) -> ActorRef[StationMessage, Any]:
        ref = self._stations.get(station_id) if isinstance(station_id, str) else None
        if ref is None:
            known = ", ".join(sorted(self._stations)) or "none configured"
            raise CommandError(f"station_id {station_id!r}: no such station (known: {known})")
        return ref

    # -- queries (not audited) -----------------------------------------------------------

    async def order_info(self, order_id: str) -> OrderInfo:
        finished = self._finished.get(order_id)
        if finished is not None:
            return finished.info
        _, ref = self._order_ref(order_id)
        return _info(await ref.ask(GetOrderView()))

    async def order_view(self, order_id: str) -> OrderView:
        """The full view of an open order (per-machine counts, times)."""
        _, ref = self._order_ref(order_id)
        view: OrderView = await ref.ask(GetOrderView())
        return view

    async def open_orders(self) -> list[OrderView]:
        """The full views of the orders not finished, oldest first (the line display)."""
        return [await ref.ask(GetOrderView()) for ref in list(self._orders.values())]

    async def orders(self) -> list[OrderInfo]:
        """Open orders, then finished ones (oldest first)."""
        infos = [_info(await ref.ask(GetOrderView())) for ref in list(self._orders.values())]
        return infos + [f.info for f in self._finished.values()]

    def batch_record(self, order_id: str) -> BatchRecord | None:
        finished = self._finished.get(order_id)
        return finished.record if finished is not None else None

    async def station_status(self, station_id: str) -> StationStatus:
        status: StationStatus = await self._station_ref(station_id).ask(GetStationStatus())
        return status

    async def station_charts(self, station_id: str) -> list[ChartView]:
        """A station's SPC charts with their latest points (the line display)."""
        charts: list[ChartView] = await self._station_ref(station_id).ask(GetCharts())
        return charts

    async def active_alarms(self) -> list[Alarm]:
        alarms: list[Alarm] = []
        for ref in self._stations.values():
            status: StationStatus = await ref.ask(GetStationStatus())
            alarms.extend(status.active_alarms)
        return alarms


def _describe(result: object) -> str:
    if isinstance(result, OrderInfo):
        return f"order {result.order_id} is {result.status}"
    return "ok"


def component(service: LineService) -> OrdersRuntime:
    """The service component factory: ``LineService(config, components=[component])``."""
    return OrdersRuntime(service)


# A check for mypy that the runtime satisfies the LineCommands protocol.
if TYPE_CHECKING:
    from edge.commands import LineCommands

    def _is_line_commands(runtime: OrdersRuntime) -> LineCommands:
        return runtime
