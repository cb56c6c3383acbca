"""The store itself (edge.ingest.writer and the SQL behind it) on a real PostgreSQL.

Batches arrive in any order when several workers share the lines; every
expectation here is what the events mean, computed by hand, whatever the order.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from edge.ingest.decode import decode_message
from edge.ingest.errors import StoreError
from edge.ingest.schema import MIGRATIONS, Migration, apply_migrations
from edge.ingest.writer import StoreWriter
from tests.integration.central.batches import T0, Event, encode, pieces

TOPIC = "edge/BKK/L7/events"


@pytest.fixture
async def writer(database: str) -> AsyncIterator[StoreWriter]:
    conn = await asyncpg.connect(database)
    await apply_migrations(conn)
    await conn.close()
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        yield StoreWriter(pool, "test")
    finally:
        await pool.close()


async def write_all(writer: StoreWriter, payloads: Sequence[bytes]) -> None:
    for payload in payloads:
        await writer.write(decode_message(TOPIC, payload))


async def rows(writer: StoreWriter, sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await writer.pool.fetch(sql)]


def kpis(
    key: str, start: float, run_s: float, good: int, reasons: dict[str, float]
) -> dict[str, Any]:
    ppt = 3600.0
    downtime = sum(reasons.values())
    return {
        "machine_id": "M1",
        "window": "shift",
        "key": key,
        "name": key.split("@", maxsplit=1)[0],
        "start": start,
        "end": start + 3600,
        "closed": True,
        "open_stop": False,
        "scheduled_s": 3600.0,
        "planned_stop_s": 0.0,
        "planned_production_s": ppt,
        "run_s": run_s,
        "downtime_s": downtime,
        "downtime_events": len(reasons),
        "micro_stops": 0,
        "micro_stop_s": 0.0,
        "total_count": good,
        "good_count": good,
        "reject_count": 0,
        "availability": run_s / ppt,
        "performance": 1.0,
        "quality": 1.0,
        "oee": run_s / ppt,
        "teep": run_s / ppt,
        "mtbf_s": None,
        "mttr_s": None,
        "downtime_by_reason": reasons,
        "pieces_outside_ppt": 0,
    }


async def test_migrations_apply_once_and_refuse_a_changed_or_newer_schema(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        assert [m.version for m in await apply_migrations(conn)] == [1, 2, 3, 4]
        assert await apply_migrations(conn) == []
        changed = (*MIGRATIONS[:-1], Migration(4, MIGRATIONS[-1].name, "SELECT 1"))
        with pytest.raises(StoreError, match="0004_timescaledb was changed after it was applied"):
            await apply_migrations(conn, changed)
        await conn.execute(
            "INSERT INTO plant.schema_migrations (version, name, checksum) VALUES (99, 'x', 'y')"
        )
        with pytest.raises(StoreError, match="schema version 99, newer than"):
            await apply_migrations(conn)
    finally:
        await conn.close()


async def test_batches_in_any_order_leave_one_row_per_stop_with_its_final_reason(
    writer: StoreWriter,
) -> None:
    stop = {"machine_id": "M1", "stop_id": 7, "category": "unplanned"}
    events: list[Event] = [
        ("StopStarted", {**stop, "ts": T0 + 100, "reason": "unassigned"}),
        (
            "StopReasonChanged",
            {
                **stop,
                "ts": T0 + 130,
                "reason": "jam",
                "previous_reason": "unassigned",
                "previous_category": "unplanned",
                "stop_start": T0 + 100,
                "stop_end": None,
            },
        ),
        (
            "StopEnded",
            {
                **stop,
                "ts": T0 + 400,
                "start": T0 + 100,
                "end": T0 + 400,
                "duration_s": 300.0,
                "kind": "downtime",
                "reason": "jam",
            },
        ),
        # The operator corrects the reason after the stop ended.
        (
            "StopReasonChanged",
            {
                **stop,
                "ts": T0 + 500,
                "reason": "changeover",
                "category": "planned",
                "previous_reason": "jam",
                "previous_category": "unplanned",
                "stop_start": T0 + 100,
                "stop_end": T0 + 400,
            },
        ),
    ]
    batches = [encode([e], first=i + 1) for i, e in enumerate(events)]
    # The last batch lands first, the first last (two workers, one slow).
    await write_all(writer, [batches[3], batches[1], batches[2], batches[0]])
    found = await rows(writer, "SELECT * FROM plant.stops")
    assert len(found) == 1
    s = found[0]
    assert (s["reason"], s["category"], s["first_reason"], s["reason_changes"]) == (
        "changeover",
        "planned",
        "unassigned",
        2,
    )
    assert (s["start_ts"].timestamp(), s["end_ts"].timestamp(), s["duration_s"]) == (
        T0 + 100,
        T0 + 400,
        300.0,
    )
    assert (s["site"], s["line"]) == ("BKK", "L7")


async def test_the_latest_shift_revision_wins_whatever_the_arrival_order(
    writer: StoreWriter,
) -> None:
    key, start = "Day@2026-01-01", T0
    closed = (
        "ShiftClosed",
        {
            "machine_id": "M1",
            "ts": start + 3600,
            "kpis": kpis(key, start, 3000.0, 900, {"unassigned": 600.0}),
        },
    )
    revised = (
        "WindowRevised",
        {
            "machine_id": "M1",
            "ts": start + 3700,
            "kpis": kpis(key, start, 3000.0, 900, {"jam": 600.0}),
        },
    )
    other_line = (
        "ShiftClosed",
        {
            "machine_id": "M1",
            "ts": start + 3600,
            "kpis": kpis(key, start, 1800.0, 500, {"jam": 1800.0}),
        },
    )
    await write_all(writer, [encode([revised], first=2), encode([closed], first=1)])
    await writer.write(
        decode_message("edge/BKK/L8/events", encode([other_line], first=1, edge_id="edge-BKK-L8"))
    )
    shift = await rows(writer, "SELECT * FROM plant.shift_kpis WHERE line = 'L7'")
    assert len(shift) == 1
    assert shift[0]["revisions"] == 2 and shift[0]["revised_by"] == "WindowRevised"
    assert shift[0]["downtime_by_reason"] == '{"jam": 600.0}'
    top = await rows(
        writer,
        "SELECT reason, sum(downtime_s) AS s FROM plant.shift_downtime_by_reason "
        "GROUP BY reason ORDER BY s DESC",
    )
    assert top == [{"reason": "jam", "s": 2400.0}], "the replaced reason is gone"
    lines = await rows(
        writer, "SELECT line, availability, oee FROM plant.shift_oee_by_line ORDER BY line"
    )
    assert lines == [
        {"line": "L7", "availability": 3000 / 3600, "oee": 3000 / 3600},
        {"line": "L8", "availability": 0.5, "oee": 0.5},
    ]


async def test_a_drop_oldest_gap_is_explained_by_the_outbox_report(writer: StoreWriter) -> None:
    report = (
        "OutboxPolicyApplied",
        {
            "machine_id": "",
            "ts": T0 + 50,
            "stream": "events",
            "policy": "drop-oldest",
            "count": 40,
            "seq_first": 11,
            "seq_last": 50,
            "total": 40,
        },
    )
    await write_all(
        writer,
        [
            encode([pieces("M1", T0 + i) for i in range(10)], first=1),
            # 11..50 were dropped by the edge's disk cap; the report itself is seq 51.
            encode([report, pieces("M1", T0 + 60)], first=51),
            encode([pieces("M1", T0 + 70)], first=60),  # 53..59 missing, unexplained
        ],
    )
    gaps = await rows(
        writer,
        "SELECT seq_first, seq_last, missing, explanation, explained_by_seq, site, line "
        "FROM plant.seq_gap_report ORDER BY seq_first",
    )
    assert gaps == [
        {
            "seq_first": 11,
            "seq_last": 50,
            "missing": 40,
            "explanation": "drop-oldest",
            "explained_by_seq": 51,
            "site": "BKK",
            "line": "L7",
        },
        {
            "seq_first": 53,
            "seq_last": 59,
            "missing": 7,
            "explanation": None,
            "explained_by_seq": None,
            "site": "BKK",
            "line": "L7",
        },
    ]
    # A late batch fills part of the unexplained hole: the hole shrinks, nothing doubles.
    await write_all(writer, [encode([pieces("M1", T0 + 65 + i) for i in range(3)], first=55)])
    left = await rows(writer, "SELECT seq_first, seq_last FROM plant.seq_gaps ORDER BY 1")
    assert left == [
        {"seq_first": 11, "seq_last": 50},
        {"seq_first": 53, "seq_last": 54},
        {"seq_first": 58, "seq_last": 59},
    ]
    epoch = await rows(writer, "SELECT low_seq, high_seq, events, batches FROM plant.epochs")
    assert epoch == [{"low_seq": 1, "high_seq": 60, "events": 16, "batches": 4}]


async def test_pieces_per_machine_per_hour_follow_the_roles_reported(writer: StoreWriter) -> None:
    hour = T0 + 7200
    events = [
        pieces("FILLER", hour + 1, 100, "total_count"),
        pieces("FILLER", hour + 2, 3, "reject_count"),
        pieces("FILLER", hour + 3700, 50, "total_count"),  # the next hour
        pieces("CAPPER", hour + 5, 40, "good_count"),
        pieces("CAPPER", hour + 6, 2, "reject_count"),
    ]
    await write_all(writer, [encode(events, first=1)])
    found = await rows(
        writer,
        "SELECT machine_id, extract(epoch FROM hour) AS h, pieces, good_pieces, reject_pieces "
        "FROM plant.pieces_hourly ORDER BY machine_id, hour",
    )
    assert [
        (r["machine_id"], float(r["h"]), r["pieces"], r["good_pieces"], r["reject_pieces"])
        for r in found
    ] == [
        ("CAPPER", hour, 42, 40, 2),
        ("FILLER", hour, 100, 97, 3),
        ("FILLER", hour + 3600, 50, 50, 0),
    ]


async def test_orders_batch_records_and_quality_results_are_typed(writer: StoreWriter) -> None:
    def status(ts: float, new: str, old: str) -> Event:
        return (
            "OrderStatusChanged",
            {
                "machine_id": "",
                "ts": ts,
                "order_id": "WO-1",
                "status": new,
                "previous": old,
                "reason": "",
                "source": "mqtt",
                "user": "mes",
            },
        )

    record = {
        "order_id": "WO-1",
        "product": "P-7",
        "operation_id": "",
        "status": "completed",
        "reason": "target reached",
        "target_quantity": 10,
        "good_quantity": 10,
        "reject_quantity": 1,
        "rework_quantity": 0,
        "total_quantity": 11,
        "start": T0,
        "end": T0 + 60,
        "machines": {},
        "downtime_by_reason": {},
        "produced_lot_id": "L-1",
        "consumed_lots": [],
        "genealogy": {},
        "quality": [],
        "history": [],
    }
    events: list[Event] = [
        status(T0, "created", ""),
        status(T0 + 1, "released", "created"),
        status(T0 + 2, "running", "released"),
        (
            "OrderProgress",
            {
                "machine_id": "",
                "ts": T0 + 30,
                "order_id": "WO-1",
                "good_quantity": 5,
                "reject_quantity": 1,
                "total_quantity": 6,
                "target_quantity": 10,
            },
        ),
        (
            "InspectionRecorded",
            {
                "machine_id": "M1",
                "ts": T0 + 31,
                "station_id": "QS1",
                "order_id": "WO-1",
                "passed": 5,
                "failed": 1,
                "disposition": "pending",
                "reason_code": "scratch",
                "source": "plc",
                "feeds_machine_rejects": True,
            },
        ),
        status(T0 + 60, "completed", "running"),
        (
            "BatchRecordCompleted",
            {"machine_id": "", "ts": T0 + 60, "order_id": "WO-1", "record": record},
        ),
    ]
    # Two batches, the later one first.
    await write_all(writer, [encode(events[4:], first=5), encode(events[:4], first=1)])
    order = (await rows(writer, "SELECT * FROM plant.orders"))[0]
    assert (order["status"], order["previous_status"], order["status_changes"]) == (
        "completed",
        "running",
        4,
    )
    assert (order["good_quantity"], order["target_quantity"]) == (5, 10)
    assert order["first_ts"].timestamp() == T0
    br = (await rows(writer, "SELECT * FROM plant.batch_records"))[0]
    assert (br["product"], br["good_quantity"], br["total_quantity"], br["produced_lot_id"]) == (
        "P-7",
        10,
        11,
        "L-1",
    )
    qs = await rows(writer, "SELECT station_id, passed, failed, reason_code FROM plant.inspections")
    assert qs == [{"station_id": "QS1", "passed": 5, "failed": 1, "reason_code": "scratch"}]
    history = await rows(writer, "SELECT status FROM plant.order_history ORDER BY ts")
    assert [h["status"] for h in history] == ["created", "released", "running", "completed"]


async def test_a_value_the_database_refuses_is_a_refused_batch_not_a_retry(
    writer: StoreWriter,
) -> None:
    from edge.ingest.writer import RefusedBatch  # noqa: PLC0415

    # An integer that fits msgpack's 64 bits but is out of range for a KPI's integer column.
    bad = kpis("Day@2026-01-01", T0, 3000.0, 900, {})
    bad["downtime_events"] = 1 << 40
    with pytest.raises(RefusedBatch, match="SQLSTATE 22"):
        await writer.write(
            decode_message(
                TOPIC,
                encode([("ShiftClosed", {"machine_id": "M1", "ts": T0, "kpis": bad})], first=1),
            )
        )
    assert await writer.pool.fetchval("SELECT count(*) FROM plant.events") == 0, "rolled back"
    assert await writer.pool.fetchval("SELECT count(*) FROM plant.batches") == 0


_ = itertools  # keep the import list stable for helpers added later
