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


def test_quantile_interpolates_inside_its_bucket() -> None:
    histogram = Histogram([0.001, 0.002, 0.01])
    # 90 observations at or below 1 ms, 10 between 2 and 10 ms.
    for _ in range(90):
        histogram.observe(0.0005)
    for _ in range(10):
        histogram.observe(0.005)
    snapshot = histogram.snapshot()
    # rank 50 of 90 in (0, 0.001]; rank 99 is the 9th of 10 in (0.002, 0.01].
    assert snapshot.quantile(0.5) == pytest.approx(0.001 * 50 / 90)
    assert snapshot.quantile(0.99) == pytest.approx(0.002 + 0.008 * 9 / 10)
    assert snapshot.quantile(1.0) == pytest.approx(0.01)


def test_quantile_above_every_bound_is_the_last_bound() -> None:
    histogram = Histogram([0.1])
    histogram.observe(5.0)
    assert histogram.snapshot().quantile(0.99) == 0.1


def test_quantile_of_nothing_is_nan_and_q_is_checked() -> None:
    snapshot = Histogram([0.1]).snapshot()
    assert snapshot.quantile(0.5) != snapshot.quantile(0.5)  # NaN
    with pytest.raises(ValueError, match="quantile"):
        snapshot.quantile(0.0)


def test_minus_leaves_the_observations_made_in_between() -> None:
    histogram = Histogram([0.01, 0.1])
    histogram.observe(0.005)
    before = histogram.snapshot()
    histogram.observe(0.05)
    histogram.observe(0.5)
    window = histogram.snapshot().minus(before)
    assert window.counts == (0, 1, 1)
    assert window.sum == pytest.approx(0.55)
    with pytest.raises(ValueError, match="different bounds"):
        window.minus(Histogram([1.0]).snapshot())
