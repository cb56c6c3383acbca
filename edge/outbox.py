"""The durable outbox: every event bound for the MES and QMIB, numbered and kept on disk.

::

    bus ─callback─► OutboxWriter (memory) ─group commit─► Outbox (SQLite, WAL)
                                                            ├ stream "events" ─► MQTT forwarder
                                                            └ stream "qmib"   ─► QMIB delivery

- **Streams.** Rows live in named streams; each stream has its own persisted
  64-bit sequence (1, 2, 3, ...) and its own consumer, which deletes rows only
  once they were delivered (``acknowledge``). ``events`` carries every domain
  event for the MES (its ``seq`` is the edge's event sequence number);
  ``qmib`` carries the event types QMIB takes (completed batch records).
- **Group commit.** The bus callback only buffers; the writer task commits
  whatever accumulated in one transaction, so a burst of events costs one
  fsync. A sequence number is assigned inside the transaction that stores the
  event, so a crash never leaves a gap: what was committed is numbered, what
  was not is not.
- **Disk cap.** ``max_bytes`` bounds the stored event bytes. When a commit would
  exceed it, ``drop-oldest`` deletes the oldest rows of the stream (keeping the
  newest; the MES sees the gap in ``seq``) and ``reject-new`` refuses the new
  events (keeping the oldest). Either way it is counted (``statistics()``),
  logged, and reported as an :class:`OutboxPolicyApplied` event on the bus,
  which the outbox stores too. Reports are exempt from the cap: never refused,
  never dropped (so the MES learns of every drop), and rate-limited to one per
  ``report_interval_s`` per stream and policy.
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
import enum
import itertools
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import aiosqlite

from edge.errors import ActorError, EdgeError, StateStoreError
from edge.event_bus import EventBus
from edge.logs import OutageLog
from edge.wire import WireError, envelope, pack_event

if TYPE_CHECKING:
    from edge.service import LineService

__all__ = [
    "EVENTS_STREAM",
    "QMIB_STREAM",
    "BatchPlan",
    "CapPolicy",
    "Outbox",
    "OutboxComponent",
    "OutboxPolicyApplied",
    "OutboxRow",
    "OutboxStatistics",
    "OutboxWriter",
    "StreamStatistics",
    "component",
    "find_outbox",
]

log = logging.getLogger("edge.outbox")

EVENTS_STREAM = "events"
QMIB_STREAM = "qmib"

# Rows per transaction: large enough to amortise the fsync, small enough that a
# commit stays in the low milliseconds and memory per commit stays bounded.
COMMIT_MAX_EVENTS = 10_000
# When drop-oldest frees space it frees this share of the cap beyond what the
# commit needs, so a full outbox does not run a delete with every commit.
_DROP_SLACK = 0.01

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS outbox (
        stream   TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        created  REAL NOT NULL,
        payload  BLOB NOT NULL,
        keep     INTEGER NOT NULL DEFAULT 0,  -- 1: a policy report, never dropped by the cap
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS meta (
        key    TEXT PRIMARY KEY,
        value  NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS plans (
        stream     TEXT NOT NULL,
        seq_first  INTEGER NOT NULL,
        seq_last   INTEGER NOT NULL,
        batch_id   TEXT NOT NULL,
        PRIMARY KEY (stream, seq_first)
    ) WITHOUT ROWID
    """,
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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    created: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch a consumer is about to send: its range and its id."""

    seq_first: int
    seq_last: int
    batch_id: str


# (stream, type name, packed data map (edge.wire.pack_event), exempt): exempt entries
# (policy reports) are never refused and never dropped by their own commit.
Entry = tuple[str, str, bytes, bool]
_Row = tuple[str, int, float, bytes, int]  # (stream, seq, created, envelope, keep) as inserted


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


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    depth: int  # rows waiting for their consumer
    bytes: int
    last_seq: int  # the last number handed out (0: none yet)
    oldest_age_s: float | None  # how long the oldest waiting row has waited


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    path: str
    policy: str
    max_bytes: int
    bytes: int
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
    """The SQLite outbox. ``async with Outbox(path) as outbox``; refuses reuse after close."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        max_bytes: int = 1 << 30,
        policy: CapPolicy = CapPolicy.DROP_OLDEST,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_bytes = max_bytes
        self.policy = policy
        self.state = OutboxState.UNOPENED
        self.epoch = ""
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one write transaction at a time on the one connection
        self._next_seq: dict[str, int] = {}
        self._depth: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._oldest: dict[str, float | None] = {}
        self._signals: dict[str, asyncio.Event] = {}
        self.appended = 0
        self.commits = 0
        self.dropped = 0
        self.rejected = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not OutboxState.UNOPENED:
            raise StateStoreError(f"outbox {self.path} is {self.state.value}; open it once")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous}")
            for statement in _SCHEMA:
                await self._db.execute(statement)
            await self._db.commit()
            await self._load()
        except (OSError, sqlite3.Error) as exc:
            if self._db is not None:
                await self._db.close()
            self._db = None
            self.state = OutboxState.CLOSED
            raise StateStoreError(f"cannot open outbox {self.path}: {exc}") from exc
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
        if self.state is OutboxState.OPEN and self._db is not None:
            async with self._lock:
                await self._db.close()
        self._db = None
        self.state = OutboxState.CLOSED
        for signal in self._signals.values():
            signal.set()  # wake waiters so they see the closed state

    async def _load(self) -> None:
        db = self._require_db()
        meta = {key: value async for key, value in _rows(db, "SELECT key, value FROM meta")}
        epoch = meta.get("epoch")
        if not isinstance(epoch, str) or not epoch:
            epoch = uuid.uuid4().hex[:12]
            await db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch', ?)", (epoch,)
            )
            await db.commit()
        self.epoch = epoch
        for key, value in meta.items():
            if key.startswith("next_seq:") and isinstance(value, int):
                self._next_seq[key.removeprefix("next_seq:")] = value
        query = (
            "SELECT stream, COUNT(*), COALESCE(SUM(length(payload)), 0), MAX(seq) "
            "FROM outbox GROUP BY stream"
        )
        async for stream, count, size, last in _rows(db, query):
            self._depth[stream] = count
            self._bytes[stream] = size
            # The meta row is written in the same transaction as the rows; the max
            # is a belt-and-braces guard against reusing a number.
            self._next_seq[stream] = max(self._next_seq.get(stream, 1), last + 1)
            self._oldest[stream] = await self._oldest_created(stream)

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StateStoreError(f"outbox {self.path} is {self.state.value}")
        return self._db

    def _conn(self) -> aiosqlite.Connection:
        if self.state is not OutboxState.OPEN or self._db is None:
            raise StateStoreError(f"outbox {self.path} is {self.state.value}")
        return self._db

    # ------------------------------------------------------------------ appending

    async def append(self, stream: str, events: Sequence[object]) -> tuple[int, int]:
        """Store events (dataclasses) in one transaction; returns the (first, last) seq stored.

        (0, -1) when nothing was stored. Subject to the cap policy.
        """
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
        return await asyncio.shield(self._append_entries(entries))

    async def _append_entries(self, entries: Sequence[Entry]) -> _AppendOutcome:
        async with self._lock:
            db = self._conn()
            now = time.time()
            next_seq = dict(self._next_seq)
            outcome = _AppendOutcome()
            rows: list[_Row] = []
            refusing: set[str] = set()
            reject_new = self.policy is CapPolicy.REJECT_NEW
            budget = self.max_bytes - self.total_bytes
            append = rows.append
            for stream, type_name, data, is_exempt in entries:
                seq = next_seq.get(stream, 1)
                payload = envelope(seq, type_name, data)
                # reject-new: once one is refused, every later one of the stream in this
                # commit is too, so what is stored stays a gap-free prefix of what arrived.
                if not is_exempt and reject_new and (stream in refusing or len(payload) > budget):
                    refusing.add(stream)
                    outcome.rejected[stream] = outcome.rejected.get(stream, 0) + 1
                    continue
                budget -= len(payload)
                next_seq[stream] = seq + 1
                append((stream, seq, now, payload, int(is_exempt)))
            deletions: dict[str, int] = {}  # stream -> delete stored rows with seq <= this
            freed: dict[str, tuple[int, int]] = {}  # stream -> (rows, bytes) deleted
            if not reject_new and budget < 0:
                rows = await self._choose_drops(
                    rows, -budget, outcome=outcome, deletions=deletions, freed=freed
                )
            try:
                if rows:
                    await db.executemany(
                        "INSERT INTO outbox(stream, seq, created, payload, keep) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                for stream, upto in deletions.items():
                    await db.execute(
                        "DELETE FROM outbox WHERE stream = ? AND seq <= ? AND keep = 0",
                        (stream, upto),
                    )
                    # A plan whose rows are partly gone can never be resent as it was.
                    await db.execute(
                        "DELETE FROM plans WHERE stream = ? AND seq_first <= ?", (stream, upto)
                    )
                changed = {s: n for s, n in next_seq.items() if n != self._next_seq.get(s)}
                if changed:
                    await db.executemany(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                        [(f"next_seq:{s}", n) for s, n in changed.items()],
                    )
                await db.commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise StateStoreError(f"cannot append to outbox {self.path}: {exc}") from exc
            self._account(now, next_seq, rows, freed, outcome)
            for stream in freed:
                self._oldest[stream] = await self._oldest_created(stream)
            for stream in outcome.accepted:
                self._signal(stream)
            return outcome

    def _account(
        self,
        now: float,
        next_seq: dict[str, int],
        rows: Sequence[_Row],
        freed: Mapping[str, tuple[int, int]],
        outcome: _AppendOutcome,
    ) -> None:
        self._next_seq = next_seq
        self.commits += 1
        for stream, (count, size) in freed.items():
            self._depth[stream] -= count
            self._bytes[stream] -= size
        added: dict[str, list[int]] = {}
        for stream, _seq, _created, payload, _keep in rows:
            tally = added.get(stream)
            if tally is None:
                added[stream] = [1, len(payload)]
            else:
                tally[0] += 1
                tally[1] += len(payload)
        for stream, (count, size) in added.items():
            if not self._depth.get(stream):
                self._oldest[stream] = now
            self._depth[stream] = self._depth.get(stream, 0) + count
            self._bytes[stream] = self._bytes.get(stream, 0) + size
            outcome.accepted[stream] = count
        self.appended += len(rows)
        self.dropped += sum(count for count, _first, _last in outcome.dropped.values())
        self.rejected += sum(outcome.rejected.values())

    async def _choose_drops(
        self,
        rows: list[_Row],
        need: int,
        *,
        outcome: _AppendOutcome,
        deletions: dict[str, int],
        freed: dict[str, tuple[int, int]],
    ) -> list[_Row]:
        """Drop-oldest: the oldest stored rows of the commit's streams, then its own oldest."""
        db = self._conn()
        target = need + int(self.max_bytes * _DROP_SLACK)
        released = 0
        for stream in dict.fromkeys(row[0] for row in rows):
            if released >= target:
                break
            count = size = 0
            first: int | None = None
            cut = 0
            while released < target:
                chunk = [
                    row
                    async for row in _rows(
                        db,
                        "SELECT seq, length(payload) FROM outbox "
                        "WHERE stream = ? AND seq > ? AND keep = 0 ORDER BY seq LIMIT 5000",
                        (stream, cut),
                    )
                ]
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
            return rows
        # This commit alone is over the cap: keep its newest rows.
        missing = need - released
        kept: list[_Row] = []
        for row in rows:
            stream, seq, _created, payload, keep = row
            if missing > 0 and not keep:
                missing -= len(payload)
                count, first_seq, _ = outcome.dropped.get(stream, (0, seq, seq))
                outcome.dropped[stream] = (count + 1, min(first_seq, seq), seq)
                continue
            kept.append(row)
        return kept

    # ------------------------------------------------------------------ consuming

    async def read(
        self, stream: str, after_seq: int, limit: int, *, max_bytes: int | None = None
    ) -> list[OutboxRow]:
        """Up to ``limit`` rows with seq > ``after_seq`` in order (at least one row if any)."""
        db = self._conn()
        rows: list[OutboxRow] = []
        total = 0
        try:
            async with db.execute(
                "SELECT seq, created, payload FROM outbox WHERE stream = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (stream, after_seq, limit),
            ) as cursor:
                for seq, created, payload in await cursor.fetchall():
                    if max_bytes is not None and rows and total + len(payload) > max_bytes:
                        break
                    rows.append(OutboxRow(seq, created, payload))
                    total += len(payload)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read outbox {self.path}: {exc}") from exc
        return rows

    async def read_range(self, stream: str, first: int, last: int) -> list[OutboxRow]:
        return await self.read(stream, first - 1, last - first + 1)

    async def plans(self, stream: str) -> list[BatchPlan]:
        """Batches recorded as about to be sent and not yet acknowledged, in order."""
        db = self._conn()
        try:
            return [
                BatchPlan(first, last, batch_id)
                async for first, last, batch_id in _rows(
                    db,
                    "SELECT seq_first, seq_last, batch_id FROM plans WHERE stream = ? "
                    "ORDER BY seq_first",
                    (stream,),
                )
            ]
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read outbox plans {self.path}: {exc}") from exc

    async def save_plans(self, stream: str, plans: Sequence[BatchPlan]) -> None:
        """Record batches before sending them (one commit), so a resend repeats their ids."""
        if not plans:
            return
        async with self._lock:
            db = self._conn()
            try:
                await db.executemany(
                    "INSERT OR REPLACE INTO plans(stream, seq_first, seq_last, batch_id) "
                    "VALUES (?, ?, ?, ?)",
                    [(stream, p.seq_first, p.seq_last, p.batch_id) for p in plans],
                )
                await db.commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise StateStoreError(f"cannot record batch plans in {self.path}: {exc}") from exc

    async def acknowledge(self, stream: str, upto_seq: int) -> int:
        """Delete delivered rows (seq <= ``upto_seq``) and their plans; returns rows deleted.

        Shielded like :meth:`append_entries`.
        """
        return await asyncio.shield(self._acknowledge(stream, upto_seq))

    async def _acknowledge(self, stream: str, upto_seq: int) -> int:
        async with self._lock:
            db = self._conn()
            try:
                async with db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox "
                    "WHERE stream = ? AND seq <= ?",
                    (stream, upto_seq),
                ) as cursor:
                    row = await cursor.fetchone()
                count, size = (row[0], row[1]) if row is not None else (0, 0)
                await db.execute(
                    "DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, upto_seq)
                )
                await db.execute(
                    "DELETE FROM plans WHERE stream = ? AND seq_last <= ?", (stream, upto_seq)
                )
                await db.commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise StateStoreError(
                    f"cannot acknowledge outbox rows in {self.path}: {exc}"
                ) from exc
            self._depth[stream] = self._depth.get(stream, 0) - count
            self._bytes[stream] = self._bytes.get(stream, 0) - size
            if count:
                self._oldest[stream] = await self._oldest_created(stream)
            return int(count)

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

    async def _oldest_created(self, stream: str) -> float | None:
        db = self._require_db()
        async with db.execute(
            "SELECT created FROM outbox WHERE stream = ? ORDER BY seq LIMIT 1", (stream,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else float(row[0])

    # ------------------------------------------------------------------ figures

    def last_seq(self, stream: str) -> int:
        """The last sequence number handed out on ``stream`` (0: none yet)."""
        return self._next_seq.get(stream, 1) - 1

    def depth(self, stream: str) -> int:
        return self._depth.get(stream, 0)

    @property
    def total_bytes(self) -> int:
        return sum(self._bytes.values())

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


async def _rows(db: aiosqlite.Connection, query: str, params: Sequence[Any] = ()) -> Any:
    # fetchall: one hop to aiosqlite's thread, not one per row (async iteration).
    for row in await db.execute_fetchall(query, params):
        yield row


# --------------------------------------------------------------------------- the bus side


class OutboxWriter:
    """Stores every event published on the bus: buffers in the callback, commits in a task.

    ``routes`` sends event types to further streams besides ``events``
    (``{"qmib": {"BatchRecordCompleted"}}``); all of one commit is one transaction.
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
    ) -> None:
        self.outbox = outbox
        self.bus = bus
        self.routes = dict(routes or {})
        self.max_pending = max_pending
        self.report_interval_s = report_interval_s
        self._clock = clock
        self._pending: collections.deque[object] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._outage = OutageLog(log, "outbox writes", path=str(outbox.path))
        self._unencodable_types: set[str] = set()
        self._unreported: dict[tuple[str, str], _Tally] = {}  # (stream, policy) since last report
        self._totals: dict[str, int] = {}
        self._last_report = -math.inf
        self.refused_memory = 0
        self.unencodable = 0
        self.reports = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise EdgeError("an OutboxWriter runs once")
        self._unsubscribe = self.bus.subscribe("outbox", self._on_events)
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("outbox-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a shutdown bound
        """Commit what is buffered and a last report of what was dropped, stop listening, stop."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(self._final_flush(), timeout)
        except TimeoutError:
            log.error(
                "outbox: events still in memory at shutdown were not stored",
                extra={"events": len(self._pending), "path": str(self.outbox.path)},
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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

    async def flush(self) -> None:
        """Until everything buffered so far is committed."""
        while self._pending or not self._idle.is_set():
            self._wake.set()
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- the synchronous bus callback: never blocks, never loses what it took ----------

    def _on_events(self, events: Sequence[object]) -> None:
        room = self.max_pending - len(self._pending)
        pending = self._pending
        if len(events) <= room:
            pending.extend(events)
        else:
            refused = 0
            for event in events:
                if room > 0 or isinstance(event, OutboxPolicyApplied):
                    pending.append(event)
                    room -= 1
                else:
                    refused += 1
            self.refused_memory += refused
            self._note(EVENTS_STREAM, "memory-full", refused, None, None)
        self._idle.clear()
        self._wake.set()

    # -- the writer task ----------------------------------------------------------------

    async def _run(self) -> None:
        # Two stages: while one chunk is being committed (in aiosqlite's thread),
        # the next one is encoded here. Events leave the buffer only once committed.
        retry_s = 0.1
        commit: asyncio.Task[_AppendOutcome] | None = None
        committing = 0  # events at the head of the buffer that `commit` is storing
        try:
            while True:
                prepared: tuple[int, list[Entry]] | None = None
                if len(self._pending) > committing:
                    self._idle.clear()
                    taken = list(
                        itertools.islice(self._pending, committing, committing + COMMIT_MAX_EVENTS)
                    )
                    prepared = (len(taken), self._entries(taken))
                if commit is not None:
                    try:
                        outcome = await commit
                    except StateStoreError as exc:
                        if self.outbox.state is not OutboxState.OPEN:
                            raise
                        # Keep the events and retry: nothing taken from the bus is dropped.
                        self._outage.failed(exc)
                        commit, committing = None, 0
                        await asyncio.sleep(retry_s)
                        retry_s = min(retry_s * 2, 5.0)
                        continue
                    retry_s = 0.1
                    self._outage.recovered()
                    for _ in range(committing):
                        self._pending.popleft()
                    commit, committing = None, 0
                    self._note_outcome(outcome)
                    self._emit_report()
                if prepared is not None:
                    committing = prepared[0]
                    commit = asyncio.ensure_future(self.outbox.append_entries(prepared[1]))
                    continue
                if self._pending:
                    continue
                self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._report_due_in())
                self._wake.clear()
                self._emit_report()
        finally:
            if commit is not None:
                commit.cancel()
                await asyncio.gather(commit, return_exceptions=True)

    def _note_outcome(self, outcome: _AppendOutcome) -> None:
        for stream, (count, first, last) in outcome.dropped.items():
            self._note(stream, CapPolicy.DROP_OLDEST.value, count, first, last)
        for stream, count in outcome.rejected.items():
            self._note(stream, CapPolicy.REJECT_NEW.value, count, None, None)

    def _entries(self, events: Sequence[object]) -> list[Entry]:
        entries: list[Entry] = []
        routes = self.routes.items()
        for event in events:
            try:
                type_name, data = pack_event(event)
            except WireError as exc:
                self.unencodable += 1
                name = type(event).__name__
                if name not in self._unencodable_types:
                    self._unencodable_types.add(name)
                    log.error("outbox: event cannot be encoded; skipped", extra={"error": str(exc)})
                continue
            exempt = type(event) is OutboxPolicyApplied
            entries.append((EVENTS_STREAM, type_name, data, exempt))
            for stream, types in routes:
                if type_name in types:
                    entries.append((stream, type_name, data, exempt))
        return entries

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


# --------------------------------------------------------------------------- the component


class OutboxComponent:
    """The outbox and its bus writer as one LineService component.

    List it before the MQTT and QMIB components: they find it on
    ``service.components`` (:func:`find_outbox`) and it must stop after them.
    """

    def __init__(self, service: LineService) -> None:
        self._service = service
        config = service.config
        cfg = config.outbox
        self.outbox = Outbox(
            cfg.path,
            synchronous=cfg.synchronous,
            max_bytes=cfg.max_bytes,
            policy=CapPolicy(cfg.policy),
        )
        routes: dict[str, frozenset[str]] = {}
        if config.qmib.enabled:
            routes[QMIB_STREAM] = frozenset(config.qmib.deliver_events)
        self.writer = OutboxWriter(
            self.outbox,
            service.bus,
            routes=routes,
            max_pending=cfg.max_pending_events,
            report_interval_s=cfg.report_interval_s,
        )

    async def __aenter__(self) -> Self:
        await self.outbox.__aenter__()
        try:
            await self.writer.__aenter__()
        except BaseException:
            await self.outbox.close()
            raise
        depth = self.outbox.depth(EVENTS_STREAM)
        if depth:
            log.info(
                "outbox: events from before this start are waiting for the MES",
                extra={"events": depth, "path": str(self.outbox.path)},
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._drain_machines()
            await self.writer.close()
        finally:
            await self.outbox.close()

    async def _drain_machines(self) -> None:
        """Let every machine publish what its mailbox still holds while we still listen.

        The PLC sources are already stopped (they stop first); an ask queues
        behind every message already routed, so when it returns the events
        those messages produced are on the bus, and so in the outbox.
        """
        from actors.machine import GetStatus  # noqa: PLC0415 - only the service path needs it

        service = self._service
        for machine in service.config.machines:
            with contextlib.suppress(ActorError, KeyError):
                await service.machine_ref(machine.id).ask(GetStatus(time.time()), timeout=5.0)

    def statistics(self) -> OutboxStatistics:
        return statistics_of(self.outbox, self.writer)

    def metric_values(self) -> dict[str, float | int | bool | None]:
        """For edge.metrics (its MetricsSource protocol): the outbox's figures."""
        streams = self.outbox.stream_statistics().values()
        ages = [s.oldest_age_s for s in streams if s.oldest_age_s is not None]
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += Path(f"{self.outbox.path}{suffix}").stat().st_size
        return {
            "outbox_depth": sum(s.depth for s in streams),
            "outbox_oldest_age_s": max(ages) if ages else 0.0,
            "outbox_size_bytes": size,
            "outbox_appended": self.outbox.appended,
            "outbox_dropped": self.outbox.dropped,
            # Refused by the disk cap (reject-new) or, the disk stalled, by the memory bound.
            "outbox_rejected": self.outbox.rejected + self.writer.refused_memory,
        }

    def banner(self) -> list[str]:
        o = self.outbox
        return [
            f"outbox      {o.path} ({o.depth(EVENTS_STREAM)} events waiting; cap "
            f"{o.max_bytes:,} bytes, {o.policy.value}; synchronous={o.synchronous})"
        ]


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


def component(service: LineService) -> OutboxComponent:
    """The LineService component factory (list it before the MQTT and QMIB components)."""
    return OutboxComponent(service)


def find_outbox(service: LineService) -> OutboxComponent:
    """The running outbox component; an EdgeError naming the wiring mistake otherwise."""
    for candidate in service.components:
        if isinstance(candidate, OutboxComponent):
            return candidate
    raise EdgeError(
        "the outbox component (edge.outbox.component) must be listed before the MQTT and "
        "QMIB components"
    )
