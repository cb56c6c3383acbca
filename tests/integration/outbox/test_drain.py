"""Draining the outbox: chunked reads, the delivered cursor and the purge, the sliding window.

On a real SQLite file; the forwarder's publish seam is a function whose PUBACKs
the test hands out one by one, so the window and the ordering are observed,
not assumed.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.oee.events import PiecesCounted
from edge.event_bus import EventBus
from edge.forward.mqtt import BrokerError
from edge.forward.mqtt.forwarder import Forwarder
from edge.state.outbox import EVENTS_STREAM, CapPolicy, Outbox, OutboxWriter, statistics_of
from edge.state.store import StateStore
from edge.wire import batch_id_for, decode_batch, encode_envelope
from tests.integration.mqtt.helpers import wait_for


def pieces(start: int, count: int) -> list[PiecesCounted]:
    return [
        PiecesCounted("M1", 1.7e9 + i, "total_count", i, None) for i in range(start, start + count)
    ]


def rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE stream = 'events'").fetchone()
    return int(count)


# --------------------------------------------------------------------------- chunked reads


def expected_chunks(
    rows: list[tuple[int, bytes]],
    after: int,
    chunks: int,
    max_rows: int,
    max_bytes: int,
    boundary: int | None,
) -> list[tuple[int, int, bytes]]:
    """The rule, row by row: consecutive seqs, <= max_rows, <= max_bytes (at least one
    row), never across ``boundary``."""
    out: list[tuple[int, int, bytes]] = []
    current: list[tuple[int, bytes]] = []

    def close() -> None:
        out.append((current[0][0], current[-1][0], b"".join(p for _s, p in current)))

    for seq, payload in rows:
        if seq <= after:
            continue
        if current and (
            len(current) >= max_rows
            or sum(len(p) for _s, p in current) + len(payload) > max_bytes
            or seq != current[-1][0] + 1
            or (boundary is not None and current[-1][0] < boundary <= seq)
        ):
            close()
            current = []
            if len(out) == chunks:
                return out
        current.append((seq, payload))
    if current:
        close()
    return out[:chunks]


@pytest.mark.parametrize("gap_odds", [0.05, 0.004])
async def test_chunked_reads_follow_the_rule_row_by_row(tmp_path: Path, gap_odds: float) -> None:
    """Gaps (drop-oldest keeps its reports), uneven sizes and the live boundary, at random."""
    rng = random.Random(17)
    path = tmp_path / "o.db"
    rows: list[tuple[int, bytes]] = []
    seq = 0
    for _ in range(2000):
        seq += 1 if rng.random() > gap_odds else rng.randint(2, 30)
        size = rng.choice([10, 40, 40, 40, 300])
        rows.append((seq, encode_envelope(seq, "PiecesCounted", {"pad": "x" * size})))
    async with StateStore(path) as store:

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO outbox(stream, seq, created, payload, keep) VALUES (?, ?, 1.0, ?, 0)",
                [(EVENTS_STREAM, s, p) for s, p in rows],
            )

        await store.run(insert)
    async with Outbox(path) as outbox:
        for case in range(400):
            after = rng.choice([0, rng.randint(0, seq)])
            # Now and then more chunks than one statement can join (SQLite: 64 tables).
            chunks = rng.randint(1, 12) if rng.random() < 0.8 else rng.choice([63, 64, 100])
            max_rows = rng.choice([1, 3, 7, 50, 200])
            max_bytes = rng.choice([60, 400, 2_000, 1 << 20, 1 << 20])
            boundary = rng.choice([None, rng.randint(after, after + 600)])
            found = await outbox.read_chunks(
                EVENTS_STREAM,
                after,
                chunks=chunks,
                max_rows=max_rows,
                max_bytes=max_bytes,
                boundary=boundary,
            )
            got = [(c.seq_first, c.seq_last, c.payload) for c in found.chunks]
            want = expected_chunks(rows, after, chunks, max_rows, max_bytes, boundary)
            # A read may stop early (the next read goes on from its last chunk), never differ.
            assert got and got == want[: len(got)], (case, after, chunks, max_rows, max_bytes)
            assert found.created == 1.0
        nothing = await outbox.read_chunks(EVENTS_STREAM, seq, chunks=3, max_rows=5, max_bytes=99)
        assert nothing.chunks == ()


async def test_chunks_decode_as_batches_in_seq_order(tmp_path: Path) -> None:
    """SQLite joins a chunk's payloads in seq order: every batch decodes and is gap-free."""
    async with Outbox(tmp_path / "o.db") as outbox:
        for start in range(0, 3000, 700):
            await outbox.append(EVENTS_STREAM, pieces(start, 700))
        forwarder = Forwarder(outbox, edge_id="e", topic="t", batch_max_events=250)
        sink = Acks(auto=True)
        task = asyncio.ensure_future(forwarder.run(sink))
        await wait_for(lambda: outbox.depth(EVENTS_STREAM) == 0, 10, "drained")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    batches = [decode_batch(p) for p in sink.payloads]
    assert [(b.seq_first, b.seq_last) for b in batches] == [
        (s, min(s + 249, 3500)) for s in range(1, 3501, 250)
    ]
    assert [e.data["count"] for b in batches for e in b.events] == list(range(3500))


