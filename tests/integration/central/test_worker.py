"""``edge ingest`` against a real mosquitto and a real PostgreSQL.

Ground truth is what was published: every (edge, seq) must be in the database
exactly once, whatever the broker redelivers and whoever is killed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import msgpack

from edge.ingest.service import IngestService
from edge.wire import BatchHeader, encode_batch, encode_envelope
from tests.integration.central.batches import T0, encode, piece_batches, pieces
from tests.integration.central.helpers import (
    WorkerProcess,
    publish,
    query,
    scalar,
    settings,
    started,
    stored_count,
    wait_until,
)
from tests.integration.mqtt.broker import Broker, needs_mosquitto

pytestmark = needs_mosquitto

TOPIC = "edge/T/L1/events"


def topic_of(line: str) -> str:
    return f"edge/T/{line}/events"


async def exactly_once(dsn: str, edges: dict[str, int]) -> None:
    """Every edge's seqs 1..n stored once, no gap left, nothing else."""
    rows = await query(
        dsn,
        "SELECT edge_id, count(*) AS n, count(DISTINCT seq) AS distinct_seqs, min(seq) AS lo, "
        "max(seq) AS hi FROM plant.events GROUP BY edge_id ORDER BY edge_id",
    )
    found = {r["edge_id"]: (r["n"], r["distinct_seqs"], r["lo"], r["hi"]) for r in rows}
    assert found == {edge: (n, n, 1, n) for edge, n in edges.items()}
    assert await scalar(dsn, "SELECT count(*) FROM plant.seq_gaps") == 0
    pieces_by_edge = {
        r["edge_id"]: r["n"]
        for r in await query(
            dsn, "SELECT edge_id, sum(count) AS n FROM plant.pieces GROUP BY edge_id"
        )
    }
    assert pieces_by_edge == edges, "one piece per event, in the typed table too"


async def test_a_redelivered_batch_is_a_no_op(broker: Broker, database: str) -> None:
    batches = piece_batches("M1", 30, 10)
    async with IngestService(settings(database, broker.port, "w1")) as service:
        await started(service)
        await publish(broker.port, [(TOPIC, b) for b in batches])
        await wait_until(lambda: _is(stored_count(database), 30), 20, "30 events")
        # The edge resends a batch whose PUBACK it lost: same id, same events.
        await publish(broker.port, [(TOPIC, batches[1]), (TOPIC, batches[0])])
        await wait_until(
            lambda: _equals(service.metrics.batches.labels("duplicate")._value.get(), 2),
            20,
            "both resends seen",
        )
    await exactly_once(database, {"edge-T-L1": 30})
    assert await scalar(database, "SELECT count(*) FROM plant.batches") == 3
    assert service.stored_events == 30


async def test_overlapping_batch_under_a_new_id_stores_only_the_new_events(
    broker: Broker, database: str
) -> None:
    first = encode([pieces("M1", T0 + i) for i in range(10)], first=1)
    # Seqs 6..15 under another id (a plan dropped after a disk-cap drop, say).
    overlap = encode([pieces("M1", T0 + 5 + i) for i in range(10)], first=6, batch_id="other")
    async with IngestService(settings(database, broker.port, "w1")) as service:
        await started(service)
        await publish(broker.port, [(TOPIC, first), (TOPIC, overlap)])
        await wait_until(lambda: _is(stored_count(database), 15), 20, "15 events")
        await wait_until(
            lambda: _equals(service.metrics.duplicate_events._value.get(), 5),
            10,
            "the 5 doubled seqs counted",
        )
    await exactly_once(database, {"edge-T-L1": 15})


async def test_a_malformed_batch_is_a_dead_letter_and_the_worker_goes_on(
    broker: Broker, database: str
) -> None:
    unknown_v = msgpack.packb({**msgpack.unpackb(piece_batches("M1", 1, 1)[0]), "v": 99})
    no_ts = encode(
        [
            (
                "PiecesCounted",
                {"machine_id": "M1", "role": "total_count", "count": 1, "order_id": None},
            )
        ],
        first=1,
        batch_id="no-ts",
    )
    no_count = encode(
        [
            (
                "PiecesCounted",
                {"machine_id": "M1", "ts": T0, "role": "total_count", "order_id": None},
            )
        ],
        first=1,
        batch_id="no-count",
    )
    wrong_count = encode_batch(
        BatchHeader("edge-T-L1", "e1", "short", 1, 2, 2, False, T0),
        [encode_envelope(1, *pieces("M1", T0)), encode_envelope(3, *pieces("M1", T0))],
    )
    bad = [
        (b"\xc1\xc1 not msgpack", "batch is not msgpack"),
        (unknown_v, "batch.v: schema version 99"),
        (no_ts, ".ts: must be epoch seconds"),
        (no_count, "missing field 'count'"),
        (wrong_count, "sequence numbers must run 1..2"),
    ]
    good = piece_batches("M1", 5, 5)[0]
    async with IngestService(settings(database, broker.port, "w1")) as service:
        await started(service)
        await publish(broker.port, [*((TOPIC, payload) for payload, _ in bad), (TOPIC, good)])
        await wait_until(lambda: _is(stored_count(database), 5), 20, "the good batch")
        assert service.ready, "the worker is still running"
    rows = await query(
        database, "SELECT reason, payload, edge_id, batch_id FROM plant.dead_letters"
    )
    # Kept with the payload (for a replay): the batches were processed concurrently.
    by_payload = {bytes(r["payload"]): r for r in rows}
    assert len(rows) == len(by_payload) == len(bad)
    for payload, reason in bad:
        assert reason in by_payload[payload]["reason"], by_payload[payload]["reason"]
    assert by_payload[no_ts]["batch_id"] == "no-ts"
    assert by_payload[no_ts]["edge_id"] == "edge-T-L1"
    await exactly_once(database, {"edge-T-L1": 5})
    assert service.metrics.dead_letters.labels("malformed")._value.get() == len(bad)


