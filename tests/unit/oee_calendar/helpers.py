"""Small builders shared by the calendar tests."""

from __future__ import annotations

import datetime

from actors.oee.params import BreakDef, CalendarDef, ShiftDef

UTC = datetime.UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """Epoch seconds of a UTC wall time (the tests' hand-converted expectations)."""
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def hm(text: str) -> datetime.time:
    hour, minute = text.split(":")
    return datetime.time(int(hour), int(minute))


def brk(span: str) -> BreakDef:
    start, end = span.split("-")
    return BreakDef(hm(start), hm(end))


def shift(name: str, span: str, *breaks: str, days: tuple[int, ...] = ()) -> ShiftDef:
    start, end = span.split("-")
    return ShiftDef(
        name=name,
        start=hm(start),
        end=hm(end),
        days=frozenset(days),
        breaks=tuple(brk(b) for b in breaks),
    )


def calendar(timezone: str, *shifts: ShiftDef) -> CalendarDef:
    return CalendarDef(timezone=timezone, shifts=tuple(shifts))
