"""The line service: every part of one line, started in order and stopped in reverse.

::

    async with LineService(config) as service:   # state → simulator → actors → PLC sources
        await service.wait()                     # until stopped; raises if the actors escalated

Start order: the state database (``state.db``: checked, migrated from the
previous layout if need be) with its writer, which from then on commits every
event for the MES together with a consistent cut of the line's state
(:mod:`edge.state.cut`); the simulator (when the config enables it); the supervisor
with one MachineActor per machine (each restored from the last committed cut);
the components that must see every event from the first sample on (outbox,
orders, MQTT, metrics); the PLC sources, whose samples are routed to the
actors; then the components that take long to start (:class:`AfterSources`:
the OPC UA server builds its address space) and the clocks (event-time ticks,
status log, systemd watchdog). So the line counts from its first second, while
``READY=1`` still means everything is up: what the buses carried while a late
component started is replayed to it, in order, when it is up. No cut is taken
while the line starts. Stop runs in reverse: sources stop first so nothing new
arrives, every machine drains its mailbox, the last events and the last cut
are committed, then the actors stop and the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from actors import loop as actor_loop
from actors.actor import ActorRef, OverflowPolicy
from actors.machine import (
    GetStatus,
    MachineActor,
    MachineMessage,
    MachineStatus,
    SampleBatch,
    Tick,
)
from actors.messages import LinkChanged, Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.events import ShiftClosed, StopEnded, Warning
from actors.supervisor import ChildSpec, Supervisor
from edge import __version__
from edge.commands import LineCommands
from edge.config import LineConfig, ModbusPlcConfig, OpcUaPlcConfig
from edge.context import AfterSources, Component, LineContext, ServiceState
from edge.errors import (
    ActorError,
    EdgeError,
    EscalationError,
    MailboxFullError,
    SnapshotError,
    StateStoreError,
)
from edge.event_bus import BusEvent, EventBus
from edge.forward.streams import component as outbox_component
from edge.runtime import crash_hook
from edge.runtime.heap import long_lived_start
from edge.sd_notify import Notifier, run_watchdog, watchdog_interval_s
from edge.sources.plc import MachineBinding, ModbusSource, load_plc_map
from edge.sources.plc.delivery import SampleSink, per_reader
from edge.state.cut import CutSources, Saved, decode_pending, encode_pending
from edge.state.outbox import QMIB_STREAM, CapPolicy, Outbox, OutboxWriter
from edge.state.store import LEGACY_SNAPSHOTS, STATE_DB, LegacyFiles, StateStore

log = logging.getLogger("edge.service")

TICK_INTERVAL_S = 1.0
STATUS_LOG_INTERVAL_S = 20.0
MACHINE_MAILBOX = 1000


# How long the start waits for the first poll of every Modbus PLC before it builds
# the slow components, whose synchronous work would hold those polls back.
FIRST_POLL_WAIT_S = 0.5


def _opcua_server(context: LineContext) -> AbstractAsyncContextManager[Any]:
    from edge.serve import opcua  # noqa: PLC0415 - asyncua: imported while the PLCs poll

    return opcua.component(context)


def default_components(config: LineConfig) -> list[Component]:
    """The parts ``edge run`` starts besides the actors, in start order.

    The outbox comes first so it sees every event from the first sample on; the
    order runtime sets ``service.commands`` before the front ends (OPC UA, MQTT,
    the line display) that call it; the HTTP component (the line display and the
    metrics) comes last and reads everything else. The OPC UA server starts after
    the PLC sources (:class:`AfterSources`).
    """
    # Each imported only when enabled: they pull in heavy libraries (asyncua,
    # aiomqtt, httpx, numpy), and a line pays the start time and memory of what it runs.
    components: list[Component] = []
    if config.mqtt.enabled or config.qmib.enabled:
        components.append(outbox_component)
    from edge import orders  # noqa: PLC0415

    components.append(orders.component)
    if config.opcua.enabled:
        components.append(AfterSources(_opcua_server))
    if config.mqtt.enabled:
        from edge.forward.mqtt import component as mqtt_component  # noqa: PLC0415

        components.append(mqtt_component)
    if config.qmib.enabled:
        from edge.forward import qmib  # noqa: PLC0415

        components.append(qmib.component)
    if config.metrics.enabled or config.web.enabled:
        from edge.serve import web  # noqa: PLC0415

        components.append(web.component)
    return components


def _machine_key(machine_id: str) -> str:
    return f"machine/{machine_id}"


def _synchronous(config: LineConfig) -> Literal["FULL", "NORMAL"]:
    """The state database's durability: state and events share it, so the stricter of
    ``[storage] sqlite_synchronous`` and ``[outbox] synchronous``."""
    if "FULL" in (config.storage.sqlite_synchronous, config.outbox.synchronous):
        return "FULL"
    return "NORMAL"


class LineService:
    """One production line: its actors, PLC sources and servers."""

    def __init__(
        self,
        config: LineConfig,
        *,
        notifier: Notifier | None = None,
        components: Sequence[Component] = (),
        tick_interval_s: float | None = TICK_INTERVAL_S,
    ) -> None:
        """``tick_interval_s``: how often the wall clock advances the machines' event
        time between samples (shift ends, stop deadlines of counts-only machines);
        None leaves event time to the samples alone, for a caller that drives time
        itself, as tests feeding recorded timestamps do."""
        self.config = config
        self._tick_interval_s = tick_interval_s
        self.components: list[Any] = []
        # Set by the component that implements edge.commands.LineCommands.
        self.commands: LineCommands | None = None
        self._component_factories = tuple(components)
        self.state = ServiceState.NEW
        self.started_at: float | None = None
        self.bus: EventBus[BusEvent] = EventBus()
        # Every batch the PLC sources deliver (process values too), before the
        # machine actors see it: for the OPC UA address space and SPC.
        self.samples: EventBus[Sample | LinkChanged] = EventBus()
        self.notifier = notifier or Notifier()
        self.calendar = ShiftCalendar(config.calendar)
        self.simulator: Any = None
        self.sources: list[Any] = []
        self._stack = AsyncExitStack()
        # What a restart restores, and when it may be taken (edge.state.cut).
        self.cuts = CutSources()
        self._store: StateStore | None = None
        self._outbox: Outbox | None = None
        self._writer: OutboxWriter | None = None
        self._supervisor: Supervisor | None = None
        self._machines: dict[str, ActorRef[MachineMessage, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unknown_machines: set[str] = set()

        self._progress_marker = -1
        # Other components' points read over the PLC connections (attach_bindings).
        self._attached: dict[str, list[MachineBinding]] = {}
        self._attached_sinks: dict[str, SampleSink] = {}
        self._sources_built = False
        self._first_counted = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not ServiceState.NEW:
            raise EdgeError(f"a LineService runs once (state {self.state.value})")
        self.state = ServiceState.STARTING
        try:
            await self._start()
        except BaseException:
            self.state = ServiceState.FAILED
            await self._stack.aclose()
            raise
        self.state = ServiceState.RUNNING
        self.started_at = time.time()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.state in (ServiceState.STOPPING, ServiceState.STOPPED):
            return
        failed = self.state is ServiceState.FAILED
        self.state = ServiceState.STOPPING
        self.notifier.stopping()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._stack.aclose()
        finally:
            self.state = ServiceState.FAILED if failed else ServiceState.STOPPED

    async def _start(self) -> None:
        # The line is restored and wired as one step: no cut sees half of it.
        with self.cuts.gate.hold():
            await self._start_parts()

    async def _start_parts(self) -> None:
        config = self.config
        stack = self._stack
        state_dir = config.storage.state_dir
        store = StateStore(
            state_dir / STATE_DB,
            synchronous=_synchronous(config),
            legacy=LegacyFiles(state_dir / LEGACY_SNAPSHOTS, config.outbox.path),
        )
        self._store = await stack.enter_async_context(store)
        cfg = config.outbox
        outbox = Outbox(store, max_bytes=cfg.max_bytes, policy=CapPolicy(cfg.policy))
        self._outbox = await stack.enter_async_context(outbox)
        routes: dict[str, frozenset[str]] = {}
        if config.qmib.enabled:
            routes[QMIB_STREAM] = frozenset(config.qmib.deliver_events)
        writer = OutboxWriter(
            outbox,
            self.bus,
            routes=routes,
            max_pending=cfg.max_pending_events,
            report_interval_s=cfg.report_interval_s,
            cuts=self.cuts,
            # Events are kept only for a consumer (MQTT, QMIB: the outbox component).
            store_events=any(f is outbox_component for f in self._component_factories),
        )
        self._writer = await stack.enter_async_context(writer)
        if store.resets:
            self.bus.publish(store.resets)  # the first thing the MES hears of this start

        if config.simulator.enabled:
            from edge.sources.simulator import SimulatedLine, machine_specs  # noqa: PLC0415

            self.simulator = await stack.enter_async_context(
                SimulatedLine(config.simulator, machine_specs(config))
            )

        supervisor = Supervisor(name=f"line {config.line.id}")
        self._supervisor = await stack.enter_async_context(supervisor)
        # Registered after the supervisor, so it runs before the supervisor stops
        # the actors: the last cut is taken from drained, live actors.
        stack.push_async_callback(self._commit_last)
        self.cuts.add("machines", self._cut_machines)
        for machine in config.machines:
            record = store.record(_machine_key(machine.id))
            spec: ChildSpec[MachineMessage, Any] = ChildSpec(
                id=machine.id,
                factory=self._machine_factory(machine.id, record.data if record else None),
                mailbox_capacity=MACHINE_MAILBOX,
                overflow=OverflowPolicy.COALESCE,
            )
            ref = await supervisor.add_child(spec)
            self._machines[machine.id] = ref
            if record is not None:
                # State that was on its way to the machine when the cut was taken.
                for message in decode_pending(record.pending, MachineActor.kept_on_cut):
                    ref.post(message)  # type: ignore[arg-type]
                log.info("machine state restored", extra={"machine": machine.id})

        self.bus.subscribe("event-log", _log_events)
        late = [c.factory for c in self._component_factories if isinstance(c, AfterSources)]
        for factory in self._component_factories:
            if not isinstance(factory, AfterSources):
                self.components.append(await stack.enter_async_context(factory(self)))
        for source in self._build_sources():
            self.sources.append(await stack.enter_async_context(source))
        if late:
            await self._first_polls(FIRST_POLL_WAIT_S)
            self.bus.hold()
            self.samples.hold()
            try:
                for factory in late:
                    self.components.append(await stack.enter_async_context(factory(self)))
            finally:
                self.samples.release()
                self.bus.release()

        if self._tick_interval_s is not None:
            self._spawn(self._tick_loop(self._tick_interval_s), "ticks")
        self._spawn(self._status_loop(), "status-log")
        remove_crash_hook = crash_hook.install(self._machines)
        if remove_crash_hook is not None:
            stack.callback(remove_crash_hook)
        interval = watchdog_interval_s()
        if interval is not None:
            self._spawn(run_watchdog(self.notifier, interval, self._making_progress), "watchdog")

    async def _first_polls(self, timeout_s: float) -> None:
        """Until every Modbus PLC was polled once (read or failed), at most ``timeout_s``."""
        waits = [
            asyncio.ensure_future(s.first_polled.wait())
            for s in self.sources
            if isinstance(s, ModbusSource)
        ]
        if not waits:
            return
        _done, pending = await asyncio.wait(waits, timeout=timeout_s)
        for wait in pending:
            wait.cancel()

    def _machine_factory(
        self, machine_id: str, snapshot: dict[str, Any] | None
    ) -> Callable[[], MachineActor]:
        params = self.config.machine(machine_id).params
        initial = [snapshot]

        def factory() -> MachineActor:
            # The persisted snapshot seeds only the first instance; a crash restart
            # is restored by the runtime from its newer in-memory snapshot.
            seed, initial[0] = initial[0], None
            try:
                return MachineActor(
                    params,
                    self.calendar,
                    self.bus.publish,
                    seed,
                    request_values=self._resend_values,
                )
            except SnapshotError as exc:
                # A saved row the state database holds but the core cannot use.
                raise StateStoreError(str(exc)) from exc

        return factory

    def attach_bindings(
        self, plc_id: str, bindings: Sequence[MachineBinding], sink: SampleSink
    ) -> None:
        """More points to read on a PLC's connection (a quality station's own map),
        delivered to ``sink`` instead of the machine actors.

        A component calls this while it starts, before the PLC sources are built:
        a PLC serves every reader over one connection (PLCs allow few)."""
        if self._sources_built:
            raise EdgeError(f"bindings for plc {plc_id} attached after the PLC sources started")
        ids = {b.machine_id for b in bindings}
        taken = ids & ({m.id for m in self.config.machines} | set(self._attached_sinks))
        if taken:
            raise EdgeError(f"plc {plc_id}: ids {sorted(taken)} already read by another binding")
        self._attached.setdefault(plc_id, []).extend(bindings)
        for binding_id in ids:
            self._attached_sinks[binding_id] = sink

    def _build_sources(self) -> list[Any]:
        config = self.config
        self._sources_built = True
        sources: list[Any] = []
        for plc in config.plcs:
            bindings = [
                MachineBinding(
                    machine_id=m.id,
                    plc_map=load_plc_map(m.plc_map, config.plc_map_dirs),
                    unit_id=m.unit_id,
                    address_offset=m.address_offset,
                )
                for m in config.machines
                if m.plc == plc.id and m.plc_map is not None
            ]
            attached = self._attached.get(plc.id, [])
            if not bindings and not attached:
                log.warning("plc has no machines bound to it; not polled", extra={"plc": plc.id})
                continue
            sink = self._split_sink() if attached else self._route
            if isinstance(plc, ModbusPlcConfig):
                sources.append(ModbusSource(plc, [*bindings, *attached], sink))
            elif isinstance(plc, OpcUaPlcConfig):
                sources.append(self._opcua_source(plc, [*bindings, *attached], sink))
        return sources

    def _split_sink(self) -> SampleSink:
        """A source's sink when other components read through its connection too."""
        attached = self._attached_sinks

        async def deliver(batch: Sequence[Sample | LinkChanged]) -> None:
            machines: list[Sample | LinkChanged] = []
            others: dict[SampleSink, list[Sample | LinkChanged]] = {}
            for item in batch:
                other = attached.get(item.machine_id)
                if other is None:
                    machines.append(item)
                else:
                    others.setdefault(other, []).append(item)
            if machines:
                await self._route(machines)
            for other, items in others.items():
                await other(items)

        return deliver

    def _opcua_source(
        self, plc: OpcUaPlcConfig, bindings: list[MachineBinding], sink: SampleSink
    ) -> Any:
        from edge.sources.plc.opcua import OpcUaSource  # noqa: PLC0415 - asyncua client is heavy

        return OpcUaSource(plc, bindings, sink)

    def _resend_values(self, machine_id: str) -> None:
        plc_id = self.config.machine(machine_id).plc
        for source in self.sources:
            if source.plc_id == plc_id:
                source.resend_all()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

    # ------------------------------------------------------------------ routing

    async def _route(self, batch: Sequence[Sample | LinkChanged]) -> None:
        """Deliver one source batch to the machine actors, keeping each machine's order."""
        if self.samples.has_consumers:
            self.samples.publish(batch)
        for machine_id, item in per_reader(batch):
            if isinstance(item, tuple):
                if self._first_counted:
                    await self._tell(machine_id, SampleBatch(item))
                else:
                    await self._count_first(machine_id, SampleBatch(item))
            else:
                await self._tell(machine_id, item)

    async def _count_first(self, machine_id: str, batch: SampleBatch) -> None:
        """The first samples of the line, handed over with ``ask``: when it returns
        they are counted, which the service tells systemd (``STATUS=``) and the log."""
        ref = self._machines.get(machine_id)
        if ref is None:
            await self._tell(machine_id, batch)
            return
        try:
            await ref.ask(batch, timeout=5.0)
        except ActorError as exc:
            log.debug(
                "machine did not take a message", extra={"machine": machine_id, "error": str(exc)}
            )
            return
        self._first_counted = True
        self.notifier.status(f"counting: first PLC samples applied (machine {machine_id})")
        log.info("first PLC samples counted", extra={"machine": machine_id})

    async def _tell(self, machine_id: str, message: MachineMessage) -> None:
        ref = self._machines.get(machine_id)
        if ref is None:
            if machine_id not in self._unknown_machines:
                self._unknown_machines.add(machine_id)
                log.error(
                    "dropping data for a machine not in the config", extra={"machine": machine_id}
                )
            return
        try:
            await ref.tell(message)  # blocks when the mailbox is full: backpressure to the poll
        except ActorError as exc:
            # The actor is restarting or the line is stopping; the source re-reads.
            log.debug(
                "machine did not take a message", extra={"machine": machine_id, "error": str(exc)}
            )

    # ------------------------------------------------------------------ clocks

    async def _tick_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            tick = Tick(time.time())
            for ref in self._machines.values():
                with contextlib.suppress(MailboxFullError, ActorError):
                    ref.tell_nowait(tick)

    async def persist_now(self) -> None:
        """Until a cut of the whole line taken after this call is committed.

        Machines, orders and stations as they are now, with every event published
        so far, in one transaction: after a ``kill -9`` the restored line is this
        (or a later) cut. Raises StateStoreError when that commit failed. Not from a
        component's start: no cut is taken before the line has started.
        """
        await self.writer.commit_now()

    def _cut_machines(self) -> dict[str, Saved | None]:
        """The machines' part of a cut (edge.state.cut): those that changed since the last one."""
        saved: dict[str, Saved | None] = {}
        for machine_id, ref in self._machines.items():
            cut = ref.cut()
            if cut is not None and cut.snapshot is not None:
                saved[_machine_key(machine_id)] = Saved(cut.snapshot, encode_pending(cut.pending))
        return saved

    async def _commit_last(self) -> None:
        """On stop, before the actors stop: queued samples become events, then one last cut."""
        if self._writer is None:
            return
        now = time.time()
        for ref in self._machines.values():
            with contextlib.suppress(ActorError):
                await ref.ask(GetStatus(now), timeout=5.0)  # queues behind what was routed
        try:
            await self._writer.flush()
        except StateStoreError as exc:
            log.error("the last state of the line was not stored", extra={"error": str(exc)})

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_LOG_INTERVAL_S)
            for status in await self.machine_statuses():
                log.info(_status_line(status))

    async def machine_statuses(self) -> list[MachineStatus]:
        now = time.time()
        statuses = []
        for ref in self._machines.values():
            with contextlib.suppress(ActorError):
                statuses.append(await ref.ask(GetStatus(now), timeout=5.0))
        return statuses

    def machine_ref(self, machine_id: str) -> ActorRef[MachineMessage, Any]:
        return self._machines[machine_id]

    @property
    def store(self) -> StateStore:
        """The state database (open while the service runs); what it restored at start."""
        if self._store is None:
            raise EdgeError("the line service is not started")
        return self._store

    @property
    def outbox(self) -> Outbox:
        """The event streams of the state database."""
        if self._outbox is None:
            raise EdgeError("the line service is not started")
        return self._outbox

    @property
    def writer(self) -> OutboxWriter:
        """Commits the line's state with its events (edge.state.outbox.OutboxWriter)."""
        if self._writer is None:
            raise EdgeError("the line service is not started")
        return self._writer

    @property
    def supervisor(self) -> Supervisor:
        """The line's supervisor, for components that add actors (work orders)."""
        if self._supervisor is None:
            raise EdgeError("the line service is not started")
        return self._supervisor

    def _making_progress(self) -> bool:
        """True when PLC polling moved on since the last call (the watchdog's gate).

        Polling sources (Modbus) must have attempted polls since the last call
        (failed attempts count: a dead PLC is not a stuck service). Subscription
        sources (OPC UA) have no poll count; they run in this event loop, whose
        liveness the ping itself proves, and reconnect through their own check.
        """
        polls = [s.statistics().polls for s in self.sources if isinstance(s, ModbusSource)]
        marker = sum(polls)
        advanced = marker != self._progress_marker
        self._progress_marker = marker
        return advanced or not polls

    # ------------------------------------------------------------------ waiting

    async def wait(self) -> None:
        """Until the supervisor fails (raises EscalationError)."""
        assert self._supervisor is not None
        await self._supervisor.wait()

    def banner(self) -> list[str]:
        """Where everything is, for a new user reading the first screen."""
        c = self.config
        ident = c.line
        plcs = []
        for plc in c.plcs:
            count = sum(1 for m in c.machines if m.plc == plc.id)
            where = f"{plc.host}:{plc.port}" if isinstance(plc, ModbusPlcConfig) else plc.endpoint
            plcs.append(f"{plc.id}: {plc.protocol} {where} ({count} machines)")
        loop_kind = actor_loop.loop_kind(asyncio.get_running_loop())
        lines = [
            f'edge {__version__} ready: line {ident.site}/{ident.area}/{ident.id} "{ident.name}", '
            f"{len(c.machines)} machines, event loop {loop_kind}",
            f"  config      {c.source_path.resolve()}",
            f"  state       {c.storage.state_dir / STATE_DB} (state and events in one "
            f"transaction, synchronous={_synchronous(c)}; restart continues the shift)",
            f"  PLCs        {'; '.join(plcs) or 'none configured'}",
        ]
        if self.simulator is not None:
            lines.append(
                f"  simulator   Modbus TCP {c.simulator.host}:{c.simulator.port} plays the line "
                f"in-process (seed {c.simulator.seed}); `edge simulate` runs it alone"
            )
        for component in self.components:
            lines.extend(f"  {line}" for line in getattr(component, "banner", list)())
        lines.append(
            f"  status      a line per machine every {STATUS_LOG_INTERVAL_S:.0f} s; "
            "stop with Ctrl-C or SIGTERM"
        )
        return lines


