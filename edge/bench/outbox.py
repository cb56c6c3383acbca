"""Outbox benchmark: durable appends/s with the line's state in the same transaction.

docs/performance.md: >= 100,000 events/s and >= 0.6 x raw SQLite. The events are the
engine's own (pieces, state changes, stops), published on an EventBus in
bursts, each burst from one of 50 machines, the producer yielding after each
as the machine actors do. Every commit of the writer also stores a cut of the
line's state: the snapshot of each machine that published since the previous
cut, taken from a real :class:`~actors.oee.core.MachineCore` with an hour of
history (edge.state.cut). The figure counts from the first publish until the last
event is committed with ``synchronous = FULL``.

Two loads: *flat out* (the producer never waits, so group commit makes few,
large transactions) and *every commit carries the whole line* (2,000 events,
then wait for their commit, all 50 machines changed each time: many small
transactions, each with 50 snapshots).

The baseline is raw sqlite3 alone on the same rows: the same envelopes
(already encoded) and the same number of packed snapshots, in as many
transactions as the writer made, with plain ``executemany``, also FULL, in a
WAL database on the same disk. Writer and raw runs alternate (A B A B ...);
the ratio is the median of the per-pair ratios, shown with its spread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from actors import loop as actor_loop
from actors.messages import Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import PiecesCounted, StateChanged, StopEnded
from actors.oee.params import ReasonCategory
from actors.oee.state import MachineState
from actors.oee.stops import StopKind
from edge.bench import Figure
from edge.event_bus import EventBus
from edge.state.cut import CutSources, Saved
from edge.state.outbox import EVENTS_STREAM, Outbox, OutboxWriter
from edge.state.store import SCHEMA, UPSERT_SNAPSHOT, pack_row
from edge.wire import envelope, pack_event

EVENTS = 300_000
BURST = 200  # events per bus publish (one actor message can produce several)
MACHINES = 50
RUNS = 5  # writer/raw pairs
PACED_EVENTS = 100_000
PACED_COMMIT = 2_000  # events per commit when every commit carries the whole line


def synthetic_events(count: int) -> list[object]:
    """A plausible mix: mostly counter deltas, some state changes and stops."""
    events: list[object] = []
    ts = 1.7e9
    for i in range(count):
        machine = f"M{(i // BURST) % MACHINES:02d}"
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


def machine_cores() -> list[MachineCore]:
    """50 machines of the demo line's filler type, each with an hour of history."""
    from edge.config import DEFAULT_CONFIG, load_config  # noqa: PLC0415 - bench only

    config = load_config(DEFAULT_CONFIG)
    template = config.machines[0].params
    calendar = ShiftCalendar(config.calendar)
    cores = []
    start = time.time() - 3600.0
    for n in range(MACHINES):
        params = dataclasses.replace(template, machine_id=f"M{n:02d}")
        core = MachineCore(params, calendar)
        count = 0
        for step in range(1800):
            ts = start + 2.0 * step
            running = step % 300 > 20  # a stop every 10 minutes
            core.apply(Sample(params.machine_id, "running", running, ts))
            if running:
                count += 1
                core.apply(Sample(params.machine_id, "total_count", count, ts))
                core.apply(Sample(params.machine_id, "good_count", count - count // 50, ts))
                core.apply(Sample(params.machine_id, "reject_count", count // 50, ts))
        core.drain_events()
        cores.append(core)
    return cores


class _Machines:
    """The bench's state source: the snapshot of every machine that published since the last cut."""

    def __init__(self, cores: list[MachineCore]) -> None:
        self.cores = cores
        self.dirty: set[int] = set()

    def cut(self) -> dict[str, Saved | None]:
        saved: dict[str, Saved | None] = {}
        for n in self.dirty:
            core = self.cores[n]
            saved[f"machine/{core.machine_id}"] = Saved(
                {"core": core.snapshot(), "event_time": 0.0}
            )
        self.dirty.clear()
        return saved


async def _writer_run(
    events: list[object], cores: list[MachineCore], path: Path, *, paced: bool
) -> tuple[float, int, int]:
    """(events/s, commits, snapshot rows) through the bus and the state writer."""
    bus: EventBus[Any] = EventBus()
    machines = _Machines(cores)
    cuts = CutSources()
    cuts.add("machines", machines.cut)
    async with Outbox(path, synchronous="FULL") as outbox:
        writer = OutboxWriter(
            outbox, bus, max_pending=len(events) + 1, cuts=cuts, persist_interval_s=3600.0
        )
        async with writer:
            start = time.perf_counter()
            if paced:
                for index in range(0, len(events), PACED_COMMIT):
                    bus.publish(events[index : index + PACED_COMMIT])
                    machines.dirty.update(range(MACHINES))
                    await writer.commit_now()
            else:
                for index in range(0, len(events), BURST):
                    bus.publish(events[index : index + BURST])
                    machines.dirty.add((index // BURST) % MACHINES)
                    await asyncio.sleep(0)  # the actors yield between messages
            await writer.flush()
            elapsed = time.perf_counter() - start
        assert outbox.last_seq(EVENTS_STREAM) == len(events)
        return len(events) / elapsed, outbox.commits, outbox.snapshot_rows


def _raw_run(
    rows: list[tuple[Any, ...]], snapshots: list[tuple[Any, ...]], commits: int, path: Path
) -> float:
    """sqlite3 alone: the same rows in ``commits`` transactions, plain executemany, FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            conn.execute(statement)
        per_commit = -(-len(rows) // commits)
        states = -(-len(snapshots) // commits)
        start = time.perf_counter()
        for n in range(commits):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?)",
                rows[n * per_commit : (n + 1) * per_commit],
            )
            conn.executemany(UPSERT_SNAPSHOT, snapshots[n * states : (n + 1) * states])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)
    finally:
        conn.close()


Pair = tuple[float, float, int, int]  # writer events/s, raw events/s, commits, snapshot rows


async def _pairs(events: list[object], cores: list[MachineCore], *, paced: bool) -> list[Pair]:
    rows = [
        (EVENTS_STREAM, seq, 1.7e9, envelope(seq, *pack_event(event)), 0)
        for seq, event in enumerate(events, start=1)
    ]
    packed = [pack_row({"core": core.snapshot(), "event_time": 0.0}) for core in cores]
    pairs = []
    for run in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="edge-bench-outbox-") as tmp:
            directory = Path(tmp)
            rate, commits, state_rows = await _writer_run(
                events, cores, directory / "w.db", paced=paced
            )
            snapshots = [
                (f"machine/M{i % MACHINES:02d}", 1.7e9, *row)
                for i, row in ((i, packed[i % MACHINES]) for i in range(state_rows))
                if row is not None
            ]
            raw = _raw_run(rows, snapshots, commits, directory / f"raw{run}.db")
            pairs.append((rate, raw, commits, state_rows))
    return pairs


async def _measure() -> tuple[list[Pair], list[Pair], str]:
    events = synthetic_events(EVENTS)
    cores = machine_cores()
    flat_out = await _pairs(events, cores, paced=False)
    whole_line = await _pairs(events[:PACED_EVENTS], cores, paced=True)
    return flat_out, whole_line, actor_loop.loop_kind(asyncio.get_running_loop())


def _figure(name: str, pairs: list[Pair], load: str, loop_kind: str) -> Figure:
    rate = statistics.median(p[0] for p in pairs)
    raw = statistics.median(p[1] for p in pairs)
    ratios = sorted(p[0] / p[1] for p in pairs)
    commits = statistics.median(p[2] for p in pairs)
    states = statistics.median(p[3] for p in pairs)
    ratio = statistics.median(ratios)
    return Figure(
        name=name,
        value=rate,
        unit="events/s",
        bar=">= 100,000 and >= 0.6 x raw",
        meets_bar=rate >= 100_000 and ratio >= 0.6,
        baseline_name="raw sqlite3 executemany, same rows and snapshots, FULL",
        baseline_value=raw,
        ratio=ratio,
        note=(
            f"{load}; median of {len(pairs)} interleaved writer/raw pairs, ratio spread "
            f"{ratios[0]:.2f}-{ratios[-1]:.2f}; {commits:.0f} commits carrying "
            f"{states:.0f} machine snapshots; {loop_kind}"
        ),
    )


def run() -> list[Figure]:
    flat_out, whole_line, loop_kind = actor_loop.run(_measure())
    return [
        _figure(
            "outbox: durable appends/s, state in the same transaction (synchronous FULL)",
            flat_out,
            f"{EVENTS:,} events flat out, bursts of {BURST} from {MACHINES} machines",
            loop_kind,
        ),
        _figure(
            "outbox: the same, every commit carrying all 50 machines' snapshots",
            whole_line,
            f"{PACED_EVENTS:,} events, {PACED_COMMIT:,} per commit",
            loop_kind,
        ),
    ]
