"""The state database against a real SQLite file: saved state, corrupt files, the directory."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from actors.oee.events import PiecesCounted
from edge.cut import CutSources, Saved
from edge.errors import StateDirError, StateStoreError
from edge.outbox import EVENTS_STREAM, Outbox
from edge.service import LineService
from edge.state_store import StateStore, pack_row
from tests.integration.orders.test_orders_runtime import make_config


async def save(path: Path, rows: dict[str, object | None], **kwargs: object) -> None:
    """One cut of ``rows`` (key -> plain data, or None to delete) committed to ``path``."""
    async with Outbox(path, **kwargs) as outbox:  # type: ignore[arg-type]
        packed = {k: (pack_row(v) if v is not None else None) for k, v in rows.items()}
        await outbox.commit_cut([], packed)


async def test_saved_state_survives_reopen_and_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    await save(path, {"machine/M1": {"count": 1, "reasons": {"17": 30.5}, "open": None}})
    await save(path, {"machine/M1": {"count": 2}, "machine/M2": {"x": [1, 2.5]}})
    async with StateStore(path, synchronous="NORMAL") as store:
        assert store.load("machine/M1") == {"count": 2}
        assert store.load("machine/M2") == {"x": [1, 2.5]}
        assert store.load("machine/nope") is None
        assert store.keys("machine/") == ["machine/M1", "machine/M2"]
    await save(path, {"machine/M2": None})
    async with StateStore(path) as store:
        assert store.load("machine/M2") is None
        assert store.load("machine/M1") == {"count": 2}


async def test_pending_messages_are_saved_with_their_receiver(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with Outbox(path) as outbox:
        row = pack_row({"n": 1}, [["AddRejects", {"count": 2, "ts": 5.0}]])
        await outbox.commit_cut([], {"machine/M1": row})
    async with StateStore(path) as store:
        record = store.record("machine/M1")
        assert record is not None
        assert record.data == {"n": 1}
        assert record.pending == (["AddRejects", {"count": 2, "ts": 5.0}],)


async def test_store_refuses_reuse_and_use_after_close(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(StateStoreError, match="unopened"):
        await store.run(lambda conn: None)
    async with store:
        pass
    with pytest.raises(StateStoreError, match="closed"):
        await store.run(lambda conn: None)
    with pytest.raises(StateStoreError, match="open it once"):
        async with store:
            pass


async def test_state_that_is_not_plain_data_is_refused_and_the_saved_one_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(StateStoreError, match="not plain data"):
        pack_row({"v": object()})
    path = tmp_path / "s.db"
    await save(path, {"k": {"v": 1}})
    cuts = CutSources()
    cuts.add("test", lambda: {"k": Saved({"v": object()}), "other": Saved({"v": 2})})
    with caplog.at_level(logging.ERROR, logger="edge.cut"):
        rows = cuts.collect()
    assert set(rows) == {"other"}, "the bad one left out, the others saved"
    assert "state not saved" in caplog.text
    async with StateStore(path) as store:
        assert store.load("k") == {"v": 1}


async def test_an_unreadable_or_foreign_version_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await save(path, {"good": {"v": 1}})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO snapshots VALUES ('bad', 0, 1, x'c1', NULL)")  # 0xc1: never used
        db.execute("INSERT INTO snapshots VALUES ('old', 0, 999, x'80', NULL)")
    async with StateStore(path) as store:
        assert store.load("bad") is None
        assert store.load("old") is None
        assert store.load("good") == {"v": 1}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_a_corrupt_database_is_moved_aside_named_and_reported(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    async with Outbox(path) as outbox:
        # Enough rows that the file has many pages; then close (checkpointed).
        await outbox.append(
            EVENTS_STREAM,
            [PiecesCounted("M1", 1.7e9 + i, "total_count", 1, None) for i in range(3000)],
        )
        old_epoch = outbox.epoch
    original = path.read_bytes()
    damaged = (
        b"this is not an SQLite database at all" * 200
        if damage == "garbage"
        else original[: len(original) // 2]
    )
    path.write_bytes(damaged)
    with caplog.at_level(logging.ERROR, logger="edge.state_store"):
        async with Outbox(path) as outbox:
            resets = outbox.store.resets
            assert outbox.last_seq(EVENTS_STREAM) == 0, "a fresh database"
            assert outbox.epoch != old_epoch, "a new epoch tells the MES numbering restarted"
    (reset,) = resets
    assert "state.db" in reset.reason and reset.machine_id == ""
    assert reset.moved_to in caplog.text, "the log names where the file went"
    assert_kept(Path(reset.moved_to), tmp_path, damaged)


def assert_kept(moved: Path, directory: Path, content: bytes) -> None:
    assert moved.parent == directory and moved.name.startswith("state.db.corrupt-")
    assert moved.read_bytes() == content, "kept as it was, for inspection"


async def test_a_state_directory_that_cannot_be_used_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateDirError, match=str(blocker / "sub")):
        async with StateStore(blocker / "sub" / "state.db"):
            pass


async def test_the_line_tells_the_mes_its_state_was_reset_and_starts_afresh(
    tmp_path: Path, free_port: int
) -> None:
    from edge import outbox as outbox_module  # noqa: PLC0415
    from edge.service import LineService  # noqa: PLC0415
    from edge.wire import decode_envelope  # noqa: PLC0415
    from tests.integration.line.test_line_service import make_config  # noqa: PLC0415

    config = make_config(tmp_path, free_port)
    state = config.storage.state_dir
    async with LineService(config, components=[outbox_module.component]):
        pass
    async with StateStore(state / "state.db") as store:
        assert store.record("machine/M1") is not None
    write_garbage(state / "state.db")
    async with LineService(config, components=[outbox_module.component]) as service:
        assert service.store.record("machine/M1") is None, "no saved state: PLC counters rule"
        await service.persist_now()
        (first, *_) = await service.outbox.read(EVENTS_STREAM, 0, 10)
    event = decode_envelope(first.payload)
    assert (first.seq, event.type) == (1, "StateReset")
    assert "state.db could not be read" in event.data["reason"]
    assert event.data["moved_to"].startswith(str(state / "state.db.corrupt-"))


def write_garbage(path: Path) -> None:
    path.write_bytes(b"\x13\x37 not a database " * 300)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def test_a_machine_row_its_core_cannot_use_fails_the_start_as_a_state_error(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    await save(tmp_path / "state" / "state.db", {"machine/M1": {"core": {"version": 99}}})
    with pytest.raises(StateStoreError, match="version 99 is not 1: cannot restore M1"):
        async with LineService(config):
            pass
