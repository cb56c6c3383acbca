"""Time the edge did not see (OEE.md §5): pieces revealed after an ``unknown`` gap ran in it.

Golden scenarios on MachineCore, every number worked out by hand: ideal cycle
2 s, calendar A 06:00-14:00 and B 14:00-22:00 UTC, nights unscheduled. Then a
property: a machine that never runs faster than its ideal rate never shows a
performance above 1.0 because of link losses or restarts.
"""

from __future__ import annotations

import json
import math
from datetime import time as wall

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import (
    CounterRebaselined,
    GapRunCredited,
    PiecesCounted,
    ShiftClosed,
    WindowRevised,
)
from actors.oee.params import CalendarDef, MachineParams, ShiftDef, StateSource
from tests.unit.oee.helpers import MACHINE, core, feed, of_type, t, two_shift_calendar


def test_a_gap_inside_one_shift_keeps_only_the_unexplained_part_as_comm_loss() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 1000)
    m.link_changed(False, t("06:10"))
    m.link_changed(True, t("06:20"))
    feed(m, t("06:20"), "running", True)
    events = feed(m, t("06:20"), "total_count", 1120)  # +120 pieces
    # Gap 06:10-06:20 = 600 s; 120 x 2 s = 240 s ran: 06:16-06:20.
    [credit] = of_type(events, GapRunCredited)
    assert (credit.gap_start, credit.gap_end, credit.ts) == (t("06:10"), t("06:20"), t("06:20"))
    assert (credit.unknown_s, credit.running_s, credit.pieces) == (600.0, 240.0, 120)
    kpis = m.current_shift_kpis(t("06:30"))
    assert kpis is not None
    # 1800 s scheduled; comm_loss 600 - 240 = 360; run 1440; 120 pieces x 2 s / 1440.
    assert kpis.downtime_by_reason == {"comm_loss": 360.0}
    assert (kpis.run_s, kpis.total_count) == (1440.0, 120)
    assert kpis.performance == pytest.approx(240 / 1440)


def test_more_pieces_than_the_gap_can_hold_make_the_whole_gap_run_time() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    m.link_changed(False, t("06:10"))
    m.link_changed(True, t("06:11:40"))
    feed(m, t("06:11:40"), "running", True)
    [credit] = of_type(feed(m, t("06:11:40"), "total_count", 80), GapRunCredited)
    # 80 x 2 s = 160 s, but the gap is only 100 s: all of it ran, no comm_loss.
    assert (credit.unknown_s, credit.running_s) == (100.0, 100.0)
    kpis = m.current_shift_kpis(t("06:11:40"))
    assert kpis is not None
    assert kpis.downtime_by_reason == {}
    assert kpis.run_s == 700.0


def test_a_gap_across_a_shift_boundary_revises_the_closed_shift_and_the_order() -> None:
    m = core()
    feed(m, t("13:00"), "running", True)
    feed(m, t("13:00"), "total_count", 0)
    m.set_order("WO1", None, t("13:00"))
    m.link_changed(False, t("13:50"))
    m.link_changed(True, t("14:20"))
    events = feed(m, t("14:20"), "running", True)
    [closed] = of_type(events, ShiftClosed)  # A closes at 14:00, still all comm_loss
    assert closed.kpis.key.startswith("A@")
    assert closed.kpis.downtime_by_reason == {"comm_loss": 600.0}
    events = feed(m, t("14:20"), "total_count", 750)
    # Gap 13:50-14:20 (600 s in A, 1200 s in B); 750 x 2 s = 1500 s ran, from the end
    # back: 14:20 to 13:55. B gets 1200 s of run time, A 300 s (13:55-14:00).
    [credit] = of_type(events, GapRunCredited)
    assert (credit.unknown_s, credit.running_s) == (1800.0, 1500.0)
    [revised] = of_type(events, WindowRevised)
    a = revised.kpis
    assert (a.key, a.closed) == (closed.kpis.key, True)
    # A 13:00-14:00 (the clock started at 13:00): 3600 s, comm_loss 300, run 3300;
    # the pieces stay at their reading, in B.
    assert a.downtime_by_reason == {"comm_loss": 300.0}
    assert (a.scheduled_s, a.run_s, a.total_count) == (3600.0, 3300.0, 0)
    assert m.last_closed_shift_kpis() == a
    b = m.current_shift_kpis(t("14:30"))
    assert b is not None
    assert b.downtime_by_reason == {}
    assert (b.scheduled_s, b.run_s, b.total_count) == (1800.0, 1800.0, 750)
    assert b.performance == pytest.approx(1500 / 1800)
    order = m.order_kpis("WO1", t("14:30"))
    assert order is not None
    # The order window spans both: 13:00-14:30 = 5400 s, comm_loss 1800 - 1500.
    assert order.downtime_by_reason == {"comm_loss": 300.0}
    assert (order.run_s, order.total_count) == (5100.0, 750)


