"""Shift instances in UTC, every expectation converted from local time by hand.

Offsets used: Europe/Berlin is CET = UTC+1 in winter and CEST = UTC+2 in summer;
in 2025 it springs forward on Sun 2025-03-30 at 02:00 CET (to 03:00 CEST) and
falls back on Sun 2025-10-26 at 03:00 CEST (to 02:00 CET). Asia/Bangkok is
UTC+7 all year. 2025-07-14 is a Monday.
"""

from __future__ import annotations

import datetime
import math

import pytest

from actors.oee.calendar import NEXT_BOUNDARY_HORIZON_S, ShiftCalendar, ShiftInstance
from tests.unit.oee_calendar.helpers import calendar, shift, utc

HOUR = 3600.0


def only_instance(cal: ShiftCalendar, start: float, end: float) -> ShiftInstance:
    found = list(cal.instances(start, end))
    assert len(found) == 1, found
    return found[0]


# -- day shift with breaks ---------------------------------------------------


def test_day_shift_with_break_in_summer_berlin() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Day", "06:00-14:00", "09:00-09:30")))
    # Tue 2025-07-15 06:00 CEST = 04:00 UTC; 14:00 CEST = 12:00 UTC; break 07:00-07:30 UTC.
    instance = cal.instance_at(utc(2025, 7, 15, 4, 0))
    assert instance == ShiftInstance(
        name="Day",
        local_date=datetime.date(2025, 7, 15),
        start=utc(2025, 7, 15, 4, 0),
        end=utc(2025, 7, 15, 12, 0),
        breaks=((utc(2025, 7, 15, 7, 0), utc(2025, 7, 15, 7, 30)),),
    )
    assert instance.key == "Day@2025-07-15"
    assert instance.end - instance.start == 8 * HOUR  # 28,800 s
    # Whole shift: the one 30 min break = 1,800 s.
    assert instance.break_seconds_between(instance.start, instance.end) == 1800.0
    # 07:15-08:00 UTC overlaps the break 07:15-07:30 = 900 s.
    assert instance.break_seconds_between(utc(2025, 7, 15, 7, 15), utc(2025, 7, 15, 8, 0)) == 900.0
    # Entirely before the break: nothing.
    assert instance.break_seconds_between(utc(2025, 7, 15, 5, 0), utc(2025, 7, 15, 7, 0)) == 0.0
    assert instance.in_break(utc(2025, 7, 15, 7, 0))  # break start inclusive
    assert instance.in_break(utc(2025, 7, 15, 7, 29))
    assert not instance.in_break(utc(2025, 7, 15, 7, 30))  # break end exclusive
    assert not instance.in_break(utc(2025, 7, 15, 7, 0) - 1.0)


def test_day_shift_in_winter_uses_cet() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Day", "06:00-14:00", "09:00-09:30")))
    # Wed 2025-01-15 06:00 CET = 05:00 UTC, 14:00 CET = 13:00 UTC, break 08:00-08:30 UTC.
    instance = cal.instance_at(utc(2025, 1, 15, 10, 0))
    assert instance is not None
    assert (instance.start, instance.end) == (utc(2025, 1, 15, 5, 0), utc(2025, 1, 15, 13, 0))
    assert instance.breaks == ((utc(2025, 1, 15, 8, 0), utc(2025, 1, 15, 8, 30)),)


def test_touching_breaks_are_merged_into_one() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Day", "06:00-14:00", "09:15-09:30", "09:00-09:15"))
    )
    # 09:00-09:30 CEST = 07:00-07:30 UTC, one break: its inner edge is no change.
    instance = cal.instance_at(utc(2025, 7, 15, 6, 0))
    assert instance is not None
    assert instance.breaks == ((utc(2025, 7, 15, 7, 0), utc(2025, 7, 15, 7, 30)),)


# -- night shift crossing midnight --------------------------------------------


