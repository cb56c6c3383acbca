"""The order runtime: work orders, quality stations and lot traceability on a running line.

A service component (``LineService(config, components=[component])``) that
implements :class:`edge.commands.LineCommands` and sets ``service.commands``
to itself, so every front end (MQTT command topics, OPC UA methods, the CLI,
QMIB batch templates) drives orders through it::

    async with OrdersRuntime(service) as runtime:      # service.commands is runtime
        await runtime.download_order(spec, source="mqtt", user="mes")
        await runtime.start_order("WO1", source="opcua", user="op1")

What decides and what carries out
    The domain decisions are the line's order coordinator's
    (:class:`~actors.orders.line.LineOrders`, pure): which order a command
    changes, which machines and stations change order with it, which events it
    publishes, the auto-complete rule, whose order a lot scan is, where a
    station's samples and alarms belong. This package carries them out:
    :mod:`~edge.orders.children` spawns and messages the actors,
    :mod:`~edge.orders.stations` feeds the stations from the PLCs,
    :mod:`~edge.orders.commands` is the command surface, run by
    :mod:`~edge.orders.runner` (one at a time, whole, audited, durable before
    the reply), and :mod:`~edge.orders.persistence` is its part of the line's
    cut. This module is the lifecycle: start, restore, the bus subscriptions,
    progress reports, auto-complete, stop.

How pieces reach an order
    The machine core stamps every counter delta with the order it runs
    (``SetOrder``, sent when an order starts, holds, resumes, completes or
    aborts on a machine). The runtime subscribes to the event bus and posts
    ``PiecesCounted`` and the machines' order-window KPIs of its orders straight
    into their actors' mailboxes (``ActorRef.post``: never waits, never
    refused), in bus order, within the bus callback. So the moment a machine
    has published a piece, the piece is in its order's state or in its order's
    mailbox. Before an order finishes, the runtime takes it off its machines
    with an ``ask`` (so every piece counted for it is on the bus, hence in its
    mailbox).

Restart safety
    Orders (with the pieces still queued for them), stations, the lot ledger and
    the finished orders' records are a state source of the line's cut
    (:mod:`edge.cut`), saved in the same transaction as the machines and the
    events. A command holds the cut's gate while it runs and replies only once
    a cut taken after it is committed. A restart with the same state directory
    restores them and tells every machine its order again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from actors.machine import GetStatus
from actors.oee.counters import ROLE_INDEX
from actors.orders.actor import GetOrderView
from actors.orders.core import OrderAction, OrderView, QuantityRule
from actors.orders.line import AUTO, AUTO_COMPLETE_REASON, LineOrders, progress, target_reached
from actors.quality.routes import StationRoute, StationRoutes
from edge.config import LineConfig
from edge.errors import ActorError, CommandError, EdgeError
from edge.event_bus import BusEvent
from edge.orders import persistence
from edge.orders.children import LineChildren
from edge.orders.commands import OrderCommands
from edge.orders.runner import CommandRunner
from edge.orders.stations import StationFeed

if TYPE_CHECKING:
    from edge.service import LineService

__all__ = ["OrdersRuntime", "RuntimeState", "component", "machine_roles"]

log = logging.getLogger("edge.orders")

PROGRESS_INTERVAL_S = 1.0


class RuntimeState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


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


def station_routes(config: LineConfig) -> StationRoutes:
    return StationRoutes(
        StationRoute(s.params, own_plc=s.plc is not None) for s in config.quality_stations
    )


class OrdersRuntime(OrderCommands):
    """Implements :class:`edge.commands.LineCommands`; ``async with`` is its lifecycle."""

    def __init__(
        self,
        service: LineService,
        *,
        clock: Callable[[], float] = time.time,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        self_audited_sources: frozenset[str] = frozenset({"opcua"}),
    ) -> None:
        config = service.config
        self._service = service
        self._clock = clock
        self._progress_interval_s = progress_interval_s
        self.state = RuntimeState.NEW
        roles = machine_roles(config)
        orders = LineOrders(
            roles,
            station_routes(config),
            quantity_rule=QuantityRule(config.orders.quantity_rule),
            retain_finished=config.orders.retain_finished,
            max_finished_scans=config.orders.max_finished_scans,
        )
        publish = service.bus.publish
        children = LineChildren(
            lambda: service.supervisor, service.machine_ref, publish, self._on_target, roles
        )
        runner = CommandRunner(
            clock=clock,
            gate=lambda: service.cuts.gate,
            persist=service.persist_now,
            publish=publish,
            refusal=self._refusal,
            self_audited_sources=self_audited_sources,
        )
        feed = StationFeed(orders.stations, children.tell_station)
        super().__init__(
            orders, children, feed, runner, machine_ref=service.machine_ref, publish=publish
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
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
        service, orders, children = self._service, self._orders, self._children
        self._unsubscribe.append(service.bus.subscribe("orders", self._on_events))
        due = await persistence.restore(service.store, orders, children)
        # Tell every machine its order (or none): a machine restored from an older
        # snapshot than its orders catches up here; the same order again is a no-op.
        now = self._clock()
        for machine_id, order_id, ideal_cycle_s in orders.machine_orders():
            await children.set_machine_order(machine_id, order_id, ideal_cycle_s, now)
        for station_id, order_id in orders.station_orders():
            await children.set_station_orders([station_id], order_id)
        self._feed.attach(service.config, service.attach_bindings)
        if self._feed.reads_machine_samples:
            self._feed.start()
            self._unsubscribe.append(service.samples.subscribe("quality", self._feed.on_samples))
        self._spawn(self._progress_loop(), "orders-progress")
        for order_id in due:
            self._on_target(order_id, self._clock())
        service.commands = self
        # After the machines' source (added by the service first): a piece a machine
        # counted is then in its order's cut, as state or as a pending message.
        self._unsubscribe.append(
            service.cuts.add("orders", lambda: persistence.cut(self._orders, self._children))
        )
        self._started = True
        if orders.open_ids or orders.finished_orders:
            log.info(
                "orders restored",
                extra={"active": len(orders.open_ids), "finished": len(orders.finished_orders)},
            )

    async def _shutdown(self) -> None:
        if self.state is RuntimeState.CLOSED:
            return
        self.state = RuntimeState.CLOSED
        service = self._service
        if service.commands is self:
            service.commands = None
        # An auto-complete under way finishes (a half-done one would leave the machines
        # off an order that is still running); one not started yet is refused.
        auto = [t for t in self._tasks if t.get_name().startswith("orders-auto")]
        if auto:
            await asyncio.wait(auto, timeout=10.0)
        if self._started:
            async with self._runner.lock:  # after the command under way, if any
                # The machines' queued samples become events now, and reach the orders.
                now = self._clock()
                for machine in service.config.machines:
                    with contextlib.suppress(ActorError, KeyError):
                        await service.machine_ref(machine.id).ask(GetStatus(now))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await self._feed.drain()
                try:
                    await service.persist_now()
                except EdgeError as exc:
                    log.error("cannot persist order state on stop", extra={"error": str(exc)})
        # The cut source goes first (saved above; its actors stop now), then the bus
        # subscriptions.
        for unsubscribe in reversed(self._unsubscribe):
            unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._feed.stop()
        await self._children.remove_all()

    def _refusal(self) -> str | None:
        if self.state is RuntimeState.RUNNING:
            return None
        return f"the order runtime is {self.state.value}"

    def banner(self) -> list[str]:
        stations = len(self._children.stations)
        return [
            f"orders      {len(self._orders.open_ids)} open, "
            f"{len(self._orders.finished_orders)} finished kept; "
            f"{stations} quality station{'s' if stations != 1 else ''}; "
            "commands over MQTT/OPC UA (edge.commands.LineCommands)"
        ]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ events

    def _on_events(self, events: Sequence[object]) -> None:
        """Bus consumer (synchronous, must not block): post what belongs to an order."""
        for order_id, message in self._orders.route(events):
            self._children.post_order(order_id, message)

    def _on_target(self, order_id: str, ts: float) -> None:
        """From an OrderActor: auto-complete reached its target."""
        if self.state is not RuntimeState.RUNNING:
            return
        self._spawn(self._auto_complete(order_id, ts), f"orders-auto-{order_id}")

    async def _auto_complete(self, order_id: str, ts: float) -> None:
        ref = self._children.orders.get(order_id)
        if ref is None:
            return
        try:
            view: OrderView = await ref.ask(GetOrderView())
            self._publish([target_reached(view, ts)])
            await self._runner.run(
                "complete_order",
                {"order_id": order_id, "reason": AUTO_COMPLETE_REASON},
                AUTO,
                lambda now: self.finish(
                    order_id, OrderAction.COMPLETE, now, AUTO_COMPLETE_REASON, AUTO
                ),
            )
        except CommandError as exc:
            # Completed or aborted by a person meanwhile: nothing to do.
            log.info("auto-complete skipped", extra={"order": order_id, "why": str(exc)})
        except EdgeError as exc:
            log.error("auto-complete failed", extra={"order": order_id, "error": str(exc)})

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self._progress_interval_s)
            await self._report_progress()

    async def _report_progress(self) -> None:
        events: list[BusEvent] = []
        for order_id in self._orders.take_progress():
            ref = self._children.orders.get(order_id)
            if ref is None:
                continue
            with contextlib.suppress(ActorError):
                view: OrderView = await ref.ask(GetOrderView())
                events.append(progress(view, self._clock()))
        if events:
            self._publish(events)


def component(service: LineService) -> OrdersRuntime:
    """The service component factory: ``LineService(config, components=[component])``."""
    return OrdersRuntime(service)