def test_a_counter_read_before_the_state_signal_credits_back_from_that_reading() -> None:
    m = core(state_source=StateSource.RUNNING_SIGNAL)
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    m.link_changed(False, t("06:10"))
    m.link_changed(True, t("06:20"))
    [credit] = of_type(feed(m, t("06:20"), "total_count", 100), GapRunCredited)
    # 100 x 2 s = 200 s back from the reading at 06:20: 06:16:40-06:20.
    assert (credit.gap_end, credit.running_s) == (t("06:20"), 200.0)
    feed(m, t("06:21"), "running", True)  # known again only a minute later
    kpis = m.current_shift_kpis(t("06:30"))
    assert kpis is not None
    # Unknown 06:10-06:21 = 660 s, 200 s of it ran before the reading: comm_loss 460.
    assert kpis.downtime_by_reason == {"comm_loss": 460.0}
    assert kpis.run_s == 1340.0


def test_good_and_reject_counters_together_reveal_their_sum() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "good_count", 0)
    feed(m, t("06:00"), "reject_count", 0)
    m.link_changed(False, t("06:10"))
    m.link_changed(True, t("06:20"))
    feed(m, t("06:20"), "running", True)
    [first] = of_type(feed(m, t("06:20"), "good_count", 150), GapRunCredited)
    [second] = of_type(feed(m, t("06:20"), "reject_count", 50), GapRunCredited)
    # With good and reject mapped, total = good + reject: 150 x 2, then 200 x 2.
    assert (first.running_s, first.pieces) == (300.0, 150)
    assert (second.running_s, second.pieces) == (400.0, 200)
    kpis = m.current_shift_kpis(t("06:20"))
    assert kpis is not None
    assert kpis.downtime_by_reason == {"comm_loss": 200.0}
    assert (kpis.total_count, kpis.good_count, kpis.reject_count) == (200, 150, 50)


def test_a_re_baselined_counter_reveals_nothing_and_the_gap_stays_comm_loss() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 50_000)
    m.link_changed(False, t("06:10"))
    m.link_changed(True, t("06:20"))
    feed(m, t("06:20"), "running", True)
    # 600 s at 2 s per piece, factor 2: allowance 2 x (1200 / 2 + 1) = 1202 pieces
    # (1200 s since the previous reading). 30_000 is far from 0: re-baselined.
    events = feed(m, t("06:20"), "total_count", 30_000)
    [rebased] = of_type(events, CounterRebaselined)
    assert (rebased.old, rebased.new, rebased.elapsed_s, rebased.allowance) == (
        50_000,
        30_000,
        1200.0,
        1202.0,
    )
    assert not of_type(events, GapRunCredited) and not of_type(events, PiecesCounted)
    events = feed(m, t("06:30"), "total_count", 30_005)  # counts again from the new baseline
    [counted] = of_type(events, PiecesCounted)
    assert counted.count == 5
    kpis = m.current_shift_kpis(t("06:30"))
    assert kpis is not None
    assert kpis.downtime_by_reason == {"comm_loss": 600.0}
    assert kpis.total_count == 5


def test_a_gap_in_unscheduled_time_is_credited_in_the_unscheduled_record() -> None:
    m = core()
    feed(m, t("21:00"), "running", True)
    feed(m, t("21:00"), "total_count", 0)
    m.link_changed(False, t("22:10"))
    m.link_changed(True, t("22:40"))
    feed(m, t("22:40"), "running", True)
    feed(m, t("22:40"), "total_count", 300)  # 600 s of the 1800 s gap ran
    record = m.unscheduled()
    # 22:00-22:10 seen running (600 s) + 22:30-22:40 credited (600 s); 22:10-22:30 unknown.
    assert (record.running_s, record.unknown_s, record.stopped_s) == (1200.0, 1200.0, 0.0)
    assert record.total_count == 300


