"""MachineCore.shift_stops: the current shift's stops as the line display lists them."""

from __future__ import annotations

from actors.oee.params import ReasonCategory
from actors.oee.stops import StopKind
from tests.unit.oee.helpers import core, feed, t


def test_the_shift_lists_its_stops_with_kind_reason_and_the_open_one() -> None:
    m = core(micro_stop_s=120.0)  # shift A 06:00-14:00, B 14:00-22:00 (UTC)
    feed(m, t("13:00"), "running", True)
    feed(m, t("13:10"), "running", False)  # 60 s, no fault: an unassigned micro-stop
    feed(m, t("13:11"), "running", True)
    feed(m, t("13:20"), "fault_code", 17)
    feed(m, t("13:20"), "running", False)  # 5 min, "jam at infeed" by the PLC: downtime
    feed(m, t("13:25"), "fault_code", 0)
    feed(m, t("13:25"), "running", True)
    feed(m, t("13:50"), "running", False)  # open, crosses into shift B
    m.set_operator_reason("cleaning")  # planned, named by an operator

    stops = m.shift_stops(t("13:55"))
    assert [(s.start, s.end) for s in stops] == [
        (t("13:10"), t("13:11")),
        (t("13:20"), t("13:25")),
        (t("13:50"), None),
    ]
    micro, downtime, open_stop = stops
    assert (micro.kind, micro.reason, micro.duration_s) == (StopKind.MICRO_STOP, "unassigned", 60)
    assert (micro.fault_code, micro.operator_reason) == (None, None)
    assert (downtime.kind, downtime.reason, downtime.fault_code) == (
        StopKind.DOWNTIME,
        "jam at infeed",
        17,
    )
    assert downtime.duration_s == 300
    assert open_stop.duration_s == 300  # as of 13:55
    assert (open_stop.kind, open_stop.category, open_stop.operator_reason) == (
        StopKind.PLANNED,
        ReasonCategory.PLANNED,
        "cleaning",
    )

    # In shift B only the stop still open shows (its time from 14:00 on is B's).
    feed(m, t("14:05"), "running", True)
    [carried] = m.shift_stops(t("14:10"))
    assert (carried.start, carried.end, carried.duration_s) == (t("13:50"), t("14:05"), 900)


def test_no_stops_outside_every_shift() -> None:
    m = core()
    feed(m, t("22:30"), "running", True)
    feed(m, t("22:40"), "running", False)
    assert m.shift_stops(t("22:50")) == []
