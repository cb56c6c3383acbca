"""The durable outbox: every event bound for the MES and QMIB, numbered and kept on disk.

::

    bus ─callback─► OutboxWriter (memory) ─group commit─► Outbox (state.db, WAL)
                         ▲                                  ├ stream "events" ─► MQTT forwarder
             cut: the line's state (edge.state.cut)               ├ stream "qmib"   ─► QMIB delivery
                                                            └ snapshots (edge.state.store)

- **One transaction.** The writer stores, in one transaction, every event
  published so far and a cut of the line's state taken at that same moment
  (machines, orders, stations: :mod:`edge.state.cut`). What a restart restores is
  therefore exactly the state after the last event committed for the MES.
  Without a consumer (MQTT and QMIB off) no events are stored, only the state.
- **Streams.** Rows live in named streams; each stream has its own persisted
  64-bit sequence (1, 2, 3, ...) and its own consumer. ``acknowledge`` moves
  the stream's delivered cursor (``meta``), never past a row not yet
  delivered; delivered rows are deleted later, by ``purge`` (the consumer
  calls it when it has nothing to send) or by a commit that needs their
  room under the disk cap, so draining a backlog costs no deletes on the way.
  Reads never return a delivered row. ``events`` carries every domain
  event for the MES (its ``seq`` is the edge's event sequence number);
  ``qmib`` carries the event types QMIB takes (completed batch records).
- **Group commit.** The bus callback only buffers; the writer commits whatever
  accumulated in one transaction, so a burst of events costs one fsync. A
  sequence number is stored in the transaction that stores the event, so a
  crash never leaves a gap: what was committed is numbered, what was not is not.
- **Disk cap.** ``max_bytes`` bounds the stored event bytes. When a commit would
  exceed it, ``drop-oldest`` deletes the oldest rows of the stream (keeping the
  newest; the MES sees the gap in ``seq``) and ``reject-new`` refuses the new
  events (keeping the oldest). Either way it is counted (``statistics()``),
  logged, and reported as an :class:`OutboxPolicyApplied` event on the bus,
  which the outbox stores too. Reports (and :class:`~edge.state.store.StateReset`)
  are exempt from the cap: never refused, never dropped (so the MES learns of
  every drop), and reports are rate-limited to one per ``report_interval_s``
  per stream and policy.
- **Memory bound.** The buffer between the bus and the disk holds at most
  ``max_pending_events``; beyond that (the disk stalled) new events are
  refused, counted and reported the same way. Events already buffered are
  kept until committed; a failing commit is retried, never dropped.
- **Batch plans.** A consumer records the batches it is about to send (their
  ranges and ids) before sending them, so after a crash the same ranges go
  out again under the same ids (the MES drops duplicates by batch id).

Errors are :class:`~edge.errors.StateStoreError` from ``sqlite3.Error``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import functools
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from edge.errors import EdgeError, StateStoreError
from edge.event_bus import EventBus
from edge.logs import OutageLog
from edge.state.store import (
    DELETE_SNAPSHOT,
    UPSERT_SNAPSHOT,
    SnapshotRow,
    StateReset,
    StateStore,
)
from edge.wire import WireError, envelope, envelope_packer

if TYPE_CHECKING:
    from edge.state.cut import CutSources

__all__ = [
    "EVENTS_STREAM",
    "QMIB_STREAM",
    "BatchPlan",
    "CapPolicy",
    "ChunkedRead",
    "Delivered",
    "Outbox",
    "OutboxChunk",
    "OutboxPolicyApplied",
    "OutboxRow",
    "OutboxStatistics",
    "OutboxWriter",
    "StreamStatistics",
]

log = logging.getLogger("edge.outbox")

EVENTS_STREAM = "events"
QMIB_STREAM = "qmib"

# When drop-oldest frees space it frees this share of the cap beyond what the
# commit needs, so a full outbox does not run a delete with every commit.
_DROP_SLACK = 0.01
# How often the writer saves the line's state when only time advanced (no events).
PERSIST_INTERVAL_S = 1.0

_INSERT = "INSERT INTO outbox(stream, seq, created, payload, keep) VALUES (?, ?, ?, ?, ?)"
# Delivered rows one purge transaction deletes at most (about 15 ms of the database thread),
# so a commit of the line's state never waits long behind one.
PURGE_CHUNK = 20_000

# The streams that have rows, by a skip scan of the primary key (not a scan of every row).
_STREAMS = (
    "WITH RECURSIVE s(stream) AS (SELECT MIN(stream) FROM outbox UNION ALL "
    "SELECT (SELECT MIN(stream) FROM outbox WHERE stream > s.stream) FROM s "
    "WHERE s.stream IS NOT NULL) SELECT stream FROM s WHERE stream IS NOT NULL"
)
# A chunk's rows in one statement: SQLite joins the payloads in C, without the GIL,
# instead of handing each row to Python. group_concat joins in scan order, which for a
# range of the primary key is key order; SQLite 3.44 can also say so explicitly.
_ORDERED = " ORDER BY seq" if sqlite3.sqlite_version_info >= (3, 44, 0) else ""
_PAGE_HEAD = "SELECT seq, created FROM outbox WHERE stream = ? AND seq > ? ORDER BY seq LIMIT 1"
# COUNT(*) tells a chunk that holds every row of its range (the usual case) without
# MAX(seq), which costs a fifth of the read; the last seq is looked up only for a
# chunk that does not (the rows end in it, or a gap), by the index.
_CHUNK_OF = (
    "SELECT ? AS i, COUNT(*), "
    f"CAST(group_concat(payload, ''{_ORDERED}) AS BLOB) "
    "FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ?"
)
_TOP_OF = "SELECT MAX(seq) FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ?"


_PLANS_PER_INSERT = 250


@functools.cache
def _insert_plans(rows: int) -> str:
    return (
        "INSERT OR REPLACE INTO plans(stream, seq_first, seq_last, batch_id) VALUES "
        + ", ".join(["(?, ?, ?, ?)"] * rows)
    )


@functools.cache
def _page_query(chunks: int) -> str:
    """``chunks`` chunks in one statement, a row each: (i, rows, payloads)."""
    return " UNION ALL ".join([_CHUNK_OF] * chunks)


_RANGE = "FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ?"


# SQLite joins at most 64 tables: the head and this many chunks.
_BACKLOG_PAGE_CHUNKS = 63


@functools.cache
def _backlog_page_query(chunks: int) -> str:
    """A page of a backlog in one statement and one row: (created of its first row, then
    each chunk's row count and payloads).

    One statement, so one snapshot without a transaction around it, and one row: every
    statement and row hands the GIL to the reading thread and back, which costs a busy
    event loop more than the reading itself. Each chunk counts its rows in the scan
    that joins them (a separate COUNT of the page would scan it twice). No row when
    the page's first row is not stored."""
    columns = ", ".join(f"c{i}.n, c{i}.p" for i in range(chunks))
    joined = ", ".join(
        f"(SELECT COUNT(*) AS n, CAST(group_concat(payload, ''{_ORDERED}) AS BLOB) AS p "
        f"{_RANGE}) AS c{i}"
        for i in range(chunks)
    )
    return (
        f"SELECT head.created, {columns} "
        f"FROM (SELECT created FROM outbox WHERE stream = ? AND seq = ?) AS head, {joined}"
    )


class CapPolicy(enum.Enum):
    DROP_OLDEST = "drop-oldest"
    REJECT_NEW = "reject-new"


class OutboxState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OutboxPolicyApplied:
    """Events were dropped or refused: the disk cap or the memory bound was reached.

    ``policy`` is ``drop-oldest`` (stored events deleted: ``seq_first..seq_last``
    of ``stream`` are gone, but for earlier reports in that range),
    ``reject-new`` (new events refused before they were numbered) or
    ``memory-full`` (the disk fell behind; new events refused).
    ``count`` is since the previous report; ``total`` since the outbox opened.
    """

    machine_id: str  # "" : the line's edge itself
    ts: float
    stream: str
    policy: str
    count: int
    seq_first: int | None
    seq_last: int | None
    total: int


# Never refused by the cap or the memory bound, never dropped by their own commit.
_EXEMPT: frozenset[type] = frozenset({OutboxPolicyApplied, StateReset})


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    created: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxChunk:
    """Consecutive rows ``seq_first..seq_last`` (no gap), their payloads back to back."""

    seq_first: int
    seq_last: int
    payload: bytes

    @property
    def count(self) -> int:
        return self.seq_last - self.seq_first + 1


@dataclass(frozen=True, slots=True)
class ChunkedRead:
    """What :meth:`Outbox.read_chunks` found: chunks in order, and when the first was stored."""

    chunks: tuple[OutboxChunk, ...]
    created: float  # of the first row (0.0 when nothing was found)
    # Nothing waits after ``after_seq``, yet numbers up to this one were handed out as
    # of the same read: those rows were dropped (the disk cap). None: nothing skipped.
    # Taken in the read's own transaction: the sequence in memory may already count a
    # commit the read did not see, and skipping to it would lose that commit's events.
    dropped_to: int | None = None
    # :meth:`Outbox.drops` before the read: while it is unchanged, every row read is stored.
    drops: int = 0


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a consumer acknowledges, as it read it: the ``rows`` rows (of ``size`` bytes)
    after seq ``after``, read when :meth:`Outbox.drops` of the stream was ``drops``.

    :meth:`Outbox.acknowledge` need not count them again; it does when rows were
    dropped since, or the delivered cursor is no longer at ``after``."""

    after: int
    rows: int
    size: int
    drops: int


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch a consumer is about to send: its range and its id."""

    seq_first: int
    seq_last: int
    batch_id: str


# (stream, type name, packed data map (edge.wire.pack_event), exempt): exempt entries
# (policy reports) are never refused and never dropped by their own commit.
Entry = tuple[str, str, bytes, bool]
_ROW_WIDTH = 5  # a row to insert is (stream, seq, created, envelope, keep), kept flat
# Rows per INSERT statement: many rows per statement cost SQLite (and the GIL hand-offs
# around each step) far less per row than executemany's one row per step.
_ROWS_PER_INSERT = 200
_INSERT_MANY = "INSERT INTO outbox(stream, seq, created, payload, keep) VALUES " + ", ".join(
    ["(?, ?, ?, ?, ?)"] * _ROWS_PER_INSERT
)


@dataclass(slots=True)
class _Tally:
    count: int = 0
    first: int | None = None
    last: int | None = None


@dataclass(slots=True)
class _AppendOutcome:
    """What one commit did, per stream."""

    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # count, first, last
    unencodable: list[tuple[str, str]] = field(default_factory=list)  # (type name, error)


@dataclass(slots=True)
class _Prepared:
    """A commit built on the event loop, before it goes to the database thread."""

    now: float
    params: list[Any]  # the rows to insert, flat: _ROW_WIDTH values each
    sizes: dict[str, list[int]]  # stream -> [rows, bytes] of ``params``
    next_seq: dict[str, int]
    budget: int  # bytes the cap still allows (reject-new refuses beyond it)
    need: int  # bytes over the cap (drop-oldest frees them in the transaction)
    purge: bool  # delete every delivered row in the transaction: the cap needs their room
    outcome: _AppendOutcome
    snapshots: Mapping[str, SnapshotRow]


@dataclass(slots=True)
class _Done:
    """What the transaction did, for the in-memory figures."""

    sizes: dict[str, list[int]]
    freed: dict[str, tuple[int, int]]  # stream -> (rows, bytes) deleted
    oldest: dict[str, float | None]  # streams whose oldest row changed
    purged: list[str]  # streams whose delivered rows were deleted


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    depth: int  # rows waiting for their consumer
    bytes: int  # of those rows
    last_seq: int  # the last number handed out (0: none yet)
    oldest_age_s: float | None  # how long the oldest waiting row has waited


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    path: str
    policy: str
    max_bytes: int
    bytes: int  # stored: waiting rows and delivered ones not yet purged (what the cap bounds)
    streams: Mapping[str, StreamStatistics]
    appended: int  # events stored since open
    commits: int
    dropped: int  # drop-oldest: stored events deleted
    rejected: int  # reject-new: events refused
    refused_memory: int  # memory bound: events refused before the disk
    pending: int  # in memory, waiting for the next commit
    reports: int  # OutboxPolicyApplied events published
    unencodable: int  # events that are not dataclasses of plain data (a bug; logged)


class Outbox:
    """The event streams of the state database.

    ``Outbox(store)`` works on an open :class:`StateStore` (the line's); given a
    path it opens a store of its own there. ``async with``; refuses reuse after close.
    """

    def __init__(
        self,
        store: StateStore | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        max_bytes: int = 1 << 30,
        policy: CapPolicy = CapPolicy.DROP_OLDEST,
    ) -> None:
        self._owns_store = not isinstance(store, StateStore)
        self.store = (
            store if isinstance(store, StateStore) else StateStore(store, synchronous=synchronous)
        )
        self.path = self.store.path
        self.synchronous = self.store.synchronous
        self.max_bytes = max_bytes
        self.policy = policy
        self.state = OutboxState.UNOPENED
        self.epoch = ""
        self._lock = asyncio.Lock()  # one write transaction at a time, figures kept in step
        self._next_seq: dict[str, int] = {}
        self._depth: dict[str, int] = {}  # rows waiting (after the delivered cursor)
        self._bytes: dict[str, int] = {}  # their bytes
        self._acked: dict[str, int] = {}  # the delivered cursor: rows up to it are delivered
        self._delivered: dict[str, tuple[int, int]] = {}  # (rows, bytes) delivered, not purged
        self._oldest: dict[str, float | None] = {}
        self._drops: dict[str, int] = {}  # commits that dropped waiting rows (the disk cap)
        self._signals: dict[str, asyncio.Event] = {}
        self.appended = 0
        self.commits = 0
        self.dropped = 0
        self.rejected = 0
        self.snapshot_rows = 0  # state rows written (saved or deleted) since open

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not OutboxState.UNOPENED:
            raise StateStoreError(f"outbox {self.path} is {self.state.value}; open it once")
        try:
            if self._owns_store:
                await self.store.__aenter__()
            await self._load()
        except BaseException:
            self.state = OutboxState.CLOSED
            if self._owns_store:
                await self.store.close()
            raise
        self.state = OutboxState.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.state is OutboxState.OPEN:
            async with self._lock:
                self.state = OutboxState.CLOSED
                if self._owns_store:
                    await self.store.close()
        self.state = OutboxState.CLOSED
        for signal in self._signals.values():
            signal.set()  # wake waiters so they see the closed state

    async def _load(self) -> None:
        def load(conn: sqlite3.Connection) -> tuple[str, dict[str, Any], list[Any]]:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            epoch = meta.get("epoch")
            if not isinstance(epoch, str) or not epoch:
                epoch = uuid.uuid4().hex[:12]
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch', ?)", (epoch,)
                )
            streams = []
            for (stream,) in conn.execute(_STREAMS).fetchall():
                acked = meta.get(f"acked:{stream}", 0)
                for delivered, where in ((True, "seq <= ?"), (False, "seq > ?")):
                    count, size, last = conn.execute(
                        "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0), MAX(seq) "
                        f"FROM outbox WHERE stream = ? AND {where}",
                        (stream, acked),
                    ).fetchone()
                    if count:
                        oldest = None if delivered else _oldest_created(conn, stream, acked)
                        streams.append((stream, delivered, count, size, last, oldest))
            return epoch, meta, streams

        epoch, meta, streams = await self.store.run(load)
        self.epoch = epoch
        for key, value in meta.items():
            if key.startswith("next_seq:") and isinstance(value, int):
                self._next_seq[key.removeprefix("next_seq:")] = value
            if key.startswith("acked:") and isinstance(value, int):
                self._acked[key.removeprefix("acked:")] = value
        for stream, delivered, count, size, last, oldest in streams:
            if delivered:
                self._delivered[stream] = (count, size)
            else:
                self._depth[stream] = count
                self._bytes[stream] = size
                self._oldest[stream] = oldest
            # The meta row is written in the same transaction as the rows; the max
            # is a belt-and-braces guard against reusing a number.
            self._next_seq[stream] = max(self._next_seq.get(stream, 1), last + 1)

    def _require_open(self) -> None:
        if self.state is not OutboxState.OPEN:
            raise StateStoreError(f"outbox {self.path} is {self.state.value}")

    # ------------------------------------------------------------------ appending

    async def append(self, stream: str, events: Sequence[object]) -> tuple[int, int]:
        """Store events (dataclasses) in one transaction; returns the (first, last) seq stored.

        (0, -1) when nothing was stored. Subject to the cap policy.
        """
        from edge.wire import pack_event  # noqa: PLC0415 - the writer's path does not need it

        outcome = await self.append_entries(
            [(stream, *pack_event(event), False) for event in events]
        )
        accepted = outcome.accepted.get(stream, 0)
        last = self.last_seq(stream)
        return (last - accepted + 1, last) if accepted else (0, -1)

    async def append_entries(self, entries: Sequence[Entry]) -> _AppendOutcome:
        """One group commit of ``(stream, type, packed data, exempt)`` entries, in order.

        Shielded: a caller cancelled mid-commit does not leave the figures in memory
        behind what the file holds.
        """

        def build(prepared: _Prepared) -> None:
            self._add_entries(prepared, entries)

        return await asyncio.shield(self._commit(build, {}))

    async def commit_cut(
        self,
        events: Sequence[object],
        snapshots: Mapping[str, SnapshotRow],
        routes: Mapping[str, frozenset[str]] | None = None,
    ) -> _AppendOutcome:
        """The writer's commit: ``events`` on ``events`` (and their routes) plus state rows.

        Shielded like :meth:`append_entries`.
        """

        def build(prepared: _Prepared) -> None:
            self._add_events(prepared, events, routes or {})

        return await asyncio.shield(self._commit(build, snapshots))

    async def _commit(
        self, build: Callable[[_Prepared], None], snapshots: Mapping[str, SnapshotRow]
    ) -> _AppendOutcome:
        async with self._lock:
            self._require_open()
            prepared = _Prepared(
                now=time.time(),
                params=[],
                sizes={},
                next_seq=dict(self._next_seq),
                # Delivered rows not yet purged make room whenever the cap needs it.
                budget=self.max_bytes - self.waiting_bytes,
                need=0,
                purge=False,
                outcome=_AppendOutcome(),
                snapshots=snapshots,
            )
            build(prepared)
            added = sum(size for _count, size in prepared.sizes.values())
            over = self.total_bytes + added - self.max_bytes
            prepared.purge = over > 0 and self.total_bytes > self.waiting_bytes
            if self.policy is CapPolicy.DROP_OLDEST:
                prepared.need = max(0, self.waiting_bytes + added - self.max_bytes)
            done = await self.store.run(lambda conn: self._transact(conn, prepared))
            self._account(prepared, done)
            for stream in prepared.outcome.accepted:
                self._signal(stream)
            return prepared.outcome

    def _add_events(
        self, prepared: _Prepared, events: Sequence[object], routes: Mapping[str, frozenset[str]]
    ) -> None:
        """Envelopes for the writer's events (the hot path: one msgpack call per event)."""
        routed: list[object] = []
        route_types = frozenset().union(*routes.values()) if routes else frozenset()
        if route_types:
            routed = [e for e in events if type(e).__name__ in route_types]
        outcome = prepared.outcome
        pack = envelope_packer()
        if self.policy is not CapPolicy.REJECT_NEW:
            # The hot path: no refusal, so numbering is plain counting.
            now = prepared.now
            extend = prepared.params.extend  # flat: no tuple per row survives
            exempt_types = _EXEMPT
            first = seq = prepared.next_seq.get(EVENTS_STREAM, 1)
            size = 0
            for event in events:
                try:
                    payload = pack(event, seq)
                except WireError as exc:
                    outcome.unencodable.append((type(event).__name__, str(exc)))
                    continue
                extend((EVENTS_STREAM, seq, now, payload, type(event) in exempt_types))
                size += len(payload)
                seq += 1
            if seq > first:
                prepared.next_seq[EVENTS_STREAM] = seq
                prepared.budget -= size
                _add_size(prepared.sizes, EVENTS_STREAM, seq - first, size)
        else:
            self._add_numbered(prepared, EVENTS_STREAM, events, report_unencodable=True)
        for stream, types in routes.items():
            self._add_numbered(prepared, stream, [e for e in routed if type(e).__name__ in types])

    def _add_numbered(
        self,
        prepared: _Prepared,
        stream: str,
        events: Sequence[object],
        *,
        report_unencodable: bool = False,
    ) -> None:
        """Events on ``stream`` under the cap policy (reject-new refuses past the budget)."""
        if not events:
            return
        pack = envelope_packer()
        reject_new = self.policy is CapPolicy.REJECT_NEW
        outcome = prepared.outcome
        seq = prepared.next_seq.get(stream, 1)
        count = size = 0
        refusing = False
        for event in events:
            try:
                payload = pack(event, seq)
            except WireError as exc:
                if report_unencodable:  # else counted on the events stream already
                    outcome.unencodable.append((type(event).__name__, str(exc)))
                continue
            keep = type(event) in _EXEMPT
            # reject-new: once one is refused, every later one of the stream in this
            # commit is too, so what is stored stays a gap-free prefix of what arrived.
            if reject_new and not keep and (refusing or len(payload) > prepared.budget):
                refusing = True
                outcome.rejected[stream] = outcome.rejected.get(stream, 0) + 1
                continue
            prepared.budget -= len(payload)
            prepared.params.extend((stream, seq, prepared.now, payload, keep))
            seq += 1
            count += 1
            size += len(payload)
        if count:
            prepared.next_seq[stream] = seq
            _add_size(prepared.sizes, stream, count, size)

    def _add_entries(self, prepared: _Prepared, entries: Sequence[Entry]) -> None:
        outcome = prepared.outcome
        next_seq = prepared.next_seq
        refusing: set[str] = set()
        reject_new = self.policy is CapPolicy.REJECT_NEW
        for stream, type_name, data, is_exempt in entries:
            seq = next_seq.get(stream, 1)
            payload = envelope(seq, type_name, data)
            if (
                not is_exempt
                and reject_new
                and (stream in refusing or len(payload) > prepared.budget)
            ):
                refusing.add(stream)
                outcome.rejected[stream] = outcome.rejected.get(stream, 0) + 1
                continue
            prepared.budget -= len(payload)
            next_seq[stream] = seq + 1
            prepared.params.extend((stream, seq, prepared.now, payload, is_exempt))
            _add_size(prepared.sizes, stream, 1, len(payload))

    # -- in the database thread ----------------------------------------------------------

    def _transact(self, conn: sqlite3.Connection, prepared: _Prepared) -> _Done:
        params = prepared.params
        sizes = prepared.sizes
        deletions: dict[str, int] = {}  # stream -> delete stored rows with seq <= this
        freed: dict[str, tuple[int, int]] = {}
        purged: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        if prepared.purge:
            for stream, (count, _size) in self._delivered.items():
                if count:
                    conn.execute(
                        "DELETE FROM outbox WHERE stream = ? AND seq <= ?",
                        (stream, self._acked.get(stream, 0)),
                    )
                    purged.append(stream)
        if prepared.need > 0:
            params = self._choose_drops(conn, prepared, deletions, freed)
            if params is not prepared.params:
                sizes = {}
                for i in range(0, len(params), _ROW_WIDTH):
                    _add_size(sizes, params[i], 1, len(params[i + 3]))
        _insert(conn, params)
        for stream, upto in deletions.items():
            conn.execute(
                "DELETE FROM outbox WHERE stream = ? AND seq > ? AND seq <= ? AND keep = 0",
                (stream, self._acked.get(stream, 0), upto),
            )
            # A plan whose rows are partly gone can never be resent as it was.
            conn.execute("DELETE FROM plans WHERE stream = ? AND seq_first <= ?", (stream, upto))
        changed = [
            (f"next_seq:{s}", n) for s, n in prepared.next_seq.items() if n != self._next_seq.get(s)
        ]
        if changed:
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", changed)
        snapshots = prepared.snapshots
        if snapshots:
            now = prepared.now
            saved = [(k, now, *row) for k, row in snapshots.items() if row is not None]
            gone = [(k,) for k, row in snapshots.items() if row is None]
            if saved:
                conn.executemany(UPSERT_SNAPSHOT, saved)
            if gone:
                conn.executemany(DELETE_SNAPSHOT, gone)
        conn.execute("COMMIT")
        oldest = {
            stream: _oldest_created(conn, stream, self._acked.get(stream, 0)) for stream in freed
        }
        return _Done(sizes, freed, oldest, purged)

    def _choose_drops(
        self,
        conn: sqlite3.Connection,
        prepared: _Prepared,
        deletions: dict[str, int],
        freed: dict[str, tuple[int, int]],
    ) -> list[Any]:
        """Drop-oldest: the oldest stored rows of the commit's streams, then its own oldest."""
        params = prepared.params
        outcome = prepared.outcome
        need = prepared.need
        target = need + int(self.max_bytes * _DROP_SLACK)
        released = 0
        for stream in dict.fromkeys(params[0::_ROW_WIDTH]):
            if released >= target:
                break
            count = size = 0
            first: int | None = None
            cut = self._acked.get(stream, 0)
            while released < target:
                chunk = conn.execute(
                    "SELECT seq, length(payload) FROM outbox "
                    "WHERE stream = ? AND seq > ? AND keep = 0 ORDER BY seq LIMIT 5000",
                    (stream, cut),
                ).fetchall()
                if not chunk:
                    break
                for seq, length in chunk:
                    first = seq if first is None else first
                    cut = seq
                    count += 1
                    size += length
                    released += length
                    if released >= target:
                        break
            if first is not None:
                deletions[stream] = cut
                freed[stream] = (count, size)
                outcome.dropped[stream] = (count, first, cut)
        if released >= need:
            return params
        # This commit alone is over the cap: keep its newest rows.
        missing = need - released
        kept: list[Any] = []
        for i in range(0, len(params), _ROW_WIDTH):
            stream, seq, _created, payload, keep = params[i : i + _ROW_WIDTH]
            if missing > 0 and not keep:
                missing -= len(payload)
                count, first_seq, _ = outcome.dropped.get(stream, (0, seq, seq))
                outcome.dropped[stream] = (count + 1, min(first_seq, seq), seq)
                continue
            kept.extend((stream, seq, _created, payload, keep))
        return kept

    # -- back on the event loop -------------------------------------------------------------

    def _account(self, prepared: _Prepared, done: _Done) -> None:
        outcome = prepared.outcome
        self._next_seq = prepared.next_seq
        self.commits += 1
        self.snapshot_rows += len(prepared.snapshots)
        for stream in done.purged:
            self._delivered.pop(stream, None)
        for stream, (count, size) in done.freed.items():
            self._drops[stream] = self._drops.get(stream, 0) + 1
            self._depth[stream] -= count
            self._bytes[stream] -= size
        for stream, (count, size) in done.sizes.items():
            if not self._depth.get(stream):
                self._oldest[stream] = prepared.now
            self._depth[stream] = self._depth.get(stream, 0) + count
            self._bytes[stream] = self._bytes.get(stream, 0) + size
            outcome.accepted[stream] = count
        self._oldest.update(done.oldest)
        self.appended += sum(count for count, _size in done.sizes.values())
        self.dropped += sum(count for count, _first, _last in outcome.dropped.values())
        self.rejected += sum(outcome.rejected.values())

    # ------------------------------------------------------------------ consuming

    async def read(
        self, stream: str, after_seq: int, limit: int, *, max_bytes: int | None = None
    ) -> list[OutboxRow]:
        """Up to ``limit`` waiting rows with seq > ``after_seq`` in order (at least one if any)."""
        self._require_open()
        after_seq = max(after_seq, self._acked.get(stream, 0))

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT seq, created, payload FROM outbox WHERE stream = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (stream, after_seq, limit),
            ).fetchall()

        rows: list[OutboxRow] = []
        total = 0
        for seq, created, payload in await self.store.run(read):
            if max_bytes is not None and rows and total + len(payload) > max_bytes:
                break
            rows.append(OutboxRow(seq, created, payload))
            total += len(payload)
        return rows

    async def read_range(self, stream: str, first: int, last: int) -> list[OutboxRow]:
        return await self.read(stream, first - 1, last - first + 1)

    async def plans(self, stream: str) -> list[BatchPlan]:
        """Batches recorded as about to be sent and not yet acknowledged, in order."""
        self._require_open()

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT seq_first, seq_last, batch_id FROM plans WHERE stream = ? "
                "ORDER BY seq_first",
                (stream,),
            ).fetchall()

        return [
            BatchPlan(first, last, batch_id) for first, last, batch_id in await self.store.run(read)
        ]

    async def save_plans(self, stream: str, plans: Sequence[BatchPlan]) -> None:
        """Record batches before sending them (one commit), so a resend repeats their ids.

        ``plans`` are in order and follow every plan the consumer still sends: a
        stored plan that ends at or after the first of them is one the consumer
        does not know (saved while its connection broke, or left out at a restart),
        so it was never sent, and the same transaction replaces it: no event is
        ever planned in two ranges, so none goes out under two batch ids.
        Shielded like :meth:`append_entries`: once started, the commit finishes.
        """
        if not plans:
            return
        await asyncio.shield(self._save_plans(stream, plans))

    async def _save_plans(self, stream: str, plans: Sequence[BatchPlan]) -> None:
        rows = [(stream, p.seq_first, p.seq_last, p.batch_id) for p in plans]
        first = plans[0].seq_first

        def save(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM plans WHERE stream = ? AND seq_last >= ?", (stream, first))
            # Many rows a statement: executemany's step per row hands the GIL over each time.
            for start in range(0, len(rows), _PLANS_PER_INSERT):
                part = rows[start : start + _PLANS_PER_INSERT]
                conn.execute(_insert_plans(len(part)), [v for row in part for v in row])
            conn.execute("COMMIT")

        async with self._lock:
            self._require_open()
            await self.store.run(save)

    async def read_chunks(
        self,
        stream: str,
        after_seq: int,
        *,
        chunks: int,
        max_rows: int,
        max_bytes: int,
        boundary: int | None = None,
    ) -> ChunkedRead:
        """Up to ``chunks`` chunks of the waiting rows after ``after_seq``, in order.

        A chunk is consecutive rows (a gap in seq starts a new one), at most
        ``max_rows`` of them and ``max_bytes`` of payload (but at least one row);
        a chunk never holds both a row before ``boundary`` and one from it on.
        Payloads come back joined, as SQLite joins them: no Python object per row.
        """
        self._require_open()
        after_seq = max(after_seq, self._acked.get(stream, 0))

        rule = _ChunkRule(max_rows, max_bytes, boundary)

        drops = self.drops(stream)

        def read(conn: sqlite3.Connection) -> ChunkedRead:
            found = _read_chunks(conn, stream, after_seq, chunks, rule)
            return dataclasses.replace(found, drops=drops) if drops else found

        # On the reading connection: a backlog is read while acknowledgements commit.
        return await self.store.read(read, transaction=False)

    async def acknowledge(
        self, stream: str, upto_seq: int, delivered: Delivered | None = None
    ) -> int:
        """Mark rows up to ``upto_seq`` delivered (and their plans done); returns how many.

        ``delivered``: what the consumer read of them (every waiting row up to
        ``upto_seq``), which spares counting them in the file again (a backlog's
        acknowledgements would scan it once more), unless rows were dropped since.
        The rows themselves go later (:meth:`purge`). Shielded like :meth:`append_entries`.
        """
        return await asyncio.shield(self._acknowledge(stream, upto_seq, delivered))

    async def _acknowledge(self, stream: str, upto_seq: int, delivered: Delivered | None) -> int:
        def acknowledge(
            conn: sqlite3.Connection, acked: int, known: tuple[int, int] | None
        ) -> tuple[int, int, float | None]:
            conn.execute("BEGIN IMMEDIATE")
            count, size = (
                known
                or conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox "
                    "WHERE stream = ? AND seq > ? AND seq <= ?",
                    (stream, acked, upto_seq),
                ).fetchone()
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                (f"acked:{stream}", upto_seq),
            )
            conn.execute("DELETE FROM plans WHERE stream = ? AND seq_last <= ?", (stream, upto_seq))
            conn.execute("COMMIT")
            oldest = _oldest_created(conn, stream, upto_seq) if count else None
            return int(count), int(size), oldest

        async with self._lock:
            self._require_open()
            acked = self._acked.get(stream, 0)
            if upto_seq <= acked:
                return 0
            known = None
            if (
                delivered is not None
                and delivered.after == acked
                and delivered.drops == self.drops(stream)
            ):
                known = (delivered.rows, delivered.size)  # nothing read was dropped since
            count, size, oldest = await self.store.run(lambda conn: acknowledge(conn, acked, known))
            self._acked[stream] = upto_seq
            self._depth[stream] = self._depth.get(stream, 0) - count
            self._bytes[stream] = self._bytes.get(stream, 0) - size
            rows, stored = self._delivered.get(stream, (0, 0))
            self._delivered[stream] = (rows + count, stored + size)
            if count:
                self._oldest[stream] = oldest
            return count

    async def purge(self, stream: str, limit: int = PURGE_CHUNK) -> int:
        """Delete up to ``limit`` delivered rows of ``stream``, oldest first; returns how many.

        Shielded like :meth:`append_entries`.
        """
        return await asyncio.shield(self._purge(stream, limit))

    async def _purge(self, stream: str, limit: int) -> int:
        def purge(conn: sqlite3.Connection, acked: int) -> tuple[int, int]:
            conn.execute("BEGIN IMMEDIATE")
            bound = conn.execute(
                "SELECT seq FROM outbox WHERE stream = ? AND seq <= ? ORDER BY seq "
                "LIMIT 1 OFFSET ?",
                (stream, acked, limit - 1),
            ).fetchone()
            upto = acked if bound is None else bound[0]
            count, size = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox "
                "WHERE stream = ? AND seq <= ?",
                (stream, upto),
            ).fetchone()
            conn.execute("DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, upto))
            conn.execute("COMMIT")
            return int(count), int(size)

        async with self._lock:
            self._require_open()
            rows, stored = self._delivered.get(stream, (0, 0))
            if not rows:
                return 0
            acked = self._acked.get(stream, 0)
            count, size = await self.store.run(lambda conn: purge(conn, acked))
            left = (rows - count, stored - size)
            if left[0] > 0:
                self._delivered[stream] = left
            else:
                self._delivered.pop(stream, None)
            return count

    async def wait_appended(
        self,
        stream: str,
        after_seq: int,
        timeout: float | None = None,  # noqa: ASYNC109 - False on timeout, not an exception
    ) -> bool:
        """Until a row with seq > ``after_seq`` was committed (True) or ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.last_seq(stream) <= after_seq:
            if self.state is not OutboxState.OPEN:
                raise StateStoreError(f"outbox {self.path} is {self.state.value}")
            signal = self._signals.setdefault(stream, asyncio.Event())
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return self.last_seq(stream) > after_seq
        return True

    def _signal(self, stream: str) -> None:
        # A fresh event per commit: every waiter holds the old one, which is now set.
        old = self._signals.get(stream)
        self._signals[stream] = asyncio.Event()
        if old is not None:
            old.set()

    # ------------------------------------------------------------------ figures

    def last_seq(self, stream: str) -> int:
        """The last sequence number handed out on ``stream`` (0: none yet)."""
        return self._next_seq.get(stream, 1) - 1

    def depth(self, stream: str) -> int:
        """Rows waiting for the stream's consumer."""
        return self._depth.get(stream, 0)

    def acked_seq(self, stream: str) -> int:
        """The delivered cursor: every row up to it was delivered (0: none yet)."""
        return self._acked.get(stream, 0)

    def drops(self, stream: str) -> int:
        """Commits that dropped waiting rows of ``stream`` (the disk cap) since open."""
        return self._drops.get(stream, 0)

    def delivered_rows(self, stream: str) -> int:
        """Rows delivered but not yet purged."""
        return self._delivered.get(stream, (0, 0))[0]

    @property
    def waiting_bytes(self) -> int:
        return sum(self._bytes.values())

    @property
    def total_bytes(self) -> int:
        """Stored event bytes: waiting rows and delivered ones not yet purged."""
        return self.waiting_bytes + sum(size for _rows, size in self._delivered.values())

    def stream_statistics(self) -> dict[str, StreamStatistics]:
        now = time.time()
        names = set(self._next_seq) | set(self._depth)
        stats = {}
        for stream in sorted(names):
            oldest = self._oldest.get(stream)
            depth = self._depth.get(stream, 0)
            stats[stream] = StreamStatistics(
                depth=depth,
                bytes=self._bytes.get(stream, 0),
                last_seq=self.last_seq(stream),
                oldest_age_s=max(0.0, now - oldest) if depth and oldest is not None else None,
            )
        return stats


def _insert(conn: sqlite3.Connection, params: list[Any]) -> None:
    """Insert flat rows: whole statements of _ROWS_PER_INSERT rows, the rest one by one."""
    step = _ROWS_PER_INSERT * _ROW_WIDTH
    whole = len(params) - len(params) % step
    for start in range(0, whole, step):
        conn.execute(_INSERT_MANY, params[start : start + step])
    if whole < len(params):
        rest = iter(params[whole:])
        conn.executemany(_INSERT, zip(*[rest] * _ROW_WIDTH, strict=True))


def _add_size(sizes: dict[str, list[int]], stream: str, count: int, size: int) -> None:
    tally = sizes.get(stream)
    if tally is None:
        sizes[stream] = [count, size]
    else:
        tally[0] += count
        tally[1] += size


def _oldest_created(conn: sqlite3.Connection, stream: str, acked: int) -> float | None:
    """When the oldest waiting row (after the delivered cursor ``acked``) was stored."""
    row = conn.execute(
        "SELECT created FROM outbox WHERE stream = ? AND seq > ? ORDER BY seq LIMIT 1",
        (stream, acked),
    ).fetchone()
    return None if row is None else float(row[0])


@dataclass(frozen=True, slots=True)
class _ChunkRule:
    """Where :meth:`Outbox.read_chunks` ends a chunk (besides a gap in seq)."""

    max_rows: int
    max_bytes: int
    boundary: int | None


def _read_chunks(
    conn: sqlite3.Connection, stream: str, after: int, chunks: int, rule: _ChunkRule
) -> ChunkedRead:
    """:meth:`Outbox.read_chunks` in the reading thread, on a connection outside a transaction.

    A backlog (every row of the page stored, chunks within ``max_bytes``) is one
    statement (:func:`_backlog_page_query`); anything else (the rows end in the
    page, a gap, big payloads) is read again in a transaction, a statement for
    the chunks and more for what does not fit them.
    """
    page = _backlog_page(conn, stream, after + 1, chunks, rule)
    if page is not None:
        return page
    conn.execute("BEGIN")
    try:
        return _read_chunks_in_snapshot(conn, stream, after, chunks, rule)
    finally:
        conn.execute("COMMIT")


def _layout(first: int, chunks: int, rule: _ChunkRule) -> tuple[list[int], list[int]]:
    """Where the ``chunks`` chunks from ``first`` start, and where each one's range ends
    (exclusive), when every row is stored: ``max_rows`` each, split at ``boundary``."""
    max_rows, boundary = rule.max_rows, rule.boundary
    starts = [first]
    while len(starts) < chunks:
        start = starts[-1] + max_rows
        if boundary is not None and starts[-1] < boundary < start:
            start = boundary
        starts.append(start)
    end = starts[-1] + max_rows - 1
    if boundary is not None and starts[-1] < boundary <= end:
        end = boundary - 1
    return starts, [*starts[1:], end + 1]


def _backlog_page(
    conn: sqlite3.Connection, stream: str, first: int, chunks: int, rule: _ChunkRule
) -> ChunkedRead | None:
    """The chunks from the row ``first`` on that hold every row of their range within
    ``max_bytes``, in order, up to the first that does not (at most
    ``_BACKLOG_PAGE_CHUNKS``); None when the first does not (or the row ``first`` is not
    stored)."""
    starts, bounds = _layout(first, min(chunks, _BACKLOG_PAGE_CHUNKS), rule)
    params: list[Any] = [stream, first]
    for start, following in zip(starts, bounds, strict=True):
        params += (stream, start, following - 1)
    found = conn.execute(_backlog_page_query(len(starts)), params).fetchone()
    if found is None:
        return None
    created, *columns = found
    page: list[OutboxChunk] = []
    for start, following, count, payload in zip(
        starts, bounds, columns[::2], columns[1::2], strict=True
    ):
        if count != following - start or len(payload) > rule.max_bytes:
            break
        page.append(OutboxChunk(start, following - 1, payload))
    return ChunkedRead(tuple(page), created) if page else None


def _read_chunks_in_snapshot(
    conn: sqlite3.Connection, stream: str, after: int, chunks: int, rule: _ChunkRule
) -> ChunkedRead:
    """The first row after ``after``, every chunk's aggregate from there in one UNION ALL,
    and a lookup of the last seq for a chunk where the rows end; chunk by chunk from the
    first chunk that is empty, has a gap or is too big."""
    head = conn.execute(_PAGE_HEAD, (stream, after)).fetchone()
    if head is None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"next_seq:{stream}",))
        handed_out = row.fetchone()
        last = int(handed_out[0]) - 1 if handed_out is not None else 0
        return ChunkedRead((), 0.0, last if last > after else None)
    first, created = head
    starts, bounds = _layout(first, chunks, rule)
    params = [
        value
        for i, (start, following) in enumerate(zip(starts, bounds, strict=True))
        for value in (i, stream, start, following - 1)
    ]
    rows = sorted(conn.execute(_page_query(len(starts)), params).fetchall())
    page: list[OutboxChunk] = []
    for (_i, count, payload), start, following in zip(rows, starts, bounds, strict=True):
        top = _top(conn, stream, start, following - 1, count)
        if not count or count != top - start + 1 or len(payload) > rule.max_bytes:
            break  # empty, a gap, too big: from here chunk by chunk
        page.append(OutboxChunk(start, top, payload))
        if top < following - 1:
            break  # the rows end here (or a gap follows): the next read goes on from here
    if not page:
        page = _read_chunk_by_chunk(conn, stream, first, chunks, rule)
    return ChunkedRead(tuple(page), created)