def test_a_gap_over_two_shift_ends_keeps_the_older_shift_until_it_is_credited() -> None:
    m = core()
    feed(m, t("13:00"), "running", True)
    feed(m, t("13:00"), "total_count", 0)
    m.link_changed(False, t("13:00"))
    m.link_changed(True, t("22:30"))
    events = feed(m, t("22:30"), "running", True)
    assert len(of_type(events, ShiftClosed)) == 2  # A at 14:00, B at 22:00
    assert len(m.retained_shift_keys()) == 2  # A is kept: the gap may still credit it
    events = feed(m, t("22:30"), "total_count", 18_000)
    # 18000 x 2 s = 36000 s > the 34200 s gap (13:00-22:30): all of it ran.
    [credit] = of_type(events, GapRunCredited)
    assert (credit.unknown_s, credit.running_s) == (34200.0, 34200.0)
    a, b = (e.kpis for e in of_type(events, WindowRevised))
    assert (a.key[0], a.run_s, a.downtime_by_reason) == ("A", 3600.0, {})
    assert (b.key[0], b.run_s, b.downtime_by_reason) == ("B", 28800.0, {})
    # Pieces at 22:30 are unscheduled: outside PPT, in the unscheduled record.
    assert (a.total_count, b.total_count, m.unscheduled().total_count) == (0, 0, 18_000)
    assert m.unscheduled().running_s == 1800.0
    assert [key[0] for key in m.retained_shift_keys()] == ["B"]  # settled: A goes


def test_a_snapshot_inside_a_gap_continues_it_after_restore() -> None:
    m = core()
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    m.link_changed(False, t("06:10"))
    m.advance(t("06:15"))
    snapshot = json.loads(json.dumps(m.snapshot()))
    restored = MachineCore.restore(m.params, two_shift_calendar(), snapshot)
    restored.link_changed(True, t("06:20"))
    feed(restored, t("06:20"), "running", True)
    [credit] = of_type(feed(restored, t("06:20"), "total_count", 120), GapRunCredited)
    assert (credit.gap_start, credit.unknown_s, credit.running_s) == (t("06:10"), 600.0, 240.0)


# ----------------------------------------------------------------------------- property

DAY = ShiftCalendar(CalendarDef("UTC", (ShiftDef("All", wall(0), wall(0)),)))
T0 = t("06:00")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ideal=st.sampled_from([0.5, 1.0, 2.0, 3.7]),
    slowness=st.lists(st.floats(1.0, 1.6), min_size=1, max_size=8),
    poll_s=st.sampled_from([0.5, 1.0, 5.0]),
    outages=st.lists(
        st.tuples(st.floats(1.0, 900.0), st.floats(0.5, 3000.0), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
def test_link_losses_and_restarts_never_push_performance_above_one(
    ideal: float, slowness: list[float], poll_s: float, outages: list[tuple[float, float, bool]]
) -> None:
    """A machine making pieces no faster than its ideal cycle, seen through polls.

    Outages are ``(seen before, unseen for, restart)``: a PLC link loss, or a
    restart of the edge (snapshot, restore, unknown from the snapshot's time).
    """
    params = MachineParams(machine_id=MACHINE, ideal_cycle_s=ideal)
    m = MachineCore(params, DAY)
    cycles = [ideal * factor for factor in slowness]
    made, next_piece, cycle_index = 0, T0, 0

    def made_by(now: float) -> int:
        nonlocal made, next_piece, cycle_index
        while next_piece <= now:
            made += 1
            next_piece += cycles[cycle_index % len(cycles)]
            cycle_index += 1
        return made

    def poll(now: float) -> None:
        m.apply(Sample(MACHINE, "running", True, now))
        m.apply(Sample(MACHINE, "total_count", made_by(now), now))

    now = T0
    poll(now)
    baseline = made
    events: list[object] = []
    for seen_s, unseen_s, restart in outages:
        end_seen = now + seen_s
        while now + poll_s <= end_seen:
            now += poll_s
            poll(now)
        if restart:
            events += m.drain_events()
            snapshot = json.loads(json.dumps(m.snapshot()))
            m = MachineCore.restore(params, DAY, snapshot)
        m.link_changed(False, now)
        now += unseen_s
        m.link_changed(True, now)
        poll(now)
    m.commit(now)
    kpis = m.current_shift_kpis(now)
    assert kpis is not None
    assert kpis.total_count == made_by(now) - baseline  # nothing lost, nothing invented
    if kpis.performance is not None:
        # Beyond the ideal rate at most the cycle in progress when the clock started,
        # and for each gap the cycle in progress at its end (only whole pieces prove
        # run time).
        slack_s = (len(outages) + 1) * ideal
        assert kpis.performance <= 1.0 + slack_s / kpis.run_s + 1e-9, kpis
        events += m.drain_events()
        assert not [e for e in events if getattr(e, "kind", "") == "performance_above_1"]
    assert math.isclose(kpis.run_s + kpis.downtime_s, kpis.planned_production_s)
