"""The shift calendar: which shift instance (if any) is running at an instant.

A calendar is written in local wall-clock time (OEE.md §2); everything it
answers is in UTC epoch seconds, the core's time base (OEE.md §1).

Rules, decided here and relied on by the rest of the core:

- A shift whose end is not after its start crosses midnight and ends the next
  day, so ``start == end`` is a 24 h shift, never an empty one.
- ``ShiftDef.days`` are the ISO weekdays on which a shift *starts*; a night
  shift starting on Friday ends on Saturday. Empty means every day.
- A break is placed at its first occurrence at or after the shift's start: a
  break of a night shift that lies after midnight uses the next day's wall clock.
  A break whose end is not after its start crosses midnight.
- An empty shift list is valid: nothing is ever scheduled.
- Local wall-clock times become UTC with zoneinfo's ``fold=0`` reading: an
  ambiguous time (the repeated hour in autumn) is its first occurrence, and a
  nonexistent time (the skipped hour in spring) is read with the offset in force
  before the change, which moves it forward by the length of the gap
  (02:30 on 2025-03-30 in Europe/Berlin becomes 03:30 CEST = 01:30 UTC).
  Because that reading puts a time inside the gap *after* the real times just
  past the gap, each boundary (shift start, break start, break end, shift end,
  in local order across all shifts) is clamped to be no earlier than every
  boundary before it. Only a calendar with boundaries inside the skipped hour
  and just after it is affected: a shift ending at 02:30 pushes a shift that
  starts at 03:00 to start at 03:30 CEST as well, instead of both running at
  once. An instance (or break) that the clamp leaves with no length is dropped:
  a break from 02:30 to 03:00 on that night would run from 03:30 back to 03:00
  CEST, so it does not happen, while a break from 02:00 to 02:30 (both ends in
  the gap) moves whole to 03:00-03:30 CEST.
- ``next_boundary`` looks ahead at most ``NEXT_BOUNDARY_HORIZON_S`` (14 days,
  two full weeks of any weekly pattern); it returns ``math.inf`` only when
  nothing changes within that horizon, i.e. for a calendar without shifts.

Lookups are cached per block of four UTC days, so the core's calls at boundary
crossings are a range check and a bisection, amortised O(1).
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from actors.errors import Problem
from actors.oee.params import BreakDef, CalendarDef, ShiftDef

__all__ = [
    "NEXT_BOUNDARY_HORIZON_S",
    "ShiftCalendar",
    "ShiftInstance",
    "validate_calendar",
]

NEXT_BOUNDARY_HORIZON_S = 14 * 86_400.0

_DAY_S = 86_400
_DAY_US = _DAY_S * 1_000_000
_WEEK_US = 7 * _DAY_US
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# Cache geometry. Every offset zoneinfo can express is under 24 h, and the clamp
# only ever moves a boundary to where an earlier one converted, so a boundary on
# local date D lies within one day either side of D's UTC midnight; a shift
# instance starting on D therefore lies inside (D - 1 day, D + 3 days) in UTC.
_BLOCK_DAYS = 4
_BLOCK_S = _BLOCK_DAYS * _DAY_S
# Local dates whose instances can reach into a block [B, B + 4 days): B-3 .. B+4
# covers the bound above with one day to spare on each side.
_BLOCK_DATES_BEFORE = 3
_BLOCK_DATES_AFTER = _BLOCK_DAYS
# The clamp looks back at instances that started this many local days earlier:
# a boundary more than two days before another in local time converts to an
# earlier UTC instant whatever the offsets, and instances last at most 24 h.
_CLAMP_LOOKBACK_DAYS = 3
_MAX_CACHED_DATES = 512
_MAX_CACHED_BLOCKS = 16


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    """One occurrence of a shift, in UTC epoch seconds.

    ``breaks`` are sorted, clipped to ``[start, end)``, and touching breaks are
    merged, so every break edge is a real change between break and no break.
    """

    name: str
    local_date: datetime.date  # local date on which the shift starts
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...] = ()

    @property
    def key(self) -> str:
        """Stable id for snapshots; ``ShiftCalendar.instance_by_key`` reverses it."""
        return f"{self.name}@{self.local_date.isoformat()}"

    def break_seconds_between(self, a: float, b: float) -> float:
        """Seconds of planned break inside ``[a, b)``."""
        total = 0.0
        for break_start, break_end in self.breaks:
            overlap = min(b, break_end) - max(a, break_start)
            if overlap > 0.0:
                total += overlap
        return total

    def in_break(self, ts: float) -> bool:
        return any(break_start <= ts < break_end for break_start, break_end in self.breaks)


def validate_calendar(definition: CalendarDef, path: str = "calendar") -> list[Problem]:
    """Every problem of a calendar at once, each located by its key path.

    Checked: the time zone is a known IANA key; shift names are non-empty and
    unique; days are ISO weekdays 1..7; times carry no time zone of their own;
    every break has a length, lies inside its shift and overlaps no other break
    of that shift; no two shifts overlap in local time on any day of the week.
    ``start == end`` is a valid 24 h shift and an empty shift list is valid.
    """
    problems: list[Problem] = []
    zone_problem = _check_timezone(definition.timezone)
    if zone_problem is not None:
        problems.append(Problem(f"{path}.timezone", zone_problem))

    first_index_by_name: dict[str, int] = {}
    for index, shift in enumerate(definition.shifts):
        shift_path = f"{path}.shifts[{index}]"
        if not shift.name.strip():
            problems.append(Problem(f"{shift_path}.name", "shift name must not be empty"))
        elif shift.name in first_index_by_name:
            first = first_index_by_name[shift.name]
            problems.append(
                Problem(
                    f"{shift_path}.name",
                    f'duplicate shift name "{shift.name}" (also shifts[{first}])',
                )
            )
        else:
            first_index_by_name[shift.name] = index

        for field_name, value in (("start", shift.start), ("end", shift.end)):
            if value.tzinfo is not None:
                problems.append(
                    Problem(
                        f"{shift_path}.{field_name}",
                        "must be a wall-clock time without a time zone",
                    )
                )

        bad_days = sorted(day for day in shift.days if not 1 <= day <= 7)
        if bad_days:
            listed = ", ".join(str(day) for day in bad_days)
            problems.append(
                Problem(
                    f"{shift_path}.days",
                    f"not an ISO weekday (1 = Monday ... 7 = Sunday): {listed}",
                )
            )

        problems.extend(_check_breaks(shift, shift_path))

    problems.extend(_check_overlaps(definition.shifts, path))
    return problems


class ShiftCalendar:
    """A validated calendar answering "which shift instance, and until when"."""

    __slots__ = (
        "_block_cache",
        "_current",
        "_date_cache",
        "_definition",
        "_raw_cache",
        "_shift_by_name",
        "_templates",
        "_tz",
    )

    def __init__(self, definition: CalendarDef) -> None:
        problems = validate_calendar(definition)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            noun = "problem" if len(problems) == 1 else "problems"
            raise ValueError(f"invalid shift calendar, {len(problems)} {noun}:\n{lines}")
        self._definition = definition
        self._tz = zoneinfo.ZoneInfo(definition.timezone)
        templates = sorted(
            (_ShiftTemplate.build(shift) for shift in definition.shifts),
            key=lambda template: template.start_us,
        )
        self._templates: tuple[_ShiftTemplate, ...] = tuple(templates)
        self._shift_by_name = {template.name: template for template in templates}
        self._raw_cache: dict[int, tuple[_RawInstance, ...]] = {}
        self._date_cache: dict[int, tuple[ShiftInstance, ...]] = {}
        self._block_cache: dict[int, _Block] = {}
        # An empty range: the first lookup builds the block it needs.
        self._current = _Block(number=0, lo=0.0, hi=0.0, instances=(), starts=(), points=())

    @property
    def definition(self) -> CalendarDef:
        return self._definition

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        return self._tz

    def instance_at(self, ts: float) -> ShiftInstance | None:
        """The instance with ``start <= ts < end``; ``None``: not scheduled."""
        block = self._current
        if not block.lo <= ts < block.hi:
            block = self._current = self._block_for(ts)
        index = bisect_right(block.starts, ts) - 1
        if index >= 0:
            instance = block.instances[index]
            if ts < instance.end:
                return instance
        return None

    def instances(self, start: float, end: float) -> Iterator[ShiftInstance]:
        """Instances overlapping ``[start, end)``, in time order."""
        if not start < end:
            return
        number = _block_number(start)
        while number * _BLOCK_S < end:
            block = self._block(number)
            for instance in block.instances:
                if instance.end <= start or instance.start >= end:
                    continue
                # An instance reaching across blocks is listed by the block that
                # holds its first instant inside the query, so it comes once.
                if block.lo <= max(instance.start, start) < block.hi:
                    yield instance
            number += 1

    def next_boundary(self, ts: float) -> float:
        """The next instant ``> ts`` where the instance or break state changes.

        Changes are shift starts and ends and break starts and ends (between
        scheduled and not scheduled, from one instance to the next, between
        break and no break). ``math.inf`` if none within ``NEXT_BOUNDARY_HORIZON_S``.
        """
        block = self._current
        if not block.lo <= ts < block.hi:
            block = self._current = self._block_for(ts)
        limit = ts + NEXT_BOUNDARY_HORIZON_S
        number = block.number
        while True:
            points = block.points
            index = bisect_right(points, ts)
            # Points past the block's end may miss instances of later dates, so
            # only points inside the block are trusted; the next block decides.
            if index < len(points) and points[index] < block.hi:
                found = points[index]
                return found if found <= limit else math.inf
            if block.hi > limit:
                return math.inf
            number += 1
            block = self._block(number)

    def instance_by_key(self, key: str) -> ShiftInstance | None:
        """Rebuild an instance from ``ShiftInstance.key``; ``None`` if there is none."""
        name, separator, iso_date = key.rpartition("@")
        if not separator:
            return None
        template = self._shift_by_name.get(name)
        if template is None:
            return None
        try:
            local_date = datetime.date.fromisoformat(iso_date)
        except ValueError:
            return None
        for instance in self._date_instances(local_date.toordinal()):
            if instance.name == name:
                return instance
        return None

    # -- building instances --------------------------------------------------

    def _block_for(self, ts: float) -> _Block:
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {ts!r}")
        return self._block(_block_number(ts))

    def _block(self, number: int) -> _Block:
        block = self._block_cache.get(number)
        if block is None:
            block = self._build_block(number)
            if len(self._block_cache) >= _MAX_CACHED_BLOCKS:
                del self._block_cache[next(iter(self._block_cache))]
            self._block_cache[number] = block
        return block

    def _build_block(self, number: int) -> _Block:
        first_ordinal = _EPOCH_ORDINAL + number * _BLOCK_DAYS
        instances: list[ShiftInstance] = []
        for ordinal in range(
            first_ordinal - _BLOCK_DATES_BEFORE, first_ordinal + _BLOCK_DATES_AFTER + 1
        ):
            instances.extend(self._date_instances(ordinal))
        instances.sort(key=lambda instance: instance.start)
        points: set[float] = set()
        for instance in instances:
            points.add(instance.start)
            points.add(instance.end)
            for break_start, break_end in instance.breaks:
                points.add(break_start)
                points.add(break_end)
        return _Block(
            number=number,
            lo=float(number * _BLOCK_S),
            hi=float((number + 1) * _BLOCK_S),
            instances=tuple(instances),
            starts=tuple(instance.start for instance in instances),
            points=tuple(sorted(points)),
        )

    def _date_instances(self, ordinal: int) -> tuple[ShiftInstance, ...]:
        """Instances starting on one local date, clamped into local order."""
        cached = self._date_cache.get(ordinal)
        if cached is not None:
            return cached
        floor = -math.inf
        for earlier in range(ordinal - _CLAMP_LOOKBACK_DAYS, ordinal):
            for raw in self._raw_instances(earlier):
                floor = max(floor, *raw.boundaries)
        local_date = datetime.date.fromordinal(ordinal)
        built: list[ShiftInstance] = []
        for raw in self._raw_instances(ordinal):
            clamped: list[float] = []
            for boundary in raw.boundaries:
                floor = max(floor, boundary)
                clamped.append(floor)
            instance = _make_instance(raw.template.name, local_date, clamped)
            if instance is not None:
                built.append(instance)
        result = tuple(built)
        if len(self._date_cache) >= _MAX_CACHED_DATES:
            del self._date_cache[next(iter(self._date_cache))]
        self._date_cache[ordinal] = result
        return result

    def _raw_instances(self, ordinal: int) -> tuple[_RawInstance, ...]:
        """Unclamped UTC boundaries of the instances starting on one local date."""
        cached = self._raw_cache.get(ordinal)
        if cached is not None:
            return cached
        local_date = datetime.date.fromordinal(ordinal)
        weekday = local_date.isoweekday()
        result = tuple(
            _RawInstance(template, template.boundaries_utc(local_date, self._tz))
            for template in self._templates
            if not template.days or weekday in template.days
        )
        if len(self._raw_cache) >= _MAX_CACHED_DATES:
            del self._raw_cache[next(iter(self._raw_cache))]
        self._raw_cache[ordinal] = result
        return result


# -- internals -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    """Everything scheduled in the UTC range ``[lo, hi)``, ready for bisection."""

    number: int
    lo: float
    hi: float
    instances: tuple[ShiftInstance, ...]
    starts: tuple[float, ...]
    points: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class _ShiftTemplate:
    """A shift's boundaries as (days after the start date, wall-clock time), in order."""

    name: str
    days: frozenset[int]
    start_us: int
    # start, break starts and ends interleaved, end
    wall_boundaries: tuple[tuple[int, datetime.time], ...]

    @staticmethod
    def build(shift: ShiftDef) -> _ShiftTemplate:
        start_us = _time_us(shift.start)
        end_offset = _duration_us(shift.start, shift.end) + start_us
        placed = sorted(_place_break(start_us, brk) for brk in shift.breaks)
        boundaries: list[tuple[int, datetime.time]] = [(0, _naive(shift.start))]
        for break_start_us, break_end_us in placed:
            boundaries.append(_wall_at(break_start_us))
            boundaries.append(_wall_at(break_end_us))
        boundaries.append(_wall_at(end_offset))
        return _ShiftTemplate(shift.name, shift.days, start_us, tuple(boundaries))

    def boundaries_utc(self, local_date: datetime.date, tz: zoneinfo.ZoneInfo) -> tuple[float, ...]:
        return tuple(
            datetime.datetime.combine(
                local_date + datetime.timedelta(days=day_offset), wall, tzinfo=tz
            ).timestamp()
            for day_offset, wall in self.wall_boundaries
        )


