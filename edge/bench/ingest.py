"""``edge ingest`` into PostgreSQL: events/s stored by one worker, against a bare COPY.

A throw-away PostgreSQL cluster (durable: fsync on) and a local mosquitto are
started for the run. Each repetition takes a fresh database and a backlog of
batches queued at the broker for the worker's persistent session (10 lines,
500-event batches: pieces, state changes, stops, as a line sends them); the
worker is started and timed from its subscription until every event is
committed (decode, checks, one transaction per batch, PUBACK after the commit).

Baseline, interleaved with it: a bare ``COPY`` of the same rows (already
decoded) into an unindexed table, one transaction per batch — the floor of what
PostgreSQL does for the same rows at the same durability. The figure is the
median of the repetitions; the ratio is the median of the per-repetition ratios.

Bar: >= 50,000 events/s per worker. Needs PostgreSQL and mosquitto; without them
the figure says so instead of failing.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt
import asyncpg

from edge.bench import Figure
from edge.bench.mqtt import _broker, _mosquitto
from edge.forward.mqtt.connection import ClientSettings
from edge.ingest.decode import EVENT_COLUMNS, decode_message
from edge.ingest.scratch import ScratchCluster, find_binaries
from edge.ingest.service import IngestService, IngestSettings
from edge.wire import BatchHeader, batch_id_for, encode_batch, encode_envelope

NAME = "ingest: events/s into PostgreSQL, one worker"
BAR = 50_000.0
LINES = 10
BATCH = 500
BATCHES_PER_LINE = 30  # 150,000 events per repetition
REPETITIONS = 3
T0 = 1_767_225_600.0


def _event(i: int, machine: str) -> tuple[str, dict[str, object]]:
    ts = T0 + i * 0.5
    kind = i % 100
    if kind < 4:
        state = "stopped" if kind % 2 == 0 else "running"
        other = "running" if state == "stopped" else "stopped"
        return "StateChanged", {"machine_id": machine, "ts": ts, "state": state, "previous": other}
    if kind < 7:
        return "StopStarted", {
            "machine_id": machine,
            "ts": ts,
            "stop_id": i,
            "reason": "unassigned",
            "category": "unplanned",
        }
    if kind < 10:
        return "StopEnded", {
            "machine_id": machine,
            "ts": ts,
            "stop_id": i - 3,
            "start": ts - 1.5,
            "end": ts,
            "duration_s": 1.5,
            "kind": "micro_stop",
            "reason": "jam",
            "category": "unplanned",
        }
    return "PiecesCounted", {
        "machine_id": machine,
        "ts": ts,
        "role": "total_count",
        "count": 1,
        "order_id": None,
    }


def _backlog() -> list[tuple[str, bytes]]:
    messages: list[tuple[str, bytes]] = []
    for number in range(BATCHES_PER_LINE):
        for line in range(LINES):
            first = number * BATCH + 1
            envelopes = [
                encode_envelope(first + k, *_event(first + k, f"M{k % 4}")) for k in range(BATCH)
            ]
            epoch = f"bench{line}"
            header = BatchHeader(
                edge_id=f"edge-B-L{line}",
                epoch=epoch,
                batch_id=batch_id_for(epoch, first, first + BATCH - 1),
                seq_first=first,
                seq_last=first + BATCH - 1,
                count=BATCH,
                historical=False,
                sent_at=T0,
            )
            messages.append((f"edge/B/L{line}/events", encode_batch(header, envelopes)))
    return messages


async def _database(cluster: ScratchCluster, name: str) -> str:
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.dsn(name)


async def _ingest_rate(
    cluster: ScratchCluster, port: int, messages: list[tuple[str, bytes]], run: int
) -> float:
    dsn = await _database(cluster, f"ingest_{run}")
    settings = IngestSettings(
        dsn=dsn,
        broker=ClientSettings("127.0.0.1", port, timeout_s=30.0),
        client_id=f"bench-{run}",
        group=f"bench{run}",
        metrics_port=None,
        inflight=16,
        pool_size=4,
    )
    total = len(messages) * BATCH
    async with IngestService(settings) as first:  # the schema and the session
        await asyncio.wait_for(first.subscribed.wait(), 60)
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30
    ) as publisher:
        for topic, payload in messages:
            await publisher.publish(topic, payload, qos=1)
    async with IngestService(settings) as worker:
        await asyncio.wait_for(worker.subscribed.wait(), 60)
        started = time.perf_counter()
        while worker.stored_events < total:  # noqa: ASYNC110 - polls the worker's counter
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
    return total / elapsed


async def _bare_copy_rate(
    cluster: ScratchCluster, messages: list[tuple[str, bytes]], run: int
) -> float:
    dsn = await _database(cluster, f"bare_{run}")
    batches = [decode_message(topic, payload).rows for topic, payload in messages]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE bare_events (edge_id text, epoch text, seq bigint, type text, "
            "site text, line text, machine_id text, ts timestamptz, data jsonb, batch_id text)"
        )
        started = time.perf_counter()
        for rows in batches:
            async with conn.transaction():
                await conn.copy_records_to_table("bare_events", columns=EVENT_COLUMNS, records=rows)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return sum(len(rows) for rows in batches) / elapsed


async def _measure(cluster: ScratchCluster, port: int) -> tuple[list[float], list[float]]:
    messages = _backlog()
    ingest, bare = [], []
    for run in range(REPETITIONS):
        ingest.append(await _ingest_rate(cluster, port, messages, run))
        bare.append(await _bare_copy_rate(cluster, messages, run))
    return ingest, bare


def run() -> list[Figure]:
    binary = _mosquitto()
    if binary is None or find_binaries() is None:
        missing = "mosquitto" if binary is None else "PostgreSQL"
        return [Figure(NAME, 0.0, "events/s", note=f"not measured: {missing} is not installed")]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _broker(binary, Path(tmp)) as port,
        ScratchCluster.start(durable=True) as cluster,
    ):
        ingest, bare = asyncio.run(_measure(cluster, port))
    value = statistics.median(ingest)
    ratio = statistics.median(i / b for i, b in zip(ingest, bare, strict=True))
    return [
        Figure(
            NAME,
            value,
            "events/s",
            bar=">= 50,000 events/s",
            meets_bar=value >= BAR,
            baseline_name="bare COPY, same rows, one transaction per batch",
            baseline_value=statistics.median(bare),
            ratio=ratio,
            note=(
                f"{LINES} lines x {BATCHES_PER_LINE} batches of {BATCH}, {REPETITIONS} interleaved "
                f"runs; ingest runs: {', '.join(f'{v:,.0f}' for v in ingest)}"
            ),
        )
    ]