# ---------------------------------------------------------------------- event log


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _log_events(events: Sequence[BusEvent]) -> None:
    """The notable events, one log line each (pieces and state flips stay quiet)."""
    for event in events:
        if isinstance(event, StopEnded) and not event.micro:
            log.info(
                "stop ended",
                extra={
                    "machine": event.machine_id,
                    "reason": event.reason,
                    "duration_s": round(event.duration_s, 1),
                    "kind": event.kind.value,
                },
            )
        elif isinstance(event, ShiftClosed):
            k = event.kpis
            log.info(
                "shift closed",
                extra={
                    "machine": event.machine_id,
                    "shift": k.name,
                    "total": k.total_count,
                    "good": k.good_count,
                    "oee": _ratio(k.oee),
                },
            )
        elif isinstance(event, Warning):
            log.warning(event.message, extra={"machine": event.machine_id, "kind": event.kind})


def _status_line(status: MachineStatus) -> str:
    shift = status.current_shift
    parts = [
        f"{status.machine_id} {status.state.value}",
        f"since {_ts(status.state_since)}",
    ]
    if status.stop_reason:
        parts.append(f"reason {status.stop_reason!r}")
    if shift is not None:
        parts.append(
            f"shift {shift.name}: total {shift.total_count} good {shift.good_count} "
            f"reject {shift.reject_count} A {_ratio(shift.availability)} "
            f"P {_ratio(shift.performance)} Q {_ratio(shift.quality)} OEE {_ratio(shift.oee)}"
        )
    else:
        parts.append("not scheduled now")
    return " | ".join(parts)