@dataclass(frozen=True, slots=True)
class _RawInstance:
    template: _ShiftTemplate
    boundaries: tuple[float, ...]


def _make_instance(
    name: str, local_date: datetime.date, boundaries: list[float]
) -> ShiftInstance | None:
    start, end = boundaries[0], boundaries[-1]
    if end <= start:
        return None
    breaks: list[tuple[float, float]] = []
    for index in range(1, len(boundaries) - 1, 2):
        break_start, break_end = boundaries[index], boundaries[index + 1]
        if break_end <= break_start:
            continue
        if breaks and breaks[-1][1] >= break_start:
            breaks[-1] = (breaks[-1][0], max(breaks[-1][1], break_end))
        else:
            breaks.append((break_start, break_end))
    return ShiftInstance(name, local_date, start, end, tuple(breaks))


def _block_number(ts: float) -> int:
    return math.floor(ts / _BLOCK_S)


def _time_us(value: datetime.time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _duration_us(start: datetime.time, end: datetime.time) -> int:
    """Length of a start..end span; ``end <= start`` crosses midnight."""
    length = (_time_us(end) - _time_us(start)) % _DAY_US
    return length if length else _DAY_US


def _place_break(shift_start_us: int, brk: BreakDef) -> tuple[int, int]:
    """A break's span in microseconds after the shift's start date's midnight.

    The break takes its first occurrence at or after the shift's start, so a
    break before the shift's start time belongs to the next day's wall clock.
    """
    start = _time_us(brk.start)
    if start < shift_start_us:
        start += _DAY_US
    length = (_time_us(brk.end) - _time_us(brk.start)) % _DAY_US
    return start, start + length


def _wall_at(offset_us: int) -> tuple[int, datetime.time]:
    days, within = divmod(offset_us, _DAY_US)
    seconds, micros = divmod(within, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return days, datetime.time(hour, minute, second, micros)


def _naive(value: datetime.time) -> datetime.time:
    return value.replace(tzinfo=None, fold=0)


def _format_time(value: datetime.time) -> str:
    text = f"{value.hour:02d}:{value.minute:02d}"
    if value.second or value.microsecond:
        text += f":{value.second:02d}"
        if value.microsecond:
            text += f".{value.microsecond:06d}"
    return text


def _format_span(start: datetime.time, end: datetime.time) -> str:
    return f"{_format_time(start)}-{_format_time(end)}"


def _check_timezone(key: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f'unknown IANA time zone "{key}"'
    return None


def _check_breaks(shift: ShiftDef, shift_path: str) -> list[Problem]:
    problems: list[Problem] = []
    shift_start = _time_us(shift.start)
    shift_end = shift_start + _duration_us(shift.start, shift.end)
    shift_span = _format_span(shift.start, shift.end)
    inside: list[tuple[int, int, int]] = []  # (start, end, index) of usable breaks
    for index, brk in enumerate(shift.breaks):
        break_path = f"{shift_path}.breaks[{index}]"
        span = _format_span(brk.start, brk.end)
        if brk.start.tzinfo is not None or brk.end.tzinfo is not None:
            problems.append(
                Problem(break_path, f"{span} must be wall-clock times without a time zone")
            )
            continue
        if _time_us(brk.start) == _time_us(brk.end):
            problems.append(Problem(break_path, f"{span} has no length"))
            continue
        start, end = _place_break(shift_start, brk)
        if start >= shift_end:
            problems.append(Problem(break_path, f"{span} lies outside the shift {shift_span}"))
            continue
        if end > shift_end:
            problems.append(
                Problem(break_path, f"{span} extends past the end of the shift {shift_span}")
            )
            continue
        inside.append((start, end, index))
    inside.sort()
    clashes: list[tuple[int, Problem]] = []
    reach: tuple[int, int, int] | None = None  # the placed break reaching furthest so far
    for placed in inside:
        if reach is not None and placed[0] < reach[1]:
            mine, other = max(placed[2], reach[2]), min(placed[2], reach[2])
            current, previous = shift.breaks[mine], shift.breaks[other]
            clashes.append(
                (
                    mine,
                    Problem(
                        f"{shift_path}.breaks[{mine}]",
                        f"{_format_span(current.start, current.end)} overlaps break "
                        f"{_format_span(previous.start, previous.end)} (breaks[{other}])",
                    ),
                )
            )
        if reach is None or placed[1] > reach[1]:
            reach = placed
    clashes.sort(key=lambda clash: clash[0])
    return problems + [problem for _, problem in clashes]


def _weekly_spans(shift: ShiftDef) -> list[tuple[int, int, int]]:
    """(weekday, start, end) in microseconds since Monday 00:00, one per start day."""
    start = _time_us(shift.start)
    length = _duration_us(shift.start, shift.end)
    days = sorted(day for day in shift.days if 1 <= day <= 7) if shift.days else range(1, 8)
    return [
        (day, (day - 1) * _DAY_US + start, (day - 1) * _DAY_US + start + length) for day in days
    ]


def _spans_overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    # The week wraps: a Sunday night shift runs into Monday morning.
    return any(a[1] < b[2] + shift and b[1] + shift < a[2] for shift in (-_WEEK_US, 0, _WEEK_US))


def _check_overlaps(shifts: tuple[ShiftDef, ...], path: str) -> list[Problem]:
    problems: list[Problem] = []
    spans = [_weekly_spans(shift) for shift in shifts]
    for later in range(len(shifts)):
        for earlier in range(later):
            clash = next(
                (
                    other
                    for mine in spans[later]
                    for other in spans[earlier]
                    if _spans_overlap(mine, other)
                ),
                None,
            )
            if clash is None:
                continue
            other_shift = shifts[earlier]
            problems.append(
                Problem(
                    f"{path}.shifts[{later}]",
                    f'overlaps shift "{other_shift.name}" on {_WEEKDAYS[clash[0] - 1]} '
                    f"{_format_span(other_shift.start, other_shift.end)}",
                )
            )
    return problems
