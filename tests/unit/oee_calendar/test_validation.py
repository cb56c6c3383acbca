"""validate_calendar: every bad input named by its key path, all at once."""

from __future__ import annotations

import datetime

import pytest

from actors.oee.calendar import validate_calendar
from actors.oee.params import BreakDef, CalendarDef, ShiftDef
from edge.errors import Problem
from tests.unit.oee_calendar.helpers import calendar, shift


def messages(definition: CalendarDef, path: str = "calendar") -> list[str]:
    return [str(problem) for problem in validate_calendar(definition, path)]


def test_a_good_calendar_has_no_problems() -> None:
    definition = calendar(
        "Europe/Berlin",
        shift("Early", "06:00-14:00", "09:00-09:15", "12:00-12:30"),
        shift("Late", "14:00-22:00", "18:00-18:30"),
        shift("Night", "22:00-06:00", "23:45-00:15", "02:00-02:30"),
    )
    assert validate_calendar(definition) == []


def test_empty_shift_list_is_valid() -> None:
    assert validate_calendar(calendar("UTC")) == []


def test_start_equal_to_end_is_a_valid_24_hour_shift() -> None:
    # A 24 h shift from 06:00 may hold a break at 05:00, which is the next morning.
    assert (
        validate_calendar(calendar("Asia/Bangkok", shift("All", "06:00-06:00", "05:00-05:30")))
        == []
    )


@pytest.mark.parametrize("zone", ["Europe/Berln", "", "Europe", "../etc/passwd", "/etc/localtime"])
def test_unknown_time_zone(zone: str) -> None:
    assert validate_calendar(calendar(zone)) == [
        Problem("calendar.timezone", f'unknown IANA time zone "{zone}"')
    ]


def test_overlapping_shifts() -> None:
    definition = calendar(
        "Europe/Berlin", shift("Early", "06:00-14:00"), shift("Late", "13:00-21:00")
    )
    # Both run every day; the first day checked is Monday.
    assert messages(definition) == [
        'calendar.shifts[1]: overlaps shift "Early" on Monday 06:00-14:00'
    ]


def test_overlap_found_across_midnight_and_across_the_week_end() -> None:
    definition = calendar(
        "Europe/Berlin",
        shift("Night", "22:00-06:00", days=(7,)),
        shift("Early", "05:00-13:00", days=(1,)),
    )
    # Sunday 22:00 .. Monday 06:00 meets Monday 05:00 .. 13:00 for an hour.
    assert messages(definition) == [
        'calendar.shifts[1]: overlaps shift "Night" on Sunday 22:00-06:00'
    ]


def test_days_keep_apart_shifts_that_would_overlap_every_day() -> None:
    # The Friday night ends Saturday 06:00, and Early does not run on Saturday.
    definition = calendar(
        "Europe/Berlin",
        shift("Night", "22:00-06:00", days=(5,)),
        shift("Early", "05:00-13:00", days=(1, 2, 3, 4, 5)),
    )
    assert validate_calendar(definition) == []
    # A Thursday night ends Friday 06:00 and meets Friday's Early.
    clash = calendar(
        "Europe/Berlin",
        shift("Night", "22:00-06:00", days=(4,)),
        shift("Early", "05:00-13:00", days=(1, 2, 3, 4, 5)),
    )
    assert messages(clash) == ['calendar.shifts[1]: overlaps shift "Night" on Thursday 22:00-06:00']


def test_touching_shifts_do_not_overlap() -> None:
    definition = calendar(
        "Europe/Berlin",
        shift("Early", "06:00-14:00"),
        shift("Late", "14:00-22:00"),
        shift("Night", "22:00-06:00"),
    )
    assert validate_calendar(definition) == []


def test_break_outside_the_shift() -> None:
    definition = calendar(
        "Europe/Berlin", shift("Early", "06:00-14:00", "09:00-09:15", "15:00-15:30", "05:00-05:30")
    )
    # 05:00 is before the start, so it is read as the next morning: outside too.
    assert messages(definition) == [
        "calendar.shifts[0].breaks[1]: 15:00-15:30 lies outside the shift 06:00-14:00",
        "calendar.shifts[0].breaks[2]: 05:00-05:30 lies outside the shift 06:00-14:00",
    ]


