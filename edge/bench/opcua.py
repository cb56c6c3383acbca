"""OPC UA server benchmark (docs/performance.md): the value changes one outside subscriber
gets from the edge, against what it gets from a bare asyncua server in the same
run (the library's own limit), and the change -> notification latency.

Two servers run in this process, each with 50 Double variables: A, the edge's
own server with the real address space of a 50-machine line (no PLCs: values are
staged through the live-value writer, the way samples and status refreshes do
it), and B, a bare asyncua server whose values are written with the node store's
``write_attribute_value``, nothing else. One subscriber in its own process
(:mod:`edge.bench.opcua_subscriber`, an asyncua client over TCP on 127.0.0.1)
has the same subscription on both: the 50 variables, 100 ms publishing interval,
queue size 1000.

Throughput: windows of ``WINDOW_S`` in which one server's values change as fast
as it takes them, interleaved A B A B A B, so a load spike of the shared machine
hits both; the figure is the median of A, the baseline the median of B, the
ratio the median of the per-pair ratios (their spread in the note). Latency:
each server's values change at a steady ``LATENCY_RATE`` changes/s, and the
subscriber measures each notification's age from its SourceTimestamp.

Where the edge's overhead went (cProfile of the server under this load): most of
a change's cost was asyncua's deep copy of the DataValue into every monitored
item (``MonitoredItemValues.set_current_datavalue``), which the bare server pays
too; the edge's extra cost was a second timestamp object to copy per value and
values the producer staged faster than the writer wrote, coalesced unseen. The
writer's values are now their own deep copy (``writer.WrittenValue``: nothing
changes a written value), and a producer here paces itself by the writer's drain,
so the edge delivers more than the bare server, not less.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.server.server import Server

from edge.bench import Figure
from edge.config import LineConfig, load_config
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric

MACHINES = 50
WINDOW_S = 2.0
PAIRS = 3  # A B A B A B
SETTLE_S = 0.6  # after a window: the last publishes arrive
LATENCY_RATE = 8000  # changes/s
LATENCY_S = 3.0
TARGET_RATE = 8000
TARGET_RATIO = 0.9
TARGET_P99_S = 0.5
PUBLISHING_MS = 100
QUEUE_SIZE = 1000


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(directory: Path, port: int) -> LineConfig:
    machines = "".join(
        f'[[machines]]\nid = "M{i:02d}"\nideal_cycle_s = 1.0\nplc_map = "generic-modbus"\n'
        for i in range(MACHINES)
    )
    text = (
        textwrap.dedent(
            f"""
        [line]
        site = "B"
        area = "a"
        id = "L1"
        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"
        [opcua]
        endpoint = "opc.tcp://127.0.0.1:{port}/edge/"
        security_policies = []
        [metrics]
        enabled = false
        [storage]
        state_dir = "state"
        """
        )
        + machines
    )
    path = directory / "line.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@contextlib.asynccontextmanager
async def _bare_server(port: int) -> AsyncIterator[tuple[Server, list[ua.NodeId]]]:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bare/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:bench:bare")
    objects = server.get_node(numeric(ObjectIds.ObjectsFolder))
    node_ids = []
    for i in range(MACHINES):
        node = await objects.add_variable(
            ua.NodeId(ua.String(f"B.M{i:02d}.temperature"), ua.Int16(idx)),
            ua.QualifiedName("temperature", idx),
            ua.Variant(0.0, ua.VariantType.Double),
        )
        node_ids.append(node.nodeid)
    await server.start()
    try:
        yield server, node_ids
    finally:
        await server.stop()


class _Subscriber:
    """The subscriber process, driven over its stdin/stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> _Subscriber:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge.bench.opcua_subscriber",
            json.dumps(self._spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        await self._expect("READY")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the benchmark's subscriber process ended")
        return line.decode().strip()

    async def _expect(self, word: str) -> None:
        line = await self._line()
        if line != word:
            raise RuntimeError(f"subscriber said {line!r}, expected {word}")

    async def _send(self, command: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"{command}\n".encode())
        await self._proc.stdin.drain()

    async def reset(self) -> None:
        await self._send("reset")
        await self._expect("OK")

    async def report(self) -> dict[str, dict[str, Any]]:
        await self._send("report")
        result: dict[str, dict[str, Any]] = json.loads(await self._line())
        return result


_VALUE = AttributeIds.Value
Changer = Callable[[int], Awaitable[None]]  # make the next changes (n so far) happen


async def _saturate(change: Changer) -> None:
    """Changes as fast as the server takes them, for one window."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < WINDOW_S:
        await change(n)
        n += MACHINES
        await asyncio.sleep(0)


async def _paced(change_one: Callable[[int], Awaitable[None]], rate: int) -> None:
    tick = 0.01
    per_tick = int(rate * tick)
    t0 = time.perf_counter()
    k = 0
    next_tick = t0
    while time.perf_counter() - t0 < LATENCY_S:
        for _ in range(per_tick):
            k += 1
            await change_one(k)
        next_tick += tick
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))


async def _measure(subscriber: _Subscriber, name: str, load: Awaitable[None]) -> dict[str, Any]:
    await subscriber.reset()
    await load
    await asyncio.sleep(SETTLE_S)
    return (await subscriber.report())[name]


async def _run() -> list[Figure]:
    from edge.runtime.service import LineService  # noqa: PLC0415
    from edge.serve import opcua as opcua_server  # noqa: PLC0415 - heavy; only when benchmarking

    edge_port, bare_port = _port(), _port()
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), edge_port)
        started = time.perf_counter()
        async with LineService(config, components=[opcua_server.component]) as service:
            ready_s = time.perf_counter() - started
            server = next(c for c in service.components if isinstance(c, opcua_server.OpcUaServer))
            start = Figure(
                "opcua start to ready (50 machines)",
                ready_s,
                "s",
                bar="<= 2 s",
                meets_bar=ready_s <= 2.0,
                note=f"{server.statistics().nodes} variables",
            )
            async with _bare_server(bare_port) as (bare, bare_nodes):
                edge = _Edge(
                    server, [f"L1.M{i:02d}.ProcessValues.temperature" for i in range(MACHINES)]
                )
                return [start, *await _compare(edge, _Bare(bare, bare_nodes), edge_port, bare_port)]


class _Edge:
    """Values changed through the edge's live-value writer."""

    def __init__(self, server: Any, node_texts: list[str]) -> None:
        self.writer = server.writer
        self.handles = [server.handle(text) for text in node_texts]

    def node_ids(self) -> list[str]:
        return [h.node_id.to_string() for h in self.handles]

    async def change_all(self, n: int) -> None:
        # As fast as the server takes them: the next round once the writer wrote
        # this one (staging more would only coalesce values nobody sees).
        await self.writer.drained()
        now = time.time()
        stage = self.writer.stage
        for i, handle in enumerate(self.handles):
            stage(handle, float(n + i), now)

    async def change_one(self, k: int) -> None:
        self.writer.stage(self.handles[k % MACHINES], float(k), time.time())


class _Bare:
    """Values written straight into a bare asyncua server's node store."""

    def __init__(self, server: Server, node_ids: list[ua.NodeId]) -> None:
        self.write = server.iserver.aspace.write_attribute_value
        self.nodes = node_ids

    def node_ids(self) -> list[str]:
        return [n.to_string() for n in self.nodes]

    async def change_all(self, n: int) -> None:
        now = ua.DateTime.fromtimestamp(time.time(), UTC)
        for i, node_id in enumerate(self.nodes):
            await self._write(node_id, float(n + i), now)

    async def change_one(self, k: int) -> None:
        now = ua.DateTime.fromtimestamp(time.time(), UTC)
        await self._write(self.nodes[k % MACHINES], float(k), now)

    async def _write(self, node_id: ua.NodeId, value: float, now: Any) -> None:
        data = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now
        )
        await self.write(node_id, _VALUE, data)


