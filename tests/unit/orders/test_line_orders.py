"""The line's order coordinator (actors.orders.line), without servers or an event loop.

:class:`Line` plays the actors' part by hand, as the edge's order runtime does with
real ones: it keeps the cores the order actors would own, tells each machine and
station the order the coordinator assigns, stamps the machines' pieces with the
machine's order (as the machine core does) and delivers what the coordinator routes.
Every count below follows from the pieces fed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from actors.commands import OrderInfo, OrderSpec
from actors.errors import CommandError
from actors.oee.counters import SEEN_GOOD, SEEN_REJECT, SEEN_TOTAL
from actors.oee.events import OrderWindowClosed, PiecesCounted, WindowRevised
from actors.oee.kpi import KpiRecord
from actors.orders.actor import AttributePieces, SegmentKpis
from actors.orders.batch import BatchRecord
from actors.orders.core import OrderAction, OrderCore
from actors.orders.events import BatchRecordCompleted, LotScanned, OrderStatusChanged
from actors.orders.line import (
    AUTO,
    LineOrders,
    MachineMove,
    Who,
    order_info,
    progress,
    target_reached,
)
from actors.quality.params import StationParams
from actors.quality.routes import StationRoute, StationRoutes

A = OrderAction
MES = Who("mqtt", "mes")
OPERATOR = Who("opcua", "op1")
ALL_ROLES = SEEN_TOTAL | SEEN_GOOD | SEEN_REJECT
ROLES = {"M1": ALL_ROLES, "M2": SEEN_TOTAL, "M3": ALL_ROLES}
STATIONS = StationRoutes(
    [
        StationRoute(StationParams("Q1", "M1", feeds_machine_rejects=False)),
        StationRoute(StationParams("Q2", "M2", feeds_machine_rejects=True)),
    ]
)


class Line:
    """The coordinator, with the actors' side played by hand."""

    def __init__(self, **kw: Any) -> None:
        self.orders = LineOrders(ROLES, STATIONS, **kw)
        self.cores: dict[str, OrderCore] = {}  # what each order's actor owns
        self.machine_order: dict[str, str | None] = dict.fromkeys(ROLES)
        self.station_order: dict[str, str | None] = dict.fromkeys(STATIONS.ids)
        self.moves: list[MachineMove] = []
        self.events: list[object] = []

    def download(self, spec: OrderSpec, ts: float = 0.0, who: Who = MES) -> OrderInfo:
        plan = self.orders.download(spec, ts, who)
        if plan.core is not None:
            self.cores[plan.order_id] = plan.core
            self.orders.add(plan.core)
            self.events.extend(plan.events)
        return order_info(self.cores[plan.order_id].view())

    def act(
        self, order_id: str, action: OrderAction, ts: float, reason: str = "", who: Who = MES
    ) -> OrderInfo:
        orders = self.orders
        oid = orders.open_order(order_id)
        core = self.cores[oid]
        previous = core.view()
        if action in (A.COMPLETE, A.ABORT):
            plan = orders.finish(oid, action, previous, ts=ts, reason=reason, who=who)
            if plan.move is not None:
                self._move(plan.move)
            self._apply(core, plan.apply)
            quality = [{"station_id": s} for s in plan.station_ids]
            record = core.batch_record(quality=quality, genealogy=plan.genealogy)
            info, events = orders.finished_order(plan, core.view(), record)
            self.events.extend(events)
            del self.cores[oid]
            return info
        step = orders.transition(oid, action, previous, ts=ts, reason=reason, who=who)
        self._apply(core, step.apply)
        if step.move is not None:
            self._move(step.move)
        self.events.extend(step.events(core.view()))
        return order_info(core.view())

    def pieces(self, machine_id: str, ts: float, **counts: int) -> None:
        """A machine's counter deltas, stamped with the order it runs, onto the bus."""
        order_id = self.machine_order[machine_id]
        events = [PiecesCounted(machine_id, ts, role, n, order_id) for role, n in counts.items()]
        self.deliver(events)

    def deliver(self, events: list[object]) -> None:
        for order_id, message in self.orders.route(events):
            core = self.cores[order_id]
            if isinstance(message, AttributePieces):
                core.count(message.machine_id, message.role, message.count, message.ts)
            else:
                core.window_kpis(message.kpis)

    def record(self, order_id: str) -> BatchRecord:
        (event,) = [
            e for e in self.events if isinstance(e, BatchRecordCompleted) and e.order_id == order_id
        ]
        return event.record

    def _apply(self, core: OrderCore, message: Any) -> None:
        core.apply(
            message.action, message.ts, reason=message.reason, source=message.source,
            user=message.user,
        )  # fmt: skip

    def _move(self, move: MachineMove) -> None:
        self.orders.assign(move)
        self.moves.append(move)
        for machine_id in move.machine_ids:
            self.machine_order[machine_id] = move.order_id
        for station_id in move.station_ids:
            self.station_order[station_id] = move.order_id