def test_break_reaching_past_the_shift_end() -> None:
    definition = calendar("Europe/Berlin", shift("Early", "06:00-14:00", "13:45-14:15"))
    assert messages(definition) == [
        "calendar.shifts[0].breaks[0]: 13:45-14:15 extends past the end of the shift 06:00-14:00"
    ]


def test_break_of_a_night_shift_before_midnight_and_outside() -> None:
    # 21:00 is before 22:00, so it is read as the next evening, after the 06:00 end.
    definition = calendar("Europe/Berlin", shift("Night", "22:00-06:00", "21:00-21:30"))
    assert messages(definition) == [
        "calendar.shifts[0].breaks[0]: 21:00-21:30 lies outside the shift 22:00-06:00"
    ]


def test_overlapping_breaks() -> None:
    definition = calendar(
        "Europe/Berlin",
        shift("Early", "06:00-14:00", "09:00-09:30", "09:15-09:45", "12:00-12:30"),
    )
    assert messages(definition) == [
        "calendar.shifts[0].breaks[1]: 09:15-09:45 overlaps break 09:00-09:30 (breaks[0])"
    ]


def test_a_long_break_overlapping_a_later_non_neighbour() -> None:
    # Sorted by start: 09:00-11:00, 09:30-09:45, 10:00-10:15; the last one is not next
    # to the long break but still inside it.
    definition = calendar(
        "Europe/Berlin",
        shift("Early", "06:00-14:00", "10:00-10:15", "09:00-11:00", "09:30-09:45"),
    )
    assert messages(definition) == [
        "calendar.shifts[0].breaks[1]: 09:00-11:00 overlaps break 10:00-10:15 (breaks[0])",
        "calendar.shifts[0].breaks[2]: 09:30-09:45 overlaps break 09:00-11:00 (breaks[1])",
    ]


def test_zero_length_break() -> None:
    definition = calendar("Europe/Berlin", shift("Early", "06:00-14:00", "09:00-09:00"))
    assert messages(definition) == ["calendar.shifts[0].breaks[0]: 09:00-09:00 has no length"]


def test_duplicate_shift_names() -> None:
    definition = calendar(
        "Europe/Berlin",
        shift("Early", "06:00-10:00"),
        shift("Late", "14:00-22:00"),
        shift("Early", "10:00-14:00"),
    )
    assert messages(definition) == [
        'calendar.shifts[2].name: duplicate shift name "Early" (also shifts[0])'
    ]


def test_empty_shift_name() -> None:
    assert messages(calendar("UTC", shift(" ", "06:00-14:00"))) == [
        "calendar.shifts[0].name: shift name must not be empty"
    ]


def test_days_outside_iso_weekdays() -> None:
    definition = calendar("UTC", shift("Early", "06:00-14:00", days=(8, 0, 3)))
    assert messages(definition) == [
        "calendar.shifts[0].days: not an ISO weekday (1 = Monday ... 7 = Sunday): 0, 8"
    ]


def test_times_with_their_own_time_zone() -> None:
    aware = datetime.time(6, 0, tzinfo=datetime.UTC)
    definition = CalendarDef(
        "Europe/Berlin",
        (
            ShiftDef(
                "Early",
                aware,
                datetime.time(14, 0),
                breaks=(BreakDef(datetime.time(9, 0, tzinfo=datetime.UTC), datetime.time(9, 30)),),
            ),
        ),
    )
    assert messages(definition) == [
        "calendar.shifts[0].start: must be a wall-clock time without a time zone",
        "calendar.shifts[0].breaks[0]: 09:00-09:30 must be wall-clock times without a time zone",
    ]


def test_every_problem_at_once_under_the_callers_path() -> None:
    definition = calendar(
        "Mars/Olympus",
        shift("Early", "06:00-14:00", "13:00-13:30", "13:15-13:45", "14:30-15:00"),
        shift("Early", "13:00-21:00", days=(9,)),
    )
    assert messages(definition, "lines[0].calendar") == [
        'lines[0].calendar.timezone: unknown IANA time zone "Mars/Olympus"',
        "lines[0].calendar.shifts[0].breaks[2]: 14:30-15:00 lies outside the shift 06:00-14:00",
        "lines[0].calendar.shifts[0].breaks[1]: 13:15-13:45 overlaps break 13:00-13:30 (breaks[0])",
        'lines[0].calendar.shifts[1].name: duplicate shift name "Early" (also shifts[0])',
        "lines[0].calendar.shifts[1].days: not an ISO weekday (1 = Monday ... 7 = Sunday): 9",
    ]
