"""State in flight between actors at the moment of a cut is saved with its receiver.

A machine's pieces reach its order through the order's mailbox; a quality
station's rejects reach its machine through the machine's. A cut taken while
they wait there saves them as the receiver's pending messages, and a restart
hands them over first: the restored order (machine) counts them once.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgpack

from actors.machine import AddRejects
from actors.oee.events import PiecesCounted
from edge import orders, outbox
from edge.commands import OrderSpec
from edge.config import LineConfig
from edge.outbox import Outbox
from edge.service import LineService
from tests.integration.line.test_line_service import make_config, statuses

WHO = {"source": "mqtt", "user": "mes"}
COMPONENTS = [outbox.component, orders.component]


def copy_state(config: LineConfig, target: Path) -> None:
    """What a kill -9 would leave right now, into ``target``/state.db."""
    target.mkdir(parents=True)
    with (
        sqlite3.connect(config.storage.state_dir / "state.db") as src,
        sqlite3.connect(target / "state.db") as dst,
    ):
        src.backup(dst)


async def test_queued_pieces_and_rejects_are_restored_with_their_receivers(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)  # nothing listens there: no PLC, link down
    ts = time.time()
    async with LineService(config, components=COMPONENTS) as service:
        runtime = service.components[1]
        assert isinstance(runtime, orders.OrdersRuntime)
        await runtime.download_order(OrderSpec("WO-1", "P", 10**6, ("M1",)), **WHO)
        await runtime.release_order("WO-1", **WHO)
        await runtime.start_order("WO-1", **WHO)
        await service.persist_now()
        copy_state(config, tmp_path / "after-kill")
        # Synchronously, as machines and stations hand state on: nobody has run since.
        service.bus.publish([PiecesCounted("M1", ts, "good_count", 1, "WO-1")] * 30)
        service.machine_ref("M2").post(AddRejects(4, ts))
        rows = service.cuts.collect()
    order_row = rows["order/WO-1"]
    machine_row = rows["machine/M2"]
    assert order_row is not None and machine_row is not None
    assert len(msgpack.unpackb(order_row[2])) == 30, "the order had handled none of them"
    assert msgpack.unpackb(machine_row[2]) == [["AddRejects", {"count": 4, "ts": ts}]]

    # That cut committed, and then the kill: restart from it.
    async with Outbox(tmp_path / "after-kill" / "state.db") as box:
        await box.commit_cut([], rows)
    moved = tmp_path / "restarted.toml"
    moved.write_text(
        config.source_path.read_text(encoding="utf-8").replace('"state"', '"after-kill"'),
        encoding="utf-8",
    )
    from edge.config import load_config  # noqa: PLC0415

    async with LineService(load_config(moved), components=COMPONENTS) as restarted:
        order = await restarted.components[1].order_info("WO-1")
        machine = (await statuses(restarted))["M2"]
    assert order.good_count == 30
    shift = machine.current_shift
    assert shift is not None and shift.reject_count == 4
