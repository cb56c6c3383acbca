"""MachineCore behaviour: inputs, reasons, counts, orders, windows, persistence."""

from __future__ import annotations

import json
from datetime import time as wall

import pytest

from actors.errors import CommandError, SnapshotError
from actors.messages import Quality
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import (
    CounterJumpCapped,
    OrderWindowClosed,
    PiecesCounted,
    ShiftClosed,
    StateChanged,
    StopEnded,
    StopReasonChanged,
    StopStarted,
    Warning,
)
from actors.oee.params import (
    CalendarDef,
    LossBucket,
    Reason,
    ReasonCategory,
    ShiftDef,
    StateSource,
)
from actors.oee.state import MachineState
from actors.oee.stops import StopKind
from tests.unit.oee.helpers import core, feed, of_type, params, t, two_shift_calendar


def test_out_of_order_samples_are_counted_warned_about_and_not_applied() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:10"), "running", True)
    events = feed(m, t("06:05"), "running", False)  # older than the last running sample
    [warning] = of_type(events, Warning)
    assert warning.kind == "out_of_order"
    assert m.state is MachineState.RUNNING
    for second in range(10):  # more of them within a minute: counted, not warned
        assert not of_type(feed(m, t("06:05") + second, "running", False), Warning)
    feed(m, t("06:20"), "running", True)
    [later] = of_type(feed(m, t("06:19"), "running", False), Warning)
    assert "10 more like it" in later.message
    assert m.statistics().out_of_order == 12


def test_bad_quality_samples_are_not_applied() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 10)
    assert feed(m, t("06:10"), "running", False, Quality.BAD) == []
    assert feed(m, t("06:10"), "total_count", 99999, Quality.BAD) == []
    assert m.state is MachineState.RUNNING
    assert m.counters == {"total_count": 10}
    feed(m, t("06:20"), "running", False, Quality.UNCERTAIN)  # uncertain is applied
    assert m.state is MachineState.STOPPED
    assert m.statistics().bad_quality == 2


def test_packml_state_decides_running_and_names_the_stop() -> None:
    m = core(reasons=(Reason("Held", None, ReasonCategory.PLANNED), Reason("jam", 17)))
    feed(m, t("06:00"), "state", 6)  # Execute: auto source becomes PackML
    assert m.state is MachineState.RUNNING
    [started] = of_type(feed(m, t("06:10"), "state", 2), StopStarted)  # Stopped
    assert (started.reason, started.category) == ("Stopped", ReasonCategory.UNPLANNED)
    # A fault code arriving during the stop wins over the state name.
    [changed] = of_type(feed(m, t("06:11"), "fault_code", 17), StopReasonChanged)
    assert (changed.previous_reason, changed.reason) == ("Stopped", "jam")
    feed(m, t("06:12"), "fault_code", 0)
    feed(m, t("06:20"), "state", 6)
    # Held is in the reason table by name, as planned.
    [started] = of_type(feed(m, t("06:30"), "state", 11), StopStarted)
    assert (started.reason, started.category) == ("Held", ReasonCategory.PLANNED)
    [ended] = of_type(feed(m, t("06:31"), "state", 6), StopEnded)
    assert ended.kind is StopKind.PLANNED  # 60 s but planned: not a micro-stop


def test_reason_priority_fault_then_operator_then_state_name() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "state", 6)
    feed(m, t("06:05"), "state", 5)  # Suspended (running signal decides; state names)
    [started] = of_type(feed(m, t("06:05"), "running", False), StopStarted)
    assert started.reason == "Suspended"
    m.set_operator_reason("cleaning")  # the open stop; planned in the table
    assert m.stop_reason == "cleaning"
    feed(m, t("06:05:20"), "fault_code", 3)  # first fault during the stop: wins, raw code
    assert m.stop_reason == "3"
    feed(m, t("06:05:30"), "fault_code", 17)  # only the first non-zero code counts
    assert m.stop_reason == "3"
    [ended] = of_type(feed(m, t("06:05:50"), "running", True), StopEnded)  # 50 s
    assert (ended.reason, ended.category, ended.kind) == (
        "3",
        ReasonCategory.UNPLANNED,
        StopKind.MICRO_STOP,
    )
    # A fault code present when the stop starts is its reason.
    feed(m, t("06:09"), "fault_code", 40)
    [started] = of_type(feed(m, t("06:09"), "running", False), StopStarted)
    assert (started.reason, started.category) == ("cleaning", ReasonCategory.PLANNED)


