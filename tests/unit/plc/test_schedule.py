"""The poll grid: the first poll at once, then a drift-free grid with a random phase."""

from __future__ import annotations

import random

import pytest

from edge.plc.schedule import PollGrid


def test_first_poll_is_due_at_once_then_every_interval_on_a_shifted_grid() -> None:
    grid = PollGrid(0.1, random.Random(4))
    grid.begin(100.0)
    assert grid.due == 100.0
    grid.started(100.002)
    grid.advance(100.01)
    phase = grid.due - 100.1
    assert 0.0 <= phase < 0.1
    for slot in range(1, 5):
        grid.started(grid.due)
        grid.advance(grid.due + 0.005)
        # No drift: slot n stays at start + phase + n * interval.
        assert grid.due == pytest.approx(100.0 + phase + (slot + 1) * 0.1)
    assert grid.skipped == 0


def test_an_overrun_skips_the_missed_slots() -> None:
    grid = PollGrid(0.1, random.Random(1))
    grid.begin(0.0)
    grid.advance(0.0)
    due = grid.due
    grid.started(due)
    grid.advance(due + 0.35)  # the poll took 3.5 intervals
    assert grid.skipped == 3
    assert grid.due == pytest.approx(due + 0.4)


def test_lateness_is_observed_per_poll_and_a_retry_moves_the_grid() -> None:
    grid = PollGrid(1.0, random.Random(2))
    grid.begin(10.0)
    grid.started(10.004)
    grid.retry_at(12.5)
    grid.started(12.5)
    snapshot = grid.lateness.snapshot()
    assert snapshot.count == 2
    assert snapshot.sum == pytest.approx(0.004)
    assert grid.due == 12.5


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        PollGrid(0.0, random.Random())
