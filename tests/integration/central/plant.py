"""A plant on one machine: N lines (``edge run`` against ``edge simulate``), one mosquitto,
two ``edge ingest`` workers, PostgreSQL — with a broker restart and a worker kill.

Ground truth comes from outside the edges: each simulator is frozen (SIGUSR1)
while its counters are read over Modbus, before the edges start and again at
the end; every machine's counter delta must equal the pieces in the database,
exactly, once everything has drained::

    python -m tests.integration.central.plant --lines 20 --minutes 3

(the test suite runs a short one: tests/integration/central/test_plant.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from pymodbus.client import AsyncModbusTcpClient

from edge.ingest.scratch import ScratchCluster
from tests.integration.central.helpers import REPO, WorkerProcess
from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker

MACHINES = (("M1", 1, 0.5), ("M2", 2, 0.4))  # id, Modbus unit, ideal cycle s
COUNTERS = ("total_count", "good_count", "reject_count")  # generic-modbus: registers 10, 12, 14


def line_toml(line: str, sim_port: int, mqtt_port: int, metrics_port: int, seed: int) -> str:
    machines = "".join(
        f"""
        [[machines]]
        id = "{mid}"
        ideal_cycle_s = {cycle}
        micro_stop_s = 1.0
        plc = "sim"
        plc_map = "generic-modbus"
        unit_id = {unit}
        reasons = [{{ code = 11, name = "jam" }}, {{ code = 17, name = "starved" }}]
        """
        for mid, unit, cycle in MACHINES
    )
    return (
        textwrap.dedent(
            f"""
        [line]
        site = "P"
        area = "a"
        id = "{line}"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [[plcs]]
        id = "sim"
        protocol = "modbus"
        host = "127.0.0.1"
        port = {sim_port}
        poll_interval_s = 0.1
        timeout_s = 1.0
        backoff_initial_s = 0.1
        backoff_max_s = 0.5
        """
        )
        + textwrap.dedent(machines)
        + textwrap.dedent(
            f"""
        [simulator]
        enabled = false
        port = {sim_port}
        seed = {seed}
        time_scale = 1.0
        micro_stops_per_hour = 60
        faults_per_hour = 4
        reject_ratio = 0.05

        [opcua]
        enabled = false
        [web]
        enabled = false
        [metrics]
        enabled = true
        host = "127.0.0.1"
        port = {metrics_port}
        [storage]
        state_dir = "state"

        [mqtt]
        enabled = true
        host = "127.0.0.1"
        port = {mqtt_port}
        backoff_initial_s = 0.2
        backoff_max_s = 1.0
        # mosquitto 2.0 forgets shared subscriptions when it restarts: until the
        # ingest workers subscribe again, batches are kept (docs/central-store.md).
        require_subscriber = true
        publish_timeout_s = 5.0
        batch_max_delay_s = 0.1
        """
        )
    )


class Child:
    """A child process with its output in a log file."""

    def __init__(self, args: list[str], log: Path, cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=self._file, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        return self.proc.returncode


@dataclass
class Line:
    name: str
    directory: Path
    sim_port: int
    metrics_port: int
    simulator: Child | None = None
    edge: Child | None = None
    start: dict[tuple[str, str], int] = field(default_factory=dict)  # (machine, role) -> register
    end: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.directory / "line.toml"

    def deltas(self) -> dict[tuple[str, str], int]:
        return {key: (self.end[key] - value) % (1 << 32) for key, value in self.start.items()}


def _wait(condition: Callable[[], bool], within: float, what: str, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else None


async def _read_counters(port: int) -> dict[tuple[str, str], int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3.0, reconnect_delay=0)
    await client.connect()
    try:
        found: dict[tuple[str, str], int] = {}
        for machine, unit, _ in MACHINES:
            response = await client.read_holding_registers(10, count=6, device_id=unit)
            assert not response.isError(), f"cannot read {machine}'s counters: {response}"
            words = response.registers
            for i, role in enumerate(COUNTERS):
                found[(machine, role)] = (words[2 * i] << 16) | words[2 * i + 1]
        return found
    finally:
        client.close()


def _pause_all(lines: list[Line]) -> None:
    marks = {
        line.name: line.simulator.text().count("simulated time held")
        for line in lines
        if line.simulator
    }
    for line in lines:
        assert line.simulator is not None
        line.simulator.signal(signal.SIGUSR1)
    for line in lines:
        sim = line.simulator
        assert sim is not None
        _wait(
            lambda sim=sim, n=marks[line.name]: sim.text().count("simulated time held") > n,
            30,
            f"{line.name} paused",
        )


@dataclass
class PlantResult:
    lines: int
    events: int
    pieces: int
    run_s: float
    drain_s: float
    mismatches: list[str]
    problems: list[str]

    def summary(self) -> str:
        state = "EXACT" if not self.mismatches and not self.problems else "MISMATCH"
        text = (
            f"{state}: {self.lines} lines, {self.pieces} pieces in {self.events} events; "
            f"ran {self.run_s:.0f} s, drained {self.drain_s:.1f} s after the end"
        )
        return "\n".join([text, *self.mismatches, *self.problems])


class Plant:
    """Everything of one scenario, started and stopped by :meth:`run`."""

    def __init__(self, directory: Path, lines: int, *, log: Callable[[str], None] = print) -> None:
        self.directory = directory
        self.say = log
        self.lines = [
            Line(f"L{i:02d}", directory / f"L{i:02d}", _free_port(), _free_port())
            for i in range(1, lines + 1)
        ]
        self.broker = Broker(directory / "broker", _free_port())
        self.workers: list[WorkerProcess | None] = [None, None]
        self.cluster: ScratchCluster | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Plant]:
        try:
            yield self
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        for line in self.lines:
            for child in (line.edge, line.simulator):
                if child is not None:
                    child.stop()
        for worker in self.workers:
            if worker is not None and worker.proc.poll() is None:
                worker.terminate()
        self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def _start_worker(self, index: int, dsn: str) -> None:
        worker = WorkerProcess(
            dsn,
            self.broker.port,
            f"plant-ingest-{index + 1}",
            self.directory / f"ingest-{index + 1}.log",
            _free_port(),
        )
        asyncio.run(worker.wait_ready(60))
        self.workers[index] = worker

    def run(self, minutes: float) -> PlantResult:
        self.cluster = ScratchCluster.start()
        dsn = self.cluster.dsn()
        self.broker.start()
        for i, line in enumerate(self.lines):
            line.directory.mkdir(parents=True)
            line.config.write_text(
                line_toml(line.name, line.sim_port, self.broker.port, line.metrics_port, 100 + i),
                encoding="utf-8",
            )
            line.simulator = Child(
                [sys.executable, "-m", "edge", "simulate", "--config", str(line.config)],
                line.directory / "simulate.log",
                line.directory,
            )
        for line in self.lines:
            _wait(
                lambda line=line: "simulator" in line.simulator.text() or _listening(line.sim_port),
                30,
                f"{line.name}'s simulator",
            )  # type: ignore[union-attr]
            _wait(lambda line=line: _listening(line.sim_port), 30, f"{line.name}'s Modbus port")
        _pause_all(self.lines)
        for line in self.lines:
            line.start = asyncio.run(_read_counters(line.sim_port))
        self.say(f"{len(self.lines)} simulators paused, counters read")
        for index in range(2):
            self._start_worker(index, dsn)
        self.say("2 ingest workers subscribed")
        for line in self.lines:
            line.edge = Child(
                [sys.executable, "-m", "edge", "run", "--config", str(line.config)],
                line.directory / "edge.log",
                line.directory,
            )
        for line in self.lines:
            # Linked and polled: the edge's first reading (its baseline) is the frozen value.
            _wait(
                lambda line=line: _metric(_scrape(line.metrics_port), "edge_plc_link_up") == 1.0,
                90,
                f"{line.name}'s edge polling",
            )
        for line in self.lines:
            assert line.simulator is not None
            line.simulator.signal(signal.SIGUSR2)
        self.say(f"{len(self.lines)} lines producing for {minutes:g} min")
        started = time.monotonic()
        run_s = minutes * 60

        def at(fraction: float) -> None:
            left = started + run_s * fraction - time.monotonic()
            if left > 0:
                time.sleep(left)

        at(1 / 3)
        self.say("restarting the broker")
        self.broker.stop()
        time.sleep(2.0)
        self.broker.start()
        at(2 / 3)
        self.say("killing ingest worker 1 (SIGKILL), restarting it")
        first = self.workers[0]
        assert first is not None
        first.kill()
        time.sleep(2.0)
        self._start_worker(0, dsn)
        at(1.0)
        _pause_all(self.lines)
        ended = time.monotonic()
        for line in self.lines:
            line.end = asyncio.run(_read_counters(line.sim_port))
        self.say("simulators paused, counters read; waiting for the database")
        expected = {
            (line.name, m, r): d for line in self.lines for (m, r), d in line.deltas().items()
        }

        def stored() -> dict[tuple[str, str, str], int]:
            return asyncio.run(_stored_pieces(dsn))

        def matches(got: dict[tuple[str, str, str], int]) -> bool:
            return set(got) <= set(expected) and all(
                got.get(k, 0) == v for k, v in expected.items()
            )

        def drained() -> bool:
            if not matches(stored()):
                return False
            return all(
                _outbox_depth(line.directory / "state" / "state.db") == 0 for line in self.lines
            )

        mismatches: list[str] = []
        try:
            _wait(drained, 180, "every piece in the database and every outbox empty", poll_s=1.0)
        except AssertionError:
            got = stored()
            mismatches = [
                f"{key}: PLC delta {value}, database {got.get(key, 0)}"
                for key, value in sorted(expected.items())
                if got.get(key, 0) != value
            ] or ["outboxes not drained"]
        drain_s = time.monotonic() - ended
        time.sleep(2.0)  # anything late would now show as a surplus
        got = stored()
        if not mismatches and not matches(got):
            mismatches = [f"surplus rows: {sorted(set(got) - set(expected))}"] + [
                f"{key}: PLC delta {value}, database {got.get(key, 0)} (after the drain)"
                for key, value in sorted(expected.items())
                if got.get(key, 0) != value
            ]
        problems, events = asyncio.run(_sequence_problems(dsn, len(self.lines)))
        return PlantResult(
            lines=len(self.lines),
            events=events,
            pieces=sum(v for (_, _, role), v in expected.items() if role == "total_count"),
            run_s=ended - started,
            drain_s=drain_s,
            mismatches=mismatches,
            problems=problems,
        )


def _outbox_depth(db: Path) -> int | None:
    """Events waiting in an edge's outbox (read-only; None while it cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            (depth,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE stream = 'events'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(depth)


