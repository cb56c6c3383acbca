"""What the order runtime answers without changing anything (not audited): orders,
batch records, stations, charts and alarms, for the line display, the JSON API and
the front ends."""

from __future__ import annotations

from typing import Any

from actors.actor import ActorRef
from actors.orders.actor import GetOrderView, OrderMessage
from actors.orders.batch import BatchRecord
from actors.orders.core import OrderView
from actors.orders.line import LineOrders, order_info
from actors.quality.actor import GetCharts, GetStationStatus, StationMessage
from actors.quality.core import Alarm, ChartView, StationStatus
from edge.commands import OrderInfo
from edge.orders.children import LineChildren

__all__ = ["OrderQueries"]


class OrderQueries:
    def __init__(self, orders: LineOrders, children: LineChildren) -> None:
        self._orders = orders
        self._children = children

    def _order_ref(self, order_id: object) -> tuple[str, ActorRef[OrderMessage, Any]]:
        oid = self._orders.open_order(order_id)
        return oid, self._children.orders[oid]

    def _station_ref(self, station_id: object) -> ActorRef[StationMessage, Any]:
        return self._children.stations[self._orders.stations.check(station_id)]

    async def order_info(self, order_id: str) -> OrderInfo:
        finished = self._orders.finished(order_id)
        if finished is not None:
            return finished.info
        _, ref = self._order_ref(order_id)
        return order_info(await ref.ask(GetOrderView()))

    async def order_view(self, order_id: str) -> OrderView:
        """The full view of an open order (per-machine counts, times)."""
        _, ref = self._order_ref(order_id)
        view: OrderView = await ref.ask(GetOrderView())
        return view

    async def open_orders(self) -> list[OrderView]:
        """The full views of the orders not finished, oldest first (the line display)."""
        return [await ref.ask(GetOrderView()) for ref in list(self._children.orders.values())]

    async def orders(self) -> list[OrderInfo]:
        """Open orders, then finished ones (oldest first)."""
        infos = [order_info(view) for view in await self.open_orders()]
        return infos + [f.info for f in self._orders.finished_orders]

    def batch_record(self, order_id: str) -> BatchRecord | None:
        finished = self._orders.finished(order_id)
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
        for ref in self._children.stations.values():
            status: StationStatus = await ref.ask(GetStationStatus())
            alarms.extend(status.active_alarms)
        return alarms
