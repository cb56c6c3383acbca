"""The line display's history across restarts: saved per machine in the line's
state database, only what changed, and a whole-line record of an earlier
release taken over (edge.serve.web.history)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgpack

from actors.machine import GetStatus
from actors.oee.events import PiecesCounted
from edge.serve.web.history import LEGACY_SNAPSHOT_KEY, MACHINE_KEY_PREFIX, LineHistory
from tests.integration.web.test_api import feed, running_line

H1_KEY = MACHINE_KEY_PREFIX + "H1"


def _keys(state_db: Path) -> set[str]:
    with sqlite3.connect(state_db) as db:
        return {key for (key,) in db.execute("SELECT key FROM snapshots")}


def test_a_cut_saves_only_the_machines_whose_history_changed() -> None:
    history = LineHistory(["M1", "M2"], "UTC")
    history.consume([PiecesCounted("M1", 3600.0, "total_count", 5, None)])
    assert set(history.changed_snapshots()) == {"M1"}
    assert history.changed_snapshots() == {}  # nothing since
    history.consume([PiecesCounted("M9", 3600.0, "total_count", 5, None)])  # not on the line
    assert history.changed_snapshots() == {}
    history.touch_all()
    assert set(history.changed_snapshots()) == {"M1", "M2"}


async def test_the_hourly_pieces_survive_a_restart_and_an_old_record_is_taken_over(
    tmp_path: Path, free_port: int
) -> None:
    now = time.time() - 120
    async with running_line(tmp_path, free_port) as (service, web, _):
        await feed(service, (now, "running", True), (now, "total_count", 100))
        await feed(service, (now + 30, "total_count", 130))  # +30
        await service.machine_ref("H1").ask(GetStatus(now + 30))  # handled, published
        await service.persist_now()
        before = web.history.hourly("H1", now - 3600, now + 60)
    assert sum(h.total for h in before) == 30
    state_db = tmp_path / "state" / "state.db"
    assert H1_KEY in _keys(state_db) and LEGACY_SNAPSHOT_KEY not in _keys(state_db)

    async with running_line(tmp_path, free_port) as (service, web, _):
        assert web.history.hourly("H1", now - 3600, now + 60) == before

    # As an earlier release saved it: the whole line under one key.
    with sqlite3.connect(state_db) as db:
        (data,) = db.execute("SELECT data FROM snapshots WHERE key = ?", (H1_KEY,)).fetchone()
        whole = msgpack.packb({"H1": msgpack.unpackb(data)}, use_bin_type=True)
        db.execute(
            "UPDATE snapshots SET key = ?, data = ? WHERE key = ?",
            (LEGACY_SNAPSHOT_KEY, whole, H1_KEY),
        )
    async with running_line(tmp_path, free_port) as (service, web, _):
        assert web.history.hourly("H1", now - 3600, now + 60) == before
        await service.persist_now()
    keys = _keys(state_db)
    assert H1_KEY in keys and LEGACY_SNAPSHOT_KEY not in keys