def order(order_id: str, *machines: str, target: int = 100, **kw: Any) -> OrderSpec:
    return OrderSpec(order_id, f"P-{order_id}", target, machines or ("M1",), **kw)


def kpis(machine_id: str, window: str, key: str, start: float, good: int) -> KpiRecord:
    return KpiRecord(
        machine_id=machine_id, window=window, key=key, name=key, start=start, end=start + 60.0,
        closed=True, open_stop=False, scheduled_s=60.0, planned_stop_s=0.0,
        planned_production_s=60.0, run_s=60.0, downtime_s=0.0, downtime_events=0,
        micro_stops=0, micro_stop_s=0.0, total_count=good, good_count=good, reject_count=0,
        availability=1.0, performance=None, quality=None, oee=None, teep=None, mtbf_s=None,
        mttr_s=None, downtime_by_reason={}, pieces_outside_ppt=0,
    )  # fmt: skip


def test_pieces_follow_the_order_across_an_order_change_and_a_hold() -> None:
    line = Line()
    line.pieces("M1", 1.0, total_count=5, good_count=4, reject_count=1)  # no order yet
    line.download(order("WO1", target=30, ideal_cycle_s=0.5))
    line.act("WO1", A.RELEASE, 2.0)
    started = line.act("WO1", A.START, 3.0, who=OPERATOR)
    assert (started.status, started.good_count) == ("running", 0)
    assert line.machine_order["M1"] == "WO1"
    line.pieces("M1", 4.0, total_count=20, good_count=18, reject_count=2)
    line.pieces("M1", 5.0, total_count=15, good_count=14, reject_count=1)
    done = line.act("WO1", A.COMPLETE, 6.0, who=OPERATOR)
    assert (done.status, done.good_count, done.reject_count) == ("completed", 32, 3)
    assert line.machine_order["M1"] is None

    line.download(order("WO2"))
    line.act("WO2", A.RELEASE, 7.0)
    line.act("WO2", A.START, 8.0)
    line.pieces("M1", 9.0, total_count=10, good_count=9, reject_count=1)
    assert line.act("WO2", A.HOLD, 10.0, "material", OPERATOR).status == "held"
    line.pieces("M1", 11.0, total_count=3, good_count=3)  # held: the machine runs no order
    line.act("WO2", A.RESUME, 12.0)
    line.pieces("M1", 13.0, total_count=7, good_count=6, reject_count=1)
    done = line.act("WO2", A.COMPLETE, 14.0)
    # WO2: good 9 + 6 = 15, reject 1 + 1 = 2 (the 3 made while held are nobody's)
    assert (done.good_count, done.reject_count) == (15, 2)

    record = line.record("WO2")
    assert (record.good_quantity, record.reject_quantity, record.total_quantity) == (15, 2, 17)
    assert [h["status"] for h in record.history] == [
        "created", "released", "running", "held", "running", "completed",
    ]  # fmt: skip
    assert record.history[3]["reason"] == "material"
    changed = [
        (e.order_id, e.status, e.previous) for e in line.events if isinstance(e, OrderStatusChanged)
    ]
    assert changed[:4] == [
        ("WO1", "created", ""),
        ("WO1", "released", "created"),
        ("WO1", "running", "released"),
        ("WO1", "completed", "running"),
    ]
    assert line.orders.open_ids == ()


