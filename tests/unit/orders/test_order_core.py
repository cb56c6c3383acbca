"""The order core: lifecycle (every invalid transition), attribution, auto-complete,
and the batch record checked field by field against numbers worked out by hand."""

from __future__ import annotations

import itertools

import pytest

from actors.oee.counters import SEEN_GOOD, SEEN_REJECT, SEEN_TOTAL
from actors.oee.kpi import KpiRecord
from actors.orders import (
    FINAL,
    TRANSITIONS,
    OrderAction,
    OrderCore,
    OrderStatus,
    QuantityRule,
    merge_kpis,
)
from actors.traceability import LotLedger, LotScan
from edge.commands import OrderSpec
from edge.errors import CommandError

S, A = OrderStatus, OrderAction

# How to reach each status from created.
PATHS: dict[OrderStatus, list[OrderAction]] = {
    S.CREATED: [],
    S.RELEASED: [A.RELEASE],
    S.RUNNING: [A.RELEASE, A.START],
    S.HELD: [A.RELEASE, A.START, A.HOLD],
    S.COMPLETED: [A.RELEASE, A.START, A.COMPLETE],
    S.ABORTED: [A.ABORT],
}

ALLOWED = {
    (S.CREATED, A.RELEASE): S.RELEASED,
    (S.CREATED, A.ABORT): S.ABORTED,
    (S.RELEASED, A.START): S.RUNNING,
    (S.RELEASED, A.ABORT): S.ABORTED,
    (S.RUNNING, A.HOLD): S.HELD,
    (S.RUNNING, A.COMPLETE): S.COMPLETED,
    (S.RUNNING, A.ABORT): S.ABORTED,
    (S.HELD, A.RESUME): S.RUNNING,
    (S.HELD, A.COMPLETE): S.COMPLETED,
    (S.HELD, A.ABORT): S.ABORTED,
}


def spec(**kw: object) -> OrderSpec:
    fields: dict[str, object] = {
        "order_id": "WO1",
        "product": "P-100",
        "target_quantity": 90,
        "machine_ids": ("M1", "M2"),
        "ideal_cycle_s": 1.0,
        "operation_id": "OP10",
        "produced_lot_id": "LOT-OUT-1",
    }
    fields.update(kw)
    return OrderSpec(**fields)  # type: ignore[arg-type]


def order_in(status: OrderStatus, **kw: object) -> OrderCore:
    core = OrderCore(spec(**kw), created_at=100.0, source="mqtt", user="mes")
    for n, action in enumerate(PATHS[status]):
        core.apply(action, 200.0 + n)
    assert core.status is status
    return core


def test_the_transition_table_is_the_documented_one() -> None:
    assert TRANSITIONS == ALLOWED
    assert frozenset({S.COMPLETED, S.ABORTED}) == FINAL


@pytest.mark.parametrize(
    ("status", "action"),
    [pair for pair in itertools.product(OrderStatus, OrderAction) if pair in ALLOWED],
)
def test_every_allowed_transition(status: OrderStatus, action: OrderAction) -> None:
    core = order_in(status)
    assert core.check(action) is ALLOWED[(status, action)]
    previous = core.apply(action, 500.0, reason="why", source="opcua", user="op1")
    assert previous is status
    assert core.status is ALLOWED[(status, action)]
    assert core.history[-1] == {
        "ts": 500.0,
        "status": ALLOWED[(status, action)].value,
        "previous": status.value,
        "reason": "why",
        "source": "opcua",
        "user": "op1",
    }


@pytest.mark.parametrize(
    ("status", "action"),
    [pair for pair in itertools.product(OrderStatus, OrderAction) if pair not in ALLOWED],
)
def test_every_invalid_transition_is_refused_with_a_reason(
    status: OrderStatus, action: OrderAction
) -> None:
    core = order_in(status)
    before = core.snapshot()
    with pytest.raises(CommandError) as caught:
        core.apply(action, 600.0)
    message = str(caught.value)
    assert message.startswith(f"cannot {action.value} order 'WO1': it is {status.value}; ")
    reason = message.split("; ", 1)[1]
    assert reason and reason != "not allowed"
    if status in FINAL:
        assert reason == f"a {status.value} order is final"
    assert core.snapshot() == before, "a refused command changed the order"


def test_specific_reasons() -> None:
    with pytest.raises(CommandError, match="release it first"):
        order_in(S.CREATED).check(A.START)
    with pytest.raises(CommandError, match="never started; abort it instead"):
        order_in(S.RELEASED).check(A.COMPLETE)
    with pytest.raises(CommandError, match="resumed, not started"):
        order_in(S.HELD).check(A.START)


