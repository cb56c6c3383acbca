"""The committed state is never newer nor older than the committed events.

While a line runs (pieces arriving every poll, an order counting them), the
state database is copied at random moments, as a ``kill -9`` right then would
leave it (SQLite's backup reads the last committed transaction). In every
copy, each machine's saved counter readings are exactly its first reading
plus the pieces of its committed events, and the order's saved tally plus the
pieces still queued for it are exactly the committed pieces stamped with it. A
torn write (a power cut during a commit) loses that commit whole.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from actors.oee.counters import ROLE_INDEX
from actors.oee.events import PiecesCounted
from edge import orders, outbox
from edge.commands import OrderSpec
from edge.config import LineConfig, SimulatorConfig, load_config
from edge.outbox import EVENTS_STREAM, Outbox
from edge.service import LineService
from edge.simulator import SimTruth, SimulatedLine, machine_specs
from edge.state_store import StateStore, pack_row
from edge.wire import decode_envelope
from tests.integration.line.test_line_service import _sim_fields, baseline_seen, line_toml

WHO = {"source": "mqtt", "user": "mes"}
BITS = {"M1": 32, "M2": 16}  # generic-modbus and packml-modbus counters
COPIES = 12


def consumer_line(tmp_path: Path, sim_port: int, mqtt_port: int) -> LineConfig:
    path = tmp_path / "line.toml"
    mqtt = f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\nprefix = "e"\n'
    path.write_text(line_toml(sim_port) + mqtt, encoding="utf-8")
    return load_config(path)


def snapshot_copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def readings(truth: SimTruth) -> dict[str, int]:
    return {
        "total_count": truth.total_reading,
        "good_count": truth.good_reading,
        "reject_count": truth.reject_reading,
    }


async def check_copy(path: Path, first: dict[str, dict[str, int]], order_id: str) -> int:
    """Asserts the invariant on one copy; returns how many pieces it had committed."""
    async with StateStore(path) as store:
        rows = await store.run(
            lambda db: db.execute(
                "SELECT payload FROM outbox WHERE stream = ? ORDER BY seq", (EVENTS_STREAM,)
            ).fetchall()
        )
        machines = {m: store.record(f"machine/{m}") for m in first}
        order = store.record(f"order/{order_id}")
    pieces: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for_order: dict[str, int] = defaultdict(int)
    for (payload,) in rows:
        event = decode_envelope(payload)
        if event.type == PiecesCounted.__name__:
            data = event.data
            pieces[data["machine_id"]][data["role"]] += data["count"]
            if data["order_id"] == order_id and data["machine_id"] == "M1":
                for_order[data["role"]] += data["count"]
    for machine, start in first.items():
        record = machines[machine]
        assert record is not None, machine
        saved = record.data["core"]["counter_value"]
        for role, reading in start.items():
            expected = (reading + pieces[machine][role]) % (1 << BITS[machine])
            assert saved[ROLE_INDEX[role]] == expected, (
                f"{path.name} {machine} {role}: saved reading {saved[ROLE_INDEX[role]]}, "
                f"first reading {reading} + committed pieces {pieces[machine][role]}"
            )
    assert order is not None
    tally: list[Any] = list(order.data["tallies"]["M1"][:4])
    for kind, fields in order.pending:
        if kind == "AttributePieces" and fields["machine_id"] == "M1":
            tally[ROLE_INDEX[fields["role"]]] += fields["count"]
    for role, count in for_order.items():
        assert tally[ROLE_INDEX[role]] == count, f"{path.name} order {role}"
    return sum(pieces["M1"].values())


async def test_every_committed_state_agrees_exactly_with_the_committed_events(
    tmp_path: Path, free_port_factory: Any
) -> None:
    rng = random.Random(5)
    config = consumer_line(tmp_path, free_port_factory(), free_port_factory())
    state_db = config.storage.state_dir / "state.db"
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    copies = tmp_path / "copies"
    copies.mkdir()
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        components = [outbox.component, orders.component]
        async with LineService(config, components=components) as service:
            await baseline_seen(service)
            first = {m: readings(sim.ground_truth(m)) for m in ("M1", "M2")}
            runtime = service.components[1]
            assert isinstance(runtime, orders.OrdersRuntime)
            await runtime.download_order(OrderSpec("WO-1", "P", 10**6, ("M1",)), **WHO)
            await runtime.release_order("WO-1", **WHO)
            await runtime.start_order("WO-1", **WHO)
            sim.resume()
            for n in range(COPIES):
                await asyncio.sleep(rng.uniform(0.01, 0.4))
                await asyncio.to_thread(snapshot_copy, state_db, copies / f"copy{n:02}.db")
    counts = [await check_copy(copies / f"copy{n:02}.db", first, "WO-1") for n in range(COPIES)]
    assert counts[-1] > 20, counts


async def test_a_commit_torn_by_a_power_cut_is_lost_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    torn = tmp_path / "torn"
    async with Outbox(path) as box:
        first = [PiecesCounted("M1", 1.0, "total_count", 1, None)]
        await box.commit_cut(first, {"machine/M1": pack_row({"counter": 1})})
        wal_after_first = wal_size(path)
        more = [PiecesCounted("M1", 2.0 + i, "total_count", 1, None) for i in range(500)]
        await box.commit_cut(more, {"machine/M1": pack_row({"counter": 501})})
        # The files as a power cut during that second commit leaves them.
        tear_copy(path, torn, wal_after_first)
    async with Outbox(torn / "state.db") as box:
        assert box.last_seq(EVENTS_STREAM) == 1
        assert box.store.load("machine/M1") == {"counter": 1}, "state and events of one commit"


def wal_size(db: Path) -> int:
    return Path(f"{db}-wal").stat().st_size


def tear_copy(db: Path, target: Path, keep: int) -> None:
    """Copy ``db`` and its WAL into ``target``, the WAL cut half-way after ``keep`` bytes."""
    target.mkdir()
    shutil.copy(db, target / db.name)
    content = Path(f"{db}-wal").read_bytes()
    Path(f"{target / db.name}-wal").write_bytes(content[: keep + (len(content) - keep) // 2])
