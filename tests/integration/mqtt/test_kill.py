"""``kill -9`` of the service while the broker is down: the backlog survives and is delivered.

Runs ``python -m edge run --config ...`` as a subprocess, kills it with SIGKILL
while the broker is down, starts it again and follows the sequence at an MQTT
consumer with a persistent session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import Received, consumer, line_toml

pytestmark = needs_mosquitto

_LAST_BANNER_LINE = "status      a line per machine"


class EdgeProcess:
    """The line service in a child process; its log goes to a file we read."""

    def __init__(self, config: Path, log: Path) -> None:
        root = str(Path(__file__).resolve().parents[3])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": root}
        env.pop("NOTIFY_SOCKET", None)
        self.log = log
        self._log_file = log.open("ab")
        self._start = self._log_file.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=config.parent,
        )

    def banner(self, timeout: float = 30) -> str:
        """This process's log up to the end of its ready banner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[self._start :].decode(errors="replace")
            if _LAST_BANNER_LINE in text:
                return text
            assert self.proc.poll() is None, f"the service exited:\n{text}"
            time.sleep(0.05)
        raise AssertionError("no ready banner:\n" + self.log.read_text(errors="replace"))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log_file.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._log_file.close()
        return code


def start_edge(config: Path, log: Path) -> EdgeProcess:
    """``edge run`` with the config; returns once it forwards to MQTT."""
    edge = EdgeProcess(config, log)
    assert "events on edge/T/L1/events" in edge.banner(), "edge run starts the MQTT forwarder"
    return edge


def outbox_figures(db: Path) -> tuple[int, int]:
    """(last sequence number handed out, rows waiting) of the events stream, read-only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (next_seq,) = conn.execute(
            "SELECT value FROM meta WHERE key = 'next_seq:events'"
        ).fetchone()
        (depth,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE stream = 'events'").fetchone()
    return next_seq - 1, depth


async def test_sigkill_while_the_broker_is_down_then_restart_delivers_the_backlog(
    tmp_path: Path, free_port: int
) -> None:
    broker = Broker(tmp_path / "broker", free_port)
    broker.start()
    config = tmp_path / "line.toml"
    config.write_text(line_toml(broker.port, sim_port=_free_port()), encoding="utf-8")
    log = tmp_path / "edge.log"
    received = Received()
    edge: EdgeProcess | None = None
    try:
        async with consumer(broker.port, session=True, client_id="mes-kill") as tail:
            await asyncio.wait_for(tail.connected.wait(), 5)
            edge = await asyncio.to_thread(start_edge, config, log)
            await received.until(tail, lambda r: r.last_seq >= 5, 20, "the first events")
            broker.stop()
            await asyncio.sleep(2.5)  # the line produces; the events wait in the outbox
            edge.kill()
            last_committed, waiting = outbox_figures(tmp_path / "state" / "state.db")
            assert waiting > 0, "a backlog was stored while the broker was down"
            assert last_committed > received.last_seq

            broker.start()
            edge = await asyncio.to_thread(start_edge, config, log)
            await received.until(
                tail, lambda r: r.last_seq >= last_committed, 30, "the backlog after the restart"
            )
            assert edge.terminate() == 0
            edge = None
    finally:
        if edge is not None and edge.proc.poll() is None:
            edge.kill()
        broker.stop()

    assert received.harmful() == [], "no gap and no duplicate under a new batch id"
    seqs = [e.seq for e in received.events]
    assert seqs == list(range(1, len(seqs) + 1))
    backlog = [m.batch for m in received.batches if m.batch and m.batch.seq_last > 5]
    assert any(b.historical for b in backlog), "the backlog came as historical batches"
    assert "stopped cleanly" in log.read_text(errors="replace")
