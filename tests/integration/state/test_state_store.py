"""The snapshot store against a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.errors import StateStoreError
from edge.state_store import SnapshotStore


async def test_snapshots_survive_reopen_and_replace_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "snapshots.db"
    async with SnapshotStore(path) as store:
        await store.save("machine/M1", {"count": 1, "reasons": {"17": 30.5}, "open": None})
        await store.save_many({"machine/M1": {"count": 2}, "machine/M2": {"x": [1, 2.5]}})
    async with SnapshotStore(path, synchronous="NORMAL") as store:
        assert await store.load("machine/M1") == {"count": 2}
        assert await store.load("machine/M2") == {"x": [1, 2.5]}
        assert await store.load("machine/nope") is None
        await store.delete("machine/M2")
        assert await store.load("machine/M2") is None


async def test_store_refuses_reuse_and_use_after_close(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "s.db")
    with pytest.raises(StateStoreError, match="unopened"):
        await store.load("k")
    async with store:
        pass
    with pytest.raises(StateStoreError, match="closed"):
        await store.save("k", {})
    with pytest.raises(StateStoreError, match="open it once"):
        async with store:
            pass


async def test_non_plain_snapshot_is_rejected_and_earlier_one_kept(tmp_path: Path) -> None:
    async with SnapshotStore(tmp_path / "s.db") as store:
        await store.save("k", {"v": 1})
        with pytest.raises(StateStoreError, match="not plain data"):
            await store.save("k", {"v": object()})
        assert await store.load("k") == {"v": 1}


async def test_corrupt_or_foreign_version_snapshot_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SnapshotStore(path) as store:
        await store.save("good", {"v": 1})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO snapshots VALUES ('bad', 0, 1, x'c1')")  # 0xc1: never used
        db.execute("INSERT INTO snapshots VALUES ('old', 0, 999, x'80')")
    async with SnapshotStore(path) as store:
        assert await store.load("bad") is None
        assert await store.load("old") is None
        assert await store.load("good") == {"v": 1}


async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateStoreError, match="cannot open snapshot store"):
        async with SnapshotStore(blocker / "sub" / "s.db"):
            pass