def test_night_shift_crosses_midnight_with_breaks_on_both_sides() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Night", "22:00-06:00", "02:00-02:30", "23:45-00:15"))
    )
    # Starts Tue 2025-07-15 22:00 CEST = 20:00 UTC, ends Wed 06:00 CEST = 04:00 UTC.
    # 23:45-00:15 crosses midnight: 21:45-22:15 UTC on the 15th.
    # 02:00-02:30 lies after midnight, so on the 16th's wall clock: 00:00-00:30 UTC on the 16th.
    instance = cal.instance_at(utc(2025, 7, 16, 1, 0))
    assert instance == ShiftInstance(
        name="Night",
        local_date=datetime.date(2025, 7, 15),
        start=utc(2025, 7, 15, 20, 0),
        end=utc(2025, 7, 16, 4, 0),
        breaks=(
            (utc(2025, 7, 15, 21, 45), utc(2025, 7, 15, 22, 15)),
            (utc(2025, 7, 16, 0, 0), utc(2025, 7, 16, 0, 30)),
        ),
    )
    assert instance.end - instance.start == 28800.0  # 8 h
    assert instance.break_seconds_between(instance.start, instance.end) == 3600.0  # 30 + 30 min
    # The instance before midnight local is the same one.
    assert cal.instance_at(utc(2025, 7, 15, 21, 59)) == instance


def test_night_shift_across_spring_change_lasts_seven_hours() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00", "00:30-01:00")))
    # Sat 2025-03-29 22:00 CET = 21:00 UTC; Sun 2025-03-30 06:00 CEST = 04:00 UTC.
    # 04:00 - 21:00 (previous day) = 7 h = 25,200 s. Break 00:30-01:00 CET = 23:30-00:00 UTC.
    instance = only_instance(cal, utc(2025, 3, 29, 21, 30), utc(2025, 3, 29, 21, 31))
    assert instance.key == "Night@2025-03-29"
    assert (instance.start, instance.end) == (utc(2025, 3, 29, 21, 0), utc(2025, 3, 30, 4, 0))
    assert instance.end - instance.start == 25200.0
    assert instance.breaks == ((utc(2025, 3, 29, 23, 30), utc(2025, 3, 30, 0, 0)),)
    # The nights either side are 8 h: Fri 22:00 CET = 21:00 UTC .. Sat 06:00 CET = 05:00 UTC,
    # Sun 22:00 CEST = 20:00 UTC .. Mon 06:00 CEST = 04:00 UTC.
    before = cal.instance_by_key("Night@2025-03-28")
    after = cal.instance_by_key("Night@2025-03-30")
    assert before is not None and after is not None
    assert (before.start, before.end) == (utc(2025, 3, 28, 21, 0), utc(2025, 3, 29, 5, 0))
    assert (after.start, after.end) == (utc(2025, 3, 30, 20, 0), utc(2025, 3, 31, 4, 0))


def test_night_shift_across_autumn_change_lasts_nine_hours() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00")))
    # Sat 2025-10-25 22:00 CEST = 20:00 UTC; Sun 2025-10-26 06:00 CET = 05:00 UTC.
    # 05:00 - 20:00 (previous day) = 9 h = 32,400 s.
    instance = cal.instance_at(utc(2025, 10, 26, 1, 30))  # inside the repeated hour
    assert instance is not None
    assert instance.key == "Night@2025-10-25"
    assert (instance.start, instance.end) == (utc(2025, 10, 25, 20, 0), utc(2025, 10, 26, 5, 0))
    assert instance.end - instance.start == 32400.0


def test_24_hour_shift_across_autumn_change_lasts_25_hours() -> None:
    # start == end is a 24 h shift; across the autumn change it is 25 h of real time:
    # Sat 2025-10-25 06:00 CEST = 04:00 UTC .. Sun 2025-10-26 06:00 CET = 05:00 UTC.
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Around", "06:00-06:00")))
    instance = cal.instance_at(utc(2025, 10, 25, 12, 0))
    assert instance is not None
    assert (instance.start, instance.end) == (utc(2025, 10, 25, 4, 0), utc(2025, 10, 26, 5, 0))
    assert instance.end - instance.start == 90000.0
    # The next instance starts where this one ends: a boundary between instances.
    assert cal.next_boundary(utc(2025, 10, 25, 12, 0)) == utc(2025, 10, 26, 5, 0)
    following = cal.instance_at(utc(2025, 10, 26, 5, 0))
    assert following is not None and following.key == "Around@2025-10-26"


