"""In-run baselines the benchmarks are judged against."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    """Median of ``repeats`` measurements: robust to a noisy neighbour on a shared machine."""
    return statistics.median(measure() for _ in range(repeats))


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