def test_refusals_name_the_reason_and_change_nothing() -> None:
    line = Line()
    spec = order("WO1")
    line.download(spec)
    assert line.download(spec).status == "created"  # a resend: no change
    before = (line.orders.open_ids, dict(line.machine_order), line.orders.changes())
    assert before[2].index is not None  # the download changed the index
    refusals = [
        (lambda: line.act("WO1", A.START, 1.0), "cannot start order 'WO1': it is created; release"),
        (lambda: line.download(replace(spec, product="P-9")), "another spec"),
        (lambda: line.download(order("WO2", "M9")), "'M9': no such machine"),
        (lambda: line.download(order("WO2", target=0)), "target_quantity must be a positive"),
        (lambda: line.download(order("W O")), "order_id must be"),
        (lambda: line.download(order("WO2", "M1", "M1")), "lists a machine twice"),
        (lambda: line.download(order("WO2", ideal_cycle_s=0.0)), "ideal_cycle_s must be"),
        (lambda: line.download(replace(order("WO2"), product=" ")), "product must not be empty"),
        (lambda: line.orders.download("WO2", 0.0, MES), "spec must be an OrderSpec, got str"),
        (lambda: line.act("WO9", A.HOLD, 1.0), "order_id 'WO9': no such order"),
        (lambda: line.orders.stop_reason("M9", "jam", None, None, 1.0), "'M9': no such machine"),
        (lambda: line.orders.stop_reason("M1", "", None, None, 1.0), "reason must not be empty"),
        (lambda: line.orders.stop_reason("M1", "jam", True, None, 1.0), "stop_id must be"),
        (lambda: line.orders.stop_reason("M1", "jam", None, "x", 1.0), "ts must be a finite"),
        (lambda: scan(line, "S1", "M2"), "machine 'M2' runs no order"),
    ]
    for call, reason in refusals:
        with pytest.raises(CommandError, match=reason):
            call()
    assert line.orders.changes().index is None  # nothing changed
    assert (line.orders.open_ids, line.machine_order) == before[:2]

    line.act("WO1", A.RELEASE, 1.0)
    line.act("WO1", A.START, 2.0)
    line.download(order("WO2", "M2", "M1"))
    line.act("WO2", A.RELEASE, 3.0)
    with pytest.raises(CommandError, match="machine 'M1' is running order 'WO1'; hold or"):
        line.act("WO2", A.START, 4.0)
    assert line.machine_order["M2"] is None  # refused whole: not even on its free machine
    line.act("WO1", A.COMPLETE, 5.0)
    with pytest.raises(CommandError, match="order 'WO1' is completed; a completed order is final"):
        line.act("WO1", A.ABORT, 6.0, "late")
    with pytest.raises(CommandError, match="already exists and is completed; a new order"):
        line.download(spec)
    assert line.act("WO2", A.ABORT, 7.0, "cancelled by MES").status == "aborted"
    record = line.record("WO2")
    assert (record.status, record.reason, record.start) == ("aborted", "cancelled by MES", None)


