"""Actor pipeline benchmark: samples/s through a MachineActor's mailbox and core.

docs/performance.md: >= 150,000 samples/s, and >= 0.25 x a bare asyncio.Queue
put/get loop measured in the same run on the same event loop (uvloop when
available). One producer tells samples one by one, as a PLC source would
without batching; the actor applies each to its core and publishes events.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from actors import loop as actor_loop
from actors.actor import start_actor
from actors.machine import MachineActor, Tick
from actors.messages import Sample
from edge.bench import Figure
from edge.bench.baselines import queue_loop_rate
from edge.bench.core import _calendar, _params, synthetic_stream

SAMPLES = 300_000
RUNS = 5


async def _actor_rate(samples: list[Sample]) -> float:
    published = 0

    def publish(events: object) -> None:
        nonlocal published
        published += 1

    machine_id = samples[0].machine_id
    ref = await start_actor(
        MachineActor(_params(machine_id), _calendar(), publish), name=machine_id
    )
    tell = ref.tell
    start = time.perf_counter()
    for sample in samples:
        await tell(sample)
    # The ask queues behind every sample: when it returns, all were handled.
    await ref.ask(Tick(samples[-1].ts))
    elapsed = time.perf_counter() - start
    await ref.stop()
    return len(samples) / elapsed


async def _measure() -> tuple[list[float], list[float], str]:
    streams = synthetic_stream(SAMPLES)
    longest = max(streams.values(), key=len)
    actor_rates, queue_rates = [], []
    for _ in range(RUNS):
        queue_rates.append(await queue_loop_rate(len(longest)))
        actor_rates.append(await _actor_rate(longest))
    return actor_rates, queue_rates, actor_loop.loop_kind(asyncio.get_running_loop())


def run() -> list[Figure]:
    actor_rates, queue_rates, loop_kind = actor_loop.run(_measure())
    actor = statistics.median(actor_rates)
    queue = statistics.median(queue_rates)
    ratio = actor / queue
    return [
        Figure(
            name="actor: samples/s through a MachineActor (mailbox + core)",
            value=actor,
            unit="samples/s",
            bar=">= 150,000 and >= 0.25 x queue loop",
            meets_bar=actor >= 150_000 and ratio >= 0.25,
            baseline_name="bare asyncio.Queue loop",
            baseline_value=queue,
            ratio=ratio,
            note=f"median of {RUNS} runs, event loop {loop_kind}",
        )
    ]
