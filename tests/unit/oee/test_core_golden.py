"""Golden scenarios run directly on MachineCore (inputs a trace cannot carry).

Every expected number is worked out by hand from OEE.md; times are whole
seconds, so time sums are exact.
"""

from __future__ import annotations

import pytest

from actors.oee.events import (
    GapRunCredited,
    ShiftClosed,
    StopEnded,
    StopReasonChanged,
    Warning,
    WindowRevised,
)
from actors.oee.params import ReasonCategory
from actors.oee.state import MachineState
from actors.oee.stops import StopKind
from edge.errors import CommandError
from tests.unit.oee.helpers import core, feed, of_type, t


def test_reason_entered_after_the_stop_ended_re_attributes_its_time() -> None:
    m = core()  # A 06:00-14:00, B 14:00-22:00 (UTC)
    feed(m, t("06:00"), "running", True)
    feed(m, t("07:00"), "running", False)  # stop 1, no fault: "unassigned"
    events = feed(m, t("07:30"), "running", True)
    [ended] = of_type(events, StopEnded)
    assert (ended.stop_id, ended.duration_s, ended.kind) == (1, 1800.0, StopKind.DOWNTIME)
    assert ended.reason == "unassigned"

    m.advance(t("08:00"))
    # The operator says: that stop at 07:10 was "no order" (planned in the table).
    m.set_operator_reason("no order", ts=t("07:10"))
    [changed] = of_type(m.drain_events(), StopReasonChanged)
    assert (changed.stop_id, changed.reason, changed.category) == (
        1,
        "no order",
        ReasonCategory.PLANNED,
    )
    assert (changed.previous_reason, changed.previous_category) == (
        "unassigned",
        ReasonCategory.UNPLANNED,
    )
    kpis = m.current_shift_kpis(t("09:00"))
    assert kpis is not None
    # 06:00-09:00 = 10800 s scheduled; the 1800 s stop is now planned stop time:
    # PPT = 9000, no downtime, run = 9000.
    assert (kpis.scheduled_s, kpis.planned_stop_s, kpis.planned_production_s) == (
        10800.0,
        1800.0,
        9000.0,
    )
    assert (kpis.downtime_s, kpis.run_s, kpis.downtime_events) == (0.0, 9000.0, 0)

    # Back to unplanned with another name, by stop id: 1800 s downtime again.
    m.set_operator_reason("jam at infeed", stop_id=1)
    kpis = m.current_shift_kpis(t("09:00"))
    assert kpis is not None
    assert (kpis.planned_stop_s, kpis.downtime_s, kpis.downtime_events) == (0.0, 1800.0, 1)
    assert kpis.downtime_by_reason == {"jam at infeed": 1800.0}

    # Stop 2 crosses 14:00: 13:50-14:10, 600 s in A and 600 s in B.
    feed(m, t("13:50"), "running", False)
    events = feed(m, t("14:10"), "running", True)
    [closed] = of_type(events, ShiftClosed)
    assert closed.kpis.key.startswith("A@") and closed.kpis.open_stop
    m.set_operator_reason("no order", stop_id=2)  # after A closed
    events = m.drain_events()
    [revised] = of_type(events, WindowRevised)
    # A (06:00-14:00): 28800 s; planned 600 (stop 2's part); PPT 28200;
    # downtime 1800 (stop 1, jam); run 26400.
    a = revised.kpis
    assert (a.key, a.closed, a.open_stop) == (closed.kpis.key, True, False)
    assert (a.scheduled_s, a.planned_stop_s, a.planned_production_s) == (
        28800.0,
        600.0,
        28200.0,
    )
    assert (a.downtime_s, a.run_s, a.downtime_events) == (1800.0, 26400.0, 1)
    assert m.last_closed_shift_kpis() == a
    b = m.current_shift_kpis(t("15:00"))
    assert b is not None
    # B so far (14:00-15:00): 3600 s; planned 600; PPT 3000; run 3000.
    assert (b.scheduled_s, b.planned_stop_s, b.run_s, b.downtime_s) == (
        3600.0,
        600.0,
        3000.0,
        0.0,
    )

    # Once B has closed too, A and its stop 1 are no longer kept: refused clearly.
    m.advance(t("22:30"))
    assert m.retained_shift_keys() == [b.key]
    with pytest.raises(CommandError, match="stop 1 of M1 is unknown or too old"):
        m.set_operator_reason("cleaning", stop_id=1)
    with pytest.raises(CommandError, match="no stop of M1 kept"):
        m.set_operator_reason("cleaning", ts=t("07:10"))
    m.set_operator_reason("cleaning", ts=t("14:05"))  # stop 2 is still kept (in B)


