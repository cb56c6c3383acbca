"""Order objects (``<line>.Orders.<order id>``, OrderType): created when an order
appears, updated as it moves, removed some time after it finished.

Updates come from the order runtime's events on the bus and from the OrderInfo
our own methods get back. Finished orders (completed, aborted) stay browsable
until ``KEEP_FINISHED`` newer ones have finished, then their objects go.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncua.ua.uaerrors import UaError

from actors.orders.events import BatchRecordCompleted, OrderStatusChanged, OrderTargetReached
from edge.commands import OrderInfo
from edge.serve.opcua.address_space import AddressSpace, VarHandle
from edge.serve.opcua.model import ORDER_TYPE, order_node_id
from edge.serve.opcua.writer import LiveValueWriter

log = logging.getLogger("edge.opcua_server")

KEEP_FINISHED = 20
FINISHED = frozenset({"completed", "aborted"})


@dataclass(slots=True)
class OrderUpdate:
    """What is known of an order now; None: unchanged."""

    order_id: str
    ts: float
    status: str | None = None
    product: str | None = None
    target_quantity: int | None = None
    good_count: int | None = None
    reject_count: int | None = None
    ideal_cycle_s: float | None = None
    machine_ids: tuple[str, ...] | None = None


def update_from_event(event: object) -> OrderUpdate | None:
    """An order runtime event as an update (None: not an order event)."""
    if isinstance(event, OrderStatusChanged):
        return OrderUpdate(event.order_id, event.ts, status=event.status)
    if isinstance(event, OrderTargetReached):
        return OrderUpdate(
            event.order_id,
            event.ts,
            good_count=event.good_quantity,
            target_quantity=event.target_quantity,
        )
    if isinstance(event, BatchRecordCompleted):
        record = event.record
        return OrderUpdate(
            record.order_id,
            event.ts,
            status=record.status,
            product=record.product,
            target_quantity=record.target_quantity,
            good_count=record.good_quantity,
            reject_count=record.reject_quantity,
            machine_ids=tuple(record.machines),
        )
    return None


def update_from_info(info: OrderInfo, ts: float) -> OrderUpdate:
    return OrderUpdate(
        info.order_id,
        ts,
        status=info.status,
        product=info.product,
        target_quantity=info.target_quantity,
        good_count=info.good_count,
        reject_count=info.reject_count,
        machine_ids=info.machine_ids,
    )


@dataclass(slots=True)
class _Order:
    status: str = ""
    target: int = 0
    good: int = 0
    handles: dict[str, VarHandle] = field(default_factory=dict)


class OrdersView:
    def __init__(self, space: AddressSpace, writer: LiveValueWriter, line_id: str) -> None:
        self._space = space
        self._writer = writer
        self._line_id = line_id
        self._folder = space.node_id(f"{line_id}.Orders")
        self._orders: dict[str, _Order] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    @property
    def order_ids(self) -> list[str]:
        return list(self._orders)

    async def apply(self, update: OrderUpdate) -> None:
        order = self._orders.get(update.order_id)
        if order is None:
            order = await self._create(update.order_id)
        ts = update.ts
        stage = self._stage_for(order, ts)
        if update.status is not None:
            order.status = update.status
            stage("Status", update.status)
        if update.product is not None:
            stage("Product", update.product)
        if update.target_quantity is not None:
            order.target = update.target_quantity
            stage("TargetQuantity", update.target_quantity)
        if update.good_count is not None:
            order.good = update.good_count
            stage("GoodCount", update.good_count)
        if update.reject_count is not None:
            stage("RejectCount", update.reject_count)
        if update.ideal_cycle_s is not None:
            stage("IdealCycleTime", update.ideal_cycle_s)
        if update.machine_ids is not None:
            stage("Machines", list(update.machine_ids))
        if order.target > 0:
            stage("Progress", 100.0 * order.good / order.target)
        if order.status in FINISHED:
            self._finished[update.order_id] = None
            self._finished.move_to_end(update.order_id)
            while len(self._finished) > KEEP_FINISHED:
                oldest, _ = self._finished.popitem(last=False)
                await self.remove(oldest)
        else:
            self._finished.pop(update.order_id, None)

    def _stage_for(self, order: _Order, ts: float) -> Callable[[str, object], None]:
        def stage(name: str, value: object) -> None:
            self._writer.stage(order.handles[name], value, ts)

        return stage

    async def _create(self, order_id: str) -> _Order:
        node_id = order_node_id(self._line_id, order_id)
        await self._space.add_instance(
            node_id, order_id, ORDER_TYPE, self._folder, description=f"Work order {order_id}"
        )
        prefix = node_id + "."
        order = _Order(
            handles={
                text[len(prefix) :]: handle
                for text, handle in self._space.handles.items()
                if text.startswith(prefix)
            }
        )
        self._orders[order_id] = order
        self._writer.stage(order.handles["OrderId"], order_id, None)
        self._writer.stage(order.handles["Progress"], 0.0, None)
        log.debug("order object created", extra={"order": order_id})
        return order

    async def remove(self, order_id: str) -> None:
        order = self._orders.pop(order_id, None)
        if order is None:
            return
        self._finished.pop(order_id, None)
        self._writer.forget(list(order.handles.values()))
        try:
            await self._space.delete(order_node_id(self._line_id, order_id))
        except UaError as exc:
            log.warning("order object not removed", extra={"order": order_id, "error": repr(exc)})
