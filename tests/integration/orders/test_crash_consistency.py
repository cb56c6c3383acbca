"""A ``kill -9`` leaves the state database as of the last line-wide save. Restarting
from exactly that (a consistent SQLite backup taken right after a save) must give
order counts that agree with the machine's: no piece lost or counted twice in the
order, however the save fell between the pieces in flight."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edge.commands import OrderSpec
from edge.config import SimulatorConfig, load_config
from edge.orders import OrdersRuntime, component
from edge.service import LineService
from edge.simulator import SimulatedLine, machine_specs
from tests.integration.line.test_line_service import (
    _sim_fields,
    baseline_seen,
    counted,
    delta,
    line_toml,
    settle,
    statuses,
)

WHO = {"source": "mqtt", "user": "mes"}


def copy_database(source: Path, target: Path) -> None:
    """What a kill -9 right now would leave: the last committed transaction."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


async def test_restart_from_the_last_save_keeps_orders_and_machines_in_agreement(
    tmp_path: Path, free_port: int
) -> None:
    path = tmp_path / "line.toml"
    path.write_text(line_toml(free_port), encoding="utf-8")
    config = load_config(path)
    # The same line restarted on what the kill left behind.
    restarted = tmp_path / "restarted.toml"
    restarted.write_text(line_toml(free_port).replace('"state"', '"after-kill"'), encoding="utf-8")
    crashed = load_config(restarted)
    crashed_dir = crashed.storage.state_dir
    assert crashed_dir == tmp_path / "after-kill"
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})

    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config, components=[component]) as first:
            await baseline_seen(first)
            runtime = first.components[0]
            assert isinstance(runtime, OrdersRuntime)
            await runtime.download_order(OrderSpec("WO-1", "P", 10_000, ("M1",)), **WHO)
            await runtime.release_order("WO-1", **WHO)
            await runtime.start_order("WO-1", **WHO)
            before = sim.ground_truth("M1")
            sim.resume()
            await asyncio.sleep(1.2)
            await first.persist_now()  # pieces keep arriving while it saves
            copy_database(config.storage.state_dir / "state.db", crashed_dir / "state.db")
            await asyncio.sleep(0.5)  # lost with the "kill": counted again after restart
        async with LineService(crashed, components=[component]) as second:
            await asyncio.sleep(1.0)
            sim.pause()
            await settle(second, sim)
            after = sim.ground_truth("M1")
            machine = (await statuses(second))["M1"]
            order = await second.components[0].order_info("WO-1")

    expected = delta(after, before)
    assert expected[0] > 20
    assert counted(machine) == expected
    # The order started before the first piece: it holds exactly the machine's pieces.
    assert (order.good_count, order.reject_count) == (expected[1], expected[2])