def test_nonexistent_local_time_moves_forward_by_the_gap() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Early", "02:30-10:30")))
    # 02:30 on 2025-03-30 does not exist; read with CET (+1) it is 01:30 UTC = 03:30 CEST.
    # 10:30 CEST = 08:30 UTC, so the instance lasts 7 h.
    instance = cal.instance_by_key("Early@2025-03-30")
    assert instance is not None
    assert (instance.start, instance.end) == (utc(2025, 3, 30, 1, 30), utc(2025, 3, 30, 8, 30))


def test_ambiguous_local_time_takes_its_first_occurrence() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Early", "02:30-10:30")))
    # 02:30 on 2025-10-26 happens twice; the first is 02:30 CEST = 00:30 UTC.
    # 10:30 CET = 09:30 UTC, so the instance lasts 9 h.
    instance = cal.instance_by_key("Early@2025-10-26")
    assert instance is not None
    assert (instance.start, instance.end) == (utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 9, 30))


def test_breaks_in_the_spring_gap_move_whole_or_vanish() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Graveyard", "01:00-06:00", "02:00-02:15", "02:30-03:00"))
    )
    # 2025-03-30: start 01:00 CET = 00:00 UTC, end 06:00 CEST = 04:00 UTC.
    # 02:00-02:15 lies wholly in the gap: read with CET, 01:00-01:15 UTC (03:00-03:15 CEST).
    # 02:30-03:00 would run from 01:30 UTC back to 01:00 UTC (03:00 CEST exists): dropped.
    spring = cal.instance_by_key("Graveyard@2025-03-30")
    assert spring is not None
    assert (spring.start, spring.end) == (utc(2025, 3, 30, 0, 0), utc(2025, 3, 30, 4, 0))
    assert spring.breaks == ((utc(2025, 3, 30, 1, 0), utc(2025, 3, 30, 1, 15)),)
    # An ordinary summer day keeps both: 00:00-00:15 and 00:30-01:00 UTC.
    ordinary = cal.instance_by_key("Graveyard@2025-07-15")
    assert ordinary is not None
    assert ordinary.breaks == (
        (utc(2025, 7, 15, 0, 0), utc(2025, 7, 15, 0, 15)),
        (utc(2025, 7, 15, 0, 30), utc(2025, 7, 15, 1, 0)),
    )


def test_shift_after_a_boundary_in_the_gap_is_clamped() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("A", "22:00-02:30"), shift("B", "03:00-11:00"))
    )
    # A@2025-03-29 starts 22:00 CET = 21:00 UTC and ends at 02:30 (gap) = 01:30 UTC.
    # B@2025-03-30 starts 03:00 CEST = 01:00 UTC, which would run 30 min alongside A, so
    # it is clamped to 01:30 UTC; it ends 11:00 CEST = 09:00 UTC.
    a = cal.instance_by_key("A@2025-03-29")
    b = cal.instance_by_key("B@2025-03-30")
    assert a is not None and b is not None
    assert (a.start, a.end) == (utc(2025, 3, 29, 21, 0), utc(2025, 3, 30, 1, 30))
    assert (b.start, b.end) == (utc(2025, 3, 30, 1, 30), utc(2025, 3, 30, 9, 0))
    assert cal.instance_at(utc(2025, 3, 30, 1, 15)) == a
    assert cal.instance_at(utc(2025, 3, 30, 1, 30)) == b


# -- a zone without DST --------------------------------------------------------


