"""The order runtime's command surface: :class:`edge.commands.LineCommands` and the
further commands (lot scans, manual inspections, dispositions).

Each command is the coordinator's decision (:class:`~actors.orders.line.LineOrders`,
which validates it whole before anything changes; a refusal is its
:class:`~edge.errors.CommandError`) carried out on the actors, run by the
:class:`~edge.orders.runner.CommandRunner` (one at a time, whole, audited, durable
before the reply). The queries are
:class:`~edge.orders.queries.OrderQueries`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actors.actor import ActorRef
from actors.commands import check_text
from actors.machine import MachineMessage
from actors.orders.actor import BuildBatchRecord, GetOrderView
from actors.orders.batch import BatchRecord
from actors.orders.core import OrderAction, OrderView
from actors.orders.line import LineOrders, LotScanResult, MachineMove, Who, order_info
from actors.quality.actor import (
    AcknowledgeAlarm,
    ForgetOrder,
    GetOrderQuality,
    GetStationStatus,
)
from actors.quality.core import StationStatus
from edge.commands import AlarmOwner, OrderInfo, OrderSpec
from edge.event_bus import BusEvent
from edge.orders.children import LineChildren
from edge.orders.queries import OrderQueries
from edge.orders.runner import CommandRunner
from edge.orders.stations import StationFeed

__all__ = ["OrderCommands"]

log = logging.getLogger("edge.orders")

_FINISHING = (OrderAction.COMPLETE, OrderAction.ABORT)


class OrderCommands(OrderQueries):
    """Implements :class:`edge.commands.LineCommands` on the line's order and station actors."""

    def __init__(
        self,
        orders: LineOrders,
        children: LineChildren,
        feed: StationFeed,
        runner: CommandRunner,
        *,
        machine_ref: Callable[[str], ActorRef[MachineMessage, Any]],
        publish: Callable[[Sequence[BusEvent]], None],
    ) -> None:
        super().__init__(orders, children)
        self._feed = feed
        self._runner = runner
        self._machine_ref = machine_ref
        self._publish = publish
        self._alarm_owners: list[AlarmOwner] = []  # alarms acknowledged elsewhere (OPC UA)

    # -- LineCommands -----------------------------------------------------------------

    async def download_order(self, spec: OrderSpec, *, source: str, user: str) -> OrderInfo:
        who = Who(source, user)

        async def run(ts: float) -> OrderInfo:
            plan = self._orders.download(spec, ts, who)
            if plan.core is None:  # a resend: the same order, no change
                existing = self._children.orders[plan.order_id]
                return order_info(await existing.ask(GetOrderView()))
            ref = await self._children.spawn_order(plan.core)
            self._orders.add(plan.core)
            self._publish(plan.events)
            return order_info(await ref.ask(GetOrderView()))

        arguments: dict[str, object] = {
            "order_id": getattr(spec, "order_id", None),
            "product": getattr(spec, "product", None),
            "target_quantity": getattr(spec, "target_quantity", None),
            "machine_ids": list(getattr(spec, "machine_ids", ()) or ()),
        }
        return await self._runner.run("download_order", arguments, who, run)

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
        who = Who(source, user)
        arguments: dict[str, object] = {"order_id": order_id}
        if action in (OrderAction.HOLD, OrderAction.ABORT):
            arguments["reason"] = reason

        async def run(ts: float) -> OrderInfo:
            why = check_text("reason", reason, empty=True)
            if action in _FINISHING:
                return await self.finish(order_id, action, ts, why, who)
            return await self._transition(order_id, action, ts, why, who)

        return await self._runner.run(f"{action.value}_order", arguments, who, run)

    async def _transition(
        self, order_id: str, action: OrderAction, ts: float, reason: str, who: Who
    ) -> OrderInfo:
        oid, ref = self._order_ref(order_id)
        previous: OrderView = await ref.ask(GetOrderView())
        plan = self._orders.transition(oid, action, previous, ts=ts, reason=reason, who=who)
        view: OrderView = await ref.ask(plan.apply)
        if plan.move is not None:
            await self._move(plan.move, ts)
        self._publish(plan.events(view))
        return order_info(view)

    async def finish(
        self, order_id: str, action: OrderAction, ts: float, reason: str, who: Who
    ) -> OrderInfo:
        """Complete or abort (inside a command): off its machines, final, recorded, ended."""
        orders, children = self._orders, self._children
        oid, ref = self._order_ref(order_id)
        previous: OrderView = await ref.ask(GetOrderView())
        plan = orders.finish(oid, action, previous, ts=ts, reason=reason, who=who)
        if plan.move is not None:
            await self._move(plan.move, ts)
        # Every piece and window the machines published for the order is in its mailbox
        # (posted by the bus callback): this ask is handled after them.
        view: OrderView = await ref.ask(plan.apply)
        quality = [await children.stations[s].ask(GetOrderQuality(oid)) for s in plan.station_ids]
        record: BatchRecord = await ref.ask(BuildBatchRecord(quality, plan.genealogy))
        info, events = orders.finished_order(plan, view, record)
        self._publish(events)
        for station_id in plan.station_ids:
            await children.stations[station_id].ask(ForgetOrder(oid))
        await children.remove_order(oid)
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

    async def _move(self, move: MachineMove, ts: float) -> None:
        self._orders.assign(move)
        await self._children.move_machines(move, ts)
        # Stations reading these machines' samples get every sample the machines got
        # under the old order before they change order too.
        await self._feed.drain()
        await self._children.set_station_orders(move.station_ids, move.order_id)

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
            machine, message = self._orders.stop_reason(machine_id, reason, stop_id, ts, now)
            await self._machine_ref(machine).ask(message)

        arguments: dict[str, object] = {
            "machine_id": machine_id,
            "reason": reason,
            "stop_id": stop_id,
            "ts": ts,
        }
        await self._runner.run("set_stop_reason", arguments, Who(source, user), run, _ok)

    def add_alarm_owner(self, owner: AlarmOwner) -> None:
        """Acknowledge ``owner``'s alarms here too (edge.commands.AlarmOwners)."""
        if owner not in self._alarm_owners:
            self._alarm_owners.append(owner)

    async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
        async def run(ts: float) -> bool:
            owner = next((o for o in self._alarm_owners if o.owns(alarm_id)), None)
            if owner is not None:
                return await owner.acknowledge(alarm_id, ts=ts, user=user)
            ref = self._children.stations[self._orders.stations.for_alarm(alarm_id)]
            acknowledged: bool = await ref.ask(AcknowledgeAlarm(alarm_id, ts, user))
            return acknowledged

        await self._runner.run(
            "acknowledge_alarm",
            {"alarm_id": alarm_id},
            Who(source, user),
            run,
            lambda done: "acknowledged" if done else "already acknowledged",
        )

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
        who = Who(source, user)

        async def run(now: float) -> LotScanResult:
            result, events = self._orders.record_lot_scan(
                scan_id,
                lot_id,
                machine_id,
                order_id=order_id,
                material=material,
                quantity=quantity,
                ts=ts,
                now=now,
                who=who,
            )
            if events:
                self._publish(events)
            return result

        arguments: dict[str, object] = {
            "scan_id": scan_id,
            "lot_id": lot_id,
            "machine_id": machine_id,
            "order_id": order_id,
            "material": material,
            "quantity": quantity,
        }
        return await self._runner.run(
            "record_lot_scan",
            arguments,
            who,
            run,
            lambda r: "recorded" if r.recorded else "duplicate scan ignored",
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
            station, message = self._orders.stations.inspection(
                station_id,
                passed=passed,
                failed=failed,
                measurements=measurements,
                disposition=disposition,
                reason_code=reason_code,
                ts=ts,
                now=now,
            )
            ref = self._children.stations[station]
            await ref.ask(message)
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
        return await self._runner.run(
            "record_inspection", arguments, Who(source, user), run, lambda _: "recorded"
        )

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
            station, message = self._orders.stations.disposal(
                station_id,
                count=count,
                disposition=disposition,
                reason_code=reason_code,
                order_id=order_id,
                ts=ts,
                now=now,
            )
            owner: str | None = await self._children.stations[station].ask(message)
            return owner

        arguments: dict[str, object] = {
            "station_id": station_id,
            "count": count,
            "disposition": disposition,
            "reason_code": reason_code,
            "order_id": order_id,
        }
        return await self._runner.run(
            "dispose_rejects", arguments, Who(source, user), run, lambda o: f"order {o}"
        )


def _ok(_: object) -> str:
    return "ok"


# A check for mypy that the commands satisfy the LineCommands protocol.
if TYPE_CHECKING:
    from edge.commands import LineCommands

    def _is_line_commands(commands: OrderCommands) -> LineCommands:
        return commands
