"""A small hand-written LineCommands for the command tests (a double of OUR interface)."""

from __future__ import annotations

from dataclasses import replace

from edge.commands import OrderInfo, OrderSpec
from edge.errors import CommandError


class FakeCommands:
    """Orders in a dict; the transitions a real runtime refuses are refused here too."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderInfo] = {}
        self.calls: list[tuple[str, tuple[object, ...], str, str]] = []
        self.stop_reasons: list[tuple[str, str, int | None, float | None]] = []
        self.alarms: list[str] = []

    def _record(self, name: str, args: tuple[object, ...], source: str, user: str) -> None:
        self.calls.append((name, args, source, user))

    def _order(self, order_id: str) -> OrderInfo:
        try:
            return self.orders[order_id]
        except KeyError:
            raise CommandError(f"order_id: no order {order_id!r}") from None

    def _move(self, order_id: str, allowed: tuple[str, ...], status: str) -> OrderInfo:
        order = self._order(order_id)
        if order.status not in allowed:
            raise CommandError(f"order {order_id!r} is {order.status}; cannot become {status}")
        self.orders[order_id] = replace(order, status=status)
        return self.orders[order_id]

    async def download_order(self, spec: OrderSpec, *, source: str, user: str) -> OrderInfo:
        self._record("download_order", (spec,), source, user)
        if spec.order_id in self.orders:
            raise CommandError(f"order_id: {spec.order_id!r} exists already")
        info = OrderInfo(
            spec.order_id, "created", spec.product, spec.target_quantity, 0, 0, spec.machine_ids
        )
        self.orders[spec.order_id] = info
        return info

    async def release_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        self._record("release_order", (order_id,), source, user)
        return self._move(order_id, ("created",), "released")

    async def start_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        self._record("start_order", (order_id,), source, user)
        return self._move(order_id, ("created", "released"), "running")

    async def hold_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        self._record("hold_order", (order_id, reason), source, user)
        return self._move(order_id, ("running",), "held")

    async def resume_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        self._record("resume_order", (order_id,), source, user)
        return self._move(order_id, ("held",), "running")

    async def complete_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        self._record("complete_order", (order_id,), source, user)
        return self._move(order_id, ("running", "held"), "completed")

    async def abort_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        self._record("abort_order", (order_id, reason), source, user)
        return self._move(order_id, ("created", "released", "running", "held"), "aborted")

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
        self._record("set_stop_reason", (machine_id, reason), source, user)
        self.stop_reasons.append((machine_id, reason, stop_id, ts))

    async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
        self._record("acknowledge_alarm", (alarm_id,), source, user)
        self.alarms.append(alarm_id)
