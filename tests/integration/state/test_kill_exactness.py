"""``kill -9`` of a real ``edge run`` at random moments: the MES gets every piece exactly once.

The PLCs are a simulated line in this test's own process (a real pymodbus
server on 127.0.0.1), so they keep producing while the edge is down and their
counters survive its kills. Ground truth is read from their registers over
Modbus. The MES side is what the edge committed for it: the outbox's
``events`` stream (MQTT points at a port nobody listens on, so nothing is
delivered and deleted). Per machine and counter, the pieces in committed
``PiecesCounted`` events must equal the PLC counter's delta exactly, and the
sequence must run 1, 2, 3, ... without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from edge.config import LineConfig, SimulatorConfig, load_config
from edge.plc import load_plc_map
from edge.plc.maps import ModbusLocation
from edge.simulator import SimulatedLine, machine_specs
from edge.wire import decode_envelope
from tests.integration.conftest import _free_port
from tests.integration.line.test_line_service import _sim_fields, line_toml

ROLES = ("total_count", "good_count", "reject_count")
KILLS = 4
SEED = 19


def edge_line(tmp_path: Path, sim_port: int) -> Path:
    path = tmp_path / "line.toml"
    text = line_toml(sim_port) + (
        f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {_free_port()}\nprefix = "e"\n'
    )
    path.write_text(text, encoding="utf-8")
    return path


class Edge:
    """``python -m edge run`` in a child process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.log = log
        self._out = log.open("ab")
        self._start = self._out.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=config.parent,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[self._start :].decode(errors="replace")
            if "status      a line per machine" in text:
                return
            assert self.proc.poll() is None, f"edge run exited:\n{text}"
            time.sleep(0.05)
        raise AssertionError("edge run never got ready:\n" + self.log.read_text(errors="replace"))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code


async def plc_counters(port: int, config: LineConfig) -> dict[str, dict[str, tuple[int, int]]]:
    """Per machine and role: (register value, counter bits), read over Modbus TCP."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        found: dict[str, dict[str, tuple[int, int]]] = {}
        for machine in config.machines:
            assert machine.plc_map is not None
            plc_map = load_plc_map(machine.plc_map, config.plc_map_dirs)
            found[machine.id] = {}
            for role in ROLES:
                signal_def = plc_map.get(role)
                assert signal_def is not None and isinstance(signal_def.location, ModbusLocation)
                bits = signal_def.data_type.bits
                response = await client.read_holding_registers(
                    signal_def.location.address + machine.address_offset,
                    count=bits // 16,
                    device_id=machine.unit_id,
                )
                assert not response.isError(), response
                value = 0
                for word in response.registers:  # big-endian word order (both maps)
                    value = (value << 16) | word
                found[machine.id][role] = (value, bits)
        return found
    finally:
        client.close()


def committed(state_db: Path) -> tuple[list[int], dict[str, dict[str, int]]]:
    """(every seq stored, pieces per machine and role) of the events stream, read-only."""
    pieces: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT seq, payload FROM outbox WHERE stream = 'events' ORDER BY seq"
        ).fetchall()
    for _seq, payload in rows:
        event = decode_envelope(payload)
        if event.type == "PiecesCounted":
            pieces[event.data["machine_id"]][event.data["role"]] += event.data["count"]
    return [seq for seq, _ in rows], pieces


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def deltas(
    before: dict[str, dict[str, tuple[int, int]]], after: dict[str, dict[str, tuple[int, int]]]
) -> dict[str, dict[str, int]]:
    return {
        m: {r: (after[m][r][0] - before[m][r][0]) % (1 << before[m][r][1]) for r in ROLES}
        for m in before
    }


async def test_kill_9_at_random_moments_loses_and_doubles_no_piece(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sim_port = _free_port()
    config_path = edge_line(tmp_path, sim_port)
    config = load_config(config_path)
    state_db = config.storage.state_dir / "state.db"
    log = tmp_path / "edge.log"
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    edge: Edge | None = None
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        before = await plc_counters(sim_port, config)
        try:
            edge = Edge(config_path, log)
            await asyncio.to_thread(edge.wait_ready)
            # The first reading is the counting baseline: let it be taken while paused.
            await asyncio.sleep(1.0)
            sim.resume()
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 2.5))
                edge.kill()
                # The line keeps producing while the edge is down.
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                edge = Edge(config_path, log)
                await asyncio.to_thread(edge.wait_ready)
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            sim.pause()
            after = await plc_counters(sim_port, config)
            want = deltas(before, after)
            # Until the edge has committed what the PLC shows (or the deadline).
            await asyncio.to_thread(wait_for, lambda: committed(state_db)[1] == want, 30)
            assert edge.terminate() == 0
            edge = None
        finally:
            if edge is not None and edge.proc.poll() is None:
                edge.kill()
        truth = {m: sim.ground_truth(m) for m in ("M1", "M2")}

    seqs, pieces = committed(state_db)
    for machine in ("M1", "M2"):
        # The Modbus registers are the simulator's own truth.
        assert after[machine]["total_count"][0] == truth[machine].total_reading
        assert want[machine]["total_count"] > 30, f"{machine} produced too little: {want}"
        assert dict(pieces[machine]) == want[machine], (
            f"{machine}: pieces at the MES {dict(pieces[machine])} != PLC delta {want[machine]}"
        )
    assert seqs == list(range(1, len(seqs) + 1)), "one sequence, no gap, no repeat"
    text = log.read_text(errors="replace")
    assert text.count("edge 0.") == KILLS + 1 or text.count("ready: line") == KILLS + 1
    assert "stopped cleanly" in text