def test_operator_reason_needs_a_stop_and_a_name() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    with pytest.raises(CommandError, match="not stopped"):
        m.set_operator_reason("cleaning")
    feed(m, t("06:10"), "running", False)
    with pytest.raises(CommandError, match="non-empty"):
        m.set_operator_reason("  ")


def test_auto_source_moves_from_counts_to_the_running_signal() -> None:
    m = core()
    feed(m, t("06:00"), "total_count", 0)  # counts only so far: running from here
    assert m.state is MachineState.RUNNING
    events = feed(m, t("06:00:04"), "running", False)  # a running signal: it decides now
    assert m.state is MachineState.STOPPED
    assert of_type(events, StopStarted)
    feed(m, t("06:10"), "total_count", 5)  # counts no longer restart the machine
    assert m.state is MachineState.STOPPED


def test_count_roles_derive_the_third() -> None:
    # total alone: rejects come from quality stations.
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    events = feed(m, t("06:10"), "total_count", 100)
    [counted] = of_type(events, PiecesCounted)
    assert (counted.role, counted.count) == ("total_count", 100)  # one event per delta
    m.add_rejects(7, t("06:11"))
    kpis = m.current_shift_kpis(t("06:20"))
    assert kpis is not None
    assert (kpis.total_count, kpis.good_count, kpis.reject_count) == (100, 93, 7)
    # good and reject: total = good + reject.
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "good_count", 0)
    feed(m, t("06:00"), "reject_count", 0)
    feed(m, t("06:10"), "good_count", 90)
    feed(m, t("06:10"), "reject_count", 4)
    kpis = m.current_shift_kpis(t("06:20"))
    assert kpis is not None
    assert (kpis.total_count, kpis.good_count, kpis.reject_count) == (94, 90, 4)
    # total and good: reject = total - good.
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 1000)
    feed(m, t("06:00"), "good_count", 500)
    feed(m, t("06:10"), "total_count", 1100)
    feed(m, t("06:10"), "good_count", 597)
    kpis = m.current_shift_kpis(t("06:20"))
    assert kpis is not None
    assert (kpis.total_count, kpis.good_count, kpis.reject_count) == (100, 97, 3)
    assert kpis.quality == pytest.approx(0.97)
    with pytest.raises(CommandError):
        m.add_rejects(-1, t("06:30"))


def test_implausible_jumps_are_capped_and_invalid_values_warn() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    # 10 s at 2 s per piece, factor 2: allowance 2 x (10 / 2 + 1) = 12 pieces.
    # 50000 is capped: 12 counted, 49988 reported and never counted.
    events = feed(m, t("06:00:10"), "total_count", 50000)
    [warning] = of_type(events, Warning)
    assert warning.kind == "counter_jump"
    [capped] = of_type(events, CounterJumpCapped)
    assert (capped.old, capped.new, capped.delta, capped.counted, capped.excess) == (
        0,
        50000,
        50000,
        12,
        49988,
    )
    [counted] = of_type(events, PiecesCounted)
    assert counted.count == 12
    [warning] = of_type(feed(m, t("06:00:20"), "total_count", -5), Warning)
    assert warning.kind == "invalid_value"
    feed(m, t("06:00:30"), "total_count", 2**32)  # beyond 32 bits: invalid too
    feed(m, t("06:00:40"), "running", "yes")
    stats = m.statistics()
    assert (stats.implausible_jumps, stats.invalid_values) == (1, 3)
    kpis = m.current_shift_kpis(t("06:01"))
    assert kpis is not None and kpis.total_count == 12


def test_orders_have_their_own_window_and_ideal_cycle_time() -> None:
    m = core()
    feed(m, t("13:00"), "running", True)
    feed(m, t("13:00"), "total_count", 0)
    m.set_order("WO1", 1.0, t("13:00"))
    feed(m, t("13:30"), "total_count", 900)  # 900 pieces at 1.0 s
    m.set_order("WO2", None, t("13:30"))  # the machine's 2.0 s
    [closed] = of_type(m.drain_events(), OrderWindowClosed)
    assert closed.order_id == "WO1"
    # WO1: 1800 s of running, 900 pieces x 1.0 s: performance 0.5.
    assert (closed.kpis.run_s, closed.kpis.total_count) == (1800.0, 900)
    assert closed.kpis.performance == 0.5
    feed(m, t("13:45"), "total_count", 1350)  # +450 pieces at 2.0 s in WO2
    kpis = m.current_shift_kpis(t("14:00"))
    assert kpis is not None
    # Shift A from 13:00: 3600 s running, 900 x 1.0 + 450 x 2.0 = 1800 s ideal.
    assert kpis.performance == 0.5
    wo2 = m.order_kpis("WO2", t("14:00"))
    assert wo2 is not None and wo2.performance == pytest.approx(900 / 1800)
    assert m.order_kpis("WO1", t("14:00")) == closed.kpis


