"""Golden replays of faults: a PLC link gap in the trace (``"sensor": "link"``) and
counters that jump or restart far from 0. Numbers worked out by hand from OEE.md
§5 and docs/engine.md (Counts, time the edge did not see)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.replay.helpers import config, line, replay, shifts

CALENDAR = """
[calendar]
timezone = "UTC"
[[calendar.shifts]]
name = "A"
start = "06:00"
end = "14:00"
[[calendar.shifts]]
name = "B"
start = "14:00"
end = "22:00"
"""
D = "2025-08-22T"


def test_a_link_gap_across_a_shift_change_is_credited_from_its_end(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        CALENDAR
        + """
        [[machines]]
        id = "F"
        ideal_cycle_s = 2.0
        """,
    )
    lines = [
        line(D + "13:00:00Z", "F", "running", True),
        line(D + "13:00:00Z", "F", "total_count", 0),
        line(D + "13:30:00Z", "F", "total_count", 900),  # 900 x 2 = 1800 s in 1800 s
        line(D + "13:50:00Z", "F", "link", False),
        line(D + "14:20:00Z", "F", "link", True),
        line(D + "14:20:00Z", "F", "running", True),
        # +750: 1500 s of the 1800 s gap ran, 14:20 back to 13:55.
        line(D + "14:20:00Z", "F", "total_count", 1650),
        line(D + "14:30:00Z", "F", "total_count", 1950),  # +300 x 2 = 600 s in 600 s
    ]
    report, err = replay(cfg, lines)
    a, b = shifts(report, "F")
    # A, 13:00-14:00 of the span: comm_loss 13:50-13:55 only.
    assert a["scheduled_s"] == 3600.0
    assert a["downtime_by_reason"] == {"comm_loss": 300.0}
    assert (a["run_s"], a["total_count"]) == (3300.0, 900)
    assert a["performance"] == pytest.approx(1800 / 3300, rel=1e-12)
    # B, 14:00-14:30: all of it run time, 1050 pieces. The pieces stay at their
    # reading, in B, while 300 s of their run time is in A: B's performance is above
    # 1.0, and that is not reported as a wrong ideal cycle time.
    assert b["downtime_by_reason"] == {}
    assert (b["run_s"], b["total_count"]) == (1800.0, 1050)
    assert b["performance"] == pytest.approx(2100 / 1800, rel=1e-12)
    assert err == ""


def test_counters_restarted_far_from_zero_or_jumping_count_nothing_phantom(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        CALENDAR
        + """
        [[machines]]
        id = "P"
        ideal_cycle_s = 1.0
        """,
    )
    lines = [
        line(D + "06:00:00Z", "P", "running", True),
        line(D + "06:00:00Z", "P", "total_count", 70000),
        line(D + "06:10:00Z", "P", "total_count", 70500),  # +500 in 600 s
        line(D + "06:10:00Z", "P", "link", False),
        line(D + "06:10:30Z", "P", "link", True),
        line(D + "06:10:30Z", "P", "running", True),
        # 30 s later at 65300: not a rollover, not near 0 (<= 2 x 31 = 62): 0 pieces.
        line(D + "06:10:30Z", "P", "total_count", 65300),
        line(D + "06:20:00Z", "P", "total_count", 65800),  # +500 in 570 s
        # A jump of 100000 in 60 s: allowance 2 x 61 = 122 counted, the rest not.
        line(D + "06:21:00Z", "P", "total_count", 165800),
        line(D + "06:30:00Z", "P", "total_count", 166300),  # +500 in 540 s
    ]
    report, err = replay(cfg, lines)
    [a] = shifts(report, "P")
    assert a["total_count"] == 500 + 500 + 122 + 500
    # The 30 s gap stays comm_loss: the re-baselined reading revealed nothing.
    assert a["downtime_by_reason"] == {"comm_loss": 30.0}
    assert "went from 70500 to 65300" in err and "re-baselined" in err
    assert "jumped by 100000" in err and "122 counted, 99878 not counted" in err
