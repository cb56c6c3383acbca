"""Outbox benchmark: durable appends/s through the bus writer (group commit, synchronous FULL).

DESIGN.md §7: >= 100,000 events/s. The events are the engine's own (pieces,
state changes, stops), published on an EventBus in bursts as the machine
actors do; the figure counts from the first publish until the last event is
committed with ``synchronous = FULL``. The in-run baseline is the raw cost of
the same rows: sqlite3 ``executemany`` of the already-encoded envelopes in
transactions of the same size, also FULL, in a WAL database on the same disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from actors import loop as actor_loop
from actors.oee.events import PiecesCounted, StateChanged, StopEnded
from actors.oee.params import ReasonCategory
from actors.oee.state import MachineState
from actors.oee.stops import StopKind
from edge.bench import Figure
from edge.event_bus import EventBus
from edge.outbox import EVENTS_STREAM, Outbox, OutboxWriter
from edge.wire import envelope, pack_event

COMMIT_MAX_EVENTS = 10_000

EVENTS = 300_000
BURST = 200  # events per bus publish (one actor message can produce several)
RUNS = 3


def synthetic_events(count: int) -> list[object]:
    """A plausible mix: mostly counter deltas, some state changes and stops."""
    events: list[object] = []
    ts = 1.7e9
    for i in range(count):
        machine = f"M{i % 50:02d}"
        ts += 0.001
        kind = i % 20
        if kind == 0:
            events.append(StateChanged(machine, ts, MachineState.STOPPED, MachineState.RUNNING))
        elif kind == 1:
            events.append(
                StopEnded(
                    machine,
                    ts,
                    i,
                    ts - 30.0,
                    ts,
                    30.0,
                    StopKind.MICRO_STOP,
                    "jam at infeed",
                    ReasonCategory.UNPLANNED,
                )
            )
        else:
            events.append(PiecesCounted(machine, ts, "total_count", 1 + i % 3, None))
    return events


async def _writer_rate(events: list[object], directory: Path) -> float:
    bus: EventBus[Any] = EventBus()
    async with Outbox(directory / "writer.db", synchronous="FULL") as outbox:
        writer = OutboxWriter(outbox, bus, max_pending=len(events) + 1)
        async with writer:
            start = time.perf_counter()
            for index in range(0, len(events), BURST):
                bus.publish(events[index : index + BURST])
                if index % (BURST * 10) == 0:
                    await asyncio.sleep(0)  # the actors yield between messages
            await writer.flush()
            elapsed = time.perf_counter() - start
        assert outbox.last_seq(EVENTS_STREAM) == len(events)
    return len(events) / elapsed


def _raw_rate(events: list[object], directory: Path) -> float:
    """sqlite3 alone: the same envelopes, pre-encoded, same transaction size, FULL."""
    rows = [
        (EVENTS_STREAM, seq, 1.7e9, envelope(seq, *pack_event(event)), 0)
        for seq, event in enumerate(events, start=1)
    ]
    conn = sqlite3.connect(directory / "raw.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE outbox (stream TEXT NOT NULL, seq INTEGER NOT NULL, created REAL "
            "NOT NULL, payload BLOB NOT NULL, keep INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (stream, seq)) WITHOUT ROWID"
        )
        start = time.perf_counter()
        for index in range(0, len(rows), COMMIT_MAX_EVENTS):
            conn.executemany(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?)", rows[index : index + COMMIT_MAX_EVENTS]
            )
            conn.commit()
        return len(rows) / (time.perf_counter() - start)
    finally:
        conn.close()


async def _measure() -> tuple[list[float], list[float], str]:
    events = synthetic_events(EVENTS)
    writer_rates, raw_rates = [], []
    for run in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="edge-bench-outbox-") as tmp:
            directory = Path(tmp)
            raw_rates.append(_raw_rate(events, directory))
            writer_rates.append(await _writer_rate(events, directory / f"run{run}"))
    return writer_rates, raw_rates, actor_loop.loop_kind(asyncio.get_running_loop())


def run() -> list[Figure]:
    writer_rates, raw_rates, loop_kind = actor_loop.run(_measure())
    rate = statistics.median(writer_rates)
    raw = statistics.median(raw_rates)
    return [
        Figure(
            name="outbox: durable appends/s (bus -> group commit, synchronous FULL)",
            value=rate,
            unit="events/s",
            bar=">= 100,000",
            meets_bar=rate >= 100_000,
            baseline_name="raw sqlite3 executemany, same rows, FULL",
            baseline_value=raw,
            ratio=rate / raw,
            note=f"{EVENTS:,} events in bursts of {BURST}; median of {RUNS} runs; {loop_kind}",
        )
    ]