def test_unscheduled_time_and_pieces_are_kept_apart() -> None:
    m = core()
    feed(m, t("21:00"), "running", True)
    feed(m, t("21:00"), "total_count", 0)
    feed(m, t("22:30"), "total_count", 100)  # after B ended at 22:00: unscheduled
    feed(m, t("23:00"), "running", False)
    feed(m, t("23:10"), "running", True)
    m.advance(t("23:30"))
    u = m.unscheduled(t("23:30"))
    # 22:00-23:00 and 23:10-23:30 running, 23:00-23:10 stopped; 100 pieces.
    assert (u.running_s, u.stopped_s, u.unknown_s, u.stops) == (4800.0, 600.0, 0.0, 1)
    assert u.total_count == 100
    b = m.last_closed_shift_kpis()
    assert b is not None and b.total_count == 0 and b.run_s == 3600.0
    assert m.current_shift_kpis(t("23:30")) is None


def test_a_stop_through_a_break_is_classified_by_its_whole_length() -> None:
    m = core(two_shift_calendar(with_breaks=True))  # break 10:00-10:30
    feed(m, t("09:00"), "running", True)
    feed(m, t("09:58"), "running", False)
    feed(m, t("10:31"), "running", True)  # 33 min: 2 before the break, 1 after it
    kpis = m.current_shift_kpis(t("11:00"))
    assert kpis is not None
    # 09:00-11:00: 7200 s; break 1800 planned; PPT 5400. The stop is 1980 s long,
    # a downtime event; its time inside PPT is 120 + 60 = 180 s.
    assert (kpis.planned_stop_s, kpis.downtime_s, kpis.downtime_events) == (1800.0, 180.0, 1)
    assert kpis.run_s == 5220.0
    assert kpis.mttr_s == 180.0


def test_counts_only_stop_is_back_dated_across_a_shift_boundary() -> None:
    m = core(state_source=StateSource.COUNTS)  # stop after 10 s, back-dated by 2 s
    feed(m, t("13:59:50"), "total_count", 0)  # running from here
    feed(m, t("13:59:55"), "total_count", 1)
    # 14:00:01 is past the boundary but before the deadline (14:00:05): undecided.
    assert not of_type(feed(m, t("14:00:01"), "temp", 1.0), ShiftClosed)
    events = feed(m, t("14:00:20"), "temp", 1.0)  # the deadline passed
    [started] = of_type(events, StopStarted)
    assert started.ts == t("13:59:57")
    [closed] = of_type(events, ShiftClosed)
    # A from 13:59:50: 10 s, running until 13:59:57, stopped for the last 3 s.
    assert closed.kpis.scheduled_s == 10.0
    assert closed.kpis.micro_stop_s == 3.0
    assert closed.kpis.run_s == 10.0  # micro-stop time stays in run (performance bucket)
    # A count ends the stop (23 s in all, 20 of them in B).
    [ended] = of_type(feed(m, t("14:00:20"), "total_count", 2), StopEnded)
    assert (ended.duration_s, ended.kind) == (23.0, StopKind.MICRO_STOP)
    assert m.state is MachineState.RUNNING


def test_micro_stops_in_the_availability_bucket_are_downtime_but_not_events() -> None:
    m = core(micro_stop_bucket=LossBucket.AVAILABILITY)
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:10"), "running", False)
    events = feed(m, t("06:11"), "running", True)
    assert [type(e) for e in events] == [StopEnded, StateChanged]
    kpis = m.current_shift_kpis(t("07:00"))
    assert kpis is not None
    assert (kpis.downtime_s, kpis.micro_stops, kpis.downtime_events) == (60.0, 1, 0)
    assert kpis.mttr_s is None


