"""The line's orders: what a command does to which order, machine and station (pure).

One per line, beside the actors it decides for: an
:class:`~actors.orders.actor.OrderActor` per open order (which owns the
order's core: its status and pieces), the machines and the quality stations.
:class:`LineOrders` keeps what no single order knows: the open orders' specs,
which order runs on which machine, the finished orders' records, the lot
ledger and which orders' quantities changed. It never sends anything itself:
each method checks a command against that state and returns the decision (the
messages to send and to whom, the events to publish); the edge's order
runtime carries it out and asks the actors in between. Every method is
synchronous and takes its time as an argument::

    oid = orders.open_order(order_id)                # CommandError: unknown or final
    plan = orders.transition(oid, START, previous_view, ts=ts, reason="", who=who)
    view = <ask the order plan.apply>
    orders.assign(plan.move)                         # the machines now run it
    <ask each of plan.move.machine_ids SetOrder, each of plan.move.station_ids SetStationOrder>
    <publish plan.events(view)>

Rules it holds
    - an order starts (or resumes) only on machines no other order runs on;
    - a running order is on all of its machines; held, completed or aborted on none;
    - finishing an order (complete or abort) takes it off its machines *before*
      the order applies it, so every piece counted for it is in its mailbox
      first; its record gathers the quality summaries of the stations judging
      its machines and the genealogy of its lot scans;
    - a lot scan without an order belongs to the order running on the machine,
      else to the one order open on it, else it is refused;
    - auto-complete: when an order's good quantity reaches its target
      (:meth:`OrderCore.count <actors.orders.core.OrderCore.count>`), it is
      completed as a command of :data:`AUTO`, reason :data:`AUTO_COMPLETE_REASON`;
    - the last ``retain_finished`` finished orders are kept (info and record).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.commands import OrderInfo, OrderSpec, check_event_ts, check_order_id, check_text
from actors.errors import CommandError
from actors.machine import SetStopReason
from actors.oee.events import OrderWindowClosed, PiecesCounted, WindowRevised
from actors.orders.actor import ApplyAction, AttributePieces, OrderMessage, SegmentKpis
from actors.orders.batch import BatchRecord
from actors.orders.core import (
    FINAL,
    TRANSITIONS,
    OrderAction,
    OrderCore,
    OrderStatus,
    OrderView,
    QuantityRule,
    refusal,
)
from actors.orders.events import (
    BatchRecordCompleted,
    LotScanned,
    OrderProgress,
    OrderStatusChanged,
    OrderTargetReached,
)
from actors.quality.routes import StationRoutes
from actors.traceability import Genealogy, LotLedger, LotScan

__all__ = [
    "AUTO",
    "AUTO_COMPLETE_REASON",
    "Download",
    "Finish",
    "FinishedOrder",
    "LineOrders",
    "LotScanResult",
    "MachineMove",
    "StateChanges",
    "Transition",
    "Who",
    "order_info",
    "progress",
    "target_reached",
]


@dataclass(frozen=True, slots=True)
class Who:
    """Who asked, for the audit trail and the order history."""

    source: str
    user: str


AUTO = Who("auto", "edge")
AUTO_COMPLETE_REASON = "target reached"


@dataclass(frozen=True, slots=True)
class FinishedOrder:
    info: OrderInfo
    record: BatchRecord


@dataclass(frozen=True, slots=True)
class LotScanResult:
    recorded: bool  # False: the same scan was recorded before (a duplicate, ignored)
    scan: LotScan


@dataclass(frozen=True, slots=True)
class MachineMove:
    """Machines that change order (to ``order_id``, or to none), and the stations judging
    them, which change with them once they have every sample of the old order."""

    order_id: str | None
    ideal_cycle_s: float | None
    machine_ids: tuple[str, ...]
    station_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Download:
    order_id: str
    core: OrderCore | None  # None: a resend of an order open with the same spec, no change
    events: tuple[OrderStatusChanged, ...] = ()


@dataclass(frozen=True, slots=True)
class Transition:
    """Release, start, hold or resume an open order."""

    order_id: str
    previous: OrderView
    target: OrderStatus
    apply: ApplyAction  # for the order
    move: MachineMove | None  # onto its machines (target running) or off (it was running)
    who: Who

    def events(self, view: OrderView) -> list[OrderStatusChanged]:
        return [status_changed(self.apply.ts, view, self.previous, self.apply.reason, self.who)]


@dataclass(frozen=True, slots=True)
class Finish:
    """Complete or abort an open order."""

    order_id: str
    previous: OrderView
    apply: ApplyAction
    move: MachineMove | None  # off its machines, before the order applies it
    station_ids: tuple[str, ...]  # whose quality summaries go into its record
    genealogy: Genealogy
    who: Who


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What changed since the last :meth:`LineOrders.changes`."""

    gone: tuple[str, ...]  # finished orders: their saved state goes
    index: dict[str, Any] | None  # the open and finished orders, when changed
    ledger: dict[str, Any] | None  # the lot ledger, when changed