def _read_chunk_by_chunk(
    conn: sqlite3.Connection, stream: str, first: int, chunks: int, rule: _ChunkRule
) -> list[OutboxChunk]:
    """Chunks from the row ``first`` on, each found by its own statements."""
    max_rows, max_bytes, boundary = rule.max_rows, rule.max_bytes, rule.boundary
    found: list[OutboxChunk] = []
    while len(found) < chunks:
        if found:
            head = conn.execute(_PAGE_HEAD, (stream, found[-1].seq_last)).fetchone()
            if head is None:
                break
            first = head[0]
        last = first + max_rows - 1
        if boundary is not None and first < boundary <= last:
            last = boundary - 1
        _i, count, payload = conn.execute(_page_query(1), (0, stream, first, last)).fetchone()
        top = _top(conn, stream, first, last, count)
        if count != top - first + 1 or len(payload) > max_bytes:
            top, payload = _chunk_row_by_row(conn, stream, first, last, max_bytes)
        found.append(OutboxChunk(first, top, payload))
    return found


def _top(conn: sqlite3.Connection, stream: str, first: int, last: int, count: int) -> int:
    """The last seq of the ``count`` rows stored in ``first..last`` (``first - 1``: none)."""
    if count == last - first + 1:
        return last
    if not count:
        return first - 1
    (top,) = conn.execute(_TOP_OF, (stream, first, last)).fetchone()
    return int(top)


