"""In-run baselines the benchmarks are judged against."""

from __future__ import annotations

import asyncio
import time


async def queue_loop_rate(messages: int) -> float:
    """Messages/s through a bare bounded asyncio.Queue, one producer, one consumer."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)
    item = object()

    async def consume() -> None:
        get = queue.get
        for _ in range(messages):
            await get()

    consumer = asyncio.create_task(consume())
    put = queue.put
    start = time.perf_counter()
    for _ in range(messages):
        await put(item)
    await consumer
    return messages / (time.perf_counter() - start)
