"""Store-and-forward: the outbox's ``events`` stream to the MES, in msgpack batches.

Per connection :meth:`Forwarder.run` keeps a pipeline of four loops busy:

- **read**: the next rows after the cursor, a page of batches at a time, on
  the outbox's reading connection (SQLite joins each batch's stored envelopes,
  the bytes that go on the wire: nothing is decoded or encoded per event, and
  no Python object is made per event). Batches hold at most
  ``batch_max_events`` events and ``batch_max_bytes`` bytes; a batch that is
  not full waits at most ``batch_max_delay_s`` for its first event. It reads
  ahead while earlier pages are recorded and sent, up to ``READ_AHEAD_BYTES``.
- **plan**: record the batches' ranges and ids in the outbox, what was read
  meanwhile in one commit (so a resend after a crash repeats them exactly).
  A recording is not cancelled with the connection: what is recorded is sent
  first on the next one, so an event is never recorded in two ranges.
- **send**: publish the planned batches in order with QoS 1, keeping up to
  ``inflight_batches`` without their PUBACK: the next batch goes as soon as a
  PUBACK comes in (a sliding window; waiting for a whole round of PUBACKs
  before the next round costs a TCP delayed-ACK stall per round, the broker's
  PUBACKs being small packets).
- **acknowledge**: move the outbox's delivered cursor past the batches whose
  PUBACK is in (and every one before them), one commit for the PUBACKs that
  arrive within ``ACK_INTERVAL_S`` (at once when nothing else is in flight and
  nothing waits to be sent), telling the outbox how many rows and bytes that
  is. The rows are purged later, when there is nothing to send
  (:meth:`~edge.state.outbox.Outbox.purge`).

So a row is marked delivered only after its PUBACK, and after a crash only
batches without a recorded PUBACK go out again. Strictly in order: the broker
receives the batches in the order of their sequence numbers.

When a publish fails the connection is rebuilt by the caller; the batches not
yet acknowledged are sent first on the next connection, with the same ids, as
``historical``. Events that were already in the outbox when a connection came
up (an outage's backlog, a restart's leftovers) are ``historical`` too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge.errors import StateStoreError
from edge.state.outbox import EVENTS_STREAM, BatchPlan, Delivered, Outbox, OutboxChunk
from edge.wire import BatchHeader, batch_id_for, encode_batch_packed

__all__ = ["Forwarder", "ForwarderStatistics", "Publish"]

log = logging.getLogger("edge.mqtt.forwarder")

# Publish one payload with QoS 1 and return once the broker acknowledged it;
# raises an edge.errors.ConnectorError when the connection failed.
Publish = Callable[[str, bytes], Awaitable[None]]

# Batches read per outbox read of a backlog: as many as the outbox joins in one
# statement. Each read waits for the GIL a few times while the event loop is busy
# sending, so fewer, bigger reads keep the window fuller (measured: 60 a read drains
# ~15 % faster than 32). The first read of a connection takes one window, so the
# first batches go out as soon as possible.
PAGE_BATCHES = 60
# Bytes read ahead of the sending (read or planned, not yet published): enough for the
# window to stay full while plans commit (an fsync takes up to ~25 ms here, the broker
# takes a 48 KB batch in ~0.1 ms, and a window that runs dry stalls on TCP delayed
# ACKs), little enough for a small line PC. Reads stop beyond it (one page may pass it).
READ_AHEAD_BYTES = 8 << 20
# PUBACKs that come in within this time are recorded in one commit, unless nothing is
# left in flight: a commit per handful of PUBACKs costs the sending more than the
# fsyncs' wait (a crash resends at most this much, under the same ids).
ACK_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class ForwarderStatistics:
    batches_sent: int
    events_sent: int
    batches_resent: int
    historical_batches: int
    last_acked_seq: int
    unacked_batches: int
    last_sent_at: float | None


@dataclass(frozen=True, slots=True)
class _Batch:
    plan: BatchPlan
    envelopes: bytes  # back to back, as stored
    historical: bool
    drops: int  # the outbox's drops of the stream before the rows were read

    @property
    def count(self) -> int:
        return self.plan.seq_last - self.plan.seq_first + 1


class Forwarder:
    """Sends one outbox stream as batches; its state survives reconnects."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        edge_id: str,
        topic: str,
        batch_max_events: int = 500,
        batch_max_delay_s: float = 0.2,
        batch_max_bytes: int = 1 << 20,
        inflight_batches: int = 4,
        stream: str = EVENTS_STREAM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.edge_id = edge_id
        self.topic = topic
        self.batch_max_events = batch_max_events
        self.batch_max_delay_s = batch_max_delay_s
        self.batch_max_bytes = batch_max_bytes
        self.inflight_batches = inflight_batches
        self.stream = stream
        self._clock = clock
        # Planned (recorded in the outbox) and not yet acknowledged there, in order.
        self._unacked: collections.deque[_Batch] = collections.deque()
        self._cursor: int | None = None  # last seq put in a batch; None: not loaded yet
        self._live_from = 1
        self.batches_sent = 0
        self.events_sent = 0
        self.batches_resent = 0
        self.historical_batches = 0
        self.last_acked_seq = 0
        self.last_sent_at: float | None = None

    def statistics(self) -> ForwarderStatistics:
        return ForwarderStatistics(
            batches_sent=self.batches_sent,
            events_sent=self.events_sent,
            batches_resent=self.batches_resent,
            historical_batches=self.historical_batches,
            last_acked_seq=self.last_acked_seq,
            unacked_batches=len(self._unacked),
            last_sent_at=self.last_sent_at,
        )

    @property
    def caught_up(self) -> bool:
        """Everything committed so far is acknowledged by the broker."""
        return not self._unacked and self.outbox.depth(self.stream) == 0

    async def run(self, publish: Publish) -> None:
        """Forward until ``publish`` raises (the connection broke) or the task is cancelled."""
        self._live_from = self.outbox.last_seq(self.stream) + 1
        if self._cursor is None:
            await self._load_plans()
        self._drop_delivered()  # a commit that finished after the last connection ended
        await _Session(self, publish).run()

    async def _load_plans(self) -> None:
        """Batches planned before a restart go out first, exactly as planned."""
        cursor = self.outbox.acked_seq(self.stream)
        for plan in await self.outbox.plans(self.stream):
            if plan.seq_first <= cursor:
                # Overlaps what was delivered or is planned before it (a plan saved by
                # an older version while its connection broke, never sent): dropped, so
                # no event goes out in two batches; the next save deletes it.
                continue
            drops = self.outbox.drops(self.stream)
            rows = await self.outbox.read_range(self.stream, plan.seq_first, plan.seq_last)
            if [r.seq for r in rows] != list(range(plan.seq_first, plan.seq_last + 1)):
                continue  # partly dropped by the disk cap: its events go out in new batches
            self._unacked.append(_Batch(plan, b"".join(r.payload for r in rows), True, drops))
            cursor = plan.seq_last
        self._cursor = cursor
        if self._unacked:
            log.info(
                "resending batches planned before the restart",
                extra={"batches": len(self._unacked), "seq_last": cursor},
            )

    async def _next_page(self, cursor: int, batches: int) -> list[_Batch]:
        """Up to ``batches`` batches after ``cursor``: full ones, a backlog, or a partial one
        that waited long enough."""
        outbox, stream = self.outbox, self.stream
        while True:
            found = await outbox.read_chunks(
                stream,
                cursor,
                chunks=batches,
                max_rows=self.batch_max_events,
                max_bytes=self.batch_max_bytes,
                boundary=self._live_from,
            )
            chunks = found.chunks
            if not chunks:
                if found.dropped_to is not None:
                    # Dropped by the disk cap before they were sent: the MES sees the gap
                    # in seq, and the outbox reported it as an OutboxPolicyApplied event.
                    # (Not outbox.last_seq: it may count a commit this read did not see.)
                    cursor = found.dropped_to
                    continue
                await outbox.wait_appended(stream, cursor)
                continue
            age = self._clock() - found.created
            if (
                sum(c.count for c in chunks) >= self.batch_max_events
                or chunks[0].seq_first < self._live_from
                or age >= self.batch_max_delay_s
            ):
                return [self._batch(c, found.drops) for c in chunks]
            # Not full yet: wait for more, at most until the first event is old enough.
            await outbox.wait_appended(stream, chunks[-1].seq_last, self.batch_max_delay_s - age)

    async def _record(self, batches: list[_Batch]) -> None:
        """Save the plans of ``batches`` and take them on: from now on they go out as planned."""
        await self.outbox.save_plans(self.stream, [b.plan for b in batches])
        self._unacked.extend(batches)
        self._cursor = batches[-1].plan.seq_last

    def _batch(self, chunk: OutboxChunk, drops: int) -> _Batch:
        first, last = chunk.seq_first, chunk.seq_last
        plan = BatchPlan(first, last, batch_id_for(self.outbox.epoch, first, last))
        return _Batch(plan, chunk.payload, first < self._live_from, drops)

    def _encode(self, batch: _Batch) -> bytes:
        plan = batch.plan
        header = BatchHeader(
            edge_id=self.edge_id,
            epoch=self.outbox.epoch,
            batch_id=plan.batch_id,
            seq_first=plan.seq_first,
            seq_last=plan.seq_last,
            count=batch.count,
            historical=batch.historical,
            sent_at=self._clock(),
        )
        return encode_batch_packed(header, batch.envelopes)

    async def _acknowledged(self, upto: int) -> None:
        """The broker has every batch up to ``upto``: record it (one commit)."""
        await self.outbox.acknowledge(self.stream, upto, self._delivered(upto))
        self._drop_delivered()

    def _delivered(self, upto: int) -> Delivered | None:
        """What this forwarder read of the rows after the delivered cursor up to ``upto``,
        when its batches run without a gap from the cursor to ``upto`` (each batch holds
        every seq of its range); None (the outbox counts) otherwise."""
        after = end = self.outbox.acked_seq(self.stream)
        rows = size = 0
        drops: int | None = None
        for batch in self._unacked:
            if batch.plan.seq_last > upto:
                break
            if batch.plan.seq_first != end + 1:
                return None  # a gap (dropped rows) or an overlap: not known here
            end = batch.plan.seq_last
            rows += batch.count
            size += len(batch.envelopes)
            drops = batch.drops if drops is None else min(drops, batch.drops)
        if drops is None or end != upto:
            return None
        return Delivered(after, rows, size, drops)

    def _drop_delivered(self) -> None:
        acked = self.outbox.acked_seq(self.stream)
        unacked = self._unacked
        while unacked and unacked[0].plan.seq_last <= acked:
            batch = unacked.popleft()
            self.batches_sent += 1
            self.events_sent += batch.count
            self.historical_batches += batch.historical
            self.last_acked_seq = batch.plan.seq_last
            self.last_sent_at = self._clock()


