"""The poll-latency histogram: Prometheus ``le`` buckets, cumulative counts, the sum."""

from __future__ import annotations

import pytest

from edge.histogram import Histogram


def test_observations_land_in_le_buckets_and_add_up() -> None:
    histogram = Histogram([0.01, 0.1, 1.0])
    for value in (0.004, 0.01, 0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    # le=0.01: 0.004 and 0.01 (a value equal to a bound is in that bound's bucket)
    assert snapshot.counts == (2, 2, 1, 1)
    assert snapshot.count == 6
    assert snapshot.sum == pytest.approx(3.664)
    assert snapshot.cumulative() == [("0.01", 2.0), ("0.1", 4.0), ("1.0", 5.0), ("+Inf", 6.0)]


def test_a_snapshot_does_not_move_with_later_observations() -> None:
    histogram = Histogram([1.0])
    histogram.observe(0.5)
    before = histogram.snapshot()
    histogram.observe(2.0)
    assert before.counts == (1, 0) and histogram.snapshot().counts == (1, 1)


@pytest.mark.parametrize("bounds", [[1.0, 0.5], [0.1, 0.1]])
def test_bounds_must_increase(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="must increase strictly"):
        Histogram(bounds)