def test_bangkok_has_constant_offset_all_year() -> None:
    cal = ShiftCalendar(
        calendar(
            "Asia/Bangkok",
            shift("Day", "08:00-17:00", "12:00-13:00"),
            shift("Night", "20:00-05:00"),
        )
    )
    # UTC+7: Day 08:00-17:00 = 01:00-10:00 UTC, break 05:00-06:00 UTC;
    # Night 20:00-05:00 = 13:00-22:00 UTC, 9 h also on Europe's change dates.
    for year, month, day in ((2025, 3, 30), (2025, 7, 15), (2025, 10, 26)):
        found = list(cal.instances(utc(year, month, day, 0, 0), utc(year, month, day, 23, 59)))
        assert [i.key for i in found] == [
            f"Day@{year}-{month:02d}-{day:02d}",
            f"Night@{year}-{month:02d}-{day:02d}",
        ]
        day_instance, night_instance = found
        assert (day_instance.start, day_instance.end) == (
            utc(year, month, day, 1, 0),
            utc(year, month, day, 10, 0),
        )
        assert day_instance.breaks == ((utc(year, month, day, 5, 0), utc(year, month, day, 6, 0)),)
        assert (night_instance.start, night_instance.end) == (
            utc(year, month, day, 13, 0),
            utc(year, month, day, 22, 0),
        )
        assert night_instance.end - night_instance.start == 32400.0


def test_local_date_is_the_local_start_date_not_the_utc_date() -> None:
    # Bangkok 05:00 on the 15th is 22:00 UTC on the 14th.
    cal = ShiftCalendar(calendar("Asia/Bangkok", shift("Early", "05:00-13:00")))
    instance = cal.instance_at(utc(2025, 7, 14, 22, 0))
    assert instance is not None
    assert instance.local_date == datetime.date(2025, 7, 15)


# -- days of the week ------------------------------------------------------------


def test_weekday_shift_has_no_weekend_instance() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Early", "06:00-14:00", days=(1, 2, 3, 4, 5)))
    )
    # Sat 2025-07-19 10:00 CEST = 08:00 UTC: not scheduled.
    assert cal.instance_at(utc(2025, 7, 19, 8, 0)) is None
    assert cal.instance_by_key("Early@2025-07-19") is None
    assert cal.instance_by_key("Early@2025-07-20") is None
    # Mon 2025-07-14 00:00 CEST = Sun 13th 22:00 UTC .. Mon 21st 00:00 CEST: five instances.
    week = list(cal.instances(utc(2025, 7, 13, 22, 0), utc(2025, 7, 20, 22, 0)))
    assert [i.key for i in week] == [f"Early@2025-07-{day}" for day in (14, 15, 16, 17, 18)]


def test_night_shift_starting_friday_ends_saturday() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00", days=(5,))))
    # Fri 2025-07-18 22:00 CEST = 20:00 UTC .. Sat 2025-07-19 06:00 CEST = 04:00 UTC.
    saturday_morning = cal.instance_at(utc(2025, 7, 19, 3, 0))  # Sat 05:00 CEST
    assert saturday_morning is not None
    assert saturday_morning.key == "Night@2025-07-18"
    assert saturday_morning.end == utc(2025, 7, 19, 4, 0)
    # Thursday night and Saturday night: not scheduled.
    assert cal.instance_at(utc(2025, 7, 17, 21, 0)) is None
    assert cal.instance_at(utc(2025, 7, 19, 21, 0)) is None


def test_sunday_night_shift_runs_into_monday() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00", days=(7,))))
    # Sun 2025-07-20 22:00 CEST = 20:00 UTC .. Mon 2025-07-21 06:00 CEST = 04:00 UTC.
    monday_early = cal.instance_at(utc(2025, 7, 21, 3, 59))
    assert monday_early is not None and monday_early.key == "Night@2025-07-20"


# -- exact boundaries and gaps ----------------------------------------------------


def test_start_is_inclusive_and_end_exclusive() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Early", "06:00-14:00"), shift("Late", "14:00-22:00"))
    )
    # Early 04:00-12:00 UTC, Late 12:00-20:00 UTC on 2025-07-15.
    early_start = utc(2025, 7, 15, 4, 0)
    handover = utc(2025, 7, 15, 12, 0)
    late_end = utc(2025, 7, 15, 20, 0)
    assert cal.instance_at(early_start - 0.001) is None
    first = cal.instance_at(early_start)
    assert first is not None and first.key == "Early@2025-07-15"
    before_handover = cal.instance_at(handover - 0.001)
    assert before_handover is not None and before_handover.key == "Early@2025-07-15"
    at_handover = cal.instance_at(handover)
    assert at_handover is not None and at_handover.key == "Late@2025-07-15"
    last = cal.instance_at(late_end - 0.001)
    assert last is not None and last.key == "Late@2025-07-15"
    assert cal.instance_at(late_end) is None