class _Session:
    """One connection's pipeline: read -> plan -> send -> acknowledge, each its own loop."""

    def __init__(self, forwarder: Forwarder, publish: Publish) -> None:
        self.forwarder = forwarder
        self.publish = publish
        # Read, not yet recorded: a page at a time.
        self.read: asyncio.Queue[list[_Batch]] = asyncio.Queue()
        # Recorded, not yet started.
        self.planned: asyncio.Queue[_Batch] = asyncio.Queue()
        self.ahead = 0  # bytes of the batches in ``read`` and ``planned``
        self.room = asyncio.Event()  # ahead < READ_AHEAD_BYTES
        self.room.set()
        self.window = asyncio.Semaphore(forwarder.inflight_batches)
        self.in_flight = 0  # publishes without their PUBACK (or failure) yet
        self.idle = asyncio.Event()  # nothing in flight, nothing planned waits for the window
        self.idle.set()
        # Started publishes in order, until their PUBACK is recorded in the outbox.
        self.sent: collections.deque[tuple[_Batch, asyncio.Task[None]]] = collections.deque()
        self.started = asyncio.Event()
        self.recording: asyncio.Future[None] | None = None  # the last plans being saved

    async def run(self) -> None:
        loops = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._plan()),
            asyncio.ensure_future(self._send()),
            asyncio.ensure_future(self._acknowledge()),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            for loop in done:
                loop.result()  # the loops end only by raising
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self.recording is not None:
                # Plans being saved when the connection broke are saved (the save is
                # shielded) and taken on before the next connection plans anything.
                with contextlib.suppress(StateStoreError):
                    await self.recording
            publishing = [task for _batch, task in self.sent]
            for task in publishing:
                task.cancel()
            await asyncio.gather(*publishing, return_exceptions=True)
            await self._settle()

    async def _read(self) -> None:
        forwarder = self.forwarder
        cursor = forwarder._cursor or 0
        page = forwarder.inflight_batches
        while True:
            await self.room.wait()
            batches = await forwarder._next_page(cursor, page)
            page = max(forwarder.inflight_batches, PAGE_BATCHES)
            cursor = batches[-1].plan.seq_last
            self._ahead(sum(len(b.envelopes) for b in batches))
            self.read.put_nowait(batches)

    def _ahead(self, size: int) -> None:
        self.ahead += size
        if self.ahead < READ_AHEAD_BYTES:
            self.room.set()
        else:
            self.room.clear()

    async def _plan(self) -> None:
        forwarder = self.forwarder
        # Planned on an earlier connection (or before a restart): first, same ids.
        for batch in list(forwarder._unacked):
            forwarder.batches_resent += 1
            self._ahead(len(batch.envelopes))
            self.planned.put_nowait(_Batch(batch.plan, batch.envelopes, True, batch.drops))
        while True:
            batches = await self.read.get()
            while not self.read.empty():  # read meanwhile: recorded in the same commit
                batches += self.read.get_nowait()
            # Not cancelled with the connection: saved plans are plans this forwarder
            # sends, never ones it would plan again in other ranges.
            self.recording = asyncio.ensure_future(forwarder._record(batches))
            await asyncio.shield(self.recording)
            for batch in batches:
                self.planned.put_nowait(batch)

    async def _send(self) -> None:
        forwarder = self.forwarder
        while True:
            # The window first: a batch is taken only when it goes out, so an empty
            # ``planned`` means nothing waits to be sent.
            await self.window.acquire()
            batch = await self.planned.get()
            # Tasks start in order, so the client hands the packets to the socket in order.
            task = asyncio.ensure_future(self.publish(forwarder.topic, forwarder._encode(batch)))
            task.add_done_callback(self._published)
            self.in_flight += 1
            self.idle.clear()
            self.sent.append((batch, task))
            self.started.set()
            self._ahead(-len(batch.envelopes))

    async def _acknowledge(self) -> None:
        forwarder, sent = self.forwarder, self.sent
        outbox = forwarder.outbox
        while True:
            while not sent:
                self.started.clear()
                if not forwarder._unacked and outbox.delivered_rows(forwarder.stream):
                    # Nothing to send: delete delivered rows, a chunk at a time.
                    await outbox.purge(forwarder.stream)
                    continue
                await self.started.wait()
            await sent[0][1]  # raises what the publish raised: the connection broke
            await self._more_pubacks()
            upto = self._acknowledged_prefix()
            await forwarder._acknowledged(upto)
            while sent and sent[0][0].plan.seq_last <= upto:
                sent.popleft()

    def _published(self, _task: asyncio.Task[None]) -> None:
        self.window.release()
        self.in_flight -= 1
        # Not when planned batches wait: the PUBACKs of a whole window often come in one
        # read, and the next batches go out at once.
        if not self.in_flight and self.planned.empty():
            self.idle.set()

    async def _more_pubacks(self) -> None:
        """For ``ACK_INTERVAL_S``, or until no publish is in flight (the last PUBACKs of a
        backlog, a live batch: recorded at once). One wake, not one per PUBACK."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_INTERVAL_S):
                await self.idle.wait()

    def _acknowledged_prefix(self) -> int:
        """The last seq of the run of PUBACKed batches at the head of ``sent`` (0: none)."""
        upto = 0
        for batch, task in self.sent:
            if not task.done() or task.cancelled() or task.exception() is not None:
                break
            upto = batch.plan.seq_last
        return upto

    async def _settle(self) -> None:
        """The connection ended: record the PUBACKs that came in, so they are not resent."""
        upto = self._acknowledged_prefix()
        if upto:
            # Not recorded: those batches go again under the same ids, which the MES drops.
            with contextlib.suppress(StateStoreError):
                await self.forwarder._acknowledged(upto)