async def test_two_workers_on_one_shared_subscription_store_each_event_once(
    broker: Broker, database: str
) -> None:
    lines = [f"L{i}" for i in range(1, 5)]
    per_line = 600
    streams = {line: piece_batches("M1", per_line, 20, edge_id=f"edge-T-{line}") for line in lines}
    # Interleaved as the lines would publish them: one batch of each line in turn.
    messages = [
        (topic_of(line), batch)
        for group in itertools.zip_longest(*(streams[line] for line in lines))
        for line, batch in zip(lines, group, strict=True)
        if batch is not None
    ]
    async with (
        IngestService(settings(database, broker.port, "w1")) as one,
        IngestService(settings(database, broker.port, "w2")) as two,
    ):
        await started(one)
        await started(two)
        await publish(broker.port, messages)
        await wait_until(
            lambda: _is(stored_count(database), per_line * len(lines)), 60, "every event"
        )
    assert one.stored_batches > 0 and two.stored_batches > 0, "the broker split the batches"
    assert one.stored_batches + two.stored_batches == len(messages)
    workers = await query(
        database, "SELECT worker, count(*) AS n FROM plant.batches GROUP BY worker ORDER BY 1"
    )
    assert {r["worker"]: r["n"] for r in workers} == {
        "w1": one.stored_batches,
        "w2": two.stored_batches,
    }
    await exactly_once(database, {f"edge-T-{line}": per_line for line in lines})


async def test_a_worker_killed_mid_stream_and_restarted_leaves_every_seq_once(
    broker: Broker, database: str, tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    lines = ["L1", "L2"]
    per_line = 3000
    streams = {line: piece_batches("M1", per_line, 25, edge_id=f"edge-T-{line}") for line in lines}
    messages = [
        (topic_of(line), batch)
        for pair in zip(*(streams[line] for line in lines), strict=True)
        for line, batch in zip(lines, pair, strict=True)
    ]
    log = tmp_path / "ingest.log"
    worker = await WorkerProcess(
        database, broker.port, "w-kill", log, free_port_factory()
    ).wait_ready()
    try:
        publisher = asyncio.ensure_future(publish(broker.port, messages, delay_s=0.002))
        total = per_line * len(lines)
        await wait_until(lambda: _at_least(stored_count(database), total // 4), 60, "a quarter")
        worker.kill()
        killed_at = await stored_count(database)
        assert killed_at < total, "killed mid-stream"
        worker = await WorkerProcess(
            database, broker.port, "w-kill", log, free_port_factory()
        ).wait_ready()
        await publisher
        await wait_until(lambda: _is(stored_count(database), total), 90, "every event")
        assert worker.terminate() == 0
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    await exactly_once(database, {f"edge-T-{line}": per_line for line in lines})
    assert "stopped cleanly" in log.read_text()


async def test_metrics_and_health_of_a_worker_process(
    broker: Broker, database: str, tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    gap = [
        encode([pieces("M1", T0 + i) for i in range(5)], first=1),
        encode([pieces("M1", T0 + 10 + i) for i in range(5)], first=11),  # 6..10 never come
    ]
    worker = await WorkerProcess(
        database,
        broker.port,
        "w-metrics",
        tmp_path / "ingest.log",
        free_port_factory(),
        "--gap-grace",
        "0",
    ).wait_ready()
    try:
        await publish(broker.port, [(TOPIC, b) for b in gap] + [(TOPIC, b"junk")])
        await wait_until(lambda: _is(stored_count(database), 10), 20, "10 events")

        async def gap_metric_shown() -> bool:
            text = await asyncio.to_thread(worker.metrics)
            return 'edge_ingest_seq_gap_events{explained="false"} 5.0' in text

        await wait_until(gap_metric_shown, 40, "the unexplained gap in the metrics")
        text = await asyncio.to_thread(worker.metrics)
        assert 'edge_ingest_batches_total{result="stored"} 2.0' in text
        assert "edge_ingest_events_total 10.0" in text
        assert 'edge_ingest_dead_letters_total{cause="malformed"} 1.0' in text
        assert "edge_ingest_mqtt_connected 1.0" in text
    finally:
        assert worker.terminate() == 0
    gaps = await query(
        database, "SELECT seq_first, seq_last, explanation FROM plant.seq_gap_report"
    )
    assert [tuple(g) for g in gaps] == [(6, 10, None)]


async def _is(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def _at_least(value: object, expected: int) -> bool:
    return await value >= expected  # type: ignore[misc,operator]


async def _equals(value: float, expected: float) -> bool:
    return value == expected
