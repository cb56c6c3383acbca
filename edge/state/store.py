"""The line's durable state: one SQLite database, ``<state_dir>/state.db`` (WAL).

It holds what a restart restores and the events bound for the MES, so that one
transaction stores both (docs/state-and-recovery.md)::

    snapshots  key -> an actor's state (msgpack) and the messages in flight to it
    outbox     the event streams (edge.state.outbox), with meta (epoch, sequences) and plans

::

    async with StateStore(path, legacy=LegacyFiles(...)) as store:
        store.record("machine/FILLER01")      # restored at open: Record(data, pending) | None
        await store.run(lambda conn: ...)     # a function on the database's own thread

One thread owns the connection: every transaction is a single function run
there, so a commit costs one hand-off from the event loop, however many
statements it has. Long reads that need not wait behind the writes (the MQTT
forwarder reading a backlog) run on a second, read-only connection and thread
(``store.read``): in WAL mode a reader sees the last commit while a write goes on.

At open, in this order:

- the directory must be usable, else :class:`StateDirError` (``edge run``
  exits 78 naming the path);
- a state directory of the previous layout (``snapshots.db`` and
  ``outbox.db``) without ``state.db`` is migrated into a new ``state.db``
  (built aside, then renamed into place); the old files are renamed
  ``*.migrated``;
- the database is checked (``PRAGMA quick_check``); one that cannot be read is
  renamed ``state.db.corrupt-<UTC time>`` and a fresh one is created; the
  service then starts from the PLC's counters and tells the MES with a
  :class:`StateReset` event (:attr:`StateStore.reset`).

The store refuses use before open and after close.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import msgpack

from edge.errors import StateDirError, StateStoreError

log = logging.getLogger("edge.state_store")

T = TypeVar("T")

STATE_DB = "state.db"
LEGACY_SNAPSHOTS = "snapshots.db"
LEGACY_OUTBOX = "outbox.db"

# Bumped when the layout of a stored record changes incompatibly; older records
# are then ignored (logged) instead of being misread.
SNAPSHOT_VERSION = 1

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS snapshots (
        key       TEXT PRIMARY KEY,
        saved_at  REAL NOT NULL,
        version   INTEGER NOT NULL,
        data      BLOB NOT NULL,   -- msgpack: the state
        pending   BLOB             -- msgpack: messages in flight to it (NULL: none)
    )
    """,
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

UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots(key, saved_at, version, data, pending) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET saved_at=excluded.saved_at, version=excluded.version, "
    "data=excluded.data, pending=excluded.pending"
)
DELETE_SNAPSHOT = "DELETE FROM snapshots WHERE key = ?"

# What a cut writes per key: (version, data, pending) packed, or None to delete it.
SnapshotRow = tuple[int, bytes, bytes | None] | None


@dataclass(frozen=True, slots=True)
class StateReset:
    """The edge started without (part of) its saved state: it could not be read.

    For the MES: pieces and stops from before this start that were not yet
    delivered are lost, and counting starts again from the PLC's counters.
    ``moved_to`` names where the unreadable file was kept for inspection.
    """

    machine_id: str  # "": the edge itself
    ts: float
    reason: str
    moved_to: str


@dataclass(frozen=True, slots=True)
class Record:
    """A restored state: the data a cut saved and the messages then in flight to it."""

    data: dict[str, Any]
    pending: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class LegacyFiles:
    """Where the previous layout kept its two databases."""

    snapshots: Path
    outbox: Path


class StoreState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def pack_row(data: object, pending: Iterable[object] = ()) -> SnapshotRow:
    """A cut's row for one key: the state and the pending messages, as msgpack."""
    try:
        packed = msgpack.packb(data, use_bin_type=True)
        messages = list(pending)
        in_flight = msgpack.packb(messages, use_bin_type=True) if messages else None
    except (TypeError, ValueError, OverflowError) as exc:
        raise StateStoreError(f"state is not plain data: {exc}") from exc
    return (SNAPSHOT_VERSION, packed, in_flight)


