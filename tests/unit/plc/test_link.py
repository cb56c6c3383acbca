"""Backoff and link state: capped jittered growth; transitions reported and logged once."""

from __future__ import annotations

import logging
import random

import pytest

from edge.backoff import Backoff
from edge.sources.plc.link import LinkState, LinkTracker


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(1.0, 10.0, jitter=0.0)
    # 1, 2, 4, 8, then capped at 10
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_jitter_stays_within_bounds_and_never_exceeds_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.25, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    # attempt n: base = min(4, 0.5 * 2**n); delay in [0.75 * base, base]
    for n, delay in enumerate(delays):
        base = min(4.0, 0.5 * 2**n)
        assert 0.75 * base <= delay <= base
    assert len(set(delays[10:])) > 1  # jittered, not constant


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, jitter=1.0)


def test_link_tracker_reports_and_logs_each_transition_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = LinkTracker("plc p1", logging.getLogger("test.link"))
    assert tracker.state is LinkState.UNKNOWN
    with caplog.at_level(logging.INFO, logger="test.link"):
        assert tracker.succeeded(100.0) is True
        assert tracker.succeeded(101.0) is False
        assert tracker.failed(102.0, "connection refused") is True
        assert tracker.failed(103.0, "connection refused") is False
        assert tracker.failed(104.0, "timeout") is False
        assert tracker.consecutive_failures == 3
        assert tracker.down_since == 102.0
        assert tracker.succeeded(112.5) is True
    assert tracker.is_up
    assert tracker.consecutive_failures == 0
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.INFO, "plc p1: link up"),
        (logging.WARNING, "plc p1: link down: connection refused"),
        # down at 102.0, back at 112.5 -> 10.5 s
        (logging.INFO, "plc p1: link restored after 10.5 s down"),
    ]


def test_first_attempt_failing_is_a_transition_to_down() -> None:
    tracker = LinkTracker("plc p2", logging.getLogger("test.link"))
    assert tracker.failed(5.0, "refused") is True
    assert tracker.state is LinkState.DOWN
