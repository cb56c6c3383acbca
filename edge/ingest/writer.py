"""Writes checked batches into PostgreSQL: one transaction per batch, exactly once.

Per batch, on one pooled connection, in one transaction::

    SELECT plant.ingest_begin(...)        -- dedup by batch id, seq bookkeeping, gaps
    COPY plant.events (binary)            -- only the seqs not stored yet
    SELECT plant.ingest_derive(...)       -- the typed tables, from those rows

``ingest_begin`` returns NULL for a batch id already stored (the transaction
then changes nothing: a redelivery is a no-op) and otherwise the ranges of
the batch's sequence numbers not stored yet (all of them, unless another batch
id carried some: those are skipped, never doubled).

Failures are sorted by what retrying would do:

- the server cannot be reached, or the statement failed for a reason that may
  pass (connection lost, shutdown, out of resources, deadlock or serialization
  failure, a missing table while someone restores the schema): :class:`StoreUnavailableError`,
  the caller waits and tries again; the message stays unacknowledged;
- the server refuses the data itself (SQLSTATE classes 22 data exception and
  23 integrity violation): :class:`RefusedBatch`, the caller dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from edge.ingest.decode import EVENT_COLUMNS, DecodedBatch, EventRow
from edge.ingest.errors import RefusedBatch, StoreError, StoreUnavailableError

__all__ = ["RefusedBatch", "StoreWriter", "WriteOutcome", "classify"]

log = logging.getLogger("edge.ingest.writer")

_REFUSING_CLASSES = ("22", "23")

_BEGIN = "SELECT plant.ingest_begin($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
_DERIVE = "SELECT plant.ingest_derive($1, $2, $3, $4, $5, $6)"
_DEAD_LETTER = (
    "INSERT INTO plant.dead_letters "
    "(worker, topic, reason, edge_id, epoch, batch_id, seq_first, seq_last, payload) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    duplicate: bool  # the batch id was stored before: nothing written
    new_events: int  # events stored now
    skipped_events: int  # events of the batch already stored under another batch id


def classify(exc: BaseException) -> StoreError:
    """The library error as a StoreUnavailableError (retry) or a RefusedBatch (dead letter)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] in _REFUSING_CLASSES:
            return RefusedBatch(f"the database refused the batch: {exc} (SQLSTATE {state})")
        return StoreUnavailableError(f"{type(exc).__name__}: {exc} (SQLSTATE {state})")
    return StoreUnavailableError(f"{type(exc).__name__}: {exc}")


def _in_ranges(rows: Sequence[EventRow], ranges: Sequence[int]) -> list[EventRow]:
    pairs = list(zip(ranges[::2], ranges[1::2], strict=True))
    return [row for row in rows if any(lo <= row[2] <= hi for lo, hi in pairs)]


class StoreWriter:
    """Batches and dead letters into the store, over a connection pool it does not own."""

    def __init__(self, pool: asyncpg.Pool, worker: str) -> None:
        self.pool = pool
        self.worker = worker

    async def write(self, decoded: DecodedBatch) -> WriteOutcome:
        batch = decoded.batch
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                ranges = await conn.fetchval(
                    _BEGIN,
                    batch.edge_id,
                    batch.epoch,
                    batch.batch_id,
                    batch.seq_first,
                    batch.seq_last,
                    batch.historical,
                    datetime.fromtimestamp(batch.sent_at, UTC),
                    decoded.site,
                    decoded.line,
                    self.worker,
                )
                if ranges is None:
                    return WriteOutcome(True, 0, 0)
                rows: Sequence[EventRow] = decoded.rows
                if list(ranges) != [batch.seq_first, batch.seq_last]:
                    rows = _in_ranges(rows, ranges)
                if rows:
                    await conn.copy_records_to_table(
                        "events", schema_name="plant", columns=EVENT_COLUMNS, records=rows
                    )
                    types = decoded.types if rows is decoded.rows else sorted({r[3] for r in rows})
                    await conn.execute(
                        _DERIVE,
                        batch.edge_id,
                        batch.epoch,
                        batch.batch_id,
                        batch.seq_first,
                        batch.seq_last,
                        list(types),
                    )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise classify(exc) from exc
        return WriteOutcome(False, len(rows), decoded.events - len(rows))

    async def dead_letter(
        self,
        topic: str,
        reason: str,
        payload: bytes,
        header: dict[str, object] | None = None,
    ) -> None:
        """Keep a message the store cannot take, with the reason; StoreError when it cannot."""
        found = header or {}
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    _DEAD_LETTER,
                    self.worker,
                    topic,
                    reason,
                    found.get("edge_id"),
                    found.get("epoch"),
                    found.get("batch_id"),
                    found.get("seq_first"),
                    found.get("seq_last"),
                    payload,
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailableError(f"cannot store a dead letter: {exc}") from exc