# --------------------------------------------------------------------------- delivered cursor


async def test_acknowledged_rows_are_delivered_at_once_and_purged_later(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 100))
        assert await outbox.acknowledge(EVENTS_STREAM, 60) == 60
        assert await outbox.acknowledge(EVENTS_STREAM, 50) == 0, "never backwards"
        assert (outbox.depth(EVENTS_STREAM), outbox.delivered_rows(EVENTS_STREAM)) == (40, 60)
        (first, *_rest) = await outbox.read(EVENTS_STREAM, 0, 1000)
        assert first.seq == 61, "a delivered row is never read again"
    assert rows_in_file(path) == 100, "acknowledging deletes nothing"
    async with Outbox(path) as outbox:  # a restart keeps the cursor
        assert outbox.acked_seq(EVENTS_STREAM) == 60
        assert (outbox.depth(EVENTS_STREAM), outbox.delivered_rows(EVENTS_STREAM)) == (40, 60)
        assert await outbox.purge(EVENTS_STREAM, limit=25) == 25
        assert await outbox.purge(EVENTS_STREAM, limit=25) == 25
        assert await outbox.purge(EVENTS_STREAM, limit=25) == 10
        assert await outbox.purge(EVENTS_STREAM) == 0
        assert outbox.depth(EVENTS_STREAM) == 40
        assert statistics_of(outbox).bytes == outbox.waiting_bytes
    assert rows_in_file(path) == 40


async def test_delivered_rows_make_room_under_the_cap_before_anything_is_dropped(
    tmp_path: Path,
) -> None:
    for policy in CapPolicy:
        bus: EventBus[object] = EventBus()
        path = tmp_path / f"{policy.value}.db"
        async with Outbox(path, max_bytes=10_000, policy=policy) as outbox:
            async with OutboxWriter(outbox, bus) as writer:
                bus.publish(pieces(0, 90))  # about 8 KB
                await writer.flush()
                await outbox.acknowledge(EVENTS_STREAM, outbox.last_seq(EVENTS_STREAM))
                assert outbox.total_bytes > 5_000, "delivered, still stored"
                bus.publish(pieces(90, 90))  # over the cap but for the delivered rows
                await writer.flush()
                stats = statistics_of(outbox, writer)
            assert (stats.dropped, stats.rejected) == (0, 0), policy
            assert stats.bytes <= 10_000
            assert outbox.delivered_rows(EVENTS_STREAM) == 0
            assert outbox.depth(EVENTS_STREAM) == 90
        assert rows_in_file(path) == 90


# --------------------------------------------------------------------------- the window


class Acks:
    """The publish seam; each publish waits for the PUBACK the test hands out (or at once)."""

    def __init__(self, *, auto: bool = False) -> None:
        self.auto = auto
        self.payloads: list[bytes] = []
        self.pending: list[asyncio.Future[None]] = []
        self.most_in_flight = 0

    async def __call__(self, topic: str, payload: bytes) -> None:
        self.payloads.append(payload)
        if self.auto:
            return
        puback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(puback)
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await puback

    @property
    def in_flight(self) -> int:
        return sum(1 for f in self.pending if not f.done())

    def puback(self, index: int) -> None:
        self.pending[index].set_result(None)