def test_time_between_shifts_is_not_scheduled() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Early", "06:00-14:00"), shift("Late", "15:00-22:00"))
    )
    # 14:00-15:00 CEST = 12:00-13:00 UTC and 22:00-06:00 CEST = 20:00-04:00 UTC are gaps.
    assert cal.instance_at(utc(2025, 7, 15, 12, 30)) is None
    assert cal.instance_at(utc(2025, 7, 15, 23, 0)) is None
    assert cal.instance_at(utc(2025, 7, 16, 3, 59)) is None
    # The gap query overlaps nothing; a query reaching into Late finds only Late.
    assert list(cal.instances(utc(2025, 7, 15, 12, 0), utc(2025, 7, 15, 13, 0))) == []
    found = list(cal.instances(utc(2025, 7, 15, 12, 0), utc(2025, 7, 15, 13, 0) + 1.0))
    assert [i.key for i in found] == ["Late@2025-07-15"]


def test_empty_calendar_schedules_nothing() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin"))
    assert cal.instance_at(utc(2025, 7, 15, 12, 0)) is None
    assert list(cal.instances(utc(2025, 1, 1), utc(2026, 1, 1))) == []
    assert cal.next_boundary(utc(2025, 7, 15, 12, 0)) == math.inf


def test_instances_lists_a_shift_reaching_into_the_range_once() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00")))
    # 2025-07-14 22:00 CEST = 20:00 UTC; five nights start 14th..18th; the range
    # 2025-07-15 00:00 UTC .. 2025-07-19 00:00 UTC touches the nights of the 14th..18th.
    found = list(cal.instances(utc(2025, 7, 15), utc(2025, 7, 19)))
    assert [i.key for i in found] == [f"Night@2025-07-{day}" for day in (14, 15, 16, 17, 18)]
    assert list(cal.instances(utc(2025, 7, 19), utc(2025, 7, 15))) == []


# -- next_boundary ------------------------------------------------------------------


def test_next_boundary_walks_a_day_with_breaks() -> None:
    cal = ShiftCalendar(
        calendar(
            "Europe/Berlin",
            shift("Early", "06:00-14:00", "09:00-09:15", "12:00-12:30"),
            shift("Late", "14:00-22:00", "18:00-18:30"),
        )
    )
    # CEST = UTC+2 on 2025-07-15: every local time minus 2 h.
    expected = [
        utc(2025, 7, 15, 4, 0),  # 06:00 Early starts
        utc(2025, 7, 15, 7, 0),  # 09:00 break
        utc(2025, 7, 15, 7, 15),  # 09:15 break ends
        utc(2025, 7, 15, 10, 0),  # 12:00 break
        utc(2025, 7, 15, 10, 30),  # 12:30 break ends
        utc(2025, 7, 15, 12, 0),  # 14:00 Early -> Late
        utc(2025, 7, 15, 16, 0),  # 18:00 break
        utc(2025, 7, 15, 16, 30),  # 18:30 break ends
        utc(2025, 7, 15, 20, 0),  # 22:00 Late ends, not scheduled
        utc(2025, 7, 16, 4, 0),  # next day's Early
    ]
    walked = []
    ts = utc(2025, 7, 14, 22, 0)  # 2025-07-15 00:00 CEST
    for _ in expected:
        ts = cal.next_boundary(ts)
        walked.append(ts)
    assert walked == expected
    # Strictly after: from a boundary itself, the following one.
    assert cal.next_boundary(utc(2025, 7, 15, 7, 0)) == utc(2025, 7, 15, 7, 15)
    assert cal.next_boundary(utc(2025, 7, 15, 7, 0) - 0.001) == utc(2025, 7, 15, 7, 0)


