"""A state directory written by the previous release (snapshots.db + outbox.db) upgrades in place.

The fixture in tests/fixtures/legacy_0772bec was written by the code of commit
0772bec itself (its generate.py says how); these tests start the current code on
a copy of it.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge import orders, outbox
from edge.config import LineConfig, load_config
from edge.outbox import EVENTS_STREAM, BatchPlan
from edge.service import LineService
from edge.state_store import LegacyFiles, StateStore
from tests.integration.line.test_line_service import statuses

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_0772bec"
COMPONENTS = [outbox.component, orders.component]


def old_line(tmp_path: Path, port: int) -> LineConfig:
    """The fixture's line, its state directory copied, no simulator (the PLC is away)."""
    text = (FIXTURE / "line.toml").read_text(encoding="utf-8")
    text = text.replace("enabled = true", "enabled = false").replace("15911", str(port))
    (tmp_path / "line.toml").write_text(text, encoding="utf-8")
    shutil.copytree(FIXTURE / "state", tmp_path / "state")
    return load_config(tmp_path / "line.toml")


def expected() -> dict[str, Any]:
    return json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


def legacy_rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT seq, payload FROM outbox WHERE stream = 'events' ORDER BY seq"
        ).fetchall()


async def test_the_previous_layout_is_migrated_with_counts_orders_and_unsent_events(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    config = old_line(tmp_path, free_port)
    state = config.storage.state_dir
    want = expected()
    old_rows = legacy_rows(state / "outbox.db")
    assert len(old_rows) == want["depth"]

    with caplog.at_level(logging.WARNING, logger="edge.state_store"):
        async with LineService(config, components=COMPONENTS) as service:
            assert service.store.migrated == ["snapshots.db", "outbox.db"]
            box = service.outbox
            assert box.epoch == want["epoch"], "the MES sees the same epoch: no restart of seq"
            assert await box.plans(EVENTS_STREAM) == [BatchPlan(*p) for p in want["plans"]]
            rows = await box.read(EVENTS_STREAM, 0, len(old_rows))
            assert [(r.seq, r.payload) for r in rows] == old_rows, "unsent events kept as they were"
            # The machines continue from their counter baselines, the order from its counts.
            machines = await statuses(service)
            assert {m: s.counters for m, s in machines.items()} == want["counters"]
            order = await service.components[1].order_info("WO-OLD")
            assert (order.good_count, order.reject_count, order.status) == (
                want["order"]["good"],
                want["order"]["reject"],
                want["order"]["status"],
            )
            await service.persist_now()
            new = await box.read(EVENTS_STREAM, len(old_rows), 100)
            assert new and new[0].seq == want["next_seq"], "numbering goes on without a gap"
    migrated = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert len(migrated) == 1, "logged once"
    assert str(state / "snapshots.db") in migrated[0] and str(state / "state.db") in migrated[0]
    for name in ("snapshots.db", "outbox.db"):
        assert not (state / name).exists()
        assert (state / f"{name}.migrated").is_file()

    # The next start reads state.db alone: nothing migrated twice.
    async with LineService(config, components=COMPONENTS) as service:
        assert service.store.migrated == []
        order = await service.components[1].order_info("WO-OLD")
        assert order.good_count == want["order"]["good"]


async def test_what_a_kill_left_in_the_old_write_ahead_log_is_migrated_too(
    tmp_path: Path, free_port: int
) -> None:
    config = old_line(tmp_path, free_port)
    source = config.storage.state_dir
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copy(source / "snapshots.db", killed / "snapshots.db")
    # One more committed event, only in the WAL: what a kill -9 of the old release leaves.
    conn = sqlite3.connect(source / "outbox.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        with conn:
            conn.execute("INSERT INTO outbox VALUES ('events', 10321, 0, x'80', 0)")
        for suffix in ("", "-wal"):
            shutil.copy(f"{source / 'outbox.db'}{suffix}", f"{killed / 'outbox.db'}{suffix}")
    finally:
        conn.close()
    async with StateStore(
        killed / "state.db", legacy=LegacyFiles(killed / "snapshots.db", killed / "outbox.db")
    ) as store:
        seqs = await store.run(
            lambda db: [s for (s,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]
        )
        assert store.load("machine/M1") is not None
    assert seqs[-1] == 10321
    assert len(seqs) == expected()["depth"] + 1


async def test_an_unreadable_old_file_is_set_aside_and_the_readable_one_migrated(
    tmp_path: Path, free_port: int
) -> None:
    config = old_line(tmp_path, free_port)
    state = config.storage.state_dir
    (state / "outbox.db").write_bytes(b"\x00garbage" * 512)
    legacy = LegacyFiles(state / "snapshots.db", state / "outbox.db")
    async with StateStore(state / "state.db", legacy=legacy) as store:
        (reset,) = store.resets
        assert "outbox.db" in reset.reason
        assert Path(reset.moved_to).name.startswith("outbox.db.corrupt-")
        assert store.load("orders/index") is not None, "the snapshots were migrated"
        depth = await store.run(lambda db: db.execute("SELECT COUNT(*) FROM outbox").fetchone())
    assert depth == (0,)


async def test_old_files_beside_an_existing_state_db_are_moved_aside_not_merged(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    config = old_line(tmp_path, free_port)
    state = config.storage.state_dir
    async with StateStore(state / "state.db"):
        pass  # a state.db already in place (a migration interrupted after its rename)
    legacy = LegacyFiles(state / "snapshots.db", state / "outbox.db")
    with caplog.at_level(logging.WARNING, logger="edge.state_store"):
        async with StateStore(state / "state.db", legacy=legacy) as store:
            assert store.migrated == []
            assert store.load("orders/index") is None
    assert "moved aside, not merged" in caplog.text
    moved = sorted(p.name.split("-")[0] for p in state.iterdir() if "migrated" in p.name)
    assert moved == ["outbox.db.migrated", "snapshots.db.migrated"]
    assert not (state / "outbox.db").exists() and not (state / "snapshots.db").exists()