async def test_the_window_slides_and_rows_are_delivered_only_after_their_puback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 100))  # 10 batches of 10
        forwarder = Forwarder(
            outbox, edge_id="e", topic="t", batch_max_events=10, inflight_batches=3
        )
        acks = Acks()
        task = asyncio.ensure_future(forwarder.run(acks))
        await wait_for(lambda: len(acks.payloads) == 3, 10, "the window full")
        await asyncio.sleep(0.05)
        assert len(acks.payloads) == 3, "no more than the window without a PUBACK"
        acks.puback(1)  # out of order: the first is still out
        # Its slot is free at once.
        await wait_for(lambda: len(acks.payloads) == 4, 10, "the next publish")
        await asyncio.sleep(0.05)
        assert outbox.acked_seq(EVENTS_STREAM) == 0, "batch 2 is in, but batch 1 is not"
        acks.puback(0)
        await wait_for(lambda: outbox.acked_seq(EVENTS_STREAM) == 20, 10, "1..20 delivered")
        for index in range(2, 10):
            await wait_for(lambda: len(acks.payloads) > index, 10, "a publish")  # noqa: B023
            acks.puback(index)
        await wait_for(lambda: outbox.depth(EVENTS_STREAM) == 0, 10, "drained")
        assert acks.most_in_flight == 3
        # Nothing left to send: the delivered rows are deleted.
        await wait_for(lambda: outbox.delivered_rows(EVENTS_STREAM) == 0, 10, "the purge")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    batches = [decode_batch(p) for p in acks.payloads]
    assert [b.seq_first for b in batches] == list(range(1, 101, 10)), "in seq order"
    assert rows_in_file(path) == 0


# --------------------------------------------------------------------------- the live boundary


async def forward_all(outbox: Outbox, forwarder: Forwarder, sink: Acks, last: int) -> None:
    task = asyncio.ensure_future(forwarder.run(sink))
    try:
        await wait_for(lambda: outbox.acked_seq(EVENTS_STREAM) >= last, 20, "all delivered")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def delivered_exactly_once(payloads: list[bytes], last: int) -> None:
    """Every batch's events cover exactly its range (decode_batch checks it), and the
    batches together hold 1..last, each once."""
    batches = [decode_batch(p) for p in payloads]
    seqs = [e.seq for b in batches for e in b.events]
    assert seqs == list(range(1, last + 1)), [(b.seq_first, b.seq_last) for b in batches]


async def test_a_commit_after_an_empty_read_is_not_skipped(tmp_path: Path) -> None:
    """The writer commits after a read found nothing and before the forwarder looks at
    the outbox's sequence: those events are new, not dropped, and go out."""
    async with Outbox(tmp_path / "o.db") as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 10))
        reading = outbox.store.read
        commits = iter([pieces(10, 5), pieces(15, 5)])

        async def read_then_commit(fn: Callable[[sqlite3.Connection], Any], **options: Any) -> Any:
            found = await reading(fn, **options)
            more = next(commits, None) if not found.chunks else None
            if more is not None:
                await outbox.append(EVENTS_STREAM, more)  # after the read's snapshot
            return found

        outbox.store.read = read_then_commit  # type: ignore[method-assign]
        forwarder = Forwarder(outbox, edge_id="e", topic="t", batch_max_delay_s=0.0)
        sink = Acks(auto=True)
        await forward_all(outbox, forwarder, sink, 20)
    delivered_exactly_once(sink.payloads, 20)


