"""Durable snapshots of actor state in SQLite (aiosqlite, WAL).

Each actor persists one snapshot under a stable key (``machine/FILLER01``).
A snapshot is plain data (dicts, lists, str, int, float, bool, None) encoded
with msgpack; writes replace the previous snapshot atomically, so a ``kill -9``
leaves either the old or the new one, never a torn mix.

The store is a long-lived object: ``async with SnapshotStore(path) as store``;
it refuses use before open and after close.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiosqlite
import msgpack

from edge.errors import StateStoreError

log = logging.getLogger("edge.state_store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    key        TEXT PRIMARY KEY,
    saved_at   REAL NOT NULL,
    version    INTEGER NOT NULL,
    data       BLOB NOT NULL
)
"""

# Bumped when the snapshot layout of any actor changes incompatibly; older
# snapshots are then ignored (logged) instead of being misread.
SNAPSHOT_VERSION = 1


class StoreState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class SnapshotStore:
    """Key → latest snapshot, durable across process restarts."""

    def __init__(self, path: Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.state = StoreState.UNOPENED
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Self:
        if self.state is not StoreState.UNOPENED:
            raise StateStoreError(f"snapshot store {self.path} is {self.state.value}; open it once")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous}")
            await self._db.execute(_SCHEMA)
            await self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            if self._db is not None:
                await self._db.close()
            self.state = StoreState.CLOSED
            raise StateStoreError(f"cannot open snapshot store {self.path}: {exc}") from exc
        self.state = StoreState.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.state is StoreState.OPEN and self._db is not None:
            await self._db.close()
        self._db = None
        self.state = StoreState.CLOSED

    def _conn(self) -> aiosqlite.Connection:
        if self.state is not StoreState.OPEN or self._db is None:
            raise StateStoreError(f"snapshot store {self.path} is {self.state.value}")
        return self._db

    async def save(self, key: str, data: Mapping[str, Any]) -> None:
        await self.save_many({key: data})

    async def save_many(self, snapshots: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace several snapshots in one transaction (one fsync)."""
        if not snapshots:
            return
        db = self._conn()
        now = time.time()
        try:
            rows: Iterable[tuple[str, float, int, bytes]] = [
                (key, now, SNAPSHOT_VERSION, msgpack.packb(data, use_bin_type=True))
                for key, data in snapshots.items()
            ]
        except (TypeError, ValueError) as exc:
            raise StateStoreError(f"snapshot is not plain data: {exc}") from exc
        try:
            await db.executemany(
                "INSERT INTO snapshots(key, saved_at, version, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET saved_at=excluded.saved_at, "
                "version=excluded.version, data=excluded.data",
                rows,
            )
            await db.commit()
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot write snapshots to {self.path}: {exc}") from exc

    async def load(self, key: str) -> dict[str, Any] | None:
        db = self._conn()
        try:
            async with db.execute(
                "SELECT version, data FROM snapshots WHERE key = ?", (key,)
            ) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read snapshot {key!r} from {self.path}: {exc}") from exc
        if row is None:
            return None
        version, blob = row
        if version != SNAPSHOT_VERSION:
            log.warning(
                "ignoring snapshot of an incompatible version",
                extra={"key": key, "version": version, "expected": SNAPSHOT_VERSION},
            )
            return None
        try:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            log.error("ignoring unreadable snapshot", extra={"key": key, "error": str(exc)})
            return None
        if not isinstance(data, dict):
            log.error("ignoring snapshot that is not a mapping", extra={"key": key})
            return None
        return data

    async def delete(self, key: str) -> None:
        db = self._conn()
        try:
            await db.execute("DELETE FROM snapshots WHERE key = ?", (key,))
            await db.commit()
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot delete snapshot {key!r}: {exc}") from exc
