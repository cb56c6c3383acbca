"""The outbox on a real SQLite file: numbering, group commit, the disk cap, the memory bound,
batch plans, and the forwarder's exact resend after a crash.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.oee.events import PiecesCounted
from edge.errors import StateStoreError
from edge.event_bus import EventBus
from edge.forward.mqtt.connection import BrokerError
from edge.forward.mqtt.forwarder import Forwarder
from edge.state.outbox import (
    EVENTS_STREAM,
    BatchPlan,
    CapPolicy,
    Outbox,
    OutboxPolicyApplied,
    OutboxWriter,
    statistics_of,
)
from edge.wire import decode_batch, decode_envelope
from tests.integration.mqtt.helpers import wait_for


def pieces(start: int, count: int, machine: str = "M1") -> list[PiecesCounted]:
    return [
        PiecesCounted(machine, 1.7e9 + i, "total_count", i, None)
        for i in range(start, start + count)
    ]


async def stored(outbox: Outbox, stream: str = EVENTS_STREAM) -> list[tuple[int, Any]]:
    """(seq, piece count) per stored row; None for a row that is not PiecesCounted."""
    rows = [decode_envelope(r.payload) for r in await outbox.read(stream, 0, 1_000_000)]
    return [(e.seq, e.data["count"] if e.type == "PiecesCounted" else None) for e in rows]


async def test_sequence_numbers_persist_and_never_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        assert await outbox.append(EVENTS_STREAM, pieces(0, 3)) == (1, 3)
        epoch = outbox.epoch
        assert await outbox.acknowledge(EVENTS_STREAM, 3) == 3
        assert outbox.depth(EVENTS_STREAM) == 0
    async with Outbox(path) as outbox:
        # Everything was delivered and deleted; numbering goes on from 4 all the same.
        assert outbox.epoch == epoch
        assert outbox.last_seq(EVENTS_STREAM) == 3
        assert await outbox.append(EVENTS_STREAM, pieces(3, 2)) == (4, 5)
        assert await outbox.append("qmib", pieces(0, 1)) == (1, 1), "each stream its own"
        assert await stored(outbox) == [(4, 3), (5, 4)]
    with pytest.raises(StateStoreError, match="closed"):
        await outbox.append(EVENTS_STREAM, pieces(0, 1))
    with pytest.raises(StateStoreError, match="open it once"):
        await outbox.__aenter__()


async def test_the_writer_group_commits_in_bus_order_and_flushes_on_close(tmp_path: Path) -> None:
    bus: EventBus[Any] = EventBus()
    async with Outbox(tmp_path / "o.db") as outbox:
        writer = OutboxWriter(outbox, bus)
        async with writer:
            for chunk in range(5):
                bus.publish(pieces(chunk * 2000, 2000))  # 10,000 events before it even runs
        # close() committed everything still buffered
        assert outbox.last_seq(EVENTS_STREAM) == 10_000
        assert outbox.commits <= 2, "10,000 events need one or two transactions, not 10,000"
        rows = await stored(outbox)
        assert rows == [(i + 1, i) for i in range(10_000)]
        bus.publish(pieces(0, 1))  # unsubscribed: no longer stored
        assert writer.pending == 0 and outbox.last_seq(EVENTS_STREAM) == 10_000


async def test_routes_copy_chosen_types_to_their_stream_in_the_same_commit(
    tmp_path: Path,
) -> None:
    from actors.oee.events import Warning as EdgeWarning  # noqa: PLC0415

    bus: EventBus[Any] = EventBus()
    async with Outbox(tmp_path / "o.db") as outbox:
        async with OutboxWriter(outbox, bus, routes={"qmib": frozenset({"Warning"})}):
            bus.publish([*pieces(0, 2), EdgeWarning("M1", 5.0, "counter_reset", "reset")])
        assert outbox.last_seq(EVENTS_STREAM) == 3
        (row,) = await outbox.read("qmib", 0, 10)
        assert (row.seq, decode_envelope(row.payload).type) == (1, "Warning")


async def test_drop_oldest_keeps_the_newest_under_the_cap_and_reports_the_range(
    tmp_path: Path,
) -> None:
    bus: EventBus[Any] = EventBus()
    reports: list[OutboxPolicyApplied] = []
    bus.subscribe(
        "test",
        lambda events: reports.extend(e for e in events if isinstance(e, OutboxPolicyApplied)),
    )
    async with Outbox(tmp_path / "o.db", max_bytes=10_000) as outbox:
        async with OutboxWriter(outbox, bus, report_interval_s=60) as writer:
            for i in range(0, 400, 20):
                bus.publish(pieces(i, 20))
                await writer.flush()
            stats = statistics_of(outbox, writer)
        rows = await stored(outbox)
    assert stats.bytes <= 10_000 and stats.dropped > 0
    counts = [count for _seq, count in rows if count is not None]
    assert counts[-1] == 399 and counts == list(range(counts[0], 400)), "a newest suffix"
    # One report now (the first), the rest at close (interval 60 s): every drop reported.
    assert sum(r.count for r in reports) == stats.dropped
    assert reports[0].policy == "drop-oldest" and reports[0].seq_first == 1
    assert reports[-1].total == stats.dropped
    # Numbers are never reused: what is stored plus what the reports name as dropped
    # is exactly 1..last, and the reports themselves are stored (never dropped).
    seqs = [seq for seq, _count in rows]
    assert seqs == sorted(seqs)
    dropped = {
        seq
        for r in reports
        for seq in range(r.seq_first or 0, (r.seq_last or -1) + 1)
        if seq not in seqs
    }
    assert len(dropped) == stats.dropped
    assert dropped | set(seqs) == set(range(1, seqs[-1] + 1))
    assert len([count for _seq, count in rows if count is None]) == len(reports)


async def test_reject_new_keeps_the_oldest_and_numbers_only_what_it_keeps(
    tmp_path: Path,
) -> None:
    bus: EventBus[Any] = EventBus()
    reports: list[Any] = []
    bus.subscribe("test", reports.extend)
    async with Outbox(tmp_path / "o.db", max_bytes=10_000, policy=CapPolicy.REJECT_NEW) as outbox:
        async with OutboxWriter(outbox, bus, report_interval_s=60) as writer:
            bus.publish(pieces(0, 400))
            await writer.flush()
            kept = outbox.last_seq(EVENTS_STREAM) - 1  # the last one is the report
            assert 0 < kept < 400
            # Delivered and deleted: room again, and numbering goes on without a gap.
            await outbox.acknowledge(EVENTS_STREAM, outbox.last_seq(EVENTS_STREAM))
            bus.publish(pieces(1000, 3))
            await writer.flush()
            stats = statistics_of(outbox, writer)
        rows = await stored(outbox)
    assert stats.rejected == 400 - kept
    (report,) = [r for r in reports if isinstance(r, OutboxPolicyApplied)]
    assert (report.policy, report.count, report.seq_first) == ("reject-new", 400 - kept, None)
    assert rows == [(kept + 2, 1000), (kept + 3, 1001), (kept + 4, 1002)]


async def test_the_memory_bound_refuses_new_events_and_reports_them(tmp_path: Path) -> None:
    bus: EventBus[Any] = EventBus()
    reports: list[Any] = []
    bus.subscribe("test", reports.extend)
    async with Outbox(tmp_path / "o.db") as outbox:
        async with OutboxWriter(outbox, bus, max_pending=1000) as writer:
            bus.publish(pieces(0, 3000))  # the disk never got a chance: 1000 fit in memory
            await writer.flush()
            stats = statistics_of(outbox, writer)
        rows = await stored(outbox)
    assert stats.refused_memory == 2000
    assert [count for _seq, count in rows][:1000] == list(range(1000)), "the accepted ones"
    (report,) = [r for r in reports if isinstance(r, OutboxPolicyApplied)]
    assert (report.policy, report.count) == ("memory-full", 2000)


async def test_plans_survive_a_reopen_and_go_with_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 10))
        plans = [BatchPlan(1, 4, "e-1-4"), BatchPlan(5, 10, "e-5-10")]
        await outbox.save_plans(EVENTS_STREAM, plans)
    async with Outbox(path) as outbox:
        assert await outbox.plans(EVENTS_STREAM) == plans
        await outbox.acknowledge(EVENTS_STREAM, 4)
        assert await outbox.plans(EVENTS_STREAM) == plans[1:]
        assert [r.seq for r in await outbox.read_range(EVENTS_STREAM, 5, 10)] == list(range(5, 11))


class Recording:
    """The forwarder's publish seam: records what it sends; fails when told to."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.fail_after = fail_after
        self.stop_after: int | None = None
        self.done = asyncio.Event()

    async def __call__(self, topic: str, payload: bytes) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise BrokerError("the connection broke before the PUBACK")
        self.sent.append(payload)
        if self.stop_after is not None and len(self.sent) >= self.stop_after:
            self.done.set()


