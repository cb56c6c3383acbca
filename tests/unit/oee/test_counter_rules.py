"""The counter rules of a machine (actors.oee.counters): rollover, reset to near 0,
re-baseline, and the plausibility cap. Expectations worked out by hand.

The allowance of a reading ``elapsed`` seconds after the previous one is
``factor x (elapsed / ideal + 1)`` pieces.
"""

from __future__ import annotations

import pytest

from actors.oee.counters import CounterChange, allowance, machine_step
from actors.oee.events import CounterJumpCapped, CounterRebaselined, PiecesCounted, Warning
from tests.unit.oee.helpers import core, feed, of_type, t

BITS16 = 16


def test_allowance_is_the_ideal_rate_times_the_factor_plus_one_piece() -> None:
    assert allowance(10.0, 2.0, 2.0) == 12.0  # 2 x (5 + 1)
    assert allowance(0.5, 1.0, 3.0) == 4.5  # 3 x (0.5 + 1)
    assert allowance(-1.0, 1.0, 2.0) == 2.0  # a clock step back: as if no time passed


@pytest.mark.parametrize(
    ("old", "new", "limit", "expected"),
    [
        # within the allowance: counted as it is
        (100, 112, 12.0, (12, CounterChange.NORMAL, 0)),
        # beyond it: 12 counted (floor of 12.9), the other 888 reported, never counted
        (100, 1000, 12.9, (12, CounterChange.CAPPED, 888)),
        # 16 bit, top quarter to bottom quarter: 65536 - 65530 + 10 = 16 <= 22
        (65530, 10, 22.0, (16, CounterChange.ROLLOVER, 0)),
        # rollover-shaped but 65536 - 60000 + 20 = 5556 > 22; 20 <= 22: a reset to near 0
        (60000, 20, 22.0, (20, CounterChange.RESET, 0)),
        # a drop to near 0 from the middle of the range: a reset, the new value counted
        (5000, 3, 6.0, (3, CounterChange.RESET, 0)),
        # a drop that is neither: re-baselined, nothing counted
        (5000, 3000, 6.0, (0, CounterChange.REBASELINE, 0)),
        # rollover-shaped, neither delta nor new value plausible: re-baselined
        (60000, 15000, 22.0, (0, CounterChange.REBASELINE, 0)),
    ],
)
def test_machine_step(old: int, new: int, limit: float, expected: tuple[int, object, int]) -> None:
    assert machine_step(old, new, BITS16, limit) == expected


def test_a_plc_restarted_with_a_high_counter_is_re_baselined_not_counted() -> None:
    m = core(ideal_cycle_s=1.0)  # 32-bit counters
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 70_000)
    feed(m, t("06:01"), "total_count", 70_050)  # +50 in 60 s: allowance 2 x 61 = 122
    m.link_changed(False, t("06:01"))
    m.link_changed(True, t("06:01:30"))
    feed(m, t("06:01:30"), "running", True)
    # Back after 30 s with the counter at 65300: allowance 2 x (30 / 1 + 1) = 62.
    events = feed(m, t("06:01:30"), "total_count", 65_300)
    [rebased] = of_type(events, CounterRebaselined)
    assert (rebased.role, rebased.old, rebased.new) == ("total_count", 70_050, 65_300)
    assert (rebased.elapsed_s, rebased.allowance) == (30.0, 62.0)
    [warning] = of_type(events, Warning)
    assert warning.kind == "counter_rebaselined" and "70050 to 65300" in warning.message
    assert not of_type(events, PiecesCounted)
    [counted] = of_type(feed(m, t("06:02"), "total_count", 65_310), PiecesCounted)
    assert counted.count == 10  # from the new baseline
    kpis = m.current_shift_kpis(t("06:02"))
    assert kpis is not None and kpis.total_count == 60
    stats = m.statistics()
    assert (stats.counter_rebaselines, stats.counter_resets, stats.implausible_jumps) == (1, 0, 0)


def test_a_plc_reset_to_near_zero_counts_the_new_value() -> None:
    m = core(ideal_cycle_s=1.0)
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 70_000)
    # 30 s later the PLC restarted its counter and has made 25 (<= 62): 25 pieces.
    events = feed(m, t("06:00:30"), "total_count", 25)
    [counted] = of_type(events, PiecesCounted)
    assert counted.count == 25
    [warning] = of_type(events, Warning)
    assert warning.kind == "counter_reset"
    assert m.statistics().counter_resets == 1


def test_the_cap_follows_the_machine_factor_and_the_faster_ideal_cycle() -> None:
    m = core(ideal_cycle_s=2.0, max_rate_factor=3.0)
    feed(m, t("06:00"), "running", True)
    feed(m, t("06:00"), "total_count", 0)
    # 20 s at 2 s, factor 3: 3 x (10 + 1) = 33; 40 is capped at 33.
    [capped] = of_type(feed(m, t("06:00:20"), "total_count", 40), CounterJumpCapped)
    assert (capped.delta, capped.counted, capped.excess, capped.elapsed_s) == (40, 33, 7, 20.0)
    # An order with a slower ideal cycle (4 s) does not lower what the machine can do:
    # the faster of the two (2 s) bounds it. 20 s: 33 again; +33 is within.
    m.set_order("WO1", 4.0, t("06:00:20"))
    events = feed(m, t("06:00:40"), "total_count", 73)
    assert not of_type(events, CounterJumpCapped)
    kpis = m.current_shift_kpis(t("06:00:40"))
    assert kpis is not None and kpis.total_count == 33 + 33
