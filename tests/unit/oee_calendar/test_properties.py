"""Properties of the calendar over random calendars, zones and instants.

The instants are drawn near the moments where calendars go wrong: DST changes
(Europe/Berlin, America/New_York, Australia/Lord_Howe with its 30 min shift,
America/Santiago in the southern hemisphere) and the day Samoa skipped
(Pacific/Apia jumped from 2011-12-29 to 2011-12-31).
"""

from __future__ import annotations

import datetime
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.oee.calendar import ShiftCalendar, ShiftInstance
from actors.oee.params import BreakDef, CalendarDef, ShiftDef
from tests.unit.oee_calendar.helpers import utc

DAY = 86400.0

ZONES = (
    "Europe/Berlin",
    "Asia/Bangkok",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Apia",
    "UTC",
)

# Instants near which the offsets of the zones above change.
ANCHORS = (
    utc(2025, 3, 30, 1, 0),  # Europe spring forward
    utc(2025, 10, 26, 1, 0),  # Europe fall back
    utc(2025, 3, 9, 7, 0),  # New York spring forward
    utc(2025, 11, 2, 6, 0),  # New York fall back
    utc(2025, 4, 5, 15, 0),  # Lord Howe back 30 min
    utc(2025, 10, 4, 15, 30),  # Lord Howe forward 30 min
    utc(2025, 4, 6, 3, 0),  # Santiago back
    utc(2025, 9, 7, 4, 0),  # Santiago forward
    utc(2011, 12, 30, 10, 0),  # Samoa skips a day
    utc(2025, 7, 15, 12, 0),  # an ordinary day
)

MINUTES_PER_DAY = 24 * 60
# Times near the usual 02:00-03:00 change hour are over-represented on purpose.
minute_of_day = st.one_of(
    st.integers(0, MINUTES_PER_DAY - 1),
    st.sampled_from([0, 60, 120, 135, 150, 165, 180, 195, 210]),
)


def _time(minute: int) -> datetime.time:
    return datetime.time(minute // 60, minute % 60)


@st.composite
def calendars(draw: st.DrawFn) -> CalendarDef:
    """Valid calendars: shifts between distinct cut points of the day, never overlapping.

    Each shift occupies its own arc of the daily cycle, so whatever days each runs on,
    no two meet; a shift may end at midnight or later (the last arc wraps).
    """
    zone = draw(st.sampled_from(ZONES))
    cuts = sorted(draw(st.sets(minute_of_day, min_size=1, max_size=5)))
    shifts: list[ShiftDef] = []
    for index, cut in enumerate(cuts):
        if not draw(st.booleans()) and len(cuts) > 1:
            continue  # this arc is left unscheduled
        following = cuts[(index + 1) % len(cuts)]
        length = (following - cut) % MINUTES_PER_DAY or MINUTES_PER_DAY
        breaks: list[BreakDef] = []
        if length >= 2 and draw(st.booleans()):
            first = draw(st.integers(0, length - 2))
            # A break as long as a whole day would read as start == end: no length.
            last = draw(st.integers(first + 1, min(length, first + MINUTES_PER_DAY - 1)))
            breaks.append(
                BreakDef(
                    _time((cut + first) % MINUTES_PER_DAY), _time((cut + last) % MINUTES_PER_DAY)
                )
            )
        days = draw(st.frozensets(st.integers(1, 7), max_size=7))
        shifts.append(
            ShiftDef(
                name=f"S{index}",
                start=_time(cut),
                end=_time(following),
                days=days,
                breaks=tuple(breaks),
            )
        )
    return CalendarDef(timezone=zone, shifts=tuple(shifts))


instants = st.builds(
    lambda anchor, offset: anchor + offset,
    st.sampled_from(ANCHORS),
    st.floats(-3 * DAY, 3 * DAY, allow_nan=False),
)


def _check_well_formed(found: list[ShiftInstance]) -> None:
    for instance in found:
        assert instance.start < instance.end
        previous_end = instance.start
        for break_start, break_end in instance.breaks:
            # Sorted, inside the instance, apart from each other (touching ones are merged).
            assert previous_end <= break_start < break_end <= instance.end
            assert break_start > previous_end or previous_end == instance.start
            previous_end = break_end
    for earlier, later in itertools.pairwise(found):
        assert earlier.end <= later.start, (earlier, later)


@settings(max_examples=300, deadline=None)
@given(definition=calendars(), moments=st.lists(instants, min_size=1, max_size=6))
def test_instance_at_agrees_with_instances_and_nothing_overlaps(
    definition: CalendarDef, moments: list[float]
) -> None:
    cal = ShiftCalendar(definition)
    for ts in moments:  # one calendar, many queries: caches are exercised
        found = list(cal.instances(ts - DAY, ts + DAY))
        _check_well_formed(found)
        containing = [i for i in found if i.start <= ts < i.end]
        assert len(containing) <= 1
        assert cal.instance_at(ts) == (containing[0] if containing else None)
        for instance in found:
            assert cal.instance_by_key(instance.key) == instance
            # Every instance overlapping the range is there, and only those.
            assert instance.end > ts - DAY and instance.start < ts + DAY


@settings(max_examples=300, deadline=None)
@given(definition=calendars(), ts=instants)
def test_next_boundary_is_the_first_change_after_ts(definition: CalendarDef, ts: float) -> None:
    cal = ShiftCalendar(definition)
    boundary = cal.next_boundary(ts)
    assert boundary > ts
    nearby = list(cal.instances(ts - DAY, ts + 2 * DAY))
    edges = sorted(
        {
            edge
            for instance in nearby
            for edge in (
                instance.start,
                instance.end,
                *(point for span in instance.breaks for point in span),
            )
            if edge > ts
        }
    )
    if edges and edges[0] < ts + DAY:
        assert boundary == edges[0]
    else:
        assert boundary >= ts + DAY

    def state(at: float) -> tuple[str, bool] | None:
        instance = cal.instance_at(at)
        return None if instance is None else (instance.key, instance.in_break(at))

    if boundary < ts + DAY:
        # Constant on [ts, boundary), different at the boundary.
        assert state(ts) == state(ts + (boundary - ts) / 2)
        assert state(boundary) != state(ts)