def status_changed(
    ts: float, view: OrderView, previous: OrderView, reason: str, who: Who
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


def order_info(view: OrderView) -> OrderInfo:
    return OrderInfo(
        order_id=view.order_id,
        status=view.status.value,
        product=view.product,
        target_quantity=view.target_quantity,
        good_count=view.good_quantity,
        reject_count=view.reject_quantity,
        machine_ids=view.machine_ids,
    )


def progress(view: OrderView, ts: float) -> OrderProgress:
    return OrderProgress(
        "",
        ts,
        view.order_id,
        view.good_quantity,
        view.reject_quantity,
        view.total_quantity,
        view.target_quantity,
    )


def target_reached(view: OrderView, ts: float) -> OrderTargetReached:
    return OrderTargetReached("", ts, view.order_id, view.good_quantity, view.target_quantity)


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


class LineOrders:
    """The orders of one line; ``machine_roles``: its machines (in config order), each with
    the counter roles its plc_map maps (``actors.oee.counters`` bits)."""

    def __init__(
        self,
        machine_roles: Mapping[str, int],
        stations: StationRoutes | None = None,
        *,
        quantity_rule: QuantityRule = QuantityRule.SERIES,
        retain_finished: int = 100,
        max_finished_scans: int = 10_000,
    ) -> None:
        self.roles = dict(machine_roles)
        self.stations = stations if stations is not None else StationRoutes()
        self.quantity_rule = quantity_rule
        self._retain = retain_finished
        self._max_finished_scans = max_finished_scans
        self._specs: dict[str, OrderSpec] = {}  # open orders, oldest first
        self._running_on: dict[str, str] = {}  # machine id -> the order running on it
        self._finished: OrderedDict[str, FinishedOrder] = OrderedDict()
        self.ledger = LotLedger(max_finished_scans=max_finished_scans)
        self._progress: set[str] = set()  # orders whose quantities changed since reported
        self._index_changed = False
        self._ledger_changed = False
        self._gone: set[str] = set()

    # ------------------------------------------------------------------ state

    @property
    def open_ids(self) -> tuple[str, ...]:
        """The open orders, oldest first."""
        return tuple(self._specs)

    def spec(self, order_id: str) -> OrderSpec:
        return self._specs[order_id]

    def running_on(self, machine_id: str) -> str | None:
        return self._running_on.get(machine_id)

    def finished(self, order_id: str) -> FinishedOrder | None:
        return self._finished.get(order_id)

    @property
    def finished_orders(self) -> tuple[FinishedOrder, ...]:
        """The finished orders kept, oldest first."""
        return tuple(self._finished.values())

    def restore(
        self, index: Mapping[str, Any] | None, ledger: Mapping[str, Any] | None
    ) -> list[str]:
        """The finished orders and the lot ledger as saved; returns the open orders' ids,
        each to be restored (:meth:`restored_core`) and :meth:`add`-ed."""
        index = index or {}
        for item in index.get("finished", []):
            info = _info_from_data(item["info"])
            self._finished[info.order_id] = FinishedOrder(
                info, BatchRecord.from_dict(item["record"])
            )
        if ledger is not None:
            self.ledger = LotLedger.restore(
                dict(ledger), max_finished_scans=self._max_finished_scans
            )
        return [str(order_id) for order_id in index.get("active", [])]

    def restored_core(self, data: Mapping[str, Any]) -> OrderCore:
        return OrderCore.restore(data, machine_roles=self.roles)

    def add(self, core: OrderCore) -> bool:
        """An open order (downloaded, or restored); True when it is to be auto-completed now
        (restored running, past its target). The order's actor owns ``core`` from here."""
        spec = core.spec
        self._specs[spec.order_id] = spec
        self._index_changed = True
        if core.status is OrderStatus.RUNNING:
            for machine_id in spec.machine_ids:
                self._running_on[machine_id] = spec.order_id
            return spec.auto_complete and core.target_reached
        return False

    def machine_orders(self) -> list[tuple[str, str | None, float | None]]:
        """Every machine's order (or none) with its ideal cycle: what each machine is told
        at start, so one restored from an older cut than its orders catches up."""
        out: list[tuple[str, str | None, float | None]] = []
        for machine_id in self.roles:
            order_id = self._running_on.get(machine_id)
            spec = self._specs.get(order_id) if order_id is not None else None
            out.append((machine_id, order_id, spec.ideal_cycle_s if spec else None))
        return out

    def station_orders(self) -> list[tuple[str, str | None]]:
        """Every station's order: the one running on its machine."""
        stations = self.stations
        return [(s, self._running_on.get(stations.machine_of(s))) for s in stations.ids]

    def assign(self, move: MachineMove) -> None:
        """The machines of ``move`` now run its order (or none)."""
        for machine_id in move.machine_ids:
            if move.order_id is None:
                self._running_on.pop(machine_id, None)
            else:
                self._running_on[machine_id] = move.order_id

    # ------------------------------------------------------------------ checks

    def check_machine(self, machine_id: object, name: str = "machine_id") -> str:
        if not isinstance(machine_id, str) or machine_id not in self.roles:
            known = ", ".join(sorted(self.roles))
            raise CommandError(f"{name} {machine_id!r}: no such machine (known: {known})")
        return machine_id

    def open_order(self, order_id: object) -> str:
        """``order_id`` of an open order; CommandError for a bad, unknown or final one."""
        oid = check_order_id(order_id)
        if oid in self._specs:
            return oid
        finished = self._finished.get(oid)
        if finished is not None:
            status = finished.info.status
            raise CommandError(f"order {oid!r} is {status}; a {status} order is final")
        raise CommandError(f"order_id {oid!r}: no such order")

    def check_spec(self, spec: object) -> OrderSpec:
        """The spec with its text stripped and its numbers as floats; CommandError naming
        the first bad field."""
        if not isinstance(spec, OrderSpec):
            raise CommandError(f"spec must be an OrderSpec, got {type(spec).__name__}")
        order_id = check_order_id(spec.order_id)
        product = check_text("product", spec.product)
        target = spec.target_quantity
        if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
            raise CommandError(f"target_quantity must be a positive integer, got {target!r}")
        machines = spec.machine_ids
        if not isinstance(machines, (tuple, list)) or not machines:
            raise CommandError("machine_ids must list at least one machine")
        for machine_id in machines:
            self.check_machine(machine_id, "machine_ids:")
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
            operation_id=check_text("operation_id", spec.operation_id, empty=True),
            auto_complete=spec.auto_complete,
            produced_lot_id=check_text("produced_lot_id", spec.produced_lot_id, empty=True),
        )

    def _check_free(self, order_id: str) -> None:
        for machine_id in self._specs[order_id].machine_ids:
            other = self._running_on.get(machine_id)
            if other is not None and other != order_id:
                raise CommandError(
                    f"machine {machine_id!r} is running order {other!r}; "
                    "hold or complete that order first"
                )

    def _target(self, order_id: str, action: OrderAction, previous: OrderView) -> OrderStatus:
        why = refusal(order_id, previous.status, action)
        if why is not None:
            raise CommandError(why)
        return TRANSITIONS[(previous.status, action)]

    def _move(self, order_id: str | None, machine_ids: tuple[str, ...]) -> MachineMove:
        spec = self._specs[order_id] if order_id is not None else None
        return MachineMove(
            order_id,
            spec.ideal_cycle_s if spec is not None else None,
            machine_ids,
            self.stations.of_machines(machine_ids),
        )

    # ------------------------------------------------------------------ commands

    def download(self, spec: object, ts: float, who: Who) -> Download:
        checked = self.check_spec(spec)
        oid = checked.order_id
        existing = self._specs.get(oid)
        if existing is not None:
            if existing == checked:
                return Download(oid, None)  # a resent download (its reply was lost)
            raise CommandError(f"order_id {oid!r} already exists with another spec")
        finished = self._finished.get(oid)
        if finished is not None:
            raise CommandError(
                f"order_id {oid!r} already exists and is {finished.info.status}; "
                "a new order needs a new id"
            )
        core = OrderCore(
            checked,
            machine_roles=self.roles,
            quantity_rule=self.quantity_rule,
            created_at=ts,
            source=who.source,
            user=who.user,
        )
        created = OrderStatusChanged("", ts, oid, "created", "", "", who.source, who.user)
        return Download(oid, core, (created,))

    def transition(
        self,
        order_id: str,
        action: OrderAction,
        previous: OrderView,
        *,
        ts: float,
        reason: str,
        who: Who,
    ) -> Transition:
        """Release, start, hold or resume, from the order's ``previous`` view (its status)."""
        oid = self.open_order(order_id)
        target = self._target(oid, action, previous)
        if target in FINAL:
            raise ValueError(f"{action.value} finishes an order: use LineOrders.finish")
        machines = self._specs[oid].machine_ids
        if target is OrderStatus.RUNNING:
            self._check_free(oid)
            move: MachineMove | None = self._move(oid, machines)
        elif previous.status is OrderStatus.RUNNING:
            move = self._move(None, machines)
        else:
            move = None
        apply = ApplyAction(action, ts, reason, who.source, who.user)
        return Transition(oid, previous, target, apply, move, who)

    def finish(
        self,
        order_id: str,
        action: OrderAction,
        previous: OrderView,
        *,
        ts: float,
        reason: str,
        who: Who,
    ) -> Finish:
        """Complete or abort, from the order's ``previous`` view; then :meth:`finished`."""
        oid = self.open_order(order_id)
        if self._target(oid, action, previous) not in FINAL:
            raise ValueError(f"{action.value} does not finish an order: use transition")
        spec = self._specs[oid]
        running = previous.status is OrderStatus.RUNNING
        return Finish(
            oid,
            previous,
            ApplyAction(action, ts, reason, who.source, who.user),
            self._move(None, spec.machine_ids) if running else None,
            self.stations.of_machines(spec.machine_ids),
            self.ledger.genealogy(oid, spec.produced_lot_id),
            who,
        )

    def finished_order(
        self, plan: Finish, view: OrderView, record: BatchRecord
    ) -> tuple[OrderInfo, list[OrderStatusChanged | BatchRecordCompleted]]:
        """The order is final (``view``) with its ``record``: it is closed here, its scans
        kept only for spotting resends. Returns its info and the events to publish."""
        oid, ts = plan.order_id, plan.apply.ts
        info = order_info(view)
        events: list[OrderStatusChanged | BatchRecordCompleted] = [
            status_changed(ts, view, plan.previous, plan.apply.reason, plan.who),
            BatchRecordCompleted("", ts, oid, record),
        ]
        self.ledger.finish(oid)
        self._ledger_changed = True
        del self._specs[oid]
        self._progress.discard(oid)
        self._finished[oid] = FinishedOrder(info, record)
        while len(self._finished) > self._retain:
            self._finished.popitem(last=False)
        self._index_changed = True
        self._gone.add(oid)
        return info, events

    def record_lot_scan(
        self,
        scan_id: str,
        lot_id: str,
        machine_id: str,
        *,
        order_id: str | None,
        material: str,
        quantity: float | None,
        ts: object,
        now: float,
        who: Who,
    ) -> tuple[LotScanResult, list[LotScanned]]:
        """A material lot loaded into a machine; the same scan again is a duplicate."""
        machine = self.check_machine(machine_id)
        order = self._order_for_scan(machine, order_id)
        scan = LotScan(
            scan_id=check_text("scan_id", scan_id),
            lot_id=check_text("lot_id", lot_id),
            order_id=order,
            machine_id=machine,
            ts=check_event_ts(ts, now),
            material=check_text("material", material, empty=True),
            quantity=quantity,
            source=who.source,
            user=who.user,
        )
        recorded = self.ledger.record(scan)
        events: list[LotScanned] = []
        if recorded:
            self._ledger_changed = True
            events.append(
                LotScanned(
                    machine, scan.ts, order, scan.scan_id, scan.lot_id, scan.material, scan.quantity
                )
            )
        return LotScanResult(recorded, scan), events

    def _order_for_scan(self, machine_id: str, order_id: str | None) -> str:
        if order_id is not None:
            oid = self.open_order(order_id)
            if machine_id not in self._specs[oid].machine_ids:
                raise CommandError(f"machine_id {machine_id!r} is not one of order {oid!r}'s")
            return oid
        running = self._running_on.get(machine_id)
        if running is not None:
            return running
        held = [oid for oid, spec in self._specs.items() if machine_id in spec.machine_ids]
        if len(held) == 1:
            return held[0]
        raise CommandError(
            f"order_id: machine {machine_id!r} runs no order"
            + (f" and has several open ({', '.join(held)})" if held else "")
            + "; name the order"
        )

    def stop_reason(
        self, machine_id: object, reason: object, stop_id: object, ts: object, now: float
    ) -> tuple[str, SetStopReason]:
        """The reason for a machine's stop (the open one, or ``stop_id``) as its message."""
        machine = self.check_machine(machine_id)
        text = check_text("reason", reason)
        if stop_id is not None and (isinstance(stop_id, bool) or not isinstance(stop_id, int)):
            raise CommandError(f"stop_id must be an integer or null, got {stop_id!r}")
        at = check_event_ts(ts, now) if ts is not None else None
        return machine, SetStopReason(text, at, stop_id)

    # ------------------------------------------------------------------ events

    def route(self, events: Iterable[object]) -> list[tuple[str, OrderMessage]]:
        """What of the machines' events belongs to an open order: its pieces and its
        order-window KPIs, as messages for that order, in the events' order."""
        specs = self._specs
        out: list[tuple[str, OrderMessage]] = []
        for event in events:
            if isinstance(event, PiecesCounted):
                if event.order_id is not None and event.order_id in specs:
                    out.append(
                        (
                            event.order_id,
                            AttributePieces(event.machine_id, event.role, event.count, event.ts),
                        )
                    )
                    self._progress.add(event.order_id)
            elif isinstance(event, OrderWindowClosed):
                if event.order_id in specs:
                    out.append((event.order_id, SegmentKpis(event.kpis.as_dict())))
            elif isinstance(event, WindowRevised):
                kpis = event.kpis
                if kpis.window == "order" and kpis.key in specs:
                    out.append((kpis.key, SegmentKpis(kpis.as_dict())))
        return out

    def take_progress(self) -> list[str]:
        """The open orders whose quantities changed since the last call."""
        changed, self._progress = self._progress, set()
        return [order_id for order_id in changed if order_id in self._specs]

    # ------------------------------------------------------------------ persistence

    def changes(self) -> StateChanges:
        gone = tuple(self._gone)
        self._gone.clear()
        ledger = self.ledger.snapshot() if self._ledger_changed else None
        self._ledger_changed = False
        index = None
        if self._index_changed:
            self._index_changed = False
            index = {
                "active": list(self._specs),
                "finished": [
                    {"info": _info_to_data(f.info), "record": f.record.as_dict()}
                    for f in self._finished.values()
                ],
            }
        return StateChanges(gone, index, ledger)
