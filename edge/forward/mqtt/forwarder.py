"""Store-and-forward: the outbox's ``events`` stream to the MES, in msgpack batches.

Per connection :meth:`Forwarder.run` loops: read the next rows after the
cursor, cut them into batches (at most ``batch_max_events`` events and
``batch_max_bytes`` bytes; a batch that is not full waits at most
``batch_max_delay_s`` for its first event), record the batches' ranges and ids
in the outbox (so a resend after a crash repeats them exactly), publish up to
``inflight_batches`` of them with QoS 1, and delete their rows once every
PUBACK is in. Strictly in order: one round at a time, and within a round the
broker receives the batches in the order they were published.

When a publish fails the connection is rebuilt by the caller; the batches not
yet acknowledged are sent first on the next connection, with the same ids, as
``historical``. Events that were already in the outbox when a connection came
up (an outage's backlog, a restart's leftovers) are ``historical`` too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from edge.state.outbox import EVENTS_STREAM, BatchPlan, Outbox, OutboxRow
from edge.wire import BatchHeader, batch_id_for, encode_batch

__all__ = ["Forwarder", "ForwarderStatistics", "Publish"]

log = logging.getLogger("edge.mqtt.forwarder")

# Publish one payload with QoS 1 and return once the broker acknowledged it;
# raises an edge.errors.ConnectorError when the connection failed.
Publish = Callable[[str, bytes], Awaitable[None]]


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
    envelopes: tuple[bytes, ...]
    historical: bool


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
        self._unacked: list[_Batch] = []
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
        outbox = self.outbox
        self._live_from = outbox.last_seq(self.stream) + 1
        if self._cursor is None:
            await self._load_plans()
        if self._unacked:
            resend = [_Batch(b.plan, b.envelopes, True) for b in self._unacked]
            self.batches_resent += len(resend)
            await self._send(publish, resend)
        while True:
            rows = await self._collect()
            batches = self._cut(rows)
            await outbox.save_plans(self.stream, [b.plan for b in batches])
            self._unacked = batches
            self._cursor = batches[-1].plan.seq_last
            await self._send(publish, batches)

    async def _load_plans(self) -> None:
        """Batches planned before a restart go out first, exactly as planned."""
        cursor = 0
        for plan in await self.outbox.plans(self.stream):
            rows = await self.outbox.read_range(self.stream, plan.seq_first, plan.seq_last)
            if [r.seq for r in rows] != list(range(plan.seq_first, plan.seq_last + 1)):
                continue  # partly dropped by the disk cap: its events go out in new batches
            self._unacked.append(_Batch(plan, tuple(r.payload for r in rows), True))
            cursor = plan.seq_last
        self._cursor = cursor
        if self._unacked:
            log.info(
                "resending batches planned before the restart",
                extra={"batches": len(self._unacked), "seq_last": cursor},
            )

    async def _collect(self) -> list[OutboxRow]:
        """The next rows: a full batch, a backlog, or a partial batch that waited long enough."""
        outbox, stream = self.outbox, self.stream
        limit = self.batch_max_events * self.inflight_batches
        max_bytes = self.batch_max_bytes * self.inflight_batches
        while True:
            cursor = self._cursor or 0
            rows = await outbox.read(stream, cursor, limit, max_bytes=max_bytes)
            if not rows:
                if outbox.last_seq(stream) > cursor:
                    # Dropped by the disk cap before they were sent: the MES sees the gap
                    # in seq, and the outbox reported it as an OutboxPolicyApplied event.
                    self._cursor = outbox.last_seq(stream)
                    continue
                await outbox.wait_appended(stream, cursor)
                continue
            age = self._clock() - rows[0].created
            if (
                len(rows) >= self.batch_max_events
                or rows[0].seq < self._live_from
                or age >= self.batch_max_delay_s
            ):
                return rows
            # Not full yet: wait for more, at most until the first event is old enough.
            await outbox.wait_appended(stream, rows[-1].seq, self.batch_max_delay_s - age)

    def _cut(self, rows: Sequence[OutboxRow]) -> list[_Batch]:
        epoch = self.outbox.epoch
        batches: list[_Batch] = []
        current: list[OutboxRow] = []
        size = 0

        def close() -> None:
            first, last = current[0].seq, current[-1].seq
            plan = BatchPlan(first, last, batch_id_for(epoch, first, last))
            batches.append(_Batch(plan, tuple(r.payload for r in current), first < self._live_from))

        for row in rows:
            if current and (
                len(current) >= self.batch_max_events
                or size + len(row.payload) > self.batch_max_bytes
                or row.seq != current[-1].seq + 1
                or (current[-1].seq < self._live_from <= row.seq)
            ):
                close()
                current, size = [], 0
            current.append(row)
            size += len(row.payload)
        if current:
            close()
        return batches

    async def _send(self, publish: Publish, batches: Sequence[_Batch]) -> None:
        now = self._clock()
        payloads = [
            encode_batch(
                BatchHeader(
                    edge_id=self.edge_id,
                    epoch=self.outbox.epoch,
                    batch_id=b.plan.batch_id,
                    seq_first=b.plan.seq_first,
                    seq_last=b.plan.seq_last,
                    count=len(b.envelopes),
                    historical=b.historical,
                    sent_at=now,
                ),
                b.envelopes,
            )
            for b in batches
        ]
        # Tasks start in order, so the client hands the packets to the socket in order.
        tasks = [asyncio.ensure_future(publish(self.topic, payload)) for payload in payloads]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        last = batches[-1].plan.seq_last
        await self.outbox.acknowledge(self.stream, last)
        self._unacked = []
        self.last_acked_seq = last
        self.last_sent_at = now
        self.batches_sent += len(batches)
        self.events_sent += sum(len(b.envelopes) for b in batches)
        self.historical_batches += sum(1 for b in batches if b.historical)