def _scenario(m: MachineCore, start: int, stop: int) -> None:
    steps = [
        ("06:00", "running", True),
        ("06:00", "total_count", 65000),
        ("07:00", "total_count", 100),
        ("07:10", "running", False),
        ("07:10", "fault_code", 17),
        ("07:30", "running", True),
        ("07:30", "fault_code", 0),
        ("13:59", "running", False),
        ("14:03", "running", True),
        ("15:00", "total_count", 2000),
    ]
    for when, signal, value in steps[start:stop]:
        feed(m, t(when), signal, value)


def test_snapshot_is_plain_data_and_restore_continues_exactly() -> None:
    straight = core(counter_bits=16)
    _scenario(straight, 0, 10)
    m = core(counter_bits=16)
    _scenario(m, 0, 8)  # cut inside the stop crossing 14:00
    snapshot = json.loads(json.dumps(m.snapshot(), allow_nan=False))
    restored = MachineCore.restore(params(counter_bits=16), two_shift_calendar(), snapshot)
    _scenario(restored, 8, 10)
    assert restored.current_shift_kpis(t("16:00")) == straight.current_shift_kpis(t("16:00"))
    assert restored.last_closed_shift_kpis() == straight.last_closed_shift_kpis()
    assert restored.snapshot() == straight.snapshot()


def test_restore_refuses_a_foreign_or_damaged_snapshot() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    snapshot = m.snapshot()
    with pytest.raises(SnapshotError, match="cannot restore"):
        MachineCore.restore(params(machine_id="M2"), two_shift_calendar(), snapshot)
    with pytest.raises(SnapshotError, match="version"):
        MachineCore.restore(params(), two_shift_calendar(), {**snapshot, "version": 99})
    with pytest.raises(SnapshotError, match="damaged"):
        MachineCore.restore(params(), two_shift_calendar(), {**snapshot, "stops": [{}]})


def test_no_calendar_shifts_means_nothing_is_scheduled() -> None:
    m = MachineCore(params(), ShiftCalendar(CalendarDef("UTC", ())))
    feed(m, t("06:00"), "running", True)
    m.advance(t("07:00"))
    assert m.current_shift_kpis(t("07:00")) is None
    assert m.unscheduled(t("07:00")).running_s == 3600.0
    assert m.unscheduled().running_s == 0.0  # accounted time only: nothing changed yet


def test_state_changes_are_events_with_the_previous_state() -> None:
    m = core()
    [changed] = of_type(feed(m, t("06:00"), "running", True), StateChanged)
    assert (changed.previous, changed.state) == (MachineState.UNKNOWN, MachineState.RUNNING)
    assert m.state_since == t("06:00")
    assert feed(m, t("06:00:01"), "running", True) == []  # nothing happened: no event
    assert feed(m, t("06:00:02"), "temp", 3.5) == []


def test_night_shift_calendar_days_are_respected() -> None:
    calendar = ShiftCalendar(
        CalendarDef("UTC", (ShiftDef("N", wall(22), wall(6), days=frozenset({5})),))
    )
    m = MachineCore(params(), calendar)  # only Friday nights; 2025-08-22 is a Friday
    feed(m, t("21:00"), "running", True)
    m.advance(t("06:30", day=23))
    [closed] = of_type(m.drain_events(), ShiftClosed)
    assert closed.kpis.key == "N@2025-08-22"
    assert closed.kpis.run_s == 8 * 3600.0


def test_an_order_can_run_again_and_its_new_span_replaces_the_old() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    m.set_order("WO1", None, t("06:00"))
    feed(m, t("06:10"), "running", False)
    feed(m, t("06:20"), "running", True)
    m.set_order("WO2", None, t("07:00"))
    m.set_order("WO1", None, t("08:00"))
    m.set_order(None, None, t("08:30"))
    closed = of_type(m.drain_events(), OrderWindowClosed)
    assert [(e.order_id, e.kpis.start, e.kpis.end) for e in closed] == [
        ("WO1", t("06:00"), t("07:00")),
        ("WO2", t("07:00"), t("08:00")),
        ("WO1", t("08:00"), t("08:30")),
    ]
    again = m.order_kpis("WO1", t("09:00"))
    assert again is not None and (again.start, again.run_s, again.downtime_s) == (
        t("08:00"),
        1800.0,
        0.0,
    )
    assert m.order_kpis("WO2", t("09:00")) is None  # only the last closed order is kept
