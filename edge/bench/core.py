"""Benchmark of the pure machine core (docs/performance.md: >= 300,000 samples/s on one core).

A synthetic but realistic stream: a few machines polled every 2 s, each
poll carrying ``running``, ``fault_code``, ``total_count`` and seven process
values (so ~10 % counter samples), with stops of random length (micro-stops
and longer jams with fault codes), across a shift change and a break. The
stream is built before timing; the timed part is ``MachineCore.apply`` for
every sample plus draining events every few thousand samples, as an actor does.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import time as wall
from typing import Any

from actors.messages import Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.params import BreakDef, CalendarDef, MachineParams, Reason, ShiftDef
from edge.bench import Figure

MACHINES = 5
PROCESS_VALUES = ("temp_zone1", "temp_zone2", "pressure", "speed", "vacuum", "current", "flow")
START_TS = 1_756_000_800.0  # 2025-08-24T02:00:00Z: to ~13:00, across 06:00 and a break
DRAIN_EVERY = 4096


def _calendar() -> ShiftCalendar:
    return ShiftCalendar(
        CalendarDef(
            "UTC",
            (
                ShiftDef("Night", wall(22), wall(6)),
                ShiftDef("Early", wall(6), wall(14), breaks=(BreakDef(wall(9), wall(9, 30)),)),
                ShiftDef("Late", wall(14), wall(22)),
            ),
        )
    )


def _params(machine_id: str) -> MachineParams:
    return MachineParams(
        machine_id=machine_id,
        ideal_cycle_s=2.0,
        reasons=(Reason("jam at infeed", 17), Reason("cleaning", 40)),
    )


def synthetic_stream(samples: int, seed: int = 7) -> dict[str, list[Sample]]:
    """Per machine, its samples in time order (``samples`` in all)."""
    rng = random.Random(seed)
    per_poll = 3 + len(PROCESS_VALUES)
    polls = samples // (MACHINES * per_poll) + 1
    streams: dict[str, list[Sample]] = {}
    for index in range(MACHINES):
        machine_id = f"M{index + 1:02d}"
        out: list[Sample] = []
        count = rng.randrange(1_000_000)
        running = True
        stop_left = 0
        fault = 0
        values = [rng.uniform(10, 100) for _ in PROCESS_VALUES]
        for poll in range(polls):
            ts = START_TS + 2.0 * poll + index * 0.01
            if running and rng.random() < 1 / 300:
                running = False
                stop_left = rng.choice((3, 15, 45, 300))  # polls: 6 s to 10 min
                fault = rng.choice((0, 0, 17, 3))
            elif not running:
                stop_left -= 1
                if stop_left <= 0:
                    running, fault = True, 0
            if running and rng.random() < 0.9:
                count += 1
            out.append(Sample(machine_id, "running", running, ts))
            out.append(Sample(machine_id, "fault_code", fault, ts))
            out.append(Sample(machine_id, "total_count", count, ts))
            for slot, name in enumerate(PROCESS_VALUES):
                values[slot] += rng.uniform(-0.5, 0.5)
                out.append(Sample(machine_id, name, round(values[slot], 2), ts))
        streams[machine_id] = out
    excess = MACHINES * polls * per_poll - samples
    for machine_id in reversed(list(streams)):
        cut = min(excess, len(streams[machine_id]))
        if cut:
            del streams[machine_id][-cut:]
        excess -= cut
    return streams


def _one_run(streams: dict[str, list[Sample]]) -> float:
    calendar = _calendar()
    cores = {machine_id: MachineCore(_params(machine_id), calendar) for machine_id in streams}
    total = 0
    started = time.perf_counter()
    for machine_id, stream in streams.items():
        core = cores[machine_id]
        apply = core.apply
        drain = core.drain_events
        for offset in range(0, len(stream), DRAIN_EVERY):
            for sample in stream[offset : offset + DRAIN_EVERY]:
                apply(sample)
            drain()
        total += len(stream)
    elapsed = time.perf_counter() - started
    return total / elapsed


def bench_core(samples: int = 1_000_000, runs: int = 5) -> dict[str, float]:
    """Median samples/s through ``MachineCore.apply`` over ``runs`` runs."""
    streams = synthetic_stream(samples)
    rates = [_one_run(streams) for _ in range(runs)]
    return {
        "samples": float(sum(len(s) for s in streams.values())),
        "runs": float(runs),
        "samples_per_s": statistics.median(rates),
        "samples_per_s_min": min(rates),
        "samples_per_s_max": max(rates),
        "bar_samples_per_s": 300_000.0,
    }


def main() -> None:  # pragma: no cover - manual use: python -m edge.bench.core
    result: dict[str, Any] = bench_core()
    for key, value in result.items():
        print(f"{key:>22}: {value:,.0f}")


if __name__ == "__main__":  # pragma: no cover
    main()


def run() -> list[Figure]:
    """``edge bench core``: the pure core's samples/s (no baseline: it is CPU only)."""
    result = bench_core()
    rate = result["samples_per_s"]
    return [
        Figure(
            name="core: machine core samples/s (one core)",
            value=rate,
            unit="samples/s",
            bar=">= 300,000",
            meets_bar=rate >= 300_000,
            note=f"median of {result['runs']:.0f} runs of {result['samples']:,.0f} samples",
        )
    ]
