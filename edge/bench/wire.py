"""Wire benchmark: events encoded/s (``pack_event``, msgspec) against the msgpack-only encoder.

The baseline is :func:`edge.wire.pack_event_generic`, the encoder the wire had
before it moved to msgspec (msgpack with the generic default hook), measured in
the same run on the same events: the outbox's mix (counter deltas, state
changes, stops) and closed shifts with their KPI records.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from actors.oee.events import ShiftClosed
from actors.oee.kpi import KpiRecord
from edge.bench import Figure
from edge.bench.outbox import synthetic_events
from edge.wire import pack_event, pack_event_generic

EVENTS = 200_000
RUNS = 5


def _rate(encode: Callable[[object], tuple[str, bytes]], events: list[object]) -> float:
    start = time.perf_counter()
    for event in events:
        encode(event)
    return len(events) / (time.perf_counter() - start)


def _figure(label: str, events: list[object]) -> Figure:
    new, old = [], []
    for _ in range(RUNS):  # interleaved, so a noisy neighbour hurts both alike
        old.append(_rate(pack_event_generic, events))
        new.append(_rate(pack_event, events))
    rate, baseline = statistics.median(new), statistics.median(old)
    return Figure(
        name=f"wire: {label} encoded/s (pack_event, msgspec)",
        value=rate,
        unit="events/s",
        baseline_name="msgpack encoder before msgspec",
        baseline_value=baseline,
        ratio=rate / baseline,
        note=f"{len(events):,} events, byte-identical output; median of {RUNS} runs",
    )


def _shifts(count: int) -> list[object]:
    record = KpiRecord(
        machine_id="M01",
        window="shift",
        key="Day@2026-01-05",
        name="Day",
        start=1.7e9,
        end=1.7e9 + 28_800,
        closed=True,
        open_stop=False,
        scheduled_s=28_800.0,
        planned_stop_s=1_800.0,
        planned_production_s=27_000.0,
        run_s=24_000.0,
        downtime_s=3_000.0,
        downtime_events=12,
        micro_stops=40,
        micro_stop_s=900.0,
        total_count=19_500,
        good_count=19_300,
        reject_count=200,
        availability=0.889,
        performance=0.95,
        quality=0.99,
        oee=0.836,
        teep=0.78,
        mtbf_s=2_000.0,
        mttr_s=250.0,
        downtime_by_reason={"jam at infeed": 1_800.0, "cleaning": 1_200.0},
        pieces_outside_ppt=0,
    )
    return [ShiftClosed(f"M{i % 50:02d}", 1.7e9 + i, record) for i in range(count)]


def run() -> list[Figure]:
    return [
        _figure("outbox event mix", synthetic_events(EVENTS)),
        _figure("ShiftClosed (KPI record)", _shifts(EVENTS // 10)),
    ]