def test_start_time_is_the_first_start_and_end_the_final_transition() -> None:
    core = order_in(S.RELEASED)
    core.apply(A.START, 1000.0)
    core.apply(A.HOLD, 1500.0)
    core.apply(A.RESUME, 1800.0)
    assert core.started_at == 1000.0 and core.ended_at is None
    core.apply(A.COMPLETE, 2500.0, reason="short")
    assert (core.started_at, core.ended_at, core.end_reason) == (1000.0, 2500.0, "short")


# ----------------------------------------------------------------------------- pieces


def test_counts_derive_per_machine_like_the_machine_core() -> None:
    core = order_in(
        S.RUNNING,
        machine_ids=("M1", "M2", "M3"),
    )
    core = OrderCore.restore(
        core.snapshot(),
        machine_roles={
            "M1": SEEN_TOTAL | SEEN_GOOD | SEEN_REJECT,
            "M2": SEEN_TOTAL,
            "M3": SEEN_TOTAL | SEEN_GOOD,
        },
    )
    for machine, role, count in [
        ("M1", "total_count", 10),
        ("M1", "good_count", 9),
        ("M1", "reject_count", 1),
        ("M2", "total_count", 9),
        ("M2", "quality_station_reject", 2),
        ("M3", "total_count", 7),
        ("M3", "good_count", 6),
    ]:
        core.count(machine, role, count, 1000.0)
    counts = core.view().machines
    # M1: good and reject mapped -> total = 9 + 1 = 10
    assert (counts["M1"].total, counts["M1"].good, counts["M1"].reject) == (10, 9, 1)
    # M2: total alone -> reject = station rejects 2, good = 9 - 2 = 7
    assert (counts["M2"].total, counts["M2"].good, counts["M2"].reject) == (9, 7, 2)
    # M3: total and good -> reject = 7 - 6 = 1
    assert (counts["M3"].total, counts["M3"].good, counts["M3"].reject) == (7, 6, 1)
    # series: good = last machine's 6; reject = 1 + 2 + 1 = 4; total = 10
    assert core.quantities() == (6, 4, 10)


def test_parallel_quantity_rule_sums_the_machines() -> None:
    core = OrderCore(spec(), quantity_rule=QuantityRule.PARALLEL, machine_roles={})
    core.apply(A.RELEASE, 1.0)
    core.apply(A.START, 2.0)
    core.count("M1", "total_count", 40, 3.0)
    core.count("M2", "total_count", 35, 3.0)
    core.count("M2", "quality_station_reject", 5, 3.0)
    # M1: 40 good; M2: 35 total, 5 rejects, 30 good -> good 70, reject 5, total 75
    assert core.quantities() == (70, 5, 75)


def test_pieces_count_while_running_or_held_and_not_after_the_end() -> None:
    core = order_in(S.RUNNING, machine_ids=("M1",))
    core.count("M1", "total_count", 5, 1.0)
    core.apply(A.HOLD, 2.0)
    core.count("M1", "total_count", 2, 2.5)  # in flight when the hold came
    core.count("M9", "total_count", 100, 2.5)  # not one of its machines
    core.count("M1", "bogus_role", 100, 2.5)
    core.apply(A.COMPLETE, 3.0)
    core.count("M1", "total_count", 4, 4.0)
    assert core.quantities() == (7, 0, 7)
    assert core.late_pieces == 4


def test_auto_complete_fires_once_when_good_reaches_the_target() -> None:
    core = order_in(S.RUNNING, machine_ids=("M1",), target_quantity=10, auto_complete=True)
    assert core.count("M1", "total_count", 9, 1.0) is False
    assert core.count("M1", "total_count", 2, 2.0) is True  # 11 >= 10
    assert core.count("M1", "total_count", 1, 3.0) is False
    assert core.target_reached
    without = order_in(S.RUNNING, machine_ids=("M1",), target_quantity=10)
    assert without.count("M1", "total_count", 50, 1.0) is False


# ----------------------------------------------------------------------------- KPIs


def kpis(machine: str, start: float, end: float, **kw: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "machine_id": machine,
        "window": "order",
        "key": "WO1",
        "name": "WO1",
        "start": start,
        "end": end,
        "closed": True,
        "open_stop": False,
        "scheduled_s": end - start,
        "planned_stop_s": 0.0,
        "planned_production_s": end - start,
        "run_s": end - start,
        "downtime_s": 0.0,
        "downtime_events": 0,
        "micro_stops": 0,
        "micro_stop_s": 0.0,
        "total_count": 0,
        "good_count": 0,
        "reject_count": 0,
        "availability": 1.0,
        "performance": None,
        "quality": None,
        "oee": None,
        "teep": None,
        "mtbf_s": None,
        "mttr_s": None,
        "downtime_by_reason": {},
        "pieces_outside_ppt": 0,
    }
    fields.update(kw)
    return KpiRecord(**fields).as_dict()  # type: ignore[arg-type]


