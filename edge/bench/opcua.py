"""OPC UA server benchmark (DESIGN.md §7): value changes delivered to one outside
subscriber for 50 machines, and change -> notification latency at 2,000 changes/s
with a 100 ms publishing interval; raw asyncua ``write_attribute_value``
throughput (no subscriber) measured in the same run as the baseline.

The server is the real address space of a 50-machine line (no PLCs: values are
staged through the live-value writer the way the bus and status refresh do it);
the subscriber is an asyncua client in the same process, over TCP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client

from edge.bench import Figure
from edge.config import load_config

MACHINES = 50
DELIVERY_S = 3.0
LATENCY_RATE = 2000
LATENCY_S = 3.0
RAW_WRITES = 50_000


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(directory: Path, port: int) -> Any:
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


class _Received:
    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.count += 1
        self.latencies.append(time.time() - data.monitored_item.Value.SourceTimestamp.timestamp())


async def _run() -> list[Figure]:
    from edge import opcua_server  # noqa: PLC0415 - heavy; only when benchmarking
    from edge.service import LineService  # noqa: PLC0415

    port = _port()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), port)
        started = time.perf_counter()
        async with LineService(config, components=[opcua_server.component]) as service:
            ready_s = time.perf_counter() - started
            server = next(c for c in service.components if isinstance(c, opcua_server.OpcUaServer))
            writer = server.writer
            handles = [
                server.handle(f"L1.M{i:02d}.ProcessValues.temperature") for i in range(MACHINES)
            ]
            figures.append(
                Figure(
                    "opcua start to ready (50 machines)",
                    ready_s,
                    "s",
                    bar="<= 5 s (whole service)",
                    meets_bar=ready_s <= 5.0,
                    note=f"{server.statistics().nodes} variables",
                )
            )

            # baseline: raw write_attribute_value, nobody subscribed
            raw = server.server
            value = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double))
            node_ids = [h.node_id for h in handles]
            t0 = time.perf_counter()
            for n in range(RAW_WRITES):
                await raw.write_attribute_value(node_ids[n % MACHINES], value)
            raw_rate = RAW_WRITES / (time.perf_counter() - t0)

            received = _Received()
            async with Client(f"opc.tcp://127.0.0.1:{port}/edge/", timeout=10) as client:
                subscription = await client.create_subscription(100, received)
                nodes = [client.get_node(h.node_id) for h in handles]
                await subscription.subscribe_data_change(nodes, queuesize=1000)
                await asyncio.sleep(0.5)

                # delivery: as fast as the writer takes it, every node changing
                received.count = 0
                t0 = time.perf_counter()
                n = 0
                while time.perf_counter() - t0 < DELIVERY_S:
                    for handle in handles:
                        n += 1
                        writer.stage(handle, float(n), time.time())
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.5)
                delivered = received.count / (time.perf_counter() - t0)

                # latency at a steady 2,000 changes/s
                received.latencies.clear()
                tick = 0.01
                per_tick = int(LATENCY_RATE * tick)
                t0 = time.perf_counter()
                k = 0
                while time.perf_counter() - t0 < LATENCY_S:
                    for _ in range(per_tick):
                        k += 1
                        writer.stage(handles[k % MACHINES], float(k), time.time())
                    await asyncio.sleep(tick)
                await asyncio.sleep(0.5)
                latencies = sorted(received.latencies)
                await subscription.delete()

    figures.append(
        Figure(
            "opcua value changes delivered to one subscriber",
            delivered,
            "changes/s",
            bar=">= 5000/s",
            meets_bar=delivered >= 5000,
            baseline_name="raw asyncua write_attribute_value (no subscriber)",
            baseline_value=raw_rate,
            ratio=delivered / raw_rate,
        )
    )
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        figures.append(
            Figure(
                "opcua change->notification p50 at 2000 changes/s",
                p50 * 1000,
                "ms",
                note=f"publishing interval 100 ms, {len(latencies)} notifications",
            )
        )
        figures.append(
            Figure(
                "opcua change->notification p99 at 2000 changes/s",
                p99 * 1000,
                "ms",
                bar="<= 500 ms",
                meets_bar=p99 <= 0.5,
                baseline_name="raw asyncua write_attribute_value (no subscriber)",
                baseline_value=raw_rate,
            )
        )
    return figures


def run() -> list[Figure]:
    return asyncio.run(_run())
