"""The order runtime's actors: one per open order and per quality station, children of
the line's supervisor, and the messages the coordinator's decisions become.

- an :class:`~actors.orders.actor.OrderActor` per open order (``order/<id>``,
  transient: a finished order's actor ends for good);
- a :class:`~actors.quality.actor.QualityStationActor` per station
  (``quality/<id>``), whose rejects, when it feeds them, are posted to its
  machine (:meth:`LineChildren.spawn_station`).

Messages to the machines are asks (``SetOrder``: when it returns, the machine's
events of the old order are on the bus); a machine that does not take one is
logged, not raised: the command goes on with the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from actors.actor import ActorRef
from actors.machine import AddRejects, MachineMessage, SetOrder
from actors.orders.actor import OrderActor, OrderMessage, TargetCallback
from actors.orders.core import OrderCore
from actors.orders.line import MachineMove
from actors.quality.actor import (
    QualityEventSink,
    QualityStationActor,
    SetStationOrder,
    StationMessage,
)
from actors.quality.params import StationParams
from actors.supervisor import ChildSpec, RestartPolicy, Supervisor
from edge.errors import ActorError

__all__ = ["ORDER_MAILBOX", "STATION_MAILBOX", "LineChildren", "order_key", "station_key"]

log = logging.getLogger("edge.orders")

ORDER_MAILBOX = 10_000
STATION_MAILBOX = 1_000

MachineRefs = Callable[[str], ActorRef[MachineMessage, Any]]


def order_key(order_id: str) -> str:
    """The order's child id, and the key of its saved state."""
    return f"order/{order_id}"


def station_key(station_id: str) -> str:
    return f"quality/{station_id}"


class LineChildren:
    """The order and station actors the runtime spawned; their refs by id."""

    def __init__(
        self,
        supervisor: Callable[[], Supervisor],
        machine_ref: MachineRefs,
        publish: QualityEventSink,
        on_target: TargetCallback,
        machine_roles: dict[str, int],
    ) -> None:
        self._supervisor = supervisor
        self._machine_ref = machine_ref
        self._publish = publish
        self._on_target = on_target
        self._roles = machine_roles
        self.orders: dict[str, ActorRef[OrderMessage, Any]] = {}
        self.stations: dict[str, ActorRef[StationMessage, Any]] = {}

    # ------------------------------------------------------------------ spawning

    async def spawn_order(self, core: OrderCore) -> ActorRef[OrderMessage, Any]:
        order_id = core.spec.order_id
        seed: list[OrderCore | None] = [core]

        def factory() -> OrderActor:
            # The first instance gets the core; a crash restart is restored by the
            # actor runtime from its last in-memory snapshot.
            first, seed[0] = seed[0], None
            start = first if first is not None else OrderCore(core.spec)
            return OrderActor(start, self._on_target, self._roles)

        spec: ChildSpec[OrderMessage, Any] = ChildSpec(
            id=order_key(order_id),
            factory=factory,
            restart=RestartPolicy.TRANSIENT,
            mailbox_capacity=ORDER_MAILBOX,
        )
        ref = await self._supervisor().add_child(spec)
        self.orders[order_id] = ref
        return ref

    async def spawn_station(
        self, params: StationParams, snapshot: dict[str, Any] | None
    ) -> ActorRef[StationMessage, Any]:
        seed = [snapshot]
        machine_ref = self._machine_ref

        def add_rejects(count: int, ts: float) -> None:
            # Posted, not told: the station's handler must not await after publishing
            # (edge.cut), and the machine keeps these in a cut until it handled them.
            try:
                machine_ref(params.machine_id).post(AddRejects(count, ts))
            except ActorError as exc:
                log.error(
                    "station rejects not added to the machine",
                    extra={
                        "station": params.station_id,
                        "machine": params.machine_id,
                        "error": str(exc),
                    },
                )

        def factory() -> QualityStationActor:
            first, seed[0] = seed[0], None
            return QualityStationActor(params, self._publish, add_rejects, first)

        spec: ChildSpec[StationMessage, Any] = ChildSpec(
            id=station_key(params.station_id),
            factory=factory,
            mailbox_capacity=STATION_MAILBOX,
        )
        ref = await self._supervisor().add_child(spec)
        self.stations[params.station_id] = ref
        return ref

    async def remove_order(self, order_id: str) -> None:
        """A finished order's actor ends (its ref is forgotten first)."""
        del self.orders[order_id]
        with contextlib.suppress(KeyError):
            await self._supervisor().remove_child(order_key(order_id))

    async def remove_all(self) -> None:
        supervisor = self._supervisor()
        keys = [order_key(o) for o in self.orders] + [station_key(s) for s in self.stations]
        for child_id in keys:
            with contextlib.suppress(KeyError, ActorError):
                await supervisor.remove_child(child_id)

    # ------------------------------------------------------------------ messages

    def post_order(self, order_id: str, message: OrderMessage) -> None:
        """Never waits, never refused (pieces the machines published go to their order)."""
        try:
            self.orders[order_id].post(message)
        except ActorError as exc:
            log.error("order did not take its pieces", extra={"order": order_id, "error": str(exc)})

    async def tell_station(self, station_id: str, message: StationMessage) -> None:
        ref = self.stations.get(station_id)
        if ref is None:
            return
        try:
            await ref.tell(message)
        except ActorError as exc:
            log.debug(
                "station did not take a message", extra={"station": station_id, "error": str(exc)}
            )

    async def set_machine_order(
        self, machine_id: str, order_id: str | None, ideal_cycle_s: float | None, ts: float
    ) -> None:
        try:
            # ask, not tell: when it returns, the machine's events of the old order
            # (its last pieces, its window's KPIs) are on the bus.
            await self._machine_ref(machine_id).ask(SetOrder(order_id, ideal_cycle_s, ts))
        except ActorError as exc:
            log.error(
                "machine did not take its order",
                extra={"machine": machine_id, "order": order_id, "error": str(exc)},
            )

    async def move_machines(self, move: MachineMove, ts: float) -> None:
        for machine_id in move.machine_ids:
            await self.set_machine_order(machine_id, move.order_id, move.ideal_cycle_s, ts)

    async def set_station_orders(self, station_ids: Sequence[str], order_id: str | None) -> None:
        for station_id in station_ids:
            await self.stations[station_id].ask(SetStationOrder(order_id))
