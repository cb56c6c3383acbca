"""The outside subscriber of the OPC UA benchmark: its own process (``python -m
edge.bench.opcua_subscriber``), an asyncua client subscribed to the same nodes of
each server it is given, as a SCADA client would be.

Usage: ``python -m edge.bench.opcua_subscriber '<json>'`` with ``{"servers":
{name: {"endpoint": url, "nodes": [NodeId strings]}}, "publishing_ms": 100,
"queue_size": 1000}``. It prints ``READY`` once subscribed, then answers each
line on stdin: ``reset`` (forget what was counted; prints ``OK``) and ``report``
(prints one JSON line: per server the notifications received since the reset,
and the change-to-notification latency quantiles from each value's
SourceTimestamp, in seconds, on the same host clock).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from asyncua import ua
from asyncua.client.client import Client


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []

    def reset(self) -> None:
        self.count = 0
        self.latencies = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.count += 1
        source = data.monitored_item.Value.SourceTimestamp
        if source is not None:
            self.latencies.append(time.time() - source.timestamp())

    def report(self) -> dict[str, float | int | None]:
        ordered = sorted(self.latencies)
        if not ordered:
            return {"count": self.count, "p50_s": None, "p99_s": None}
        return {
            "count": self.count,
            "p50_s": statistics.median(ordered),
            "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        }


async def _main(spec: dict[str, Any]) -> None:
    counters: dict[str, _Counter] = {}
    clients: list[Client] = []
    try:
        for name, server in spec["servers"].items():
            client = Client(server["endpoint"], timeout=30)
            await client.connect()
            clients.append(client)
            counter = counters[name] = _Counter()
            subscription = await client.create_subscription(spec["publishing_ms"], counter)
            nodes = [client.get_node(ua.NodeId.from_string(text)) for text in server["nodes"]]
            await subscription.subscribe_data_change(nodes, queuesize=spec["queue_size"])
        await asyncio.sleep(0.5)  # the initial values
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("READY", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "reset":
                for counter in counters.values():
                    counter.reset()
                print("OK", flush=True)
            elif line == "report":
                print(json.dumps({n: c.report() for n, c in counters.items()}), flush=True)
    finally:
        for client in clients:
            await client.disconnect()


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1])))
