"""OrderActor: one work order's core behind a mailbox, a dynamic child of the line supervisor.

The order runtime (``edge.orders``) creates one per order, forwards it the
pieces and order-window KPIs the machines publish for it, and asks it to apply
the status changes the line's coordinator (:mod:`actors.orders.line`) checked
against its view. When auto-complete is on and the good quantity reaches the
target, the actor calls ``on_target`` once; the runtime completes the order
from there (it owns the machines' side of it).

Crash restarts continue from the last snapshot (the actor runtime's, every
second). The line's state store saves the order as a cut takes it: its
snapshot between two messages plus the pieces still queued for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.actor import Actor
from actors.orders.core import OrderAction, OrderCore
from actors.traceability import Genealogy

TargetCallback = Callable[[str, float], None]

# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class ApplyAction:
    """Ask: change status; replies with the new :class:`~actors.orders.core.OrderView`."""

    action: OrderAction
    ts: float
    reason: str = ""
    source: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class AttributePieces:
    machine_id: str
    role: str
    count: int
    ts: float


@dataclass(frozen=True, slots=True)
class SegmentKpis:
    """A machine's KPIs for one run segment of the order (``KpiRecord.as_dict()``)."""

    kpis: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BuildBatchRecord:
    """Ask: the batch record of the finished order."""

    quality: Sequence[Mapping[str, Any]] = ()
    genealogy: Genealogy | None = None


@dataclass(frozen=True, slots=True)
class GetOrderView:
    """Ask: an :class:`~actors.orders.core.OrderView`."""


OrderMessage = ApplyAction | AttributePieces | SegmentKpis | BuildBatchRecord | GetOrderView


def _no_target(order_id: str, ts: float) -> None:
    """A replay's target callback: the target was reported the first time."""


# ----------------------------------------------------------------------------- actor


class OrderActor(Actor[OrderMessage, Any]):
    # Pieces and segment KPIs the machines already published, still queued when the
    # line's state is cut: saved with the order and handed to it first on restore.
    kept_on_cut = (AttributePieces, SegmentKpis)
    # A crash restart keeps the pieces and actions handled since the last snapshot.
    replays_messages = True

    def __init__(
        self,
        core: OrderCore,
        on_target: TargetCallback,
        machine_roles: Mapping[str, int] | None = None,
    ) -> None:
        self.core = core
        self.on_target = on_target
        self.machine_roles = dict(machine_roles or {})

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()

    def restore(self, snapshot: object) -> None:
        if isinstance(snapshot, dict):
            self.core = OrderCore.restore(snapshot, machine_roles=self.machine_roles)

    def replay(self, snapshot: object | None, messages: Sequence[OrderMessage]) -> object | None:
        if not isinstance(snapshot, dict):
            return snapshot
        core = OrderCore.restore(snapshot, machine_roles=self.machine_roles)
        again = OrderActor(core, _no_target, self.machine_roles)
        for message in messages:
            if not isinstance(message, (BuildBatchRecord, GetOrderView)):
                again._apply(message)
        return again.snapshot()

    async def handle(self, message: OrderMessage) -> Any:
        return self._apply(message)

    def _apply(self, message: OrderMessage) -> Any:
        core = self.core
        match message:
            case AttributePieces(machine_id=machine_id, role=role, count=count, ts=ts):
                if core.count(machine_id, role, count, ts):
                    self.on_target(core.spec.order_id, ts)
            case SegmentKpis(kpis=kpis):
                core.window_kpis(kpis)
            case ApplyAction():
                core.apply(
                    message.action,
                    message.ts,
                    reason=message.reason,
                    source=message.source,
                    user=message.user,
                )
                return core.view()
            case BuildBatchRecord(quality=quality, genealogy=genealogy):
                return core.batch_record(quality=quality, genealogy=genealogy)
            case GetOrderView():
                return core.view()
        return None
