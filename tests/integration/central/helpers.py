"""Workers (in-process and as ``edge ingest`` child processes), a publisher, database reads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg

from edge.forward.mqtt.connection import ClientSettings
from edge.ingest.service import IngestService, IngestSettings

REPO = Path(__file__).resolve().parents[3]


def settings(dsn: str, mqtt_port: int, client_id: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "dsn": dsn,
        "broker": ClientSettings("127.0.0.1", mqtt_port, timeout_s=5.0),
        "client_id": client_id,
        "metrics_port": None,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "gap_grace_s": 0.0,
        "gauge_refresh_s": 0.2,
        "session_expiry_s": 600,
    }
    values.update(overrides)
    return IngestSettings(**values)


async def started(service: IngestService, within: float = 30.0) -> IngestService:
    await asyncio.wait_for(service.subscribed.wait(), within)
    return service


async def publish(
    port: int, messages: Sequence[tuple[str, bytes]], *, delay_s: float = 0.0
) -> None:
    """Publish (topic, payload) pairs with QoS 1, in order."""
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=10
    ) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
            if delay_s:
                await asyncio.sleep(delay_s)


async def query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def scalar(dsn: str, sql: str, *args: object) -> Any:
    rows = await query(dsn, sql, *args)
    return rows[0][0] if rows else None


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float, what: str, *, poll_s: float = 0.1
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(poll_s)


async def stored_count(dsn: str) -> int:
    try:
        return int(await scalar(dsn, "SELECT count(*) FROM plant.events"))
    except asyncpg.UndefinedTableError:
        return 0


class WorkerProcess:
    """``python -m edge ingest`` in a child process, its log in a file."""

    def __init__(
        self, dsn: str, mqtt_port: int, client_id: str, log: Path, metrics_port: int, *extra: str
    ) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        self.metrics_port = metrics_port
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge",
                "ingest",
                "--db",
                dsn,
                "--broker",
                f"127.0.0.1:{mqtt_port}",
                "--client-id",
                client_id,
                "--metrics",
                f"127.0.0.1:{metrics_port}",
                "--session-expiry",
                "600",
                *extra,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
        )

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"edge ingest exited:\n{self.log.read_text()}"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    async def wait_ready(self, within: float = 30.0) -> WorkerProcess:
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(self.ready):
            assert time.monotonic() < deadline, f"edge ingest not ready:\n{self.log.read_text()}"
            await asyncio.sleep(0.1)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log_file.close()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._log_file.close()
        return code