def test_machines_and_their_stations_change_order_with_the_order() -> None:
    line = Line()
    line.download(order("WO1", "M1", "M2", "M3", ideal_cycle_s=2.0))
    line.act("WO1", A.RELEASE, 1.0)
    assert line.moves == []
    line.act("WO1", A.START, 2.0)
    on = MachineMove("WO1", 2.0, ("M1", "M2", "M3"), ("Q1", "Q2"))
    off = MachineMove(None, None, ("M1", "M2", "M3"), ("Q1", "Q2"))
    assert line.moves == [on]
    assert line.station_order == {"Q1": "WO1", "Q2": "WO1"}
    line.act("WO1", A.HOLD, 3.0)
    line.act("WO1", A.RESUME, 4.0)
    assert line.moves == [on, off, on]
    line.act("WO1", A.HOLD, 5.0)
    line.act("WO1", A.COMPLETE, 6.0)  # completed from held: already off its machines
    assert line.moves == [on, off, on, off]
    # Its record gathers the quality summaries of the stations judging its machines.
    assert line.record("WO1").quality == [{"station_id": "Q1"}, {"station_id": "Q2"}]
    assert line.orders.machine_orders() == [
        ("M1", None, None),
        ("M2", None, None),
        ("M3", None, None),
    ]

    line.download(order("WO2", "M3"))
    line.act("WO2", A.ABORT, 7.0)  # never ran: no machine is touched
    assert line.moves == [on, off, on, off]
    assert line.record("WO2").quality == []


def scan(
    line: Line, scan_id: str, machine_id: str, *, order_id: str | None = None, lot: str = "LOT-A"
) -> Any:
    result, events = line.orders.record_lot_scan(
        scan_id, lot, machine_id, order_id=order_id, material="paste", quantity=None,
        ts=None, now=50.0, who=MES,
    )  # fmt: skip
    line.events.extend(events)
    return result


def test_a_lot_scan_belongs_to_the_running_order_else_the_one_open_on_the_machine() -> None:
    line = Line()
    line.download(order("WO1", "M1", produced_lot_id="OUT-1"))
    assert scan(line, "S1", "M1").scan.order_id == "WO1"  # the one open on M1 (created)
    line.download(order("WO2", "M1", "M2"))
    with pytest.raises(CommandError, match=r"runs no order and has several open \(WO1, WO2\)"):
        scan(line, "S2", "M1")
    with pytest.raises(CommandError, match="machine_id 'M3' is not one of order 'WO1'"):
        scan(line, "S2", "M3", order_id="WO1")
    assert scan(line, "S2", "M1", order_id="WO2", lot="LOT-B").scan.order_id == "WO2"
    line.act("WO1", A.RELEASE, 1.0)
    line.act("WO1", A.START, 2.0)
    third = scan(line, "S3", "M1", lot="LOT-C")  # the running one wins
    assert (third.recorded, third.scan.order_id, third.scan.ts) == (True, "WO1", 50.0)
    again = scan(line, "S3", "M1", lot="LOT-C")
    assert again.recorded is False  # a resend is ignored, and publishes nothing
    with pytest.raises(CommandError, match="scan_id 'S3' was already used for lot 'LOT-C'"):
        scan(line, "S3", "M1", lot="LOT-X")
    scanned = [(e.scan_id, e.order_id, e.lot_id) for e in line.events if isinstance(e, LotScanned)]
    assert scanned == [("S1", "WO1", "LOT-A"), ("S2", "WO2", "LOT-B"), ("S3", "WO1", "LOT-C")]
    assert line.orders.changes().ledger is not None

    line.act("WO1", A.COMPLETE, 3.0)
    record = line.record("WO1")
    assert record.produced_lot_id == "OUT-1"
    assert record.genealogy["consumed_lot_ids"] == ["LOT-A", "LOT-C"]
    # A finished order's scan ids are still known: one used again is refused.
    with pytest.raises(CommandError, match="scan_id 'S1' was already used for lot 'LOT-A'"):
        scan(line, "S1", "M1", order_id="WO2")