async def test_many_small_commits_while_forwarding_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    """The live boundary under load: the writer commits a few events at a time while the
    forwarder reads right behind it on the reading connection."""
    bus: EventBus[object] = EventBus()
    async with Outbox(tmp_path / "o.db", synchronous="NORMAL") as outbox:
        forwarder = Forwarder(
            outbox, edge_id="e", topic="t", batch_max_events=8, batch_max_delay_s=0.0
        )
        sink = Acks(auto=True)
        task = asyncio.ensure_future(forwarder.run(sink))
        rng = random.Random(7)
        sent = 0
        try:
            async with OutboxWriter(outbox, bus) as writer:
                for _ in range(300):
                    count = rng.randint(1, 3)
                    bus.publish(pieces(sent, count))
                    sent += count
                    await writer.commit_now()
                    await asyncio.sleep(0)
            await wait_for(lambda: outbox.acked_seq(EVENTS_STREAM) >= sent, 20, "all delivered")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    delivered_exactly_once(sink.payloads, sent)


# --------------------------------------------------------------------------- plans across a break


def one_batch_id_per_event(payloads: list[bytes], last: int) -> None:
    """Every event 1..last went out, and always in the same batch (the MES drops a batch
    it has seen by its id, so an event sent under two ids reaches it twice)."""
    ids: dict[int, set[str]] = {}
    for payload in payloads:
        batch = decode_batch(payload)
        for event in batch.events:
            ids.setdefault(event.seq, set()).add(batch.batch_id)
    assert sorted(ids) == list(range(1, last + 1))
    twice = {seq: sorted(found) for seq, found in ids.items() if len(found) > 1}
    assert not twice, f"events sent under two batch ids: {dict(list(twice.items())[:3])}"


async def test_plans_saved_while_the_connection_breaks_are_never_overlapped(
    tmp_path: Path,
) -> None:
    """The connection breaks while a page's plans wait for the database (another writer
    holds it): the plans are still saved. The next connection must go on from them, not
    plan the same events again in other ranges; after a crash (the process gone, the
    plans on disk) every event goes out again under the one batch id it had."""
    path = tmp_path / "o.db"
    payloads: list[bytes] = []
    async with Outbox(path) as outbox:
        forwarder = Forwarder(
            outbox, edge_id="e", topic="t", batch_max_events=100, inflight_batches=1
        )
        # 1. A first connection sends 1..100; it breaks before the PUBACK.
        await outbox.append(EVENTS_STREAM, pieces(0, 100))
        first = Acks()
        task = asyncio.ensure_future(forwarder.run(first))
        await wait_for(lambda: len(first.pending) == 1, 10, "the first publish")
        first.pending[0].set_exception(BrokerError("connection lost"))
        with pytest.raises(BrokerError):
            await task
        await outbox.append(EVENTS_STREAM, pieces(100, 150))  # 101..250 while offline

        # 2. The next connection starts with 101..250 waiting (so its live events start at
        # 251); 251..400 come in before its first read, whose page then runs across that
        # boundary: 101..200, 201..250, 251..350, 351..400. Another connection holds the
        # database's write lock, so saving those plans waits; meanwhile the resend of
        # 1..100 fails.
        reading = outbox.store.read
        holder = sqlite3.connect(path, isolation_level=None)
        held = False

        async def commit_then_hold(fn: Callable[[sqlite3.Connection], Any], **options: Any) -> Any:
            nonlocal held
            if not held:
                held = True
                await outbox.append(EVENTS_STREAM, pieces(250, 150))
                holder.execute("BEGIN IMMEDIATE")
            return await reading(fn, **options)

        outbox.store.read = commit_then_hold  # type: ignore[method-assign]
        saving = asyncio.Event()
        save_plans = outbox.save_plans

        async def note_save(stream: str, plans: Any) -> None:
            saving.set()
            await save_plans(stream, plans)

        outbox.save_plans = note_save  # type: ignore[method-assign]
        second = Acks()
        task = asyncio.ensure_future(forwarder.run(second))
        await wait_for(lambda: saving.is_set() and len(second.pending) == 1, 10, "a blocked save")
        second.pending[0].set_exception(BrokerError("connection lost"))
        # Give the broken connection time to end; a forwarder that waits for its save
        # does not end before the lock goes (what is checked is the outcome below).
        await asyncio.wait([task], timeout=0.5)
        holder.execute("ROLLBACK")
        holder.close()
        with pytest.raises(BrokerError):
            await task
        outbox.store.read = reading  # type: ignore[method-assign]
        outbox.save_plans = save_plans  # type: ignore[method-assign]

        # 3. A third connection: two PUBACKs come in, then the process dies.
        third = Acks()
        task = asyncio.ensure_future(forwarder.run(third))
        await wait_for(lambda: len(third.pending) == 1, 10, "a publish")
        third.puback(0)
        await wait_for(lambda: len(third.pending) == 2, 10, "a publish")
        third.puback(1)
        await wait_for(lambda: len(third.pending) == 3, 10, "a publish")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        payloads += first.payloads + second.payloads + third.payloads

    # 4. After the restart, what was planned goes out again as planned.
    async with Outbox(path) as outbox:
        forwarder = Forwarder(outbox, edge_id="e", topic="t", batch_max_events=100)
        sink = Acks(auto=True)
        await forward_all(outbox, forwarder, sink, 400)
        payloads += sink.payloads
        assert await outbox.plans(EVENTS_STREAM) == []
    one_batch_id_per_event(payloads, 400)


