"""Properties of the machine core on random input streams (hypothesis).

For every shift record a stream produces (closed, revised or current):
run + downtime == PPT, planned stop + PPT == scheduled, 0 <= availability <= 1,
good + reject == total, oee == availability x performance x quality, the
reasons add up to the downtime; and the same stream fed in one piece or
through snapshot/restore at a random cut gives identical records and events.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as wall
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import LinkChanged, Quality, Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import DomainEvent
from actors.oee.kpi import KpiRecord
from actors.oee.params import (
    BreakDef,
    CalendarDef,
    LossBucket,
    MachineParams,
    ShiftDef,
    StateSource,
)
from edge.errors import CommandError
from edge.replay import ShiftRecords
from tests.unit.oee.helpers import MACHINE, REASONS

CALENDARS = {
    "utc": ShiftCalendar(
        CalendarDef(
            "UTC",
            (
                ShiftDef("A", wall(6), wall(14), breaks=(BreakDef(wall(10), wall(10, 30)),)),
                ShiftDef("B", wall(14), wall(22), breaks=(BreakDef(wall(18), wall(18, 15)),)),
            ),
        )
    ),
    # Around the spring DST change (2025-03-30 01:00Z): a 7 h night shift.
    "berlin": ShiftCalendar(
        CalendarDef(
            "Europe/Berlin",
            (
                ShiftDef("N", wall(22), wall(6), breaks=(BreakDef(wall(1), wall(1, 15)),)),
                ShiftDef("D", wall(6), wall(14)),
            ),
        )
    ),
}
STARTS = {
    "utc": datetime(2025, 8, 22, 5, 0, tzinfo=UTC).timestamp(),
    "berlin": datetime(2025, 3, 29, 19, 0, tzinfo=UTC).timestamp(),
}
COUNTER_BITS = 16


@dataclass(frozen=True)
class Step:
    gap_ms: int
    action: str
    value: Any = None
    extra: Any = None


_steps = st.one_of(
    st.builds(Step, st.integers(0, 600_000), st.just("running"), st.booleans()),
    st.builds(
        Step, st.integers(0, 600_000), st.just("state"), st.sampled_from([2, 4, 5, 6, 6, 11])
    ),
    st.builds(
        Step, st.integers(0, 300_000), st.just("fault_code"), st.sampled_from([0, 0, 3, 17, 40])
    ),
    st.builds(
        Step,
        st.integers(0, 60_000),
        st.sampled_from(["total_count", "good_count"]),
        st.integers(0, 40),
        st.sampled_from(["step", "step", "step", "reset"]),
    ),
    st.builds(Step, st.integers(0, 120_000), st.just("temp"), st.floats(-10, 90)),
    st.builds(Step, st.integers(0, 900_000), st.just("link"), st.booleans()),
    st.builds(Step, st.integers(0, 1_800_000), st.just("advance")),
    st.builds(Step, st.integers(0, 60_000), st.just("rejects"), st.integers(0, 5)),
    st.builds(
        Step,
        st.integers(0, 600_000),
        st.just("order"),
        st.sampled_from([None, "WO1", "WO2"]),
        st.sampled_from([None, 1.0, 3.0]),
    ),
    st.builds(
        Step,
        st.integers(0, 60_000),
        st.just("operator"),
        st.sampled_from(["no order", "jam at infeed", "cleaning", "waiting"]),
        st.one_of(st.none(), st.integers(0, 7_200_000), st.integers(1, 6).map(lambda i: -i)),
    ),
    st.builds(Step, st.integers(0, 60_000), st.just("bad"), st.booleans()),
    st.builds(Step, st.integers(0, 10_000), st.just("older"), st.integers(1, 120_000)),
)

_params = st.builds(
    lambda micro, bucket, source, stop_after: MachineParams(
        machine_id=MACHINE,
        ideal_cycle_s=2.0,
        micro_stop_s=micro,
        stop_after_s=stop_after,
        micro_stop_bucket=bucket,
        counter_bits=COUNTER_BITS,
        reasons=REASONS,
        state_source=source,
    ),
    st.sampled_from([30.0, 120.0, 600.0]),
    st.sampled_from(list(LossBucket)),
    st.sampled_from([None, None, *StateSource]),
    st.sampled_from([None, 10.0, 60.0]),
)


def _run(
    params: MachineParams, calendar_name: str, steps: list[Step], cut: int | None
) -> tuple[list[KpiRecord], list[DomainEvent]]:
    calendar = CALENDARS[calendar_name]
    core = MachineCore(params, calendar)
    shifts = ShiftRecords(core)
    events: list[DomainEvent] = []
    ts = STARTS[calendar_name]
    counters = {"total_count": 1000, "good_count": 900}
    for index, step in enumerate(steps):
        if index == cut:
            events += shifts.pump()
            snapshot = json.loads(json.dumps(core.snapshot(), allow_nan=False))
            core = MachineCore.restore(params, calendar, snapshot)
            shifts.core = core
        ts += step.gap_ms / 1000
        _do(core, step, ts, counters)
        events += shifts.pump()
    records, tail = shifts.finish(ts)
    return records, events + tail


def _do(core: MachineCore, step: Step, ts: float, counters: dict[str, int]) -> None:
    action = step.action
    if action in counters:
        if step.extra == "reset":
            counters[action] = step.value
        else:
            counters[action] = (counters[action] + step.value) % (1 << COUNTER_BITS)
        core.apply(Sample(MACHINE, action, counters[action], ts))
    elif action in ("running", "state", "fault_code", "temp"):
        core.apply(Sample(MACHINE, action, step.value, ts))
    elif action == "link":
        link = LinkChanged(MACHINE, step.value, ts)
        core.link_changed(link.up, link.ts)
    elif action == "advance":
        core.advance(ts)
    elif action == "rejects":
        core.add_rejects(step.value, ts)
    elif action == "order":
        core.set_order(step.value, step.extra, ts)
    elif action == "operator":
        try:
            if step.extra is None:
                core.set_operator_reason(step.value)
            elif step.extra < 0:
                core.set_operator_reason(step.value, stop_id=-step.extra)
            else:
                core.set_operator_reason(step.value, ts=ts - step.extra / 1000)
        except CommandError:
            pass  # no such stop (kept): refused, nothing changes
    elif action == "bad":
        core.apply(Sample(MACHINE, "running", step.value, ts, Quality.BAD))
    elif action == "older":
        core.apply(Sample(MACHINE, "running", True, ts - step.value / 1000))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _check(record: KpiRecord) -> None:
    r = record
    assert _close(r.run_s + r.downtime_s, r.planned_production_s), r
    assert _close(r.planned_stop_s + r.planned_production_s, r.scheduled_s), r
    assert _close(r.scheduled_s, r.end - r.start), r  # a shift window is all scheduled
    assert -1e-6 <= r.downtime_s <= r.planned_production_s + 1e-6, r
    assert r.planned_stop_s >= -1e-6 and r.micro_stop_s >= 0 and r.run_s >= 0, r
    if r.planned_production_s > 0:
        assert r.availability is not None and 0.0 <= r.availability <= 1.0, r
    else:
        assert r.availability is None, r
    assert r.good_count + r.reject_count == r.total_count, r
    if r.run_s == 0:
        assert r.performance is None
    if r.total_count == 0:
        assert r.quality is None
    factors = (r.availability, r.performance, r.quality)
    if None in factors:
        assert r.oee is None and r.teep is None
    else:
        a, p, q = factors
        assert r.oee is not None and math.isclose(r.oee, a * p * q, rel_tol=1e-12), r  # type: ignore[operator]
    assert _close(sum(r.downtime_by_reason.values()), r.downtime_s), r
    if r.downtime_events == 0:
        assert r.mtbf_s is None and r.mttr_s is None
    else:
        assert r.mttr_s is not None and r.mttr_s * r.downtime_events <= r.downtime_s + 1e-6


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=_params,
    calendar_name=st.sampled_from(sorted(CALENDARS)),
    steps=st.lists(_steps, min_size=30, max_size=150),
    data=st.data(),
)
def test_kpi_identities_hold_and_snapshot_restore_changes_nothing(
    params: MachineParams, calendar_name: str, steps: list[Step], data: st.DataObject
) -> None:
    records, events = _run(params, calendar_name, steps, cut=None)
    for record in records:
        _check(record)
    for earlier, later in itertools.pairwise(records):
        assert earlier.end <= later.start
    cut = data.draw(st.integers(0, len(steps) - 1), label="cut")
    records_cut, events_cut = _run(params, calendar_name, steps, cut=cut)
    assert records_cut == records
    assert events_cut == events