def test_next_boundary_crosses_the_weekend() -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Early", "06:00-14:00", days=(1, 2, 3, 4, 5)))
    )
    # After Fri 2025-07-18 14:00 CEST (12:00 UTC) the next change is Mon 2025-07-21 06:00 CEST.
    assert cal.next_boundary(utc(2025, 7, 18, 12, 0)) == utc(2025, 7, 21, 4, 0)


def test_next_boundary_finds_a_weekly_shift_days_ahead() -> None:
    assert NEXT_BOUNDARY_HORIZON_S == 14 * 86400
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Monday", "06:00-14:00", days=(1,))))
    # A weekly shift: from Tue 2025-07-15 the next change is Mon 2025-07-21 04:00 UTC.
    assert cal.next_boundary(utc(2025, 7, 15, 0, 0)) == utc(2025, 7, 21, 4, 0)


def test_instance_and_break_state_change_only_at_next_boundary() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Night", "22:00-06:00", "23:45-00:15")))
    # Break 23:45-00:15 CEST = 21:45-22:15 UTC on 2025-07-15.
    ts = utc(2025, 7, 15, 21, 0)
    boundary = cal.next_boundary(ts)
    assert boundary == utc(2025, 7, 15, 21, 45)
    instance = cal.instance_at(ts)
    assert instance is not None and not instance.in_break(boundary - 0.001)
    assert instance.in_break(boundary)


# -- instance_by_key ----------------------------------------------------------------


def test_instance_by_key_round_trips_over_a_dst_year() -> None:
    cal = ShiftCalendar(
        calendar(
            "Europe/Berlin",
            shift("Early", "06:00-14:00", "09:00-09:30", days=(1, 2, 3, 4, 5)),
            shift("Night@Line 2", "22:00-06:00", "02:30-03:00"),
        )
    )
    seen = 0
    for instance in cal.instances(utc(2025, 1, 1), utc(2026, 1, 1)):
        fresh = ShiftCalendar(cal.definition)  # as after a restart: cold caches
        assert fresh.instance_by_key(instance.key) == instance
        seen += 1
    # 2025 has 261 weekdays, and 366 nights reach into it (the one of 2024-12-31 too).
    assert seen == 261 + 366


@pytest.mark.parametrize(
    "key",
    ["Early", "Early@", "Early@2025-13-01", "Late@2025-07-15", "@2025-07-15", "Early@2025-07-19"],
)
def test_instance_by_key_rejects_unknown_keys(key: str) -> None:
    cal = ShiftCalendar(
        calendar("Europe/Berlin", shift("Early", "06:00-14:00", days=(1, 2, 3, 4, 5)))
    )
    assert cal.instance_by_key(key) is None


# -- construction -------------------------------------------------------------------


def test_invalid_calendar_raises_value_error_naming_every_problem() -> None:
    definition = calendar(
        "Europe/Berln",
        shift("Early", "06:00-14:00", "15:00-15:30"),
        shift("Early", "13:00-21:00"),
    )
    with pytest.raises(ValueError, match="4 problems") as caught:
        ShiftCalendar(definition)
    text = str(caught.value)
    assert 'calendar.timezone: unknown IANA time zone "Europe/Berln"' in text
    assert "calendar.shifts[0].breaks[0]: 15:00-15:30 lies outside the shift 06:00-14:00" in text
    assert 'calendar.shifts[1]: overlaps shift "Early" on Monday 06:00-14:00' in text
    assert 'calendar.shifts[1].name: duplicate shift name "Early" (also shifts[0])' in text


def test_timezone_is_the_zoneinfo_of_the_definition() -> None:
    cal = ShiftCalendar(calendar("Asia/Bangkok"))
    assert cal.timezone.key == "Asia/Bangkok"


def test_non_finite_timestamp_is_refused() -> None:
    cal = ShiftCalendar(calendar("Europe/Berlin", shift("Early", "06:00-14:00")))
    with pytest.raises(ValueError, match="finite"):
        cal.instance_at(math.nan)