async def test_overlapping_plans_left_on_disk_go_out_once(tmp_path: Path) -> None:
    """Plans overlapping each other (as an older version could leave them after a crash):
    the first is resent as planned, the ones overlapping it are dropped."""
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 300))
        epoch = outbox.epoch

        def overlapping(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO plans(stream, seq_first, seq_last, batch_id) VALUES (?, ?, ?, ?)",
                [
                    (EVENTS_STREAM, first, last, batch_id_for(epoch, first, last))
                    for first, last in [(1, 100), (51, 150), (101, 200), (151, 250)]
                ],
            )

        await outbox.store.run(overlapping)
    async with Outbox(path) as outbox:
        forwarder = Forwarder(outbox, edge_id="e", topic="t", batch_max_events=100)
        sink = Acks(auto=True)
        await forward_all(outbox, forwarder, sink, 300)
    batches = [decode_batch(p) for p in sink.payloads]
    assert [(b.seq_first, b.seq_last) for b in batches][:2] == [(1, 100), (101, 200)]
    one_batch_id_per_event(sink.payloads, 300)


# --------------------------------------------------------------------------- figures


def file_figures(path: Path, acked: int) -> tuple[int, int, int]:
    """(waiting rows, their bytes, every stored byte) of the events stream, from the file."""
    with sqlite3.connect(path) as conn:
        rows, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox "
            "WHERE stream = 'events' AND seq > ?",
            (acked,),
        ).fetchone()
        (stored,) = conn.execute(
            "SELECT COALESCE(SUM(length(payload)), 0) FROM outbox WHERE stream = 'events'"
        ).fetchone()
    return int(rows), int(size), int(stored)


@pytest.mark.parametrize("drop_while_in_flight", [False, True])
async def test_the_figures_stay_those_of_the_file_as_batches_are_acknowledged(
    tmp_path: Path, drop_while_in_flight: bool
) -> None:
    """The forwarder tells the outbox what it acknowledges (so a backlog is not counted
    twice); rows dropped by the cap while their batches are in flight are not counted
    as delivered twice."""
    path = tmp_path / "o.db"
    async with Outbox(path, max_bytes=40_000, policy=CapPolicy.DROP_OLDEST) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 300))
        forwarder = Forwarder(
            outbox, edge_id="e", topic="t", batch_max_events=50, inflight_batches=2
        )
        acks = Acks()
        task = asyncio.ensure_future(forwarder.run(acks))
        try:
            await wait_for(lambda: len(acks.pending) == 2, 10, "two publishes")
            if drop_while_in_flight:
                await outbox.append(EVENTS_STREAM, pieces(300, 200))  # over the cap
                assert outbox.dropped > 0
            acks.puback(0)
            acks.puback(1)
            await wait_for(lambda: outbox.acked_seq(EVENTS_STREAM) == 100, 10, "acknowledged")
            acked = outbox.acked_seq(EVENTS_STREAM)
            assert file_figures(path, acked) == (
                outbox.depth(EVENTS_STREAM),
                outbox.waiting_bytes,
                outbox.total_bytes,
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