def _listening(port: int) -> bool:
    import socket  # noqa: PLC0415

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


async def _stored_pieces(dsn: str) -> dict[tuple[str, str, str], int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT line, machine_id, role, sum(count)::bigint AS n FROM plant.pieces "
            "GROUP BY line, machine_id, role"
        )
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()
    return {(r["line"], r["machine_id"], r["role"]): int(r["n"]) for r in rows}


async def _sequence_problems(dsn: str, lines: int) -> tuple[list[str], int]:
    """Anything but one epoch per edge holding 1..n exactly once, without gaps."""
    conn = await asyncpg.connect(dsn)
    try:
        epochs = await conn.fetch("SELECT * FROM plant.epochs")
        counts = await conn.fetch(
            "SELECT edge_id, epoch, count(*) AS n, min(seq) AS lo, max(seq) AS hi "
            "FROM plant.events GROUP BY edge_id, epoch"
        )
        gaps = await conn.fetchval("SELECT count(*) FROM plant.seq_gaps")
        dead = await conn.fetchval("SELECT count(*) FROM plant.dead_letters")
    finally:
        await conn.close()
    problems = []
    if len(epochs) != lines:
        problems.append(f"{len(epochs)} (edge, epoch) streams for {lines} lines")
    for row in counts:
        if (row["lo"], row["hi"], row["n"]) != (1, row["n"], row["n"]):
            problems.append(
                f"{row['edge_id']}: seqs {row['lo']}..{row['hi']} but {row['n']} events stored"
            )
    if gaps:
        problems.append(f"{gaps} gaps in plant.seq_gaps")
    if dead:
        problems.append(f"{dead} dead letters")
    return problems, sum(int(r["n"]) for r in counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="edge-plant-"))
    plant = Plant(directory, args.lines, log=lambda text: print(f"# {text}", flush=True))
    with plant.running():
        result = plant.run(args.minutes)
    print(result.summary())
    if args.keep:
        print(f"# logs in {directory}")
    else:
        import shutil  # noqa: PLC0415

        shutil.rmtree(directory, ignore_errors=True)
    return 0 if not result.mismatches and not result.problems else 1


if __name__ == "__main__":
    sys.exit(main())