# M2 ran the order in two segments (a hold between 1600 and 2000).
M2_A = kpis(
    "M2", 1000.0, 1600.0,
    run_s=540.0, downtime_s=60.0, downtime_events=1, micro_stops=2, micro_stop_s=10.0,
    total_count=50, good_count=49, reject_count=1,
    availability=0.9, performance=0.9, quality=0.98, oee=0.9 * 0.9 * 0.98,
    teep=0.9 * 0.9 * 0.98, mtbf_s=540.0, mttr_s=60.0,
    downtime_by_reason={"jam": 60.0},
)  # fmt: skip
M2_B = kpis(
    "M2", 2000.0, 2300.0,
    total_count=45, good_count=44, reject_count=1,
    performance=0.9, quality=44 / 45, oee=0.9 * 44 / 45, teep=0.9 * 44 / 45,
)  # fmt: skip
M1_ONLY = kpis(
    "M1", 1000.0, 2300.0,
    planned_production_s=1300.0, run_s=1265.0, downtime_s=35.0, downtime_events=1,
    total_count=100, good_count=97, reject_count=3,
    availability=1265 / 1300, performance=0.5, quality=0.97, mtbf_s=1265.0, mttr_s=30.0,
    downtime_by_reason={"jam": 30.0, "comm_loss": 5.0},
)  # fmt: skip


def test_merge_kpis_of_two_segments_by_hand() -> None:
    merged = merge_kpis([M2_B, M2_A])
    assert merged is not None
    # sums: scheduled 600 + 300 = 900, run 540 + 300 = 840, downtime 60, 1 event
    assert merged["scheduled_s"] == 900.0
    assert merged["planned_production_s"] == 900.0
    assert merged["run_s"] == 840.0
    assert merged["downtime_s"] == 60.0
    assert (merged["downtime_events"], merged["micro_stops"], merged["micro_stop_s"]) == (
        1,
        2,
        10.0,
    )
    assert (merged["total_count"], merged["good_count"], merged["reject_count"]) == (95, 93, 2)
    # availability 840 / 900; performance (0.9 * 540 + 0.9 * 300) / 840 = 756 / 840 = 0.9
    assert merged["availability"] == pytest.approx(840 / 900)
    assert merged["performance"] == pytest.approx(0.9)
    assert merged["quality"] == pytest.approx(93 / 95)
    oee = 840 / 900 * 0.9 * 93 / 95
    assert merged["oee"] == pytest.approx(oee)
    # teep = oee * PPT / (600 + 300) = oee
    assert merged["teep"] == pytest.approx(oee)
    # mtbf 840 / 1; mttr 60 * 1 / 1
    assert (merged["mtbf_s"], merged["mttr_s"]) == (840.0, 60.0)
    assert merged["downtime_by_reason"] == {"jam": 60.0}
    assert (merged["start"], merged["end"], merged["segments"]) == (1000.0, 2300.0, 2)
    assert merge_kpis([]) is None
    assert merge_kpis([M1_ONLY]) == {**M1_ONLY, "segments": 1}


# ----------------------------------------------------------------------------- batch record