def test_comm_loss_from_link_changes() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 100)  # baseline
    feed(m, t("06:30"), "running", False)  # stop 1
    m.link_changed(False, t("06:40"))  # the stop ends here: 600 s, a downtime event
    events = m.drain_events()
    [ended] = of_type(events, StopEnded)
    assert (ended.start, ended.end, ended.kind) == (t("06:30"), t("06:40"), StopKind.DOWNTIME)
    assert m.state is MachineState.UNKNOWN
    feed(m, t("06:50"), "running", True)  # ignored: the link is down
    feed(m, t("06:50"), "total_count", 150)  # ignored too
    m.link_changed(True, t("07:00"))
    feed(m, t("07:00"), "temp", 20.0)  # not the running signal: still unknown
    assert m.state is MachineState.UNKNOWN
    feed(m, t("07:05"), "running", True)  # known again from 07:05
    events = feed(m, t("07:05"), "total_count", 400)  # +300, made while we could not see
    # Unknown 06:40-07:05 = 1500 s. 300 pieces x 2 s = 600 s of it ran (the
    # last 600 s of the gap, 06:55-07:05, become run time): comm_loss 900 s.
    [credited] = of_type(events, GapRunCredited)
    assert (credited.gap_start, credited.gap_end) == (t("06:40"), t("07:05"))
    assert (credited.unknown_s, credited.running_s, credited.pieces) == (1500.0, 600.0, 300)
    kpis = m.current_shift_kpis(t("08:00"))
    assert kpis is not None
    # 06:00-08:00 = 7200 s. Downtime: stop 1 600 s + comm_loss 900 s = 1500 s.
    # comm_loss is not a downtime event: 1 event, mttr = 600, mtbf = run / 1.
    assert kpis.downtime_s == 1500.0
    assert kpis.downtime_by_reason == {"unassigned": 600.0, "comm_loss": 900.0}
    assert kpis.downtime_events == 1
    assert kpis.run_s == 5700.0
    assert kpis.mttr_s == 600.0
    assert kpis.mtbf_s == 5700.0
    assert kpis.total_count == 300


def test_performance_above_one_warns_once_per_window() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    feed(m, t("07:00"), "total_count", 3600)  # 3600 pieces x 2 s = 7200 s ideal in 3600 s
    kpis = m.current_shift_kpis(t("07:00"))
    assert kpis is not None and kpis.performance == 2.0
    [warning] = of_type(m.drain_events(), Warning)
    assert warning.kind == "performance_above_1"
    m.current_shift_kpis(t("07:00"))
    m.advance(t("14:00"))  # A closes: still above 1, but already warned
    events = m.drain_events()
    assert of_type(events, ShiftClosed)
    assert not of_type(events, Warning)


def test_closed_shift_with_an_open_stop_is_revised_when_the_stop_ends() -> None:
    m = core()
    feed(m, t("13:00"), "running", True)
    feed(m, t("13:59"), "running", False)  # 60 s before 14:00
    events = feed(m, t("14:00:30"), "temp", 1.0)  # A closes at 14:00
    [closed] = of_type(events, ShiftClosed)
    # At 14:00 the stop is 60 s long so far: a micro-stop, open.
    assert (closed.kpis.micro_stops, closed.kpis.downtime_events) == (1, 0)
    assert closed.kpis.open_stop
    events = feed(m, t("14:02"), "running", True)  # whole stop 180 s: a downtime event
    [revised] = of_type(events, WindowRevised)
    assert revised.kpis.key == closed.kpis.key
    assert (revised.kpis.micro_stops, revised.kpis.downtime_events) == (0, 1)
    assert revised.kpis.downtime_s == 60.0
    assert not revised.kpis.open_stop