def test_only_what_belongs_to_an_open_order_is_routed_to_it() -> None:
    line = Line()
    line.download(order("WO1", "M1"))
    routed = line.orders.route(
        [
            PiecesCounted("M1", 1.0, "good_count", 3, "WO1"),
            PiecesCounted("M1", 1.0, "good_count", 5, None),  # no order on the machine
            PiecesCounted("M1", 1.0, "good_count", 7, "WO-OLD"),  # an order not open here
            OrderWindowClosed("M1", 2.0, "WO1", kpis("M1", "order", "WO1", 0.0, 3)),
            WindowRevised("M1", 3.0, kpis("M1", "order", "WO1", 0.0, 4)),
            WindowRevised("M1", 3.0, kpis("M1", "shift", "WO1", 0.0, 4)),  # a shift window
            OrderWindowClosed("M1", 2.0, "WO-OLD", kpis("M1", "order", "WO-OLD", 0.0, 1)),
        ]
    )
    assert routed == [
        ("WO1", AttributePieces("M1", "good_count", 3, 1.0)),
        ("WO1", SegmentKpis(kpis("M1", "order", "WO1", 0.0, 3).as_dict())),
        ("WO1", SegmentKpis(kpis("M1", "order", "WO1", 0.0, 4).as_dict())),
    ]
    assert line.orders.take_progress() == ["WO1"]
    assert line.orders.take_progress() == []  # reported once


def test_auto_complete_the_event_and_who_completes() -> None:
    line = Line()
    line.download(order("WO1", target=10, auto_complete=True))
    line.act("WO1", A.RELEASE, 1.0)
    line.act("WO1", A.START, 2.0)
    core = line.cores["WO1"]
    line.pieces("M1", 3.0, total_count=12, good_count=10, reject_count=2)
    assert core.target_reached
    event = target_reached(core.view(), 3.0)
    assert (event.order_id, event.good_quantity, event.target_quantity) == ("WO1", 10, 10)
    done = line.act("WO1", A.COMPLETE, 4.0, "target reached", AUTO)
    assert done.status == "completed"
    assert line.record("WO1").history[-1]["source"] == "auto"
    assert progress(core.view(), 5.0).good_quantity == 10


def test_the_index_survives_a_restart_and_keeps_the_last_finished_orders() -> None:
    line = Line(retain_finished=2)
    for n in (1, 2, 3):
        line.download(order(f"WO{n}", "M1"))
        line.act(f"WO{n}", A.ABORT, float(n))
    line.download(order("WO4", "M1", "M2", target=5, auto_complete=True))
    line.act("WO4", A.RELEASE, 5.0)
    line.act("WO4", A.START, 6.0)
    line.pieces("M2", 7.0, total_count=6)
    line.download(order("WO5", "M3", target=5, auto_complete=True))
    changes = line.orders.changes()
    assert sorted(changes.gone) == ["WO1", "WO2", "WO3"]
    assert changes.index is not None and changes.ledger is not None
    assert changes.index["active"] == ["WO4", "WO5"]
    assert [f["info"]["order_id"] for f in changes.index["finished"]] == ["WO2", "WO3"]
    assert line.orders.changes() == type(changes)((), None, None)  # nothing since

    restarted = LineOrders(ROLES, STATIONS, retain_finished=2)
    active = restarted.restore(changes.index, changes.ledger)
    assert active == ["WO4", "WO5"]
    due = [restarted.add(restarted.restored_core(line.cores[o].snapshot())) for o in active]
    assert due == [True, False]  # WO4 restored running past its target: complete it now
    assert restarted.machine_orders() == [
        ("M1", "WO4", None),
        ("M2", "WO4", None),
        ("M3", None, None),
    ]
    assert restarted.station_orders() == [("Q1", "WO4"), ("Q2", "WO4")]
    assert [f.info.order_id for f in restarted.finished_orders] == ["WO2", "WO3"]
    with pytest.raises(CommandError, match="order 'WO3' is aborted; a aborted order is final"):
        restarted.open_order("WO3")
    with pytest.raises(CommandError, match="already exists and is aborted"):
        restarted.download(order("WO3"), 9.0, MES)
    # WO1's record was dropped: its id may be used again.
    assert restarted.download(order("WO1"), 9.0, MES).core is not None
