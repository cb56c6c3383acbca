"""The performance > 1.0 warning (OEE.md §6) and the one-piece granularity slack."""

from __future__ import annotations

from actors.oee.events import Warning
from tests.unit.oee.helpers import core, feed, t


def warnings_after(pieces: int) -> list[Warning]:
    # Ideal cycle 2 s; running from 06:00:00, then ``pieces`` counted at 06:00:10.
    machine = core()
    feed(machine, t("06:00:00"), "running", True)
    feed(machine, t("06:00:00"), "total_count", 0)
    feed(machine, t("06:00:10"), "total_count", pieces)
    record = machine.current_shift_kpis(t("06:00:10"))  # a KPI query checks it
    assert record is not None and record.run_s == 10.0
    return [e for e in machine.drain_events() if isinstance(e, Warning)]


def test_one_piece_more_than_the_run_time_allows_is_granularity_not_a_wrong_ideal() -> None:
    # 6 pieces x 2 s = 12 s of ideal time in 10 s of run: performance 1.2, but the
    # 2 s surplus is one piece, the one in progress when the window began.
    assert warnings_after(6) == []


def test_a_surplus_beyond_one_piece_warns_once() -> None:
    # 7 pieces x 2 s = 14 s in 10 s: a 4 s surplus, two pieces: the ideal is wrong.
    [warning] = warnings_after(7)
    assert warning.kind == "performance_above_1"
    assert "performance 1.400 > 1.0" in warning.message