async def _compare(edge: _Edge, bare: _Bare, edge_port: int, bare_port: int) -> list[Figure]:
    spec = {
        "servers": {
            "edge": {
                "endpoint": f"opc.tcp://127.0.0.1:{edge_port}/edge/",
                "nodes": edge.node_ids(),
            },
            "bare": {
                "endpoint": f"opc.tcp://127.0.0.1:{bare_port}/bare/",
                "nodes": bare.node_ids(),
            },
        },
        "publishing_ms": PUBLISHING_MS,
        "queue_size": QUEUE_SIZE,
    }
    async with _Subscriber(spec) as subscriber:
        edge_rates: list[float] = []
        bare_rates: list[float] = []
        for _ in range(PAIRS):
            a = await _measure(subscriber, "edge", _saturate(edge.change_all))
            edge_rates.append(a["count"] / WINDOW_S)
            b = await _measure(subscriber, "bare", _saturate(bare.change_all))
            bare_rates.append(b["count"] / WINDOW_S)
        edge_latency = await _measure(subscriber, "edge", _paced(edge.change_one, LATENCY_RATE))
        bare_latency = await _measure(subscriber, "bare", _paced(bare.change_one, LATENCY_RATE))
    ratios = [a / b for a, b in zip(edge_rates, bare_rates, strict=True) if b > 0]
    ratio = statistics.median(ratios) if ratios else 0.0
    delivered = statistics.median(edge_rates)
    figures = [
        Figure(
            "opcua value changes delivered to one outside subscriber",
            delivered,
            "changes/s",
            bar=f">= {TARGET_RATE}/s and >= {TARGET_RATIO} x bare asyncua",
            meets_bar=delivered >= TARGET_RATE and ratio >= TARGET_RATIO,
            baseline_name="bare asyncua server, same subscription",
            baseline_value=statistics.median(bare_rates),
            ratio=ratio,
            note=(
                f"A B x{PAIRS}: edge {', '.join(f'{r:,.0f}' for r in edge_rates)}; "
                f"bare {', '.join(f'{r:,.0f}' for r in bare_rates)}; "
                f"ratio {min(ratios, default=0):.2f}..{max(ratios, default=0):.2f}"
            ),
        )
    ]
    for name in ("p50", "p99"):
        measured, baseline = edge_latency[f"{name}_s"], bare_latency[f"{name}_s"]
        if measured is None:
            continue
        figures.append(
            Figure(
                f"opcua change->notification {name} at {LATENCY_RATE} changes/s",
                measured * 1000,
                "ms",
                bar=f"<= {TARGET_P99_S * 1000:.0f} ms" if name == "p99" else "",
                meets_bar=measured <= TARGET_P99_S if name == "p99" else None,
                baseline_name="bare asyncua server, same subscription",
                baseline_value=baseline * 1000 if baseline is not None else None,
                ratio=measured / baseline if baseline else None,
                note=(
                    f"publishing interval {PUBLISHING_MS} ms, {edge_latency['count']} notifications"
                ),
            )
        )
    return figures


def run() -> list[Figure]:
    return asyncio.run(_run())
