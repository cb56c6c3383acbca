"""EventBus: fan-out where one failing consumer disturbs nobody, logged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from edge.event_bus import EventBus


def test_every_consumer_gets_every_batch_in_order() -> None:
    bus: EventBus[int] = EventBus()
    seen_a: list[int] = []
    seen_b: list[int] = []
    bus.subscribe("a", seen_a.extend)
    unsubscribe_b = bus.subscribe("b", seen_b.extend)
    bus.publish([1, 2])
    unsubscribe_b()
    bus.publish([3])
    assert seen_a == [1, 2, 3] and seen_b == [1, 2]
    assert bus.published == 3 and bus.has_consumers


def test_a_failing_consumer_is_logged_once_and_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus: EventBus[int] = EventBus()
    healthy: list[int] = []
    failing = True

    def flaky(batch: Sequence[int]) -> None:
        if failing:
            raise RuntimeError("disk full")

    bus.subscribe("flaky", flaky)
    bus.subscribe("healthy", healthy.extend)
    with caplog.at_level(logging.INFO, logger="edge.event_bus"):
        for value in range(5):
            bus.publish([value])
        failing = False
        bus.publish([5])
    assert healthy == [0, 1, 2, 3, 4, 5]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost" in m for m in messages) == 1, messages
    assert sum("recovered" in m for m in messages) == 1, messages


def test_a_consumer_that_subscribes_during_a_hold_gets_everything_in_order() -> None:
    bus: EventBus[int] = EventBus()
    early: list[int] = []
    late: list[int] = []
    bus.subscribe("early", early.extend)
    bus.publish([1])  # before the hold: nobody keeps it
    bus.hold()
    bus.publish([2, 3])
    bus.subscribe("late", late.extend)
    bus.publish([4])
    assert early == [1, 2, 3, 4]
    assert late == []  # nothing live before it is released
    bus.release()
    assert late == [2, 3, 4]
    bus.publish([5])
    assert early == [1, 2, 3, 4, 5]
    assert late == [2, 3, 4, 5]


def test_a_held_consumer_can_unsubscribe_and_a_bus_without_consumers_keeps_while_holding() -> None:
    bus: EventBus[int] = EventBus()
    assert not bus.has_consumers
    bus.hold()
    assert bus.has_consumers  # the route must publish: a late consumer will want it
    got: list[int] = []
    unsubscribe = bus.subscribe("late", got.extend)
    bus.publish([1])
    unsubscribe()
    bus.release()
    assert got == []
    assert not bus.has_consumers