class StateStore:
    """The one database of a line's state; ``async with`` opens, checks and migrates it."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        legacy: LegacyFiles | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.legacy = legacy
        self.state = StoreState.UNOPENED
        # Set at open when a file could not be read: publish it for the MES.
        self.resets: list[StateReset] = []
        self.migrated: list[str] = []  # legacy files taken over at this open
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None  # opened by the first read()
        self._read_executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not StoreState.UNOPENED:
            raise StateStoreError(f"state store {self.path} is {self.state.value}; open it once")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-state-db")
        try:
            await self._call(self._open)
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StateStoreError(f"cannot open state database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
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
        reading, self._read_executor = self._read_executor, None
        if reading is not None:
            reading.shutdown(wait=True)  # no read runs any more: close on this thread
            reader, self._reader = self._reader, None
            if reader is not None:
                with contextlib.suppress(sqlite3.Error):
                    reader.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
            executor.shutdown(wait=True)
        self.state = StoreState.CLOSED

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _call(self, fn: Callable[[], T]) -> T:
        executor = self._executor
        if executor is None:
            raise StateStoreError(f"state store {self.path} is {self.state.value}")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the database's thread (one transaction, or reads).

        ``sqlite3.Error`` from ``fn`` becomes :class:`StateStoreError`.
        """
        if self.state is not StoreState.OPEN:
            raise StateStoreError(f"state store {self.path} is {self.state.value}")

        def call() -> T:
            conn = self._conn
            if conn is None:
                raise StateStoreError(f"state store {self.path} is closed")
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise StateStoreError(f"state database {self.path}: {exc}") from exc

        return await self._call(call)

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True) -> T:
        """``fn(connection)`` in one read transaction on a reading connection and thread.

        It sees the database as of the last commit when it starts, and does not
        wait for the writes queued on the database's thread. ``sqlite3.Error``
        becomes :class:`StateStoreError`. ``transaction=False``: ``fn`` gets the
        connection outside a transaction (each statement is a snapshot of its own)
        and begins one itself when it needs one; it leaves none open.
        """
        if self.state is not StoreState.OPEN:
            raise StateStoreError(f"state store {self.path} is {self.state.value}")
        if self._read_executor is None:
            self._read_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="edge-state-read"
            )
        executor = self._read_executor

        def call() -> T:
            try:
                conn = self._reader
                if conn is None:
                    conn = self._reader = sqlite3.connect(
                        f"file:{self.path}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                if not transaction:
                    return fn(conn)
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateStoreError(f"state database {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    # ------------------------------------------------------------------ restored records

    def record(self, key: str) -> Record | None:
        """The state saved under ``key`` by the last committed cut, as read at open."""
        return self._records.get(key)

    def load(self, key: str) -> dict[str, Any] | None:
        """The data of :meth:`record` (None when there is none)."""
        found = self._records.get(key)
        return found.data if found is not None else None

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self._records if key.startswith(prefix))

    # ------------------------------------------------------------------ opening (db thread)

    def _open(self) -> None:
        self._check_directory()
        if self.legacy is not None:
            self._take_over_legacy(self.legacy)
        try:
            conn = self._connect(self.path)
            problem = _integrity_problem(conn)
        except sqlite3.DatabaseError as exc:
            conn = None
            problem = str(exc)
        if problem is not None:
            if conn is not None:
                conn.close()
            moved = self._move_aside(self.path, "corrupt")
            self._note_reset(self.path, moved, problem)
            try:
                conn = self._connect(self.path)
            except sqlite3.Error as exc:
                raise StateStoreError(f"cannot create state database {self.path}: {exc}") from exc
        assert conn is not None
        try:
            _create_schema(conn)
            self._records = _read_records(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StateStoreError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn

    def _check_directory(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StateDirError(
                f"state directory {directory} is not usable: {exc.strerror or exc}"
            ) from exc

    def _connect(self, path: Path) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _move_aside(self, path: Path, why: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        target = path.with_name(f"{path.name}.{why}-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.replace(f"{target}{suffix}")
        return target

    def _note_reset(self, path: Path, moved: Path, problem: str) -> None:
        log.error(
            "state database %s cannot be read (%s); moved aside to %s, starting from the "
            "PLC counters",
            path,
            problem,
            moved,
        )
        self.resets.append(
            StateReset(
                machine_id="",
                ts=self._clock(),
                reason=f"{path.name} could not be read ({problem}); saved state discarded",
                moved_to=str(moved),
            )
        )

    # -- the previous layout ----------------------------------------------------------

    def _take_over_legacy(self, legacy: LegacyFiles) -> None:
        found = [p for p in (legacy.snapshots, legacy.outbox) if p.exists()]
        if not found:
            return
        if self.path.exists():
            # A migration that was interrupted after state.db was in place, or files
            # an older release wrote after this one ran: state.db is the truth.
            for old in found:
                moved = self._move_aside(old, "migrated")
                log.warning(
                    "old-layout state file found beside state.db; moved aside, not merged",
                    extra={"path": str(old), "moved_to": str(moved)},
                )
            return
        self._migrate(legacy, found)

    def _migrate(self, legacy: LegacyFiles, found: list[Path]) -> None:
        """Build state.db from the previous layout aside, then rename it into place."""
        building = self.path.with_name(f"{self.path.name}.migrating")
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{building}{suffix}").unlink()
        copied: dict[str, int] = {}
        unreadable: list[tuple[Path, str]] = []
        conn = sqlite3.connect(building, isolation_level=None)
        try:
            _create_schema(conn)
            for path, tables in (
                (legacy.snapshots, ("snapshots",)),
                (legacy.outbox, ("outbox", "meta", "plans")),
            ):
                if not path.exists():
                    continue
                problem = _copy_legacy(conn, path, tables, copied)
                if problem is not None:
                    unreadable.append((path, problem))
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('migrated_from', ?)",
                (", ".join(p.name for p in found),),
            )
        except sqlite3.Error as exc:
            conn.close()
            raise StateStoreError(f"cannot migrate {found} into {building}: {exc}") from exc
        conn.close()
        building.replace(self.path)
        _fsync_directory(self.path.parent)
        for path, problem in unreadable:
            moved = self._move_aside(path, "corrupt")
            self._note_reset(path, moved, problem)
        for path in found:
            if path.exists():
                self._move_aside_exact(path)
        self.migrated = [p.name for p in found]
        log.warning(
            "state migrated from the previous layout (%s) into %s; old files kept as *.migrated",
            ", ".join(str(p) for p in found),
            self.path,
            extra={f"{k}_rows": v for k, v in copied.items()},
        )

    def _move_aside_exact(self, path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.replace(f"{path}.migrated{suffix}")


def _copy_legacy(
    conn: sqlite3.Connection, path: Path, tables: tuple[str, ...], copied: dict[str, int]
) -> str | None:
    """Copy ``tables`` of an old-layout file in one transaction; a problem text if unreadable."""
    try:
        conn.execute("ATTACH DATABASE ? AS legacy", (str(path),))
    except sqlite3.DatabaseError as exc:
        return str(exc)
    try:
        problem = _integrity_problem(conn, "legacy")
        if problem is not None:
            return problem
        present = {name for (name,) in conn.execute("SELECT name FROM legacy.sqlite_master")}
        conn.execute("BEGIN IMMEDIATE")
        for table in tables:
            if table not in present:
                continue
            if table == "snapshots":
                cursor = conn.execute(
                    "INSERT INTO main.snapshots(key, saved_at, version, data, pending) "
                    "SELECT key, saved_at, version, data, NULL FROM legacy.snapshots"
                )
            else:
                # The table names are this module's own constants.
                cursor = conn.execute(f"INSERT INTO main.{table} SELECT * FROM legacy.{table}")
            copied[table] = cursor.rowcount
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for table in tables:
            copied.pop(table, None)
        return str(exc)
    finally:
        conn.execute("DETACH DATABASE legacy")
    return None


def _integrity_problem(conn: sqlite3.Connection, schema: str = "main") -> str | None:
    """None when ``PRAGMA quick_check`` finds the file sound, else what it found."""
    rows = conn.execute(f"PRAGMA {schema}.quick_check").fetchall()
    messages = [str(row[0]) for row in rows]
    if messages == ["ok"]:
        return None
    return "; ".join(messages[:3]) or "quick_check returned nothing"


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


def _read_records(conn: sqlite3.Connection) -> dict[str, Record]:
    records: dict[str, Record] = {}
    for key, version, blob, pending in conn.execute(
        "SELECT key, version, data, pending FROM snapshots"
    ):
        if version != SNAPSHOT_VERSION:
            log.warning(
                "ignoring saved state of an incompatible version",
                extra={"key": key, "version": version, "expected": SNAPSHOT_VERSION},
            )
            continue
        try:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            messages = msgpack.unpackb(pending, raw=False, strict_map_key=False) if pending else []
        except (ValueError, msgpack.UnpackException) as exc:
            log.error("ignoring unreadable saved state", extra={"key": key, "error": str(exc)})
            continue
        if not isinstance(data, dict) or not isinstance(messages, list):
            log.error("ignoring saved state that is not a mapping", extra={"key": key})
            continue
        records[key] = Record(data, tuple(messages))
    return records


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a power cut must not undo it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
