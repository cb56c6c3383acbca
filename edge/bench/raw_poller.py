"""The live line's baseline: raw pymodbus reading the same blocks, and nothing else.

``python -m edge.bench.raw_poller --port P --units N --registers R --interval S
--warmup W --window D`` opens one pymodbus connection per unit id 1..N (as the
service opens one per PLC), reads holding registers 0..R-1 of its unit on the
same schedule as the service's Modbus source (:class:`~edge.sources.plc.schedule.PollGrid`:
a random first slot, a drift-free grid), throws the answer away, and after the
warm-up measures one window: its own CPU time, peak memory, polls and how late
each poll started. It prints one JSON object and exits.

It runs in its own process on the same event loop as the service (uvloop when
installed), so its CPU is measured exactly as the service's is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from actors import loop as actor_loop
from edge.bench.line_process import memory_mb
from edge.histogram import HistogramSnapshot
from edge.sources.plc.schedule import PollGrid

CONNECTING_AT_ONCE = 10
CONNECT_ATTEMPTS = 5
HANG_S = 60.0


class _Poller:
    def __init__(self, port: int, unit: int, registers: int, interval_s: float) -> None:
        self.client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, reconnect_delay=0)
        self.unit = unit
        self.registers = registers
        self.grid = PollGrid(interval_s, random.Random())
        self.polls = 0
        self.errors = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        grid, client, count, unit = self.grid, self.client, self.registers, self.unit
        task = asyncio.current_task()
        grid.begin(loop.time())
        while True:
            delay = grid.due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            grid.started(loop.time())
            try:
                response = await client.read_holding_registers(0, count=count, device_id=unit)
            except ModbusException:  # a timeout on a loaded machine: counted, as the service does
                # pymodbus turns a cancelled request into a ModbusIOException.
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                self.errors += 1
            else:
                if response.isError():
                    self.errors += 1
            self.polls += 1
            grid.advance(loop.time())


def _give_up(loop: asyncio.AbstractEventLoop) -> None:
    """A run that hangs says where, on stderr, and exits (the bench reports it)."""
    print(f"raw poller: no result after {HANG_S:g} s more than its window", file=sys.stderr)
    for task in asyncio.all_tasks(loop):
        task.print_stack(limit=6, file=sys.stderr)
    sys.stderr.flush()
    os._exit(3)


def _lateness(pollers: Sequence[_Poller]) -> HistogramSnapshot:
    snapshots = [p.grid.lateness.snapshot() for p in pollers]
    counts = tuple(sum(c) for c in zip(*(s.counts for s in snapshots), strict=True))
    return HistogramSnapshot(snapshots[0].bounds, counts, sum(s.sum for s in snapshots))


async def measure(
    port: int,
    units: int,
    registers: int,
    interval_s: float,
    *,
    warmup_s: float,
    window_s: float,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    loop.call_later(warmup_s + window_s + HANG_S, _give_up, loop)
    pollers = [_Poller(port, unit, registers, interval_s) for unit in range(1, units + 1)]
    # pymodbus' connect() takes ~0.1 s each, so 200 in a row would take 20 s; all at
    # once overflow the simulator's listen backlog. A few at a time, a refused one again.
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def connect(poller: _Poller) -> None:
        async with gate:
            for _ in range(CONNECT_ATTEMPTS):
                if await poller.client.connect():
                    return
            raise RuntimeError(f"cannot connect to 127.0.0.1:{port}")

    await asyncio.gather(*(connect(p) for p in pollers))
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    try:
        await asyncio.sleep(warmup_s)
        polls0 = sum(p.polls for p in pollers)
        late0 = _lateness(pollers)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(window_s)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        polls1 = sum(p.polls for p in pollers)
        late = _lateness(pollers).minus(late0)
    finally:
        for task in tasks:
            task.cancel()
        # Bounded: a request pymodbus is retrying may not end at once.
        await asyncio.wait(tasks, timeout=5.0)
        for poller in pollers:
            poller.client.close()
    elapsed = wall1 - wall0
    rss, peak = memory_mb()
    return {
        "cpu_percent": 100.0 * (cpu1 - cpu0) / elapsed,
        "polls_per_s": (polls1 - polls0) / elapsed,
        "errors": float(sum(p.errors for p in pollers)),
        "lateness_p99_s": late.quantile(0.99),
        "rss_mb": rss,
        "rss_peak_mb": peak,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.bench.raw_poller")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--units", type=int, required=True)
    parser.add_argument("--registers", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args(argv)
    result = actor_loop.run(
        measure(
            args.port,
            args.units,
            args.registers,
            args.interval,
            warmup_s=args.warmup,
            window_s=args.window,
        )
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