def _chunk_row_by_row(
    conn: sqlite3.Connection, stream: str, first: int, last: int, max_bytes: int
) -> tuple[int, bytes]:
    """(last seq, joined payloads) of the chunk from ``first``: the rows up to the first gap
    in seq or ``max_bytes`` (at least one row). The rare path: a gap, or big payloads."""
    taken: list[bytes] = []
    size = 0
    top = first
    for seq, payload in conn.execute(
        "SELECT seq, payload FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        (stream, first, last),
    ):
        if taken and (seq != top + 1 or size + len(payload) > max_bytes):
            break
        taken.append(payload)
        size += len(payload)
        top = seq
    return top, b"".join(taken)


# --------------------------------------------------------------------------- the bus side


class OutboxWriter:
    """Commits the line's state and every event published on the bus, together.

    The bus callback only buffers; the writer's task commits, in one transaction,
    everything buffered so far and a cut of ``cuts`` (the line's state) taken at
    that moment (:mod:`edge.state.cut`); also, every ``persist_interval_s``, a cut alone
    when only time advanced. ``routes`` sends event types to further streams
    besides ``events`` (``{"qmib": {"BatchRecordCompleted"}}``). With
    ``store_events`` false nothing is taken from the bus: only the state is kept
    (the line has no consumer for events).
    """

    def __init__(
        self,
        outbox: Outbox,
        bus: EventBus[Any],
        *,
        routes: Mapping[str, frozenset[str]] | None = None,
        max_pending: int = 200_000,
        report_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        cuts: CutSources | None = None,
        store_events: bool = True,
        persist_interval_s: float = PERSIST_INTERVAL_S,
    ) -> None:
        self.outbox = outbox
        self.bus = bus
        self.routes = dict(routes or {})
        self.max_pending = max_pending
        self.report_interval_s = report_interval_s
        self.cuts = cuts
        self.store_events = store_events
        self.persist_interval_s = persist_interval_s
        self._clock = clock
        self._pending: collections.deque[object] = collections.deque()
        self._inflight = 0  # events taken from the buffer by the commit under way
        self._unsaved: dict[str, SnapshotRow] = {}  # state cut but not yet committed
        self._waiters: list[asyncio.Future[None]] = []  # commit_now callers
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._outage = OutageLog(log, "state and outbox writes", path=str(outbox.path))
        self._cut_outage = OutageLog(log, "consistent state cut")
        self._unencodable_types: set[str] = set()
        self._unreported: dict[tuple[str, str], _Tally] = {}  # (stream, policy) since last report
        self._totals: dict[str, int] = {}
        self._last_report = -math.inf
        self.refused_memory = 0
        self.unencodable = 0
        self.reports = 0

    @property
    def pending(self) -> int:
        """Events in memory: buffered, or in the commit under way."""
        return len(self._pending) + self._inflight

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise EdgeError("an OutboxWriter runs once")
        if self.store_events:
            self._unsubscribe = self.bus.subscribe("outbox", self._on_events)
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("state-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a shutdown bound
        """Commit what is buffered, the last state and a last report of what was dropped."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(self._final_flush(), timeout)
        except TimeoutError:
            log.error(
                "outbox: events still in memory at shutdown were not stored",
                extra={"events": len(self._pending), "path": str(self.outbox.path)},
            )
        except StateStoreError as exc:
            log.error("the last state and events were not stored", extra={"error": str(exc)})
        finally:
            self._task = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StateStoreError):
                await task
            self._fail_waiters(StateStoreError("the state writer stopped"))

    async def _final_flush(self) -> None:
        await self.flush()
        self._emit_report(force=True)  # still subscribed: the report is stored too
        await self.flush()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.flush()  # what arrived in between
        if self._unreported:
            # Dropped by that very last commit: report it here directly.
            self._pending.extend(self._emit_report(force=True))
            await self.flush()

    async def commit_now(self) -> None:
        """Until a cut taken after this call is committed, with every event buffered so far.

        Raises StateStoreError when that commit failed (the writer retries it).
        """
        task = self._task
        if task is None or task.done():
            raise StateStoreError("the state writer is not running")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def flush(self) -> None:
        """Until nothing is buffered: every event committed (failed commits are retried).

        A policy report a commit gives rise to is committed too.
        """
        while True:
            try:
                await self.commit_now()
            except StateStoreError:
                if self.outbox.state is not OutboxState.OPEN or self._task is None:
                    raise
                continue
            if not self.pending:
                return

    # -- the synchronous bus callback: never blocks, never loses what it took ----------

    def _on_events(self, events: Sequence[object]) -> None:
        room = self.max_pending - len(self._pending) - self._inflight
        pending = self._pending
        if len(events) <= room:
            pending.extend(events)
        else:
            refused = 0
            for event in events:
                if room > 0 or type(event) in _EXEMPT:
                    pending.append(event)
                    room -= 1
                else:
                    refused += 1
            self.refused_memory += refused
            self._note(EVENTS_STREAM, "memory-full", refused, None, None)
        self._wake.set()

    # -- the writer task ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retry_s = 0.1
        next_cut = loop.time() + self.persist_interval_s
        try:
            while True:
                if not self._pending and not self._waiters:
                    periodic = self.cuts is not None and loop.time() >= next_cut
                    if not periodic:
                        timeout = self._sleep_for(next_cut - loop.time())
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), timeout)
                        self._wake.clear()
                        self._emit_report()
                        continue
                if not await self._commit_once():
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, 5.0)
                    continue
                retry_s = 0.1
                next_cut = loop.time() + self.persist_interval_s
        finally:
            self._fail_waiters(StateStoreError("the state writer stopped"))

    def _sleep_for(self, until_cut: float) -> float | None:
        waits = [
            w for w in (self._report_due_in(), until_cut if self.cuts else None) if w is not None
        ]
        return max(0.0, min(waits)) if waits else None

    async def _commit_once(self) -> bool:
        """Take a cut and commit it with the events published up to it; False to retry."""
        cuts = self.cuts
        if cuts is not None:
            await cuts.gate.cleared()
            # From here to the commit's hand-off nothing awaits: this is the cut.
            try:
                self._unsaved.update(cuts.collect())
            except StateStoreError as exc:
                self._cut_outage.failed(exc)
                return False
            self._cut_outage.recovered()
        count = len(self._pending)
        waiters, self._waiters = self._waiters, []
        if not count and not self._unsaved:
            _resolve(waiters)
            return True
        # The events of this cut leave the buffer for the commit; new ones gather anew.
        events, self._pending = self._pending, collections.deque()
        self._inflight = count
        snapshots, self._unsaved = self._unsaved, {}
        try:
            outcome = await self.outbox.commit_cut(events, snapshots, self.routes)
        except StateStoreError as exc:
            # Kept for the next try, in order (newer state for a key replaces the kept one).
            events.extend(self._pending)
            self._pending = events
            self._inflight = 0
            self._unsaved = {**snapshots, **self._unsaved}
            _fail(waiters, exc)
            if self.outbox.state is not OutboxState.OPEN:
                raise
            self._outage.failed(exc)
            return False
        self._outage.recovered()
        self._inflight = 0
        _resolve(waiters)
        self._note_outcome(outcome)
        self._emit_report()
        return True

    def _fail_waiters(self, exc: StateStoreError) -> None:
        waiters, self._waiters = self._waiters, []
        _fail(waiters, exc)

    def _note_outcome(self, outcome: _AppendOutcome) -> None:
        for stream, (count, first, last) in outcome.dropped.items():
            self._note(stream, CapPolicy.DROP_OLDEST.value, count, first, last)
        for stream, count in outcome.rejected.items():
            self._note(stream, CapPolicy.REJECT_NEW.value, count, None, None)
        for name, error in outcome.unencodable:
            self.unencodable += 1
            if name not in self._unencodable_types:
                self._unencodable_types.add(name)
                log.error("outbox: event cannot be encoded; skipped", extra={"error": error})

    # -- policy reports -------------------------------------------------------------------

    def _note(
        self, stream: str, policy: str, count: int, first: int | None, last: int | None
    ) -> None:
        if count <= 0:
            return
        self._totals[policy] = self._totals.get(policy, 0) + count
        tally = self._unreported.setdefault((stream, policy), _Tally())
        tally.count += count
        if first is not None:
            tally.first = first if tally.first is None else min(tally.first, first)
        if last is not None:
            tally.last = last if tally.last is None else max(tally.last, last)

    def _report_due_in(self) -> float | None:
        if not self._unreported:
            return None
        return max(0.0, self._last_report + self.report_interval_s - time.monotonic())

    def _emit_report(self, *, force: bool = False) -> list[OutboxPolicyApplied]:
        """Publish what was dropped or refused since the last report (at most once an interval)."""
        if not self._unreported:
            return []
        if not force and time.monotonic() - self._last_report < self.report_interval_s:
            return []
        self._last_report = time.monotonic()
        now = self._clock()
        reports = []
        for (stream, policy), tally in sorted(self._unreported.items()):
            count, first, last = tally.count, tally.first, tally.last
            report = OutboxPolicyApplied(
                machine_id="",
                ts=now,
                stream=stream,
                policy=policy,
                count=count,
                seq_first=first,
                seq_last=last,
                total=self._totals.get(policy, 0),
            )
            log.warning(
                "outbox: events %s",
                "refused (disk cap reached)"
                if policy == CapPolicy.REJECT_NEW.value
                else "dropped (disk cap reached)"
                if policy == CapPolicy.DROP_OLDEST.value
                else "refused (the disk fell behind, memory bound reached)",
                extra={
                    "stream": stream,
                    "policy": policy,
                    "count": count,
                    "seq_first": first,
                    "seq_last": last,
                    "total": report.total,
                },
            )
            reports.append(report)
        self._unreported.clear()
        self.reports += len(reports)
        # Through the bus: the OPC UA server, the metrics and this outbox all see it.
        self.bus.publish(reports)
        return reports


def _resolve(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _fail(waiters: Iterable[asyncio.Future[None]], exc: StateStoreError) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


# --------------------------------------------------------------------------- the component


def statistics_of(outbox: Outbox, writer: OutboxWriter | None = None) -> OutboxStatistics:
    return OutboxStatistics(
        path=str(outbox.path),
        policy=outbox.policy.value,
        max_bytes=outbox.max_bytes,
        bytes=outbox.total_bytes,
        streams=outbox.stream_statistics(),
        appended=outbox.appended,
        commits=outbox.commits,
        dropped=outbox.dropped,
        rejected=outbox.rejected,
        refused_memory=writer.refused_memory if writer else 0,
        pending=writer.pending if writer else 0,
        reports=writer.reports if writer else 0,
        unencodable=writer.unencodable if writer else 0,
    )