# ---------------------------------------------------------------------- entry points


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve(config: LineConfig) -> int:
    """Run the line until SIGINT/SIGTERM (0) or an escalated failure (1)."""
    stop = asyncio.Event()
    _install_stop_signals(stop)
    notifier = Notifier()
    try:
        async with AsyncExitStack() as stack:
            with long_lived_start():
                components = default_components(config)
                service = await stack.enter_async_context(
                    LineService(config, notifier=notifier, components=components)
                )
            for line in service.banner():
                log.info(line)
            notifier.ready(f"line {config.line.id}: {len(config.machines)} machines")
            failed = asyncio.ensure_future(service.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if failed.done():
                exc = failed.exception()
                log.critical(
                    "line failed; exiting for systemd to restart", extra={"error": str(exc)}
                )
                return 1
            failed.cancel()
            log.info("stopping: draining actors and persisting state")
    except EscalationError as exc:
        log.critical("line failed; exiting for systemd to restart", extra={"error": str(exc)})
        return 1
    finally:
        notifier.close()
    log.info("stopped cleanly")
    return 0


def run_service(config: LineConfig) -> int:
    return actor_loop.run(serve(config))


async def _simulate(config: LineConfig, paused: bool) -> int:
    from edge.sources.simulator import run_simulator  # noqa: PLC0415

    stop = asyncio.Event()
    _install_stop_signals(stop)
    task = asyncio.ensure_future(run_simulator(config, paused=paused))
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def run_simulator_only(config: LineConfig, *, paused: bool = False) -> int:
    return actor_loop.run(_simulate(config, paused))
