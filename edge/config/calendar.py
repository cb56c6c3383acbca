"""``[calendar]``: the time zone and the shift patterns, as the OEE core's CalendarDef."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any

from actors.oee.params import BreakDef, CalendarDef, ShiftDef
from edge.config.schema import Check, NonEmpty, Reader, matches

_HHMM = r"([01]\d|2[0-3]):([0-5]\d)"
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAYS = f"must be one of {', '.join(_WEEKDAYS)}"
LocalTime = Annotated[str, matches(f"^{_HHMM}$", 'a local time "HH:MM" (00:00-23:59)')]
Break = Annotated[str, matches(rf"^\s*{_HHMM}\s*-\s*{_HHMM}\s*$", '"HH:MM-HH:MM" (local time)')]
Weekday = Annotated[
    str, Check(lambda day: None if day.lower() in _WEEKDAYS else f"{_DAYS}, got {day!r}")
]


@dataclass(frozen=True, slots=True)
class ShiftEntry:
    name: Annotated[str, NonEmpty]
    start: LocalTime
    end: LocalTime
    days: tuple[Weekday, ...] = ()
    breaks: tuple[Break, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    timezone: Annotated[str, NonEmpty]
    shifts: tuple[ShiftEntry, ...] = ()


def _time(text: str) -> time:
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


def read_calendar(reader: Reader, doc: dict[str, Any]) -> CalendarDef:
    if "calendar" not in doc:
        reader.problem("calendar", "missing required table [calendar] with timezone and shifts")
    entry = reader.section(CalendarEntry, reader.table(doc, "calendar"), "calendar")
    if entry is None:
        return CalendarDef("UTC", ())
    shifts = tuple(
        ShiftDef(
            shift.name,
            _time(shift.start),
            _time(shift.end),
            frozenset(_WEEKDAYS[day.lower()] for day in shift.days),
            tuple(BreakDef(*map(_time, text.split("-"))) for text in shift.breaks),
        )
        for shift in entry.shifts
    )
    from actors.oee.calendar import validate_calendar  # noqa: PLC0415 - keeps import cheap

    reader.problems.extend(validate_calendar(CalendarDef(entry.timezone, shifts), "calendar"))
    return CalendarDef(entry.timezone, shifts)