def test_batch_record_field_by_field() -> None:
    core = OrderCore(
        spec(),
        machine_roles={"M1": SEEN_TOTAL | SEEN_GOOD | SEEN_REJECT, "M2": SEEN_TOTAL},
        created_at=900.0,
        source="mqtt",
        user="mes",
    )
    core.apply(A.RELEASE, 950.0, source="mqtt", user="mes")
    core.apply(A.START, 1000.0, source="opcua", user="op1")
    for machine, role, count in [
        ("M1", "total_count", 60),
        ("M1", "good_count", 58),
        ("M1", "reject_count", 2),
        ("M2", "total_count", 50),
        ("M2", "quality_station_reject", 1),
    ]:
        core.count(machine, role, count, 1200.0)
    core.apply(A.HOLD, 1600.0, reason="material", source="opcua", user="op1")
    core.apply(A.RESUME, 2000.0, source="opcua", user="op1")
    for machine, role, count in [
        ("M1", "total_count", 40),
        ("M1", "good_count", 39),
        ("M1", "reject_count", 1),
        ("M2", "total_count", 45),
        ("M2", "quality_station_reject", 1),
    ]:
        core.count(machine, role, count, 2200.0)
    for record in (M1_ONLY, M2_A, M2_B):
        core.window_kpis(record)
    core.window_kpis({**M2_B, "key": "OTHER"})  # another order's window: ignored
    with pytest.raises(CommandError, match="is running"):
        core.batch_record()
    core.apply(A.COMPLETE, 2300.0, reason="target reached", source="auto", user="edge")

    ledger = LotLedger()
    for scan_id, lot, machine in [("S1", "L-A", "M1"), ("S2", "L-B", "M2"), ("S3", "L-A", "M1")]:
        ledger.record(LotScan(scan_id, lot, "WO1", machine, 1100.0, material="resin"))
    quality = [{"station_id": "Q1", "rework": 1, "scrap": 1}, {"station_id": "Q2", "rework": 2}]
    record = core.batch_record(quality=quality, genealogy=ledger.genealogy("WO1", "LOT-OUT-1"))

    assert record.order_id == "WO1"
    assert record.product == "P-100"
    assert record.operation_id == "OP10"
    assert record.status == "completed"
    assert record.reason == "target reached"
    assert record.target_quantity == 90
    # M1: 58 + 39 = 97 good, 2 + 1 = 3 reject, total 100 (good + reject mapped)
    # M2: total 50 + 45 = 95, station rejects 1 + 1 = 2, good 93 (total alone)
    # series: good = M2's 93; reject = 3 + 2 = 5; total = 98
    assert record.good_quantity == 93
    assert record.reject_quantity == 5
    assert record.total_quantity == 98
    assert record.rework_quantity == 3  # 1 at Q1 + 2 at Q2
    assert (record.start, record.end) == (1000.0, 2300.0)
    assert record.machines["M1"]["total_count"] == 100
    assert record.machines["M1"]["good_count"] == 97
    assert record.machines["M1"]["reject_count"] == 3
    assert record.machines["M1"]["kpis"] == {**M1_ONLY, "segments": 1}
    assert (
        record.machines["M2"]["total_count"],
        record.machines["M2"]["good_count"],
        record.machines["M2"]["reject_count"],
    ) == (95, 93, 2)
    assert record.machines["M2"]["kpis"] == merge_kpis([M2_A, M2_B])
    # M1 jam 30 + M2 jam 60 = 90; comm_loss 5 from M1
    assert record.downtime_by_reason == {"jam": 90.0, "comm_loss": 5.0}
    assert record.produced_lot_id == "LOT-OUT-1"
    assert [lot["scan_id"] for lot in record.consumed_lots] == ["S1", "S2"]
    assert record.consumed_lots[0] == {
        "scan_id": "S1",
        "lot_id": "L-A",
        "order_id": "WO1",
        "machine_id": "M1",
        "ts": 1100.0,
        "material": "resin",
        "quantity": None,
        "source": "",
        "user": "",
    }
    assert record.genealogy["produced_lot_id"] == "LOT-OUT-1"
    assert record.genealogy["consumed_lot_ids"] == ["L-A", "L-B"]
    assert record.quality == quality
    assert [(h["status"], h["source"]) for h in record.history] == [
        ("created", "mqtt"),
        ("released", "mqtt"),
        ("running", "opcua"),
        ("held", "opcua"),
        ("running", "opcua"),
        ("completed", "auto"),
    ]
    assert record.history[3]["reason"] == "material"
    assert record.as_dict()["good_quantity"] == 93


def test_aborted_before_start_has_a_record_without_a_start() -> None:
    core = order_in(S.RELEASED)
    core.apply(A.ABORT, 300.0, reason="cancelled by MES")
    record = core.batch_record()
    assert (record.status, record.reason, record.start, record.end) == (
        "aborted",
        "cancelled by MES",
        None,
        300.0,
    )
    assert record.good_quantity == 0
    assert record.machines["M1"]["kpis"] is None
    assert record.genealogy == {
        "produced_lot_id": "LOT-OUT-1",
        "consumed_lot_ids": [],
        "consumed": [],
    }


def test_snapshot_round_trip() -> None:
    core = order_in(S.RUNNING, auto_complete=True)
    core.count("M1", "total_count", 12, 1.0)
    core.window_kpis(M2_A)
    twin = OrderCore.restore(core.snapshot())
    assert twin.snapshot() == core.snapshot()
    assert twin.view() == core.view()
    assert twin.spec == core.spec