async def test_after_a_crash_the_same_batches_go_out_again_under_the_same_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path) as outbox:
        await outbox.append(EVENTS_STREAM, pieces(0, 25))
        forwarder = Forwarder(
            outbox, edge_id="edge-X", topic="t", batch_max_events=10, inflight_batches=2
        )
        broken = Recording(fail_after=1)  # the first publish is PUBACKed, the second fails
        with pytest.raises(BrokerError):
            await forwarder.run(broken)
        (first_try,) = [decode_batch(p) for p in broken.sent]
        assert (first_try.seq_first, first_try.seq_last) == (1, 10)
        planned = await outbox.plans(EVENTS_STREAM)
        assert [(p.seq_first, p.seq_last) for p in planned] == [(11, 20), (21, 25)]
        assert outbox.acked_seq(EVENTS_STREAM) == 10, "the PUBACKed batch is recorded"
        assert outbox.depth(EVENTS_STREAM) == 15, "nothing past it without its PUBACK"
        assert outbox.delivered_rows(EVENTS_STREAM) == 10, "delivered, not yet deleted"
    # "kill -9" here: a new process opens the same file.
    async with Outbox(path) as outbox:
        forwarder = Forwarder(
            outbox, edge_id="edge-X", topic="t", batch_max_events=10, inflight_batches=2
        )
        sink = Recording()
        sink.stop_after = 2
        task = asyncio.ensure_future(forwarder.run(sink))
        await asyncio.wait_for(sink.done.wait(), 5)
        await wait_for(lambda: outbox.depth(EVENTS_STREAM) == 0, 10, "drained")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        batches = [decode_batch(p) for p in sink.sent]
    assert [(b.batch_id, b.seq_first, b.seq_last) for b in batches] == [
        (f"{first_try.epoch}-11-20", 11, 20),
        (f"{first_try.epoch}-21-25", 21, 25),
    ]
    assert [b.historical for b in batches] == [True, True]
    assert [e.seq for b in batches for e in b.events] == list(range(11, 26)), "1..10 not again"
